//! Manifest builders on small synthetic trees that mimic each corpus' layout (empty `.mp4` files).

use std::path::{Path, PathBuf};

use pipeline::manifest::build::{build, filter, relativize, BuildError, BuildOptions, Problem};
use pipeline::manifest::{read_manifest, write_manifest, ManifestRow};

fn touch(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, b"").unwrap();
    p
}

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn row<'a>(rows: &'a [ManifestRow], id: &str) -> &'a ManifestRow {
    rows.iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no row `{id}` in {:?}", ids(rows)))
}

fn ids(rows: &[ManifestRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn assert_sorted_unique(rows: &[ManifestRow]) {
    for w in rows.windows(2) {
        assert!(w[0].id < w[1].id, "{} !< {}", w[0].id, w[1].id);
    }
}

/// The problems whose path ends with `suffix`.
fn problems_at<'a>(problems: &'a [Problem], suffix: &str) -> Vec<&'a Problem> {
    problems
        .iter()
        .filter(|p| p.path.to_string_lossy().ends_with(suffix))
        .collect()
}

const FF_METHODS: [&str; 4] = ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"];

/// An FF++ tree: split files under `split_dir`, every real and every fake of `methods` present.
fn ffpp_tree(
    root: &Path,
    split_dir: &str,
    comp_dir: &str,
    splits: &[(&str, &[[&str; 2]])],
    methods: &[&str],
) {
    for (split, pairs) in splits {
        write(
            root,
            &format!("{split_dir}/{split}.json"),
            &serde_json::to_string(pairs).unwrap(),
        );
        for [a, b] in pairs.iter() {
            for id in [a, b] {
                touch(
                    root,
                    &format!("original_sequences/youtube/{comp_dir}/videos/{id}.mp4"),
                );
            }
            for m in methods {
                for name in [format!("{a}_{b}"), format!("{b}_{a}")] {
                    touch(
                        root,
                        &format!("manipulated_sequences/{m}/{comp_dir}/videos/{name}.mp4"),
                    );
                }
            }
        }
    }
}

#[test]
fn ffpp_pairs_give_two_reals_and_two_fakes_per_method() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let train: &[[&str; 2]] = &[["000", "003"], ["001", "002"]];
    let val: &[[&str; 2]] = &[["004", "005"]];
    let test: &[[&str; 2]] = &[["006", "007"]];
    let methods: Vec<&str> = FF_METHODS.iter().copied().chain(["FaceShifter"]).collect();
    ffpp_tree(
        root,
        "original_download",
        "c23",
        &[("train", train), ("val", val), ("test", test)],
        &methods,
    );
    // One fake listed by the test split is missing on disk.
    let gone = root.join("manipulated_sequences/NeuralTextures/c23/videos/007_006.mp4");
    std::fs::remove_file(&gone).unwrap();

    let out = build("ff++", &BuildOptions::new(root).with_compression("c23")).unwrap();
    let pairs = train.len() + val.len() + test.len();
    assert_eq!(out.rows.len(), pairs * 2 * (1 + methods.len()) - 1);
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert_eq!(out.problems[0].path, gone);
    assert!(out.problems[0].reason.contains("missing"));
    assert!(out.problems[0].reason.contains("test.json"));
    assert_sorted_unique(&out.rows);

    let real = row(&out.rows, "ff++/c23/original/000");
    assert_eq!(
        (real.label, real.split.as_str(), real.dataset.as_str()),
        (0, "train", "ff++")
    );
    assert_eq!(real.method.as_deref(), Some("original"));
    assert_eq!(real.identity.as_deref(), Some("000"));
    assert_eq!(real.compression.as_deref(), Some("c23"));
    assert_eq!(
        Path::new(&real.path),
        root.join("original_sequences/youtube/c23/videos/000.mp4")
    );
    let fake = row(&out.rows, "ff++/c23/Deepfakes/003_000");
    assert_eq!((fake.label, fake.split.as_str()), (1, "train"));
    assert_eq!(fake.method.as_deref(), Some("Deepfakes"));
    assert_eq!(fake.identity.as_deref(), Some("003"));
    assert_eq!(
        Path::new(&fake.path),
        root.join("manipulated_sequences/Deepfakes/c23/videos/003_000.mp4")
    );
    assert_eq!(row(&out.rows, "ff++/c23/FaceShifter/004_005").split, "val");
    assert!(out
        .rows
        .iter()
        .all(|r| r.id != "ff++/c23/NeuralTextures/007_006"));

    // Counts per split and label follow the pair counts.
    for (split, n) in [
        ("train", train.len()),
        ("val", val.len()),
        ("test", test.len()),
    ] {
        let reals = filter(out.rows.clone(), Some(split), Some("ff++"), Some(0));
        assert_eq!(reals.len(), 2 * n, "{split} reals");
        let fakes = filter(out.rows.clone(), Some(split), None, Some(1));
        let missing = usize::from(split == "test");
        assert_eq!(
            fakes.len(),
            2 * n * methods.len() - missing,
            "{split} fakes"
        );
    }
    assert!(filter(out.rows.clone(), None, Some("dfdc"), None).is_empty());
    assert_eq!(filter(out.rows.clone(), None, None, None), out.rows);

    // The split filter keeps one split, and only probes its file.
    std::fs::remove_file(root.join("original_download/train.json")).unwrap();
    let only = build(
        "ff++",
        &BuildOptions::new(root)
            .with_compression("c23")
            .with_split("val"),
    )
    .unwrap();
    assert_eq!(only.rows.len(), 2 * (1 + methods.len()));
    assert!(only.rows.iter().all(|r| r.split == "val"));
    assert!(only.problems.is_empty(), "{:?}", only.problems);
}

