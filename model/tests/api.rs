//! Library entry points (`forward`, `convert`, `info`), training checkpoints and MAE import,
//! checked on the golden fixtures.

mod common;

use common::*;
use kernels::CpuBackend;
use model::api::{config_from_state_dict, convert, forward, info, read_weights};
use model::init::map_mae_keys;
use model::safetensors_io::{read_safetensors, write_safetensors, HostTensor, StateDict};
use model::train::{sam_step, OptimConfig, Optimizer, TrainBatch};
use model::{checkpoint, Mode, ModelConfig, Network};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fakestormer-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn forward_file_matches_official_outputs_from_pth_weights() {
    let io = load("tiny_io.safetensors");
    let input = tmp("x.safetensors");
    let mut sd = StateDict::new();
    sd.insert(
        "x".into(),
        HostTensor::F32 {
            shape: vec![2, 3, 4, 32, 32],
            data: f32s(&io, "x_b2"),
        },
    );
    write_safetensors(&input, &sd).unwrap();
    let out = tmp("y.safetensors");
    let s = forward(
        &ModelConfig::tiny(),
        &fixtures_dir().join("tiny_checkpoint.pth"),
        &input,
        &out,
        Mode::Compat,
        false,
        true,
    )
    .unwrap();
    assert_eq!(s.batch, 2);
    let y = read_safetensors(&out).unwrap();
    for k in ["cls", "temp_loc", "hm"] {
        assert_eq!(shape(&y, k), shape(&io, &format!("b2.{k}")), "{k} shape");
        assert_close(k, &f32s(&y, k), &f32s(&io, &format!("b2.{k}")), 1e-5, 1e-4);
    }
    assert_close(
        "tokens_embed",
        &f32s(&y, "tokens_embed"),
        &f32s(&io, "b2.tokens_embed"),
        1e-5,
        1e-4,
    );
    assert_close(
        "block1.out",
        &f32s(&y, "block1.out"),
        &f32s(&io, "b2.block1.out"),
        1e-5,
        1e-4,
    );
    // wrong input shape is an error naming the expected shape
    let mut bad = StateDict::new();
    bad.insert(
        "x".into(),
        HostTensor::F32 {
            shape: vec![1, 3, 4, 16, 16],
            data: vec![0.0; 3 * 4 * 256],
        },
    );
    write_safetensors(&input, &bad).unwrap();
    let e = forward(
        &ModelConfig::tiny(),
        &fixtures_dir().join("tiny_weights.safetensors"),
        &input,
        &out,
        Mode::Compat,
        false,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("[B, 3, 4, 32, 32]"), "{e}");
}

#[test]
fn convert_pth_to_safetensors_is_bit_exact() {
    let out = tmp("conv.safetensors");
    let n = convert(&fixtures_dir().join("tiny_checkpoint.pth"), &out).unwrap();
    assert_eq!(n, 74);
    assert_eq!(
        read_safetensors(&out).unwrap(),
        load("tiny_weights.safetensors")
    );
}

#[test]
fn info_checks_weights_against_config() {
    let w = fixtures_dir().join("tiny_weights.safetensors");
    let i = info(&ModelConfig::tiny(), Some(&w)).unwrap();
    let sd = read_weights(&w).unwrap();
    let n: usize = sd
        .iter()
        .filter(|(k, _)| !k.contains("running_") && !k.contains("num_batches"))
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum();
    assert_eq!(i.total_params, n);
    let e = info(&ModelConfig::small(), Some(&w))
        .unwrap_err()
        .to_string();
    assert!(e.contains("shape"), "{e}");
    let c = config_from_state_dict(&sd).unwrap();
    assert_eq!(
        (
            c.img_size,
            c.patch_size,
            c.embed_dim,
            c.depth,
            c.num_frames,
            c.spatial_head_width,
            c.mlp_ratio
        ),
        (32, 8, 64, 2, 4, 16, 4)
    );
}

fn tiny_batch() -> TrainBatch {
    let fx = load("tiny_grads.safetensors");
    TrainBatch {
        x: f32s(&fx, "x"),
        batch: 2,
        labels: f32s(&fx, "labels"),
        hm_target: f32s(&fx, "hm_target"),
        mask: f32s(&fx, "mask_out_p"),
        temp_loc_target: f32s(&fx, "temp_loc_target")
            .iter()
            .map(|&v| v as f64)
            .collect(),
    }
}

