//! Writes randomly initialised weights of a model preset (or model-config TOML) (PyTorch-default initialisation of spec
//! §2.4, deterministic in the seed) as safetensors, for timing `detect`/`eval` without trained
//! weights: `cargo run --release --example init_weights -- base 317 /tmp/base.safetensors`.

use kernels::CpuBackend;
use model::config::ModelConfig;
use model::network::{Mode, Network};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [preset, seed, out] = args.as_slice() else {
        anyhow::bail!("usage: init_weights PRESET|CONFIG.toml SEED OUT.safetensors");
    };
    let be = CpuBackend;
    // A preset name, or a model-config TOML file.
    let cfg = if preset.ends_with(".toml") {
        ModelConfig::from_toml(&std::fs::read_to_string(preset)?)?
    } else {
        ModelConfig::preset(preset)?
    };
    let mut net = Network::new(&be, cfg, Mode::Compat)?;
    net.init_default(&be, seed.parse()?);
    model::safetensors_io::write_safetensors(out.as_ref(), &net.state_dict(&be))?;
    println!("{out}: {preset} weights, seed {seed}");
    Ok(())
}