#[test]
fn ffpp_raw_is_c0_and_missing_parts_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let test: &[[&str; 2]] = &[["010", "011"]];
    // Split files in `splits/`, raw videos, only one method downloaded, no train/val split files.
    ffpp_tree(root, "splits", "raw", &[("test", test)], &["Face2Face"]);
    std::fs::remove_file(root.join("original_sequences/youtube/raw/videos/011.mp4")).unwrap();

    let out = build("ff++", &BuildOptions::new(root).with_compression("raw")).unwrap();
    let got = ids(&out.rows);
    assert_eq!(
        got,
        [
            "ff++/c0/Face2Face/010_011",
            "ff++/c0/Face2Face/011_010",
            "ff++/c0/original/010"
        ]
    );
    assert!(out
        .rows
        .iter()
        .all(|r| r.compression.as_deref() == Some("c0")));
    let c0 = build("ff++", &BuildOptions::new(root).with_compression("c0")).unwrap();
    assert_eq!(c0.rows, out.rows);

    assert_eq!(
        problems_at(
            &out.problems,
            "original_sequences/youtube/raw/videos/011.mp4"
        )
        .len(),
        1
    );
    for m in ["Deepfakes", "FaceSwap", "NeuralTextures"] {
        let p = problems_at(&out.problems, &format!("{m}/raw/videos"));
        assert_eq!(p.len(), 1, "{m}: {:?}", out.problems);
    }
    for s in ["train", "val"] {
        let p = problems_at(&out.problems, &format!("splits/{s}.json"));
        assert_eq!(p.len(), 1, "{s}: {:?}", out.problems);
        assert!(p[0].reason.contains("original_download"));
    }
    assert_eq!(out.problems.len(), 6, "{:?}", out.problems);
    assert!(problems_at(&out.problems, "FaceShifter/raw/videos").is_empty());
}

