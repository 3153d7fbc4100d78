//! Print `model info` summaries of the presets: `cargo run -p model --example model_info`.

fn main() -> Result<(), model::ModelError> {
    for name in model::config::PRESETS {
        let cfg = model::ModelConfig::preset(name)?;
        println!("[{name}]\n{}\n", model::api::info(&cfg, None)?);
    }
    Ok(())
}
