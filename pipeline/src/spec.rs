//! Declarative pipeline specs (TOML): parsed with byte spans kept, so that every problem is
//! reported as `file:line:column` with a hint, and resolved (defaults filled) into a canonical
//! form whose sha256 identifies the run.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::registry::{split_serde_message, Registry, Role, SpanProblem, ValidateContext};

/// The largest worker count a stage may ask for; more is a typo, not a plan.
pub const MAX_WORKERS: usize = 256;
/// The largest queue capacity; a queue this deep no longer bounds memory.
pub const MAX_CAPACITY: usize = 1 << 20;
const DEFAULT_CAPACITY: usize = 16;

/// A fully resolved spec: every default filled, every stage's parameters checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub description: String,
    pub seed: u64,
    /// Output folder (relative paths are relative to the working directory of the run).
    pub output: String,
    pub source: SourceSpec,
    pub stages: Vec<StageSpec>,
    pub sink: StageSpec,
    /// Checked optional sections (`model`, `train`, `eval`, ...), resolved by their kinds.
    pub sections: toml::Table,
}

/// Where items come from and which of them to take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// JSONL manifest; relative to the spec file.
    pub manifest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
    /// Take at most this many items (after filtering), in manifest order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One step of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    pub kind: String,
    /// Worker threads for this stage (per timely worker).
    pub workers: usize,
    /// Records queued in front of this stage at most (split over its workers).
    pub capacity: usize,
    pub params: toml::Value,
}

/// A spec loaded from a file.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub spec: Spec,
    /// sha256 (hex) of the canonical resolved spec.
    pub hash: String,
}

impl LoadedSpec {
    pub fn manifest_path(&self) -> PathBuf {
        resolve_rel(&self.dir, &self.spec.source.manifest)
    }

    /// The resolved spec as TOML, the form `spec show` prints and the hash covers.
    pub fn canonical_toml(&self) -> String {
        canonical(&self.spec)
    }
}

fn resolve_rel(dir: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

fn canonical(spec: &Spec) -> String {
    toml::to_string(spec).expect("a resolved spec always serialises")
}

/// One problem in a spec file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Everything wrong with a spec (all problems found, not just the first).
#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecErrors(pub Vec<Diagnostic>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The known top-level keys, in the order a spec usually has them.
const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "seed",
    "output",
    "source",
    "stages",
    "sink",
];
const STAGE_KEYS: &[&str] = &["kind", "workers", "capacity", "params"];

struct Checker<'a> {
    file: PathBuf,
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
            hint,
        });
    }

    fn typed<T: for<'de> Deserialize<'de>>(&mut self, value: &Spanned<DeValue<'_>>) -> Option<T> {
        let whole = value.span();
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let (msg, hint) = split_serde_message(e.message());
                self.at(e.span().unwrap_or(whole), msg, hint);
                None
            }
        }
    }

    fn problems(&mut self, problems: Vec<SpanProblem>) {
        for (span, msg, hint) in problems {
            self.at(span, msg, hint);
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit_once('\n')
        .map_or(before, |(_, rest)| rest)
        .chars()
        .count()
        + 1;
    (line, col)
}

/// The nearest candidate by edit distance, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

type Entries<'a, 'i> = Vec<(
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
)>;

fn table_entries<'a, 'i>(v: &'a Spanned<DeValue<'i>>) -> Option<Entries<'a, 'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t.iter().collect()),
        _ => None,
    }
}

/// A spec file's text; an unreadable file is a diagnostic like any other problem.
pub(crate) fn read_spec_text(path: &Path) -> Result<String, SpecErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        SpecErrors(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read spec: {e}"),
            hint: None,
        }])
    })
}

/// Loads, checks and resolves a spec file.
pub fn load_spec(path: &Path, registry: &Registry) -> Result<LoadedSpec, SpecErrors> {
    let text = read_spec_text(path)?;
    parse_spec(path, &text, registry)
}