#[test]
fn ffpp_bad_invocations_are_errors_and_bad_split_files_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert!(matches!(
        build("ff++", &BuildOptions::new(root).with_compression("c23")),
        Err(BuildError::NotFound { .. })
    ));
    ffpp_tree(
        root,
        "splits",
        "c40",
        &[("val", &[["1", "2"]])],
        &FF_METHODS,
    );
    assert!(matches!(
        build("ff++", &BuildOptions::new(root)),
        Err(BuildError::BadOption { .. })
    ));
    assert!(matches!(
        build("ff++", &BuildOptions::new(root).with_compression("c10")),
        Err(BuildError::BadOption { .. })
    ));
    // A split file that is not a list of pairs is reported whole; a pair listed in two splits
    // is reported as a duplicate and kept once.
    write(root, "splits/train.json", r#"{"not": "pairs"}"#);
    write(root, "splits/test.json", r#"[["1", "2"], ["a/b", "3"]]"#);
    let out = build("ff++", &BuildOptions::new(root).with_compression("c40")).unwrap();
    assert_eq!(out.rows.len(), 2 * (1 + FF_METHODS.len()));
    assert_eq!(problems_at(&out.problems, "splits/train.json").len(), 1);
    let test_problems = problems_at(&out.problems, "splits/test.json");
    assert_eq!(test_problems.len(), 1);
    assert!(test_problems[0].reason.contains("a/b"));
    let dups: Vec<_> = out
        .problems
        .iter()
        .filter(|p| p.reason.contains("duplicate id"))
        .collect();
    assert_eq!(dups.len(), 2 * (1 + FF_METHODS.len()), "{:?}", out.problems);
    assert_eq!(out.problems.len(), 2 + dups.len());
}

#[test]
fn celeb_df_reads_every_line_and_flips_the_label() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for v in [
        "Celeb-real/id0_0000.mp4",
        "YouTube-real/00170.mp4",
        "Celeb-synthesis/id0_id16_0000.mp4",
    ] {
        touch(root, v);
    }
    let list = write(
        root,
        "List_of_testing_videos.txt",
        "1 Celeb-real/id0_0000.mp4\n1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id0_id16_0000.mp4\n\
         0 Celeb-synthesis/id1_id2_0001.mp4\n2 Celeb-real/id3_0000.mp4\n",
    );
    let out = build("celeb-df-v2", &BuildOptions::new(root)).unwrap();
    // The first line is a video, not a header.
    assert_eq!(
        ids(&out.rows),
        [
            "celeb-df-v2/Celeb-real/id0_0000",
            "celeb-df-v2/Celeb-synthesis/id0_id16_0000",
            "celeb-df-v2/YouTube-real/00170"
        ]
    );
    let labels: Vec<(u8, Option<&str>, Option<&str>)> = out
        .rows
        .iter()
        .map(|r| (r.label, r.method.as_deref(), r.identity.as_deref()))
        .collect();
    assert_eq!(
        labels,
        [
            (0, Some("Celeb-real"), Some("id0")),
            (1, Some("Celeb-synthesis"), Some("id0")),
            (0, Some("YouTube-real"), None)
        ]
    );
    assert!(out.rows.iter().all(|r| r.split == "test"));
    assert_eq!(out.problems.len(), 2, "{:?}", out.problems);
    let missing = problems_at(&out.problems, "Celeb-synthesis/id1_id2_0001.mp4");
    assert_eq!(missing.len(), 1);
    assert!(missing[0].reason.contains("List_of_testing_videos.txt"));
    let bad = problems_at(&out.problems, &format!("{}:5", list.display()));
    assert_eq!(bad.len(), 1, "{:?}", out.problems);
    assert!(bad[0].reason.contains("`2`"));
}

