//! Job specs (`train`, `eval`): one typed TOML document per file, checked with the same located
//! diagnostics as pipeline specs (file:line:column, a hint, every problem at once).
//!
//! A pipeline spec is a chain of stages; a job spec is a fixed shape owned by the job, so the job
//! declares it as a [`Params`] type and this module parses, validates and hashes it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::de::DeTable;

use crate::registry::{resolve_params, ValidateContext};
use crate::spec::{line_col, Diagnostic, SpecErrors};
use crate::Params;

/// A job spec loaded from a file: the typed value with defaults filled, and its identity.
#[derive(Debug, Clone)]
pub struct LoadedJob<P> {
    pub path: PathBuf,
    /// Folder of the spec file: relative paths inside it resolve against this.
    pub dir: PathBuf,
    pub spec: P,
    /// The resolved spec as TOML (defaults filled): what `spec show` prints and the hash covers.
    pub canonical: String,
    /// sha256 (hex) of `canonical`.
    pub hash: String,
}

impl<P> LoadedJob<P> {
    /// `p` relative to the spec file's folder (absolute paths unchanged).
    pub fn resolve(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = p.as_ref();
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// Reads and checks a job spec file.
pub fn load_job<P: Params>(path: &Path) -> Result<LoadedJob<P>, SpecErrors> {
    let text = crate::spec::read_spec_text(path)?;
    parse_job(path, &text)
}

/// Checks job spec text (`path` names it in diagnostics and anchors relative paths).
pub fn parse_job<P: Params>(path: &Path, text: &str) -> Result<LoadedJob<P>, SpecErrors> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let diag = |offset: usize, message: String, hint: Option<String>| {
        let (line, column) = line_col(text, offset);
        Diagnostic {
            file: path.to_path_buf(),
            line,
            column,
            message,
            hint,
        }
    };
    let root = DeTable::parse(text).map_err(|e| {
        SpecErrors(vec![diag(
            e.span().map_or(0, |s| s.start),
            format!("TOML syntax: {}", e.message().trim()),
            Some("see https://toml.io for the syntax".into()),
        )])
    })?;
    let ctx = ValidateContext {
        spec_dir: dir.clone(),
    };
    let whole = toml::Spanned::new(0..text.len(), toml::de::DeValue::Table(root.into_inner()));
    let value = resolve_params::<P>(whole, &ctx).map_err(|problems| {
        let mut d: Vec<Diagnostic> = problems
            .into_iter()
            .map(|(span, msg, hint)| diag(span.start, msg, hint))
            .collect();
        d.sort_by_key(|d| (d.line, d.column));
        SpecErrors(d)
    })?;
    let spec: P = value
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| SpecErrors(vec![diag(0, e.message().to_owned(), None)]))?;
    let canonical = toml::to_string(&value).map_err(|e| {
        SpecErrors(vec![diag(
            0,
            format!("cannot serialise the spec: {e}"),
            None,
        )])
    })?;
    let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
    Ok(LoadedJob {
        path: path.to_path_buf(),
        dir,
        spec,
        canonical,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamProblem;

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Job {
        name: String,
        #[serde(default = "seven")]
        steps: u32,
        inner: Inner,
    }
    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        lr: f64,
    }
    fn seven() -> u32 {
        7
    }
    impl Params for Job {
        fn validate(&self, _: &ValidateContext) -> Vec<ParamProblem> {
            if self.inner.lr <= 0.0 {
                vec![ParamProblem::new("inner.lr", "must be positive")]
            } else {
                vec![]
            }
        }
    }

    #[test]
    fn defaults_filled_and_hash_stable() {
        let a: LoadedJob<Job> =
            parse_job(Path::new("a.toml"), "name = \"x\"\n[inner]\nlr = 0.5\n").unwrap();
        assert_eq!(a.spec.steps, 7);
        let b: LoadedJob<Job> = parse_job(
            Path::new("b.toml"),
            "# same job\nsteps = 7\nname = \"x\"\n\n[inner]\nlr = 0.5\n",
        )
        .unwrap();
        assert_eq!(a.hash, b.hash);
        assert!(a.canonical.contains("steps = 7"));
    }

    #[test]
    fn problems_are_located() {
        let e = parse_job::<Job>(
            Path::new("j.toml"),
            "name = \"x\"\nstpes = 3\n[inner]\nlr = 0.5\n",
        )
        .unwrap_err();
        let d = &e.0[0];
        assert_eq!((d.line, d.column), (2, 1), "{e}");
        assert!(d.message.contains("unknown key `stpes`"), "{e}");
        assert!(
            d.hint.as_deref().unwrap().contains("did you mean `steps`"),
            "{e}"
        );

        let e = parse_job::<Job>(Path::new("j.toml"), "name = \"x\"\n[inner]\nlr = -1.0\n")
            .unwrap_err();
        assert!(e.to_string().contains("j.toml:3:1"), "{e}");
        assert!(e.to_string().contains("must be positive"), "{e}");

        let e = parse_job::<Job>(Path::new("j.toml"), "name = \n").unwrap_err();
        assert!(e.to_string().contains("TOML syntax"), "{e}");
    }
}
