//! Forward+backward time per clip (training mode, loss included) for model presets on the CPU
//! backend. Usage: `cargo run --release -p model --example bench_model -- [--batch B]
//! [--iters N] tiny small base`. Prints one JSON object per preset.

use kernels::CpuBackend;
use model::train::{loss_and_grads, TrainBatch};
use model::{Mode, ModelConfig, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut batch = 2usize;
    let mut iters = 3usize;
    let mut presets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--batch" => batch = args.next().ok_or("--batch needs a value")?.parse()?,
            "--iters" => iters = args.next().ok_or("--iters needs a value")?.parse()?,
            p => presets.push(p.to_string()),
        }
    }
    if presets.is_empty() {
        presets = vec!["tiny".into(), "small".into(), "base".into()];
    }
    let be = CpuBackend;
    for name in presets {
        let cfg = ModelConfig::preset(&name)?;
        let mut net = Network::new(&be, cfg, Mode::Compat)?;
        net.init_default(&be, 317);
        // deterministic work identical to the PyTorch reference: no drop-path/dropout
        net.reg.drop_path_rate = 0.0;
        net.reg.head_dropout = 0.0;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (t, s, g) = (cfg.num_frames, cfg.img_size, cfg.grid());
        let hm_n = batch * t * g * g;
        let tb = TrainBatch {
            x: (0..batch * 3 * t * s * s)
                .map(|_| rng.gen_range(-2.0..2.0))
                .collect(),
            batch,
            labels: (0..batch).map(|i| (i % 2) as f32).collect(),
            hm_target: (0..hm_n).map(|_| rng.gen_range(-1.0..1.0)).collect(),
            mask: vec![1.0; hm_n],
            temp_loc_target: (0..batch * t).map(|i| ((i / t) % 2) as f64).collect(),
        };
        let _ = loss_and_grads(&be, &mut net, &tb, &mut rng, false)?; // warm-up
        let mut times = Vec::new();
        for _ in 0..iters {
            let t0 = Instant::now();
            let p = loss_and_grads(&be, &mut net, &tb, &mut rng, false)?;
            times.push(t0.elapsed().as_secs_f64());
            std::hint::black_box(p.loss.total);
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "{{\"impl\": \"rust\", \"preset\": \"{name}\", \"batch\": {batch}, \"iters\": {iters}, \"threads\": {}, \"fwd_bwd_s_per_iter\": {med:.4}, \"ms_per_clip\": {:.2}}}",
            rayon::current_num_threads(),
            1e3 * med / batch as f64
        );
    }
    Ok(())
}