#[test]
fn dfdc_reads_numeric_and_word_labels_per_split() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "test/labels.csv",
        "filename,label\naaa.mp4,0\nbbb.mp4,1\nccc.mp4,1\n",
    );
    touch(root, "test/aaa.mp4");
    touch(root, "test/videos/bbb.mp4"); // in a videos/ folder beside the CSV
    write(
        root,
        "train/labels.csv",
        "filename,label,original\nddd.mp4,REAL,\neee.mp4,FAKE,ddd.mp4\nfff.mp4,maybe,\n",
    );
    touch(root, "train/ddd.mp4");
    touch(root, "train/eee.mp4");
    let out = build("dfdc", &BuildOptions::new(root)).unwrap();
    let got: Vec<(&str, u8, &str, Option<&str>)> = out
        .rows
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.label,
                r.split.as_str(),
                r.method.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("dfdc/test/aaa", 0, "test", Some("real")),
            ("dfdc/test/bbb", 1, "test", Some("fake")),
            ("dfdc/train/ddd", 0, "train", Some("real")),
            ("dfdc/train/eee", 1, "train", Some("fake")),
        ]
    );
    assert_eq!(
        Path::new(&row(&out.rows, "dfdc/test/bbb").path),
        root.join("test/videos/bbb.mp4")
    );
    assert_eq!(out.problems.len(), 2, "{:?}", out.problems);
    assert_eq!(problems_at(&out.problems, "test/ccc.mp4").len(), 1);
    let bad = problems_at(&out.problems, "train/labels.csv:4");
    assert_eq!(bad.len(), 1, "{:?}", out.problems);
    assert!(bad[0].reason.contains("maybe"));

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        build("dfdc", &BuildOptions::new(empty.path())),
        Err(BuildError::NotFound { .. })
    ));
}

#[test]
fn dfdc_root_labels_take_the_split_option() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "labels.csv", "filename,label\nx.mp4,1\n");
    touch(root, "x.mp4");
    let out = build("dfdc", &BuildOptions::new(root)).unwrap();
    assert_eq!(ids(&out.rows), ["dfdc/test/x"]);
    let out = build("dfdc", &BuildOptions::new(root).with_split("val")).unwrap();
    assert_eq!(ids(&out.rows), ["dfdc/val/x"]);
    assert_eq!(out.rows[0].split, "val");
}

#[test]
fn dfdcp_ids_stay_unique_when_basenames_collide() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let videos = [
        ("method_A/1001/1001_A/clip_0.mp4", "fake", "test"),
        ("method_B/1001/1001_B/clip_0.mp4", "fake", "test"),
        ("original_videos/1001/clip_0.mp4", "real", "test"),
        ("original_videos/1002/clip_0.mp4", "real", "train"),
    ];
    let mut index = serde_json::Map::new();
    for (path, label, set) in videos {
        touch(root, path);
        index.insert(
            path.into(),
            serde_json::json!({"label": label, "set": set, "target_id": "1001"}),
        );
    }
    index.insert(
        "method_A/1003/1003_A/clip_1.mp4".into(),
        serde_json::json!({"label": "fake", "set": "train"}),
    );
    index.insert(
        "method_B/x.mp4".into(),
        serde_json::json!({"label": "fake"}),
    );
    write(
        root,
        "dataset.json",
        &serde_json::Value::Object(index).to_string(),
    );
    let out = build("dfdcp", &BuildOptions::new(root)).unwrap();
    let got: Vec<(&str, u8, &str, Option<&str>)> = out
        .rows
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.label,
                r.split.as_str(),
                r.method.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "dfdcp/method_A/1001/1001_A/clip_0",
                1,
                "test",
                Some("method_A")
            ),
            (
                "dfdcp/method_B/1001/1001_B/clip_0",
                1,
                "test",
                Some("method_B")
            ),
            (
                "dfdcp/original_videos/1001/clip_0",
                0,
                "test",
                Some("original_videos")
            ),
            (
                "dfdcp/original_videos/1002/clip_0",
                0,
                "train",
                Some("original_videos")
            ),
        ]
    );
    assert_eq!(out.rows[0].identity.as_deref(), Some("1001"));
    assert_eq!(out.problems.len(), 2, "{:?}", out.problems);
    assert_eq!(
        problems_at(&out.problems, "method_A/1003/1003_A/clip_1.mp4").len(),
        1
    );
    assert_eq!(
        problems_at(&out.problems, "entry `method_B/x.mp4`").len(),
        1
    );
    let test_only = build("dfdcp", &BuildOptions::new(root).with_split("test")).unwrap();
    assert_eq!(test_only.rows.len(), 3);
}

