//! `fakestormer model convert|info|forward` against the official golden fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("FAKESTORMER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    assert!(
        dir.join("tiny_io.safetensors").is_file(),
        "golden fixtures missing in {} (set FAKESTORMER_FIXTURES)",
        dir.display()
    );
    dir
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fakestormer"))
}

fn f32s(st: &SafeTensors<'_>, key: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(key).unwrap_or_else(|_| panic!("no tensor {key}"));
    assert_eq!(t.dtype(), Dtype::F32, "{key}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

#[test]
fn convert_pth_gives_the_official_state_dict_bit_for_bit() {
    let fx = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.safetensors");
    let o = bin()
        .args(["model", "convert"])
        .arg(fx.join("tiny_checkpoint.pth"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours = std::fs::read(&out).unwrap();
    let want = std::fs::read(fx.join("tiny_weights.safetensors")).unwrap();
    let (a, b) = (
        SafeTensors::deserialize(&ours).unwrap(),
        SafeTensors::deserialize(&want).unwrap(),
    );
    let mut names = a.names();
    names.sort();
    let mut want_names = b.names();
    want_names.sort();
    assert_eq!(names, want_names);
    for n in names {
        let (x, y) = (a.tensor(n).unwrap(), b.tensor(n).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{n}");
        assert_eq!(x.data(), y.data(), "{n} differs");
    }
}

#[test]
fn info_reports_the_parameter_count() {
    let o = bin()
        .args(["model", "info", "--preset", "base"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("123,627,078") || text.contains("123627078"),
        "{text}"
    );
}

#[test]
fn forward_reproduces_the_official_outputs() {
    let fx = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let io_bytes = std::fs::read(fx.join("tiny_io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io_bytes).unwrap();
    let (shape, x) = f32s(&io, "x_b2");
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, shape, &bytes).unwrap();
    let input = dir.path().join("x.safetensors");
    safetensors::serialize_to_file([("x", view)], None, &input).unwrap();
    std::fs::write(dir.path().join("tiny.toml"), "preset = \"tiny\"\n").unwrap();
    let out = dir.path().join("y.safetensors");
    let o = bin()
        .args([
            "model",
            "forward",
            "--mode",
            "compat",
            "--dump-intermediates",
            "--model-config",
        ])
        .arg(dir.path().join("tiny.toml"))
        .arg("--weights")
        .arg(fx.join("tiny_weights.safetensors"))
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y_bytes = std::fs::read(&out).unwrap();
    let y = SafeTensors::deserialize(&y_bytes).unwrap();
    // Fixture README §1.4: atol 1e-5, rtol 1e-4 for a float32 port.
    for (ours, theirs) in [
        ("cls", "b2.cls"),
        ("temp_loc", "b2.temp_loc"),
        ("hm", "b2.hm"),
        ("tokens_embed", "b2.tokens_embed"),
        ("block1.out", "b2.block1.out"),
    ] {
        let (s1, a) = f32s(&y, ours);
        let (s2, b) = f32s(&io, theirs);
        assert_eq!(s1, s2, "{ours}");
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(
                (p - q).abs() <= 1e-5 + 1e-4 * q.abs(),
                "{ours}[{i}]: {p} vs {q}"
            );
        }
    }
}
