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

pub fn run(cmd: SpecCommand) -> anyhow::Result<i32> {
    let registry = super::registry();
    match cmd {
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
