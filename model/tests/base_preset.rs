//! The official-size `base` preset: 123,627,078 parameters and one CPU forward pass.

use kernels::CpuBackend;
use model::{Mode, ModelConfig, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn base_preset_has_official_parameter_count_and_runs_forward() {
    let be = CpuBackend;
    let cfg = ModelConfig::base();
    let mut net = Network::new(&be, cfg, Mode::Compat).unwrap();
    assert_eq!(net.inv.num_params(), 123_627_078);
    net.init_default(&be, 317);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..3 * 4 * 224 * 224)
        .map(|_| rng.gen_range(-2.0..2.0))
        .collect();
    let t0 = std::time::Instant::now();
    let tr = net.forward(&be, &x, 1, false, &mut rng).unwrap();
    eprintln!("base forward B=1: {:.2} s", t0.elapsed().as_secs_f64());
    assert_eq!(tr.cls.len(), 1);
    assert_eq!(tr.temp_loc.len(), 4);
    assert_eq!(tr.hm.len(), 4 * 14 * 14);
    assert!(tr
        .cls
        .iter()
        .chain(&tr.temp_loc)
        .chain(&tr.hm)
        .all(|v| v.is_finite()));
    assert_eq!(tr.tokens[12].len(), 786 * 768);
}