#[test]
fn training_checkpoint_round_trip_resumes_identically() {
    let be = CpuBackend;
    let weights = load("tiny_weights.safetensors");
    let mk = || {
        let mut n = Network::new(&be, ModelConfig::tiny(), Mode::Compat).unwrap();
        n.load_state_dict(&be, &weights).unwrap();
        n
    };
    let batch = tiny_batch();
    let cfg = OptimConfig {
        lr: 1e-3,
        ..OptimConfig::default()
    };
    let mut a = mk();
    let mut oa = Optimizer::new(&be, &a, cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    sam_step(&be, &mut a, &mut oa, &batch, &mut rng, false).unwrap();
    let path = tmp("train.safetensors");
    let progress = checkpoint::Progress {
        epoch: 3,
        batch: 5,
        global_step: 17,
        best_val_acc: Some(0.75),
        best_epoch: Some(2),
        spec_hash: "abc".into(),
    };
    checkpoint::save(&path, &be, &a, &oa, &progress, &rng).unwrap();
    let mut b = mk();
    let mut ob = Optimizer::new(&be, &b, cfg);
    let (got, mut rng_b) = checkpoint::load(&path, &be, &mut b, &mut ob).unwrap();
    assert_eq!(got, progress);
    assert_eq!(ob.steps, oa.steps);
    // continue both with drop-path active: identical RNG state ⇒ identical results
    let ra = sam_step(&be, &mut a, &mut oa, &batch, &mut rng, false).unwrap();
    let rb = sam_step(&be, &mut b, &mut ob, &batch, &mut rng_b, false).unwrap();
    assert_eq!(ra.pass1.total, rb.pass1.total);
    assert_eq!(a.state_dict(&be), b.state_dict(&be));
    // a plain weights file is not a training checkpoint
    let e = checkpoint::load(
        &fixtures_dir().join("tiny_weights.safetensors"),
        &be,
        &mut b,
        &mut ob,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a training checkpoint"), "{e}");
}

#[test]
fn mae_keys_map_into_backbone_and_init_follows_spec() {
    let be = CpuBackend;
    let w = load("tiny_weights.safetensors");
    // an MAE-style dict: encoder names without prefix, plus decoder tensors that must be ignored
    let mut mae: StateDict = w
        .iter()
        .filter(|(k, _)| {
            k.starts_with("backbone.")
                && !k.contains("temporal")
                && !k.contains("norm_")
                && !k.contains("temp_token")
                && !k.contains("time_embed")
        })
        .map(|(k, v)| (k.trim_start_matches("backbone.").to_string(), v.clone()))
        .collect();
    mae.insert(
        "decoder_embed.weight".into(),
        HostTensor::F32 {
            shape: vec![2, 2],
            data: vec![0.0; 4],
        },
    );
    mae.insert(
        "mask_token".into(),
        HostTensor::F32 {
            shape: vec![1, 1, 64],
            data: vec![0.0; 64],
        },
    );
    let mapped = map_mae_keys(&mae);
    assert!(
        mapped.keys().all(|k| k.starts_with("backbone."))
            && !mapped.contains_key("backbone.mask_token")
    );
    let mut net = Network::new(&be, ModelConfig::tiny(), Mode::Compat).unwrap();
    net.init_default(&be, 317);
    let loaded = net.load_partial(&be, &mapped).unwrap();
    assert_eq!(loaded.len(), mapped.len());
    let sd = net.state_dict(&be);
    assert_eq!(
        sd["backbone.blocks.1.attn.qkv.weight"],
        w["backbone.blocks.1.attn.qkv.weight"]
    );
    for k in [
        "backbone.blocks.0.temporal_fc.weight",
        "backbone.blocks.1.temporal_fc.bias",
        "backbone.time_embed",
    ] {
        assert!(
            f32s(&sd, k).iter().all(|&v| v == 0.0),
            "{k} must be zero-initialised"
        );
    }
    let tn = f32s(&sd, "backbone.blocks.0.temporal_norm1.weight");
    assert!(tn.iter().all(|&v| v == 1.0));
    let q = f32s(&sd, "backbone.blocks.0.temporal_attn.qkv.weight");
    let bound = 1.0 / 64f32.sqrt();
    assert!(q.iter().all(|v| v.abs() <= bound) && q.iter().any(|v| v.abs() > 0.5 * bound));
    assert!(f32s(&sd, "backbone.temp_token")
        .iter()
        .all(|v| v.abs() < 1e-5));
    assert!(f32s(&sd, "keypoint_head.hm.before_proj.0.1.running_var")
        .iter()
        .all(|&v| v == 1.0));
}

#[test]
fn frozen_backbone_trains_heads_only() {
    let be = CpuBackend;
    let mut net = Network::new(&be, ModelConfig::tiny(), Mode::Compat).unwrap();
    net.load_state_dict(&be, &load("tiny_weights.safetensors"))
        .unwrap();
    let before = net.state_dict(&be);
    let mut opt = Optimizer::new(
        &be,
        &net,
        OptimConfig {
            lr: 1e-3,
            ..OptimConfig::default()
        },
    );
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    sam_step(&be, &mut net, &mut opt, &tiny_batch(), &mut rng, true).unwrap();
    let after = net.state_dict(&be);
    for p in &net.inv.params {
        let changed = before[&p.name] != after[&p.name];
        assert_eq!(changed, !p.is_backbone(), "{}: changed = {changed}", p.name);
    }
}