/// Checks and resolves spec text (`path` names it in diagnostics and anchors relative paths).
pub fn parse_spec(path: &Path, text: &str, registry: &Registry) -> Result<LoadedSpec, SpecErrors> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut ck = Checker {
        file: path.to_path_buf(),
        text,
        diags: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            ck.at(
                e.span().unwrap_or(0..0),
                format!("TOML syntax: {}", e.message().trim()),
                Some("see https://toml.io for the syntax".into()),
            );
            return Err(SpecErrors(ck.diags));
        }
    };
    let vctx = ValidateContext {
        spec_dir: dir.clone(),
    };

    let mut name = None;
    let mut description = String::new();
    let mut seed = 317u64;
    let mut output = None;
    let mut source: Option<(SourceSpec, Range<usize>)> = None;
    let mut stages_v = None;
    let mut sink_v = None;
    let mut sections = toml::Table::new();

    for (key, value) in root.get_ref().iter() {
        let k: &str = key.get_ref();
        match k {
            "name" => name = ck.typed::<String>(value),
            "description" => description = ck.typed::<String>(value).unwrap_or_default(),
            "seed" => seed = ck.typed::<u64>(value).unwrap_or(seed),
            "output" => output = ck.typed::<String>(value),
            "source" => {
                if let Some(s) = ck.typed::<SourceSpec>(value) {
                    source = Some((s, value.span()));
                }
            }
            "stages" => stages_v = Some(value),
            "sink" => sink_v = Some((key.span(), value)),
            other => {
                if let Some(section) = registry.sections.get(other) {
                    match (section.resolve)(value.clone(), &vctx) {
                        Ok(v) => {
                            sections.insert(other.to_owned(), v);
                        }
                        Err(p) => ck.problems(p),
                    }
                } else {
                    let known: Vec<&str> = TOP_KEYS
                        .iter()
                        .copied()
                        .chain(registry.sections.keys().copied())
                        .collect();
                    let hint = match closest(other, known.iter().copied()) {
                        Some(b) => {
                            format!("did you mean `{b}`? top-level keys: {}", known.join(", "))
                        }
                        None => format!("top-level keys: {}", known.join(", ")),
                    };
                    ck.at(
                        key.span(),
                        format!("unknown top-level key `{other}`"),
                        Some(hint),
                    );
                }
            }
        }
    }

    // Source: required; the manifest must exist.
    match &source {
        None => ck.at(
            0..0,
            "missing required table `[source]`",
            Some("add `[source]` with `manifest = \"path/to/manifest.jsonl\"`".into()),
        ),
        Some((s, span)) => {
            let m = resolve_rel(&dir, &s.manifest);
            if !m.is_file() {
                let span = find_key_value_span(root.get_ref(), &["source", "manifest"])
                    .unwrap_or(span.clone());
                ck.at(
                    span,
                    format!("manifest file not found: {}", m.display()),
                    Some("paths in [source] are relative to the spec file; build one with `fakestormer manifest build`".into()),
                );
            }
            if let Some(l) = s.label {
                if l > 1 {
                    let span = find_key_value_span(root.get_ref(), &["source", "label"])
                        .unwrap_or(span.clone());
                    ck.at(span, format!("label filter must be 0 or 1, got {l}"), None);
                }
            }
        }
    }

    // Stages: an array of tables, each checked against its kind.
    let mut stages: Vec<(StageSpec, Range<usize>, Role, usize)> = Vec::new();
    if let Some(v) = stages_v {
        match v.get_ref() {
            DeValue::Array(arr) => {
                for (i, entry) in arr.iter().enumerate() {
                    if let Some(s) =
                        check_stage(&mut ck, registry, &vctx, entry, &format!("stages[{i}]"))
                    {
                        stages.push(s);
                    }
                }
            }
            _ => ck.at(
                v.span(),
                "`stages` must be an array of tables",
                Some("write each stage as a `[[stages]]` table".into()),
            ),
        }
    }
    let sink = match sink_v {
        None => {
            ck.at(
                0..0,
                "missing required table `[sink]`",
                Some(format!(
                    "add `[sink]` with `kind = ` one of: {}",
                    kinds_with_role(registry, Role::Sink).join(", ")
                )),
            );
            None
        }
        Some((_, v)) => check_stage(&mut ck, registry, &vctx, v, "sink"),
    };

    // Roles and wiring: ManifestRow -> stage 0 -> ... -> sink.
    for (s, span, role, _) in &stages {
        if *role == Role::Sink {
            ck.at(
                span.clone(),
                format!("`{}` is a sink and can only stand in `[sink]`", s.kind),
                Some("move it to the `[sink]` table".into()),
            );
        }
    }
    if let Some((s, span, role, _)) = &sink {
        if *role != Role::Sink {
            ck.at(
                span.clone(),
                format!("`{}` is a stage, not a sink", s.kind),
                Some(format!(
                    "sinks: {}",
                    kinds_with_role(registry, Role::Sink).join(", ")
                )),
            );
        }
    }
    if ck.diags.is_empty() {
        let mut prev_name = "the source";
        let mut prev_out = crate::stage::TypeTag::of::<crate::manifest::ManifestRow>();
        for (s, span, _, _) in stages.iter().chain(sink.iter()) {
            let kind = &registry.stages[s.kind.as_str()];
            if kind.input != prev_out {
                let feeders: Vec<&str> = registry
                    .stages
                    .values()
                    .filter(|k| k.output == kind.input && k.input == prev_out)
                    .map(|k| k.name)
                    .collect();
                let hint = if feeders.is_empty() {
                    format!(
                        "stages that take `{}`: {}",
                        prev_out.name,
                        registry
                            .stages
                            .values()
                            .filter(|k| k.input == prev_out)
                            .map(|k| k.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    format!("insert `{}` before it", feeders.join("` or `"))
                };
                ck.at(
                    span.clone(),
                    format!(
                        "wiring: `{}` takes `{}` but {} produces `{}`",
                        s.kind, kind.input.name, prev_name, prev_out.name
                    ),
                    Some(hint),
                );
                break;
            }
            prev_name = kind.name;
            prev_out = kind.output;
        }
    }

    if !ck.diags.is_empty() {
        ck.diags.sort_by_key(|d| (d.line, d.column));
        return Err(SpecErrors(ck.diags));
    }
    let default_name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "spec".into());
    let name = name.unwrap_or(default_name);
    let spec = Spec {
        output: output.unwrap_or_else(|| format!("runs/{name}")),
        name,
        description,
        seed,
        source: source.expect("checked above").0,
        stages: stages.into_iter().map(|s| s.0).collect(),
        sink: sink.expect("checked above").0,
        sections,
    };
    let hash = hex::encode(Sha256::digest(canonical(&spec).as_bytes()));
    Ok(LoadedSpec {
        path: path.to_path_buf(),
        dir,
        spec,
        hash,
    })
}