#[test]
fn dfd_builds_from_the_ffpp_layout_and_from_flat_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(
        root,
        "original_sequences/actors/c23/videos/01__kitchen_pan.mp4",
    );
    touch(root, "original_sequences/actors/c23/videos/02__podium.mp4");
    touch(
        root,
        "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__kitchen_pan__ABCD1234.mp4",
    );
    touch(
        root,
        "original_sequences/actors/c40/videos/01__kitchen_pan.mp4",
    );
    assert!(matches!(
        build("dfd", &BuildOptions::new(root)),
        Err(BuildError::BadOption { .. })
    ));
    let out = build("dfd", &BuildOptions::new(root).with_compression("c23")).unwrap();
    let got: Vec<(&str, u8, Option<&str>)> = out
        .rows
        .iter()
        .map(|r| (r.id.as_str(), r.label, r.method.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "dfd/c23/DeepFakeDetection/01_02__kitchen_pan__ABCD1234",
                1,
                Some("DeepFakeDetection")
            ),
            (
                "dfd/c23/DeepFakeDetection_original/01__kitchen_pan",
                0,
                Some("DeepFakeDetection_original")
            ),
            (
                "dfd/c23/DeepFakeDetection_original/02__podium",
                0,
                Some("DeepFakeDetection_original")
            ),
        ]
    );
    assert!(out
        .rows
        .iter()
        .all(|r| r.split == "test" && r.compression.as_deref() == Some("c23")));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    // c40 has no fake folder: reported, reals still built.
    let c40 = build("dfd", &BuildOptions::new(root).with_compression("c40")).unwrap();
    assert_eq!(c40.rows.len(), 1);
    assert_eq!(
        problems_at(&c40.problems, "DeepFakeDetection/c40/videos").len(),
        1
    );

    let flat = tempfile::tempdir().unwrap();
    touch(flat.path(), "DeepFakeDetection_original/a.mp4");
    touch(flat.path(), "DeepFakeDetection/b.MP4");
    let out = build("dfd", &BuildOptions::new(flat.path())).unwrap();
    assert_eq!(
        ids(&out.rows),
        [
            "dfd/DeepFakeDetection/b",
            "dfd/DeepFakeDetection_original/a"
        ]
    );
    assert_eq!(out.rows[0].label, 1);
    assert_eq!(out.rows[1].label, 0);
    assert_eq!(out.rows[0].compression, None);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
}

#[test]
fn dfw_labels_by_folder_name_and_reports_non_videos() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(root, "real_test/r1.mp4");
    touch(root, "real_test/sub/r2.mp4");
    touch(root, "fake_test/f1.mp4");
    touch(root, "fake_test/notes.txt");
    touch(root, "fake_test/.hidden");
    touch(root, "fake_train/f9.mp4");
    let out = build("dfw", &BuildOptions::new(root)).unwrap();
    let got: Vec<(&str, u8, &str)> = out
        .rows
        .iter()
        .map(|r| (r.id.as_str(), r.label, r.split.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("dfw/fake_test/f1", 1, "test"),
            ("dfw/fake_train/f9", 1, "train"),
            ("dfw/real_test/r1", 0, "test"),
            ("dfw/real_test/sub/r2", 0, "test"),
        ]
    );
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert_eq!(out.problems[0].path, root.join("fake_test"));
    assert!(out.problems[0].reason.contains("notes.txt"));
}

