//! Batching, dump and preview: determinism across thread counts and runs (byte-identical dumps),
//! tensor layout, normalisation and the preview PNG.

mod synth_common;

use std::collections::HashMap;

use safetensors::SafeTensors;
use stages::synth::batch::{self, Batch, BatchKey, MEAN, STD};
use stages::synth::sbv::{ClipInput, ItemKey, SbvConfig};
use stages::synth::{preview, SynthError};
use synth_common::*;

fn items(f: &Fixtures, n: u64) -> (Vec<ClipInput>, Vec<ItemKey>) {
    let clip = fixture_clip(f);
    let inputs = (0..n).map(|_| clip.clone()).collect();
    let keys = (0..n)
        .map(|item| ItemKey {
            seed: 317,
            epoch: 2,
            item,
        })
        .collect();
    (inputs, keys)
}

fn dump(inputs: &[ClipInput], keys: &[ItemKey], threads: usize, path: &std::path::Path) -> Vec<u8> {
    let bk = BatchKey {
        seed: 317,
        epoch: 2,
        index: 0,
    };
    let (b, _, failed) =
        batch::synthesize_batch(inputs, keys, &SbvConfig::default(), bk, threads).unwrap();
    assert!(failed.is_empty());
    b.write_safetensors(path, HashMap::new()).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn dump_is_byte_identical_across_threads_and_runs() {
    let f = Fixtures::load();
    let (inputs, keys) = items(&f, 6);
    let dir = std::env::temp_dir().join(format!("synth_dump_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dump(&inputs, &keys, 1, &dir.join("a.safetensors"));
    let b = dump(&inputs, &keys, 2, &dir.join("b.safetensors"));
    let c = dump(&inputs, &keys, 2, &dir.join("c.safetensors"));
    assert!(a == b, "1 vs 2 threads differ");
    assert!(b == c, "two runs differ");
    let st = SafeTensors::deserialize(&a).unwrap();
    assert_eq!(st.tensor("images").unwrap().shape(), &[12, 3, 4, 224, 224]);
    assert_eq!(
        st.tensor("images_bf16").unwrap().shape(),
        &[12, 3, 4, 224, 224]
    );
    assert_eq!(st.tensor("heatmap").unwrap().shape(), &[12, 1, 4, 14, 14]);
    assert_eq!(st.tensor("temp_loc").unwrap().shape(), &[12, 4]);
    assert_eq!(
        st.tensor("mask_out_p").unwrap().shape(),
        &[12, 1, 4, 14, 14]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn batch_layout_labels_and_normalisation() {
    let f = Fixtures::load();
    let (inputs, keys) = items(&f, 3);
    let results = batch::synthesize_items(&inputs, &keys, &SbvConfig::default(), 2).unwrap();
    let pairs: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    let b = Batch::assemble(
        &pairs,
        BatchKey {
            seed: 1,
            epoch: 0,
            index: 0,
        },
    )
    .unwrap();
    assert_eq!(b.clips, 6);
    assert_eq!(
        b.labels.iter().filter(|&&l| l == 1.0).count(),
        3,
        "exactly half fakes"
    );
    let mut seen: Vec<(usize, bool)> = b.order.clone();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (0, false),
            (0, true),
            (1, false),
            (1, true),
            (2, false),
            (2, true)
        ]
    );
    let other = Batch::assemble(
        &pairs,
        BatchKey {
            seed: 1,
            epoch: 0,
            index: 1,
        },
    )
    .unwrap();
    assert_ne!(b.order, other.order, "the shuffle depends on the batch key");
    let (t, s, hw) = (4, 224, 224 * 224);
    for (slot, &(item, fake)) in b.order.iter().enumerate() {
        let p = &pairs[item];
        let clip = if fake { &p.fake } else { &p.real };
        // Pixel (y=100, x=37), frame 2, every channel.
        let (y, x, fr) = (100, 37, 2);
        for c in 0..3 {
            let v = clip[fr].data[(y * s + x) * 3 + c] as f64;
            let want = ((v / 255.0 - MEAN[c]) / STD[c]) as f32;
            assert_eq!(b.images[((slot * 3 + c) * t + fr) * hw + y * s + x], want);
        }
        assert_eq!(b.labels[slot], if fake { 1.0 } else { 0.0 });
        let hm = &b.heatmap[slot * t * 196..(slot + 1) * t * 196];
        let want = if fake {
            &p.temporal.fake
        } else {
            &p.temporal.real
        };
        assert!(hm.iter().zip(want).all(|(&a, &w)| a == w as f32));
        let sp = &b.spatial[slot * t..(slot + 1) * t];
        if fake {
            assert!(sp.iter().zip(&p.spatial_fake).all(|(&a, &w)| a == w as f32));
        } else {
            assert!(sp.iter().all(|&v| v == 0.0));
        }
    }
    let bf = b.images_bf16();
    assert!(bf
        .iter()
        .zip(&b.images)
        .all(|(h, &v)| (h.to_f32() - v).abs() <= v.abs() / 128.0 + 1e-6));
}

#[test]
fn preview_png_has_one_block_per_clip() {
    let f = Fixtures::load();
    let (inputs, keys) = items(&f, 2);
    let cfg = SbvConfig {
        keep_debug: true,
        ..SbvConfig::default()
    };
    let pairs: Vec<_> = batch::synthesize_items(&inputs, &keys, &cfg, 2)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let path = std::env::temp_dir().join(format!("synth_preview_{}.png", std::process::id()));
    preview::write_png(&pairs, &path).unwrap();
    let img =
        opencv::imgcodecs::imread(path.to_str().unwrap(), opencv::imgcodecs::IMREAD_COLOR).unwrap();
    use opencv::prelude::*;
    assert_eq!(img.cols() as usize, 4 * (224 + 4) + 4);
    assert_eq!(img.rows() as usize, 2 * (5 * (224 + 4) + 4));
    std::fs::remove_file(&path).ok();
    // Pairs without debug planes are refused, not rendered wrongly.
    let plain: Vec<_> = batch::synthesize_items(&inputs[..1], &keys[..1], &SbvConfig::default(), 1)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(
        preview::render(&plain),
        Err(SynthError::BadInput(_))
    ));
}
