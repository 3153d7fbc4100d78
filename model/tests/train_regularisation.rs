//! The fixtures run with drop-path and dropout off, so this checks the composed backward pass
//! with both active: the directional derivative from `loss_and_grads` must match central finite
//! differences of the loss with the same masks (the RNG is re-seeded for every evaluation).
//! f32 loss ≈ 40 has rounding ≈ 4e-6; with h = 1e-2 along a direction of norm ≈ 0.6 the
//! difference quotient is good to ≈ 5e-4 absolute (rounding) plus O(h²) curvature, hence 1e-2
//! relative + 1e-3 absolute; a wrong mask in backward changes the derivative by O(1).

mod common;

use common::*;
use kernels::CpuBackend;
use model::train::{loss_and_grads, TrainBatch};
use model::{Mode, ModelConfig, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn backward_with_drop_path_and_dropout_matches_finite_differences() {
    let be = CpuBackend;
    let fx = load("tiny_grads.safetensors");
    let batch = TrainBatch {
        x: f32s(&fx, "x"),
        batch: 2,
        labels: f32s(&fx, "labels"),
        hm_target: f32s(&fx, "hm_target"),
        mask: f32s(&fx, "mask_out_p"),
        temp_loc_target: f32s(&fx, "temp_loc_target")
            .iter()
            .map(|&v| v as f64)
            .collect(),
    };
    for mode in [Mode::Compat, Mode::Clean] {
        let mut net = Network::new(&be, ModelConfig::tiny(), mode).unwrap();
        net.load_state_dict(&be, &load("tiny_weights.safetensors"))
            .unwrap();
        net.reg.drop_path_rate = 0.5;
        net.reg.head_dropout = 0.5;
        let seed = 11;
        let p = loss_and_grads(
            &be,
            &mut net,
            &batch,
            &mut ChaCha8Rng::seed_from_u64(seed),
            false,
        )
        .unwrap();
        // the masks really drop something: block 1 (rate 0.5) has zero groups
        assert!(p.trace.blocks[1].tdrop.contains(&0.0) && p.trace.blocks[1].sdrop.contains(&0.0));
        let mut dir_rng = ChaCha8Rng::seed_from_u64(5);
        for name in [
            "backbone.blocks.1.temporal_attn.qkv.weight",
            "backbone.blocks.1.attn.proj.weight",
            "backbone.blocks.0.mlp.fc2.weight",
            "keypoint_head.temp_loc.fc1.0.weight",
            "backbone.temp_token",
            "backbone.patch_embed.proj.weight",
        ] {
            let i = net.inv.param_index(name).unwrap();
            let w0 = net.weights.params[i].clone();
            // direction of norm ≈ 0.6 so that h·d is a small step for every tensor size
            let scale = 1.0 / (w0.len() as f32).sqrt();
            let d: Vec<f32> = (0..w0.len())
                .map(|_| scale * dir_rng.gen_range(-1.0..1.0))
                .collect();
            let analytic: f64 = p.grads[i]
                .iter()
                .zip(&d)
                .map(|(&g, &v)| g as f64 * v as f64)
                .sum();
            let h = 1e-2f32;
            let mut eval = |s: f32| {
                net.weights.params[i] = w0.iter().zip(&d).map(|(&w, &v)| w + s * h * v).collect();
                let l = loss_and_grads(
                    &be,
                    &mut net,
                    &batch,
                    &mut ChaCha8Rng::seed_from_u64(seed),
                    false,
                )
                .unwrap()
                .loss
                .total;
                net.weights.params[i] = w0.clone();
                l
            };
            let numeric = (eval(1.0) - eval(-1.0)) / (2.0 * h as f64);
            let tol = 1e-2 * analytic.abs().max(numeric.abs()) + 1e-3;
            assert!(
                (analytic - numeric).abs() <= tol,
                "{mode:?} {name}: analytic {analytic} vs numeric {numeric}"
            );
            if name == "backbone.temp_token" && mode == Mode::Compat {
                assert_eq!(analytic, 0.0, "compat temp token has no influence");
            }
        }
    }
}