#[test]
fn diffswap_labels_by_real_in_folder_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert!(matches!(
        build("diffswap", &BuildOptions::new(root)),
        Err(BuildError::NotFound { .. })
    ));
    touch(root, "Real_DiffSwap1/v1.mp4");
    touch(root, "Real_DiffSwap1/v2.mp4");
    let out = build("diffswap", &BuildOptions::new(root)).unwrap();
    assert_eq!(out.rows.len(), 2);
    assert!(out.rows.iter().all(|r| r.label == 0));
    assert_eq!(problems_at(&out.problems, "DiffSwap_1").len(), 1);
    touch(root, "DiffSwap_1/v1.mp4");
    let out = build("diffswap", &BuildOptions::new(root)).unwrap();
    assert_eq!(
        ids(&out.rows),
        [
            "diffswap/DiffSwap_1/v1",
            "diffswap/Real_DiffSwap1/v1",
            "diffswap/Real_DiffSwap1/v2"
        ]
    );
    assert_eq!(out.rows[0].label, 1);
    assert_eq!(out.rows[0].method.as_deref(), Some("DiffSwap_1"));
    assert!(out.problems.is_empty());
}

#[test]
fn from_dir_keeps_extra_columns_and_reports_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    touch(&root, "a.mp4");
    touch(&root, "sub/b.avi");
    std::fs::write(root.join("c.mp4"), b"abc").unwrap();
    let labels = write(
        dir.path(),
        "labels.csv",
        &format!(
            "path,label,Quality,split\na.mp4,real,hq,train\nsub/b.avi,FAKE,lq,\n{},1,hq,val\n\
             missing.mp4,0,,\n../outside.mp4,1,,\nsub/b.avi,2,,\n",
            root.join("c.mp4").display()
        ),
    );
    let opts = BuildOptions {
        hash: true,
        ..BuildOptions::new(&root).with_labels(&labels)
    };
    let out = build("from-dir", &opts).unwrap();
    let got: Vec<(&str, u8, &str, Option<&str>)> = out
        .rows
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.label,
                r.split.as_str(),
                r.extra.get("Quality").map(String::as_str),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", 0, "train", Some("hq")),
            ("c", 1, "val", Some("hq")),
            ("sub/b", 1, "test", Some("lq")),
        ]
    );
    assert!(out.rows.iter().all(|r| r.dataset == "custom"));
    assert!(out.rows.iter().all(|r| r.extra.len() == 1));
    // sha256("abc"), FIPS 180-2 appendix B.1.
    assert_eq!(
        row(&out.rows, "c").sha256.as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(out.problems.len(), 3, "{:?}", out.problems);
    assert_eq!(problems_at(&out.problems, "corpus/missing.mp4").len(), 1);
    assert_eq!(problems_at(&out.problems, "labels.csv:6").len(), 1);
    assert_eq!(problems_at(&out.problems, "labels.csv:7").len(), 1);

    write(dir.path(), "nolabel.csv", "path,kind\na.mp4,x\n");
    assert!(matches!(
        build(
            "from-dir",
            &BuildOptions::new(&root).with_labels(dir.path().join("nolabel.csv"))
        ),
        Err(BuildError::BadIndex { .. })
    ));
}

#[test]
fn relativized_manifest_round_trips_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    touch(&root, "Real_DiffSwap1/v1.mp4");
    touch(&root, "DiffSwap_1/v1.mp4");
    let mut out = build("diffswap", &BuildOptions::new(&root)).unwrap();
    let manifest_dir = dir.path().join("manifests");
    relativize(&mut out.rows, &manifest_dir).unwrap();
    assert_eq!(out.rows[0].path, "../data/DiffSwap_1/v1.mp4");
    let file = manifest_dir.join("m.jsonl");
    write_manifest(&file, &out.rows).unwrap();
    let back = read_manifest(&file).unwrap();
    assert_eq!(back, out.rows);
    for r in &back {
        assert!(r.resolved_path(&manifest_dir).is_file(), "{}", r.path);
    }
}

#[test]
fn unknown_dataset_and_missing_root_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        build("ffpp", &BuildOptions::new(dir.path())),
        Err(BuildError::UnknownDataset(_))
    ));
    assert!(matches!(
        build("dfw", &BuildOptions::new(dir.path().join("nope"))),
        Err(BuildError::NotFound { .. })
    ));
}
