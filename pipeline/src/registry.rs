//! The catalogue of stage kinds a spec may name, with their parameter types.
//!
//! Crates that provide stages register them here (`stages::register`), so the engine and the spec
//! checker know each kind's parameters, its record types and how to build one instance per worker.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::de::{DeValue, ValueDeserializer};
use toml::Spanned;

use crate::stage::{BuildContext, DynStage, Erased, Stage, TypeTag};

/// A problem in one parameter, found after the parameters parsed.
#[derive(Debug, Clone)]
pub struct ParamProblem {
    /// Name of the offending key (used to point at it in the spec file).
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl ParamProblem {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// What parameter validation may look at.
#[derive(Debug, Clone)]
pub struct ValidateContext {
    /// Folder of the spec file; relative paths in parameters resolve against it.
    pub spec_dir: PathBuf,
}

impl ValidateContext {
    pub fn resolve(&self, p: &str) -> PathBuf {
        let path = std::path::Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.spec_dir.join(path)
        }
    }
}

/// Parameters of a stage kind: parsed from the spec (unknown keys rejected, defaults filled by
/// serde), then checked for ranges and files.
pub trait Params: Serialize + DeserializeOwned + Send + Sync + 'static {
    fn validate(&self, _ctx: &ValidateContext) -> Vec<ParamProblem> {
        Vec::new()
    }
}

/// Where a stage kind may stand in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Stage,
    Sink,
}

/// A located parameter error: byte span in the spec file, message, hint.
pub(crate) type SpanProblem = (Range<usize>, String, Option<String>);

type ResolveFn = dyn Fn(Spanned<DeValue<'_>>, &ValidateContext) -> Result<toml::Value, Vec<SpanProblem>>
    + Send
    + Sync;
type BuildFn =
    dyn Fn(&toml::Value, &BuildContext) -> Result<Box<dyn DynStage>, String> + Send + Sync;

pub struct StageKind {
    pub name: &'static str,
    pub about: &'static str,
    pub role: Role,
    pub input: TypeTag,
    pub output: TypeTag,
    pub(crate) resolve: Box<ResolveFn>,
    pub(crate) build: Box<BuildFn>,
}

/// Resolves and checks a whole optional section (`[model]`, `[train]`, ...).
pub struct SectionKind {
    pub name: &'static str,
    pub about: &'static str,
    pub(crate) resolve: Box<ResolveFn>,
}

#[derive(Default)]
pub struct Registry {
    pub(crate) stages: BTreeMap<&'static str, StageKind>,
    pub(crate) sections: BTreeMap<&'static str, SectionKind>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a stage kind. `factory` runs once per worker thread.
    pub fn stage<P, S, F>(&mut self, name: &'static str, about: &'static str, factory: F)
    where
        P: Params,
        S: Stage,
        F: Fn(&P, &BuildContext) -> Result<S, String> + Send + Sync + 'static,
    {
        self.add::<P, S, F>(name, about, Role::Stage, factory);
    }

    /// Registers a sink kind: the last step of a chain, which commits outputs.
    pub fn sink<P, S, F>(&mut self, name: &'static str, about: &'static str, factory: F)
    where
        P: Params,
        S: Stage,
        F: Fn(&P, &BuildContext) -> Result<S, String> + Send + Sync + 'static,
    {
        self.add::<P, S, F>(name, about, Role::Sink, factory);
    }

    /// Registers a checked optional section of the spec.
    pub fn section<P: Params>(&mut self, name: &'static str, about: &'static str) {
        self.sections.insert(
            name,
            SectionKind {
                name,
                about,
                resolve: Box::new(resolve_params::<P>),
            },
        );
    }

    fn add<P, S, F>(&mut self, name: &'static str, about: &'static str, role: Role, factory: F)
    where
        P: Params,
        S: Stage,
        F: Fn(&P, &BuildContext) -> Result<S, String> + Send + Sync + 'static,
    {
        let build = move |value: &toml::Value, ctx: &BuildContext| {
            let params: P = value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| e.message().to_owned())?;
            let stage = factory(&params, ctx)?;
            Ok(Box::new(Erased(stage)) as Box<dyn DynStage>)
        };
        self.stages.insert(
            name,
            StageKind {
                name,
                about,
                role,
                input: TypeTag::of::<S::In>(),
                output: TypeTag::of::<S::Out>(),
                resolve: Box::new(resolve_params::<P>),
                build: Box::new(build),
            },
        );
    }

    pub fn stage_kinds(&self) -> impl Iterator<Item = &StageKind> {
        self.stages.values()
    }

    pub fn get(&self, name: &str) -> Option<&StageKind> {
        self.stages.get(name)
    }

    pub fn section_kinds(&self) -> impl Iterator<Item = &SectionKind> {
        self.sections.values()
    }
}

/// Parses parameters with spans kept, validates them, and returns them with defaults filled.
pub(crate) fn resolve_params<P: Params>(
    value: Spanned<DeValue<'_>>,
    ctx: &ValidateContext,
) -> Result<toml::Value, Vec<SpanProblem>> {
    let whole = value.span();
    let key_spans: BTreeMap<String, Range<usize>> = match value.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), k.span().start..v.span().end))
            .collect(),
        _ => BTreeMap::new(),
    };
    let params = P::deserialize(ValueDeserializer::from(value.clone())).map_err(|e| {
        let span = e.span().unwrap_or(whole.clone());
        let (message, hint) = split_serde_message(e.message());
        vec![(span, message, hint)]
    })?;
    let problems = params.validate(ctx);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| {
                let first = p.field.split('.').next().unwrap_or("");
                let nested = match value.get_ref() {
                    DeValue::Table(t) => {
                        crate::spec::find_key_value_span(t, &p.field.split('.').collect::<Vec<_>>())
                    }
                    _ => None,
                };
                let span = nested
                    .or_else(|| key_spans.get(first).cloned())
                    .unwrap_or(whole.clone());
                let message = if key_spans.contains_key(first) {
                    format!("`{}`: {}", p.field, p.message)
                } else {
                    format!("`{}` (default): {}", p.field, p.message)
                };
                (span, message, p.hint)
            })
            .collect());
    }
    toml::Value::try_from(&params).map_err(|e| vec![(whole, e.to_string(), None)])
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a message plus a hint.
pub(crate) fn split_serde_message(msg: &str) -> (String, Option<String>) {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once("`, expected ") {
            let options: Vec<&str> = expected
                .trim_start_matches("one of ")
                .split(", ")
                .map(|s| s.trim_matches('`'))
                .collect();
            let hint = match crate::spec::closest(field, options.iter().copied()) {
                Some(best) => format!("did you mean `{best}`? valid keys: {}", options.join(", ")),
                None => format!("valid keys: {}", options.join(", ")),
            };
            return (format!("unknown key `{field}`"), Some(hint));
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        return (
            format!("missing required key `{field}`"),
            Some(format!("add `{field} = ...`")),
        );
    }
    if msg.starts_with("invalid type") {
        return (
            msg.to_owned(),
            Some("check the value's type (quotes make a string)".into()),
        );
    }
    (msg.to_owned(), None)
}
