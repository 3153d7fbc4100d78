//! `fakestormer spec check|show|kinds`.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum SpecCommand {
    /// Validate a spec without running it (exit 1 and file:line:column diagnostics if broken).
    Check { spec: PathBuf },
    /// Print the fully resolved spec (defaults filled) and its content hash.
    Show { spec: PathBuf },
    /// List the stage kinds and sections this build knows, with their record types.
    Kinds,
}

/// What a spec file describes: a pipeline (source → stages → sink) or a job with its own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecKind {
    Pipeline,
    Train,
    Eval,
}

/// Tells the kinds apart by their top-level keys (`[data]` makes a train job, `weights` or
/// `[eval]` an eval job); anything else is checked as a pipeline spec, whose diagnostics then
/// say what is missing.
fn kind_of(path: &std::path::Path) -> SpecKind {
    let Ok(text) = std::fs::read_to_string(path) else {
        return SpecKind::Pipeline;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return SpecKind::Pipeline;
    };
    let has = |k: &str| table.contains_key(k);
    if has("source") || has("stages") || has("sink") {
        SpecKind::Pipeline
    } else if has("data") {
        SpecKind::Train
    } else if has("weights") || has("eval") {
        SpecKind::Eval
    } else {
        SpecKind::Pipeline
    }
}

/// Loads a job spec; prints the outcome like the pipeline branch does.
fn job<P: pipeline::Params>(spec: &std::path::Path, show: bool) -> i32 {
    match pipeline::load_job::<P>(spec) {
        Ok(j) if show => {
            println!("# spec hash (sha256 of the text below): {}", j.hash);
            print!("{}", j.canonical);
            0
        }
        Ok(j) => {
            println!("{}: ok (spec hash {})", spec.display(), j.hash);
            0
        }
        Err(e) => {
            println!("{e}");
            println!("{} problem(s) in {}", e.0.len(), spec.display());
            1
        }
    }
}

pub fn run(cmd: SpecCommand) -> anyhow::Result<i32> {
    let registry = super::registry();
    match cmd {
        SpecCommand::Check { ref spec } if kind_of(spec) == SpecKind::Train => {
            Ok(job::<crate::train::spec::TrainSpec>(spec, false))
        }
        SpecCommand::Show { ref spec } if kind_of(spec) == SpecKind::Train => {
            Ok(job::<crate::train::spec::TrainSpec>(spec, true))
        }
        SpecCommand::Check { ref spec } if kind_of(spec) == SpecKind::Eval => {
            Ok(job::<super::eval::EvalSpec>(spec, false))
        }
        SpecCommand::Show { ref spec } if kind_of(spec) == SpecKind::Eval => {
            Ok(job::<super::eval::EvalSpec>(spec, true))
        }
        SpecCommand::Check { spec } => match pipeline::load_spec(&spec, &registry) {
            Ok(s) => {
                println!("{}: ok (spec hash {})", spec.display(), s.hash);
                Ok(0)
            }
            Err(e) => {
                println!("{e}");
                println!("{} problem(s) in {}", e.0.len(), spec.display());
                Ok(1)
            }
        },
        SpecCommand::Show { spec } => match pipeline::load_spec(&spec, &registry) {
            Ok(s) => {
                println!("# spec hash (sha256 of the text below): {}", s.hash);
                print!("{}", s.canonical_toml());
                Ok(0)
            }
            Err(e) => {
                println!("{e}");
                Ok(1)
            }
        },
        SpecCommand::Kinds => {
            for k in registry.stage_kinds() {
                println!(
                    "{:<14} {:<6} {} -> {}   {}",
                    k.name,
                    format!("{:?}", k.role).to_lowercase(),
                    k.input.name,
                    k.output.name,
                    k.about
                );
            }
            for s in registry.section_kinds() {
                println!("[{}] section   {}", s.name, s.about);
            }
            Ok(0)
        }
    }
}
