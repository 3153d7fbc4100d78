//! End-to-end SBV synthesis on the fixture clip: determinism, replay semantics, targets and
//! bad-input handling.

mod synth_common;

use stages::synth::sbv::{self, ItemKey, SbvConfig};
use stages::synth::targets::TargetMode;
use stages::synth::SynthError;
use synth_common::*;

#[test]
fn synthesis_is_deterministic_per_item_and_varies_across_items() {
    let f = Fixtures::load();
    let clip = fixture_clip(&f);
    let cfg = SbvConfig::default();
    let key = ItemKey {
        seed: 317,
        epoch: 3,
        item: 11,
    };
    let t0 = std::time::Instant::now();
    let a = sbv::synthesize(&clip, key, &cfg).unwrap();
    eprintln!("one pair: {:?}", t0.elapsed());
    let b = sbv::synthesize(&clip, key, &cfg).unwrap();
    assert_eq!(a.fake, b.fake);
    assert_eq!(a.real, b.real);
    assert_eq!(a.temporal, b.temporal);
    assert_eq!(a.params, b.params);
    let c = sbv::synthesize(&clip, ItemKey { item: 12, ..key }, &cfg).unwrap();
    assert_ne!(
        a.params, c.params,
        "different items draw different parameters"
    );
    let d = sbv::synthesize(&clip, ItemKey { epoch: 4, ..key }, &cfg).unwrap();
    assert_ne!(
        a.params, d.params,
        "different epochs draw different parameters"
    );
}

#[test]
fn pair_shapes_targets_and_blend_region_are_consistent() {
    let f = Fixtures::load();
    let clip = fixture_clip(&f);
    let cfg = SbvConfig {
        keep_debug: true,
        ..SbvConfig::default()
    };
    let mut seen_mask_out = (false, false);
    for item in 0..12 {
        let p = sbv::synthesize(
            &clip,
            ItemKey {
                seed: 1,
                epoch: 0,
                item,
            },
            &cfg,
        )
        .unwrap();
        assert_eq!(p.real.len(), 4);
        for img in p.real.iter().chain(&p.fake) {
            assert_eq!((img.height, img.width, img.channels), (224, 224, 3));
        }
        assert_eq!(p.temporal.fake.len(), 4 * 196);
        // Frame 0 of the temporal target is the z-scored zero map; the real target is −μ/σ.
        if p.temporal.std != 0.0 {
            let z = -p.temporal.mean / p.temporal.std;
            assert!(p.temporal.fake[..196]
                .iter()
                .all(|&v| (v - z).abs() < 1e-12));
            assert!(p.temporal.real.iter().all(|&v| (v - z).abs() < 1e-12));
        }
        // The boundary map has vulnerable cells (the blend boundary crosses the face).
        assert!(
            p.boundary_grid.iter().any(|v| v.iter().any(|&x| x > 0)),
            "item {item}: no boundary"
        );
        // Real and fake differ (inside the blend region) but share the background.
        assert_ne!(p.real[0], p.fake[0], "item {item}: fake equals real");
        if p.params.mask_out {
            seen_mask_out.0 = true;
            assert!(p.keep.contains(&0));
            assert!(p.spatial_fake.iter().all(|&y| (0.0..=1.0).contains(&y)));
            // Masked blocks are black in both clips.
            let cell = p.keep.iter().position(|&k| k == 0).unwrap();
            let (i, j) = (cell / 14, cell % 14);
            for img in p.real.iter().chain(&p.fake) {
                let px = ((i * 16 + 8) * 224 + j * 16 + 8) * 3;
                assert_eq!(&img.data[px..px + 3], &[0, 0, 0]);
            }
        } else {
            seen_mask_out.1 = true;
            assert_eq!(p.spatial_fake, vec![1.0; 4]);
            assert!(p.keep.iter().all(|&k| k == 1));
        }
        let d = p.debug.as_ref().unwrap();
        assert_eq!(d.blend_mask.len(), 4);
    }
    assert!(
        seen_mask_out.0 && seen_mask_out.1,
        "12 items should include clips with and without mask-out"
    );
}

#[test]
fn clean_and_compat_targets_differ_only_in_wrap() {
    let f = Fixtures::load();
    let clip = fixture_clip(&f);
    let key = ItemKey {
        seed: 5,
        epoch: 0,
        item: 0,
    };
    let a = sbv::synthesize(&clip, key, &SbvConfig::default()).unwrap();
    let b = sbv::synthesize(
        &clip,
        key,
        &SbvConfig {
            target_mode: TargetMode::Clean,
            ..SbvConfig::default()
        },
    )
    .unwrap();
    assert_eq!(a.fake, b.fake, "the target mode does not change the pixels");
    let wraps = (1..4).any(|t| (0..196).any(|i| a.boundary_grid[t][i] < a.boundary_grid[t - 1][i]));
    if wraps {
        assert!(
            a.temporal.mean > b.temporal.mean,
            "compat differences wrap upwards"
        );
    }
}

#[test]
fn bad_input_is_reported_not_panicking() {
    let f = Fixtures::load();
    let cfg = SbvConfig::default();
    let key = ItemKey {
        seed: 0,
        epoch: 0,
        item: 0,
    };

    let mut clip = fixture_clip(&f);
    clip.landmarks[2].clear();
    match sbv::synthesize(&clip, key, &cfg) {
        Err(SynthError::Landmarks { frame: 2, .. }) => {}
        other => panic!("missing landmarks: {other:?}"),
    }

    let mut clip = fixture_clip(&f);
    clip.landmarks[1][5] = [f32::NAN, 3.0];
    assert!(matches!(
        sbv::synthesize(&clip, key, &cfg),
        Err(SynthError::Landmarks { frame: 1, .. })
    ));

    // Degenerate hull: every landmark on one point.
    let mut clip = fixture_clip(&f);
    for l in &mut clip.landmarks {
        l.iter_mut().for_each(|p| *p = [100.0, 100.0]);
    }
    match sbv::synthesize(&clip, key, &cfg) {
        Err(SynthError::Exhausted { last, .. }) => {
            assert!(matches!(*last, SynthError::DegenerateHull(_)), "{last}")
        }
        other => panic!("degenerate hull: {other:?}"),
    }

    // Tiny face: landmarks squeezed into a 4-pixel box.
    let mut clip = fixture_clip(&f);
    for l in &mut clip.landmarks {
        l.iter_mut()
            .for_each(|p| *p = [120.0 + p[0] / 64.0, 120.0 + p[1] / 64.0]);
    }
    assert!(sbv::synthesize(&clip, key, &cfg).is_err());

    let mut clip = fixture_clip(&f);
    clip.frames[3] = stages::synth::ImageU8::new(128, 128, 3);
    assert!(matches!(
        sbv::synthesize(&clip, key, &cfg),
        Err(SynthError::BadInput(_))
    ));
}
