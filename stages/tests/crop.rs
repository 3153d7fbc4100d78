//! Official-convention crops against the golden fixture and geometry checks.

mod common_fixtures;
mod common_media;
use common_fixtures::{synth_tensor, FIXTURE_CROP_XYXY};
use common_media::media;
use stages::crop::{crop_face, crop_region, CropParams, CropRegion};
use stages::decode::{FrameSelection, VideoDecoder};
use stages::detect::Face;
use stages::rgb::RgbView;

fn face(x0: f32, y0: f32, x1: f32, y1: f32) -> Face {
    Face {
        x0,
        y0,
        x1,
        y1,
        score: 1.0,
        landmarks5: None,
    }
}

#[test]
fn crop_matches_official_fixture_frames() {
    // img256_f{t}: franck.mp4 frames 50..53 cropped by the official code (cv2 decode, cv2.resize
    // INTER_LINEAR) from the frame box FIXTURE_CROP_XYXY.
    let (frames, _) = VideoDecoder::open(media("franck.mp4"))
        .unwrap()
        .decode_all(FrameSelection::FirstN(54))
        .unwrap();
    let [x0, y0, x1, y1] = FIXTURE_CROP_XYXY;
    let region = CropRegion { x0, y0, x1, y1 };
    for t in 0..4 {
        let ours = crop_region(frames[50 + t].view(), region, &CropParams::default()).unwrap();
        let (shape, theirs) = synth_tensor(&format!("img256_f{t}"));
        assert_eq!(shape, vec![256, 256, 3]);
        let n = theirs.len() as f64;
        let mad = ours
            .data
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / n;
        // Same libavcodec decode, same swscale YUV→RGB path and the same OpenCV INTER_LINEAR
        // resize: measured bit-identical (MAD 0). The small allowance only covers a different
        // FFmpeg/OpenCV build rounding a few pixels by one level; a wrong box or interpolation
        // gives a MAD in the tens.
        let max = ours
            .data
            .iter()
            .zip(&theirs)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(
            mad < 0.05 && max <= 2,
            "frame {}: MAD {mad}, max {max}",
            50 + t
        );
    }
}

#[test]
fn region_grows_by_a_quarter_and_clips() {
    let p = CropParams::default();
    let r = CropRegion::for_face(&face(100.0, 50.0, 200.0, 170.0), 360, 288, &p).unwrap();
    assert_eq!(
        r,
        CropRegion {
            x0: 75,
            y0: 20,
            x1: 225,
            y1: 200
        }
    );
    let r = CropRegion::for_face(&face(-10.0, 200.0, 100.0, 300.0), 360, 288, &p).unwrap();
    assert_eq!(
        r,
        CropRegion {
            x0: 0,
            y0: 175,
            x1: 127,
            y1: 288
        }
    );
    assert!(CropRegion::for_face(&face(400.0, 10.0, 500.0, 50.0), 360, 288, &p).is_none());
    assert!(CropRegion::for_face(&face(10.0, 10.0, 10.0, 50.0), 360, 288, &p).is_none());
}

#[test]
fn landmark_mapping_follows_the_resized_pixels() {
    // A single bright pixel in a dark frame must land where `to_crop` says after the resize.
    let (w, h) = (320u32, 240u32);
    let p = CropParams::default();
    let f = face(60.0, 40.0, 200.0, 180.0);
    for &(px, py) in &[(70usize, 50usize), (150, 120), (199, 175), (30, 20)] {
        let mut data = vec![0u8; (w * h * 3) as usize];
        // A 3×3 blob so the bilinear resize keeps a clear peak.
        for dy in 0..3 {
            for dx in 0..3 {
                let i = ((py + dy - 1) * w as usize + px + dx - 1) * 3;
                data[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let c = crop_face(RgbView::new(w, h, &data).unwrap(), &f, &p)
            .unwrap()
            .unwrap();
        assert_eq!((c.image.width, c.image.height), (256, 256));
        let want = c.region.to_crop([px as f32, py as f32], &p);
        // Intensity-weighted centroid of the blob in the crop.
        let (mut sx, mut sy, mut sw) = (0f64, 0f64, 0f64);
        for y in 0..256usize {
            for x in 0..256usize {
                let v = c.image.data[(y * 256 + x) * 3] as f64;
                sx += v * x as f64;
                sy += v * y as f64;
                sw += v;
            }
        }
        assert!(sw > 0.0);
        let got = [(sx / sw) as f32, (sy / sw) as f32];
        assert!(
            (got[0] - want[0]).abs() < 0.5 && (got[1] - want[1]).abs() < 0.5,
            "pixel ({px},{py}): centroid {got:?}, mapped {want:?}"
        );
        let back = c.region.to_frame(want, &p);
        assert!((back[0] - px as f32).abs() < 1e-3 && (back[1] - py as f32).abs() < 1e-3);
    }
}

#[test]
fn configurable_size_and_padding() {
    let (w, h) = (100u32, 80u32);
    let data: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    let p = CropParams {
        pad_x: 0.0,
        pad_y: 0.5,
        out_width: 64,
        out_height: 32,
        ..CropParams::default()
    };
    let c = crop_face(
        RgbView::new(w, h, &data).unwrap(),
        &face(10.0, 20.0, 50.0, 40.0),
        &p,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.region,
        CropRegion {
            x0: 10,
            y0: 10,
            x1: 50,
            y1: 50
        }
    );
    assert_eq!(
        (c.image.width, c.image.height, c.image.data.len()),
        (64, 32, 64 * 32 * 3)
    );
}

#[test]
fn region_outside_frame_is_an_error() {
    let data = vec![0u8; 10 * 10 * 3];
    let r = CropRegion {
        x0: 5,
        y0: 5,
        x1: 20,
        y1: 8,
    };
    assert!(crop_region(
        RgbView::new(10, 10, &data).unwrap(),
        r,
        &CropParams::default()
    )
    .is_err());
}