fn kinds_with_role(registry: &Registry, role: Role) -> Vec<&'static str> {
    registry
        .stages
        .values()
        .filter(|k| k.role == role)
        .map(|k| k.name)
        .collect()
}

pub(crate) fn find_key_value_span(root: &DeTable<'_>, path: &[&str]) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let (k, v) = root.iter().find(|(k, _)| k.get_ref() == first)?;
    if rest.is_empty() {
        return Some(k.span().start..v.span().end);
    }
    match v.get_ref() {
        DeValue::Table(t) => find_key_value_span(t, rest),
        _ => None,
    }
}

fn check_stage(
    ck: &mut Checker<'_>,
    registry: &Registry,
    vctx: &ValidateContext,
    entry: &Spanned<DeValue<'_>>,
    what: &str,
) -> Option<(StageSpec, Range<usize>, Role, usize)> {
    let Some(entries) = table_entries(entry) else {
        ck.at(entry.span(), format!("`{what}` must be a table"), None);
        return None;
    };
    let mut kind: Option<(String, Range<usize>)> = None;
    let mut workers = 1usize;
    let mut capacity = DEFAULT_CAPACITY;
    let mut params: Option<Spanned<DeValue<'_>>> = None;
    let mut ok = true;
    for (k, v) in entries {
        match k.get_ref().as_ref() {
            "kind" => match ck.typed::<String>(v) {
                Some(s) => kind = Some((s, k.span().start..v.span().end)),
                None => ok = false,
            },
            "workers" => match ck.typed::<usize>(v) {
                Some(w) if (1..=MAX_WORKERS).contains(&w) => workers = w,
                Some(w) => {
                    ck.at(
                        k.span().start..v.span().end,
                        format!("`workers` = {w} is out of range 1..={MAX_WORKERS}"),
                        Some("use at least one worker thread per stage".into()),
                    );
                    ok = false;
                }
                None => ok = false,
            },
            "capacity" => match ck.typed::<usize>(v) {
                Some(c) if (1..=MAX_CAPACITY).contains(&c) => capacity = c,
                Some(c) => {
                    ck.at(
                        k.span().start..v.span().end,
                        format!("`capacity` = {c} is out of range 1..={MAX_CAPACITY}"),
                        Some("capacity bounds the records queued before this stage".into()),
                    );
                    ok = false;
                }
                None => ok = false,
            },
            "params" => params = Some(v.clone()),
            other => {
                let hint = match closest(other, STAGE_KEYS.iter().copied()) {
                    Some(b) => format!(
                        "did you mean `{b}`? stage keys: {}; stage parameters go in `params`",
                        STAGE_KEYS.join(", ")
                    ),
                    None => format!(
                        "stage keys: {}; stage parameters go in `params`",
                        STAGE_KEYS.join(", ")
                    ),
                };
                ck.at(
                    k.span(),
                    format!("unknown key `{other}` in `{what}`"),
                    Some(hint),
                );
                ok = false;
            }
        }
    }
    if ok && capacity < workers {
        ck.at(
            entry.span(),
            format!("`capacity` = {capacity} is smaller than `workers` = {workers}"),
            Some("each worker needs a queue slot: raise capacity or lower workers".into()),
        );
        ok = false;
    }
    let Some((kind, kind_span)) = kind else {
        ck.at(
            entry.span(),
            format!("`{what}` has no `kind`"),
            Some(format!(
                "kinds: {}",
                registry
                    .stages
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
        return None;
    };
    let Some(k) = registry.stages.get(kind.as_str()) else {
        let names: Vec<&str> = registry.stages.keys().copied().collect();
        let hint = match closest(&kind, names.iter().copied()) {
            Some(b) => format!("did you mean `{b}`? kinds: {}", names.join(", ")),
            None => format!("kinds: {}", names.join(", ")),
        };
        ck.at(
            kind_span,
            format!("unknown stage kind `{kind}`"),
            Some(hint),
        );
        return None;
    };
    let params =
        params.unwrap_or_else(|| Spanned::new(entry.span(), DeValue::Table(Default::default())));
    let resolved = match (k.resolve)(params, vctx) {
        Ok(v) => v,
        Err(p) => {
            ck.problems(p);
            return None;
        }
    };
    if !ok {
        return None;
    }
    Some((
        StageSpec {
            kind,
            workers,
            capacity,
            params: resolved,
        },
        kind_span,
        k.role,
        0,
    ))
}
