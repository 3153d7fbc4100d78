//! The `.pth` reader: the official checkpoint equals the safetensors export bit-exactly, hostile
//! pickles are rejected with clear errors, and mutated fixture bytes never panic, hang or
//! over-allocate (proptest).

mod common;

use common::*;
use model::pth::parse_pth;
use proptest::prelude::*;
use std::io::Write;

fn checkpoint_bytes() -> Vec<u8> {
    std::fs::read(fixtures_dir().join("tiny_checkpoint.pth")).expect("tiny_checkpoint.pth")
}

#[test]
fn tiny_checkpoint_equals_safetensors_bit_exactly() {
    let pth = parse_pth(&checkpoint_bytes(), Some("state_dict")).unwrap();
    let st = load("tiny_weights.safetensors");
    assert_eq!(pth.len(), 74);
    assert_eq!(
        pth.keys().collect::<Vec<_>>(),
        st.keys().collect::<Vec<_>>()
    );
    for (k, v) in &st {
        assert_eq!(&pth[k], v, "{k} differs");
    }
}

/// A zip holding `folder/data.pkl` = `pkl` plus extra entries.
fn make_zip(folder: &str, pkl: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file(format!("{folder}/data.pkl"), o).unwrap();
        z.write_all(pkl).unwrap();
        for (name, data) in extra {
            z.start_file(format!("{folder}/{name}"), o).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

#[test]
fn any_folder_name_is_accepted() {
    // {'w': tensor([1.5, 2.5])} as torch writes it, under the torch-1.8 folder name "archive"
    let pkl = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x02tq\x07QK\x00K\x02\x85q\x08K\x01\x85q\t\x89ccollections\nOrderedDict\nq\n)Rq\x0btq\x0cRq\rs.";
    let data: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = make_zip("archive", pkl, &[("data/0", &data)]);
    let sd = parse_pth(&bytes, None).unwrap();
    assert_eq!(
        sd["w"],
        model::safetensors_io::HostTensor::F32 {
            shape: vec![2],
            data: vec![1.5, 2.5]
        }
    );
}

#[test]
fn disallowed_globals_and_opcodes_are_rejected() {
    let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00idq\x00\x85R.";
    let e = parse_pth(&make_zip("x", evil, &[]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("os.system") && e.contains("not allowed"), "{e}");
    let evil = b"\x80\x02ctorch\nload\n.";
    let e = parse_pth(&make_zip("x", evil, &[]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("torch.load"), "{e}");
    // INST opcode ('i') is not on the allow-list
    let evil = b"(ibuiltins\neval\n.";
    let e = parse_pth(&make_zip("x", evil, &[]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("opcode 0x69"), "{e}");
}

#[test]
fn storage_bounds_are_checked() {
    // view of 3 elements on a 2-element storage
    let pkl = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQK\x00K\x03\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.";
    let data: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let e = parse_pth(&make_zip("a", pkl, &[("data/0", &data)]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds storage"), "{e}");
    // storage claims more elements than its archive entry holds
    let pkl2 = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\x00\x00\x00\x40tQK\x00K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.";
    let e = parse_pth(&make_zip("a", pkl2, &[("data/0", &data)]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("data/0"), "{e}");
}

#[test]
fn deep_nesting_is_rejected_without_stack_overflow() {
    let mut pkl = b"\x80\x02)".to_vec();
    pkl.extend(std::iter::repeat_n(0x85u8, 100_000)); // TUPLE1 × 100k
    pkl.push(b'.');
    let e = parse_pth(&make_zip("a", &pkl, &[]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nested too deeply"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random byte edits anywhere in the archive (header, pickle, data): parsing returns Ok or
    /// Err, never panics; every tensor returned respects its declared shape.
    #[test]
    fn mutated_checkpoints_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = checkpoint_bytes();
        for (i, b) in edits {
            let k = i.index(bytes.len());
            bytes[k] = b;
        }
        if let Ok(sd) = parse_pth(&bytes, Some("state_dict")) {
            for t in sd.values() {
                let (n, shape) = match t {
                    model::safetensors_io::HostTensor::F32 { shape, data } => (data.len(), shape),
                    model::safetensors_io::HostTensor::I64 { shape, data } => (data.len(), shape),
                };
                prop_assert_eq!(n, shape.iter().product::<usize>());
            }
        }
    }

    /// Edits confined to the pickle stream (where the interpreter is exercised most).
    #[test]
    fn mutated_pickles_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let orig = checkpoint_bytes();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(&orig)).unwrap();
        let mut pkl = Vec::new();
        std::io::Read::read_to_end(&mut z.by_name("tiny_checkpoint/data.pkl").unwrap(), &mut pkl).unwrap();
        for (i, b) in edits {
            let k = i.index(pkl.len());
            pkl[k] = b;
        }
        let keep = cut.index(pkl.len() + 1).max(pkl.len() / 2);
        pkl.truncate(keep);
        let mut extra = Vec::new();
        let mut bufs = Vec::new();
        for i in 0..74 {
            let mut d = Vec::new();
            std::io::Read::read_to_end(&mut z.by_name(&format!("tiny_checkpoint/data/{i}")).unwrap(), &mut d).unwrap();
            bufs.push((format!("data/{i}"), d));
        }
        for (n, d) in &bufs {
            extra.push((n.as_str(), d.as_slice()));
        }
        let _ = parse_pth(&make_zip("tiny_checkpoint", &pkl, &extra), Some("state_dict"));
    }
}

#[test]
fn checkpoint_with_real_adam_state_parses() {
    // generated by tests/data/make_adam_checkpoint.py (torch 2.15): optimizer entry with int
    // dict keys, floats, bools, None, tuples, lists and tensor `step`s
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/adam_checkpoint.pth");
    let sd = model::pth::read_pth(&p, Some("state_dict")).unwrap();
    assert_eq!(sd.len(), 7);
    match &sd["0.weight"] {
        model::safetensors_io::HostTensor::F32 { shape, data } => {
            assert_eq!(shape, &vec![2, 3]);
            // torch printed these f32 values widened to f64, so the comparison is exact
            let want = [
                -0.003322957083582878f64,
                0.3087158501148224,
                -0.47418534755706787,
            ];
            assert!(
                data[..3].iter().zip(want).all(|(&g, w)| g as f64 == w),
                "{:?}",
                &data[..3]
            );
        }
        other => panic!("0.weight: {other:?}"),
    }
    assert_eq!(
        sd["1.num_batches_tracked"],
        model::safetensors_io::HostTensor::I64 {
            shape: vec![],
            data: vec![1]
        }
    );
    // the read_weights front door finds `state_dict` too
    assert_eq!(model::api::read_weights(&p).unwrap(), sd);
}
