//! `fakestormer spec check` on broken specs: each problem is reported once, at the right
//! file:line:column, with a hint.

use std::path::Path;
use std::process::Command;

fn check(dir: &Path, text: &str) -> (i32, String) {
    let spec = dir.join("spec.toml");
    std::fs::write(&spec, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fakestormer"))
        .args(["spec", "check"])
        .arg(&spec)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const GOOD: &str = r#"name = "t"
seed = 1

[source]
manifest = "m.jsonl"

[[stages]]
kind = "decode"
workers = 2
params = { select = "uniform", frames = 32 }

[sink]
kind = "frame-stats"
"#;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.jsonl"), "").unwrap();
    dir
}

/// Asserts exit code 1 and that the output holds `spec.toml:LINE:COL: error: ...MSG` and the hint.
fn assert_diag(dir: &Path, text: &str, line_col: &str, msg: &str, hint: &str) {
    let (code, out) = check(dir, text);
    assert_eq!(code, 1, "should fail:\n{out}");
    let want = format!("spec.toml:{line_col}: error: ");
    let line = out
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no diagnostic at {line_col} in:\n{out}"));
    assert!(line.contains(msg), "message `{msg}` not in `{line}`");
    if !hint.is_empty() {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with("hint:") && l.contains(hint)),
            "hint `{hint}` not in:\n{out}"
        );
    }
}

#[test]
fn good_spec_passes() {
    let dir = setup();
    let (code, out) = check(dir.path(), GOOD);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (spec hash "), "{out}");
}

#[test]
fn toml_syntax_error() {
    let dir = setup();
    let text = GOOD.replace("seed = 1", "seed = = 1");
    assert_diag(
        dir.path(),
        &text,
        "2:8",
        "TOML syntax",
        "see https://toml.io",
    );
}

#[test]
fn unknown_top_level_key_suggests_the_right_one() {
    let dir = setup();
    let text = GOOD.replace("seed = 1", "sede = 1");
    assert_diag(
        dir.path(),
        &text,
        "2:1",
        "unknown top-level key `sede`",
        "did you mean `seed`?",
    );
}

#[test]
fn unknown_stage_parameter_suggests_the_right_one() {
    let dir = setup();
    let text = GOOD.replace("frames = 32", "framez = 32");
    assert_diag(
        dir.path(),
        &text,
        "10:32",
        "unknown key `framez`",
        "did you mean `frames`?",
    );
}

#[test]
fn wrong_type() {
    let dir = setup();
    let text = GOOD.replace("workers = 2", "workers = \"two\"");
    assert_diag(
        dir.path(),
        &text,
        "9:11",
        "invalid type: string \"two\"",
        "check the value's type",
    );
}

#[test]
fn out_of_range_worker_count() {
    let dir = setup();
    let text = GOOD.replace("workers = 2", "workers = 0");
    assert_diag(
        dir.path(),
        &text,
        "9:1",
        "`workers` = 0 is out of range 1..=256",
        "use at least one worker",
    );
}

#[test]
fn out_of_range_stage_parameter() {
    let dir = setup();
    let text = GOOD.replace("frames = 32", "frames = 0");
    assert_diag(
        dir.path(),
        &text,
        "10:32",
        "`frames`: 0 is out of range 1..=100000",
        "",
    );
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let dir = setup();
    let text = GOOD.replace("select = \"uniform\"", "select = \"random\"");
    assert_diag(
        dir.path(),
        &text,
        "10:12",
        "unknown selection `random`",
        "one of: first, uniform, every, all",
    );
}

#[test]
fn missing_manifest_file() {
    let dir = setup();
    let text = GOOD.replace("m.jsonl", "missing.jsonl");
    assert_diag(
        dir.path(),
        &text,
        "5:1",
        "manifest file not found",
        "relative to the spec file",
    );
}

#[test]
fn unknown_stage_kind() {
    let dir = setup();
    let text = GOOD.replace("kind = \"decode\"", "kind = \"decod\"");
    assert_diag(
        dir.path(),
        &text,
        "8:1",
        "unknown stage kind `decod`",
        "did you mean `decode`?",
    );
}

#[test]
fn wiring_error_names_both_ends() {
    let dir = setup();
    // frame-stats takes frames, but the source gives manifest rows: decode is missing.
    let text = r#"[source]
manifest = "m.jsonl"

[sink]
kind = "frame-stats"
"#;
    assert_diag(
        dir.path(),
        text,
        "5:1",
        "wiring: `frame-stats` takes `DecodedFrame` but the source produces `ManifestRow`",
        "insert `decode` before it",
    );
}

#[test]
fn sink_used_as_a_stage() {
    let dir = setup();
    let text = GOOD.replace(
        "kind = \"decode\"\nworkers = 2\nparams = { select = \"uniform\", frames = 32 }",
        "kind = \"frame-stats\"",
    );
    assert_diag(
        dir.path(),
        &text,
        "8:1",
        "`frame-stats` is a sink and can only stand in `[sink]`",
        "move it",
    );
}

#[test]
fn missing_sink() {
    let dir = setup();
    let text = GOOD.replace("[sink]\nkind = \"frame-stats\"\n", "");
    assert_diag(
        dir.path(),
        &text,
        "1:1",
        "missing required table `[sink]`",
        "add `[sink]`",
    );
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let dir = setup();
    let text = GOOD
        .replace("seed = 1", "sede = 1")
        .replace("frames = 32", "framez = 32");
    let (code, out) = check(dir.path(), &text);
    assert_eq!(code, 1);
    assert!(out.contains("2 problem(s)"), "{out}");
}

#[test]
fn spec_show_prints_defaults_and_a_stable_hash() {
    let dir = setup();
    std::fs::write(dir.path().join("spec.toml"), GOOD).unwrap();
    let show = |p: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_fakestormer"))
            .args(["spec", "show"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let a = show(&dir.path().join("spec.toml"));
    assert!(a.contains("threads = 1"), "defaults filled:\n{a}");
    assert!(a.contains("capacity = 16"), "defaults filled:\n{a}");
    // Same meaning, different text (reordered, defaults written out) -> same hash.
    let reordered = GOOD.replace("workers = 2\n", "workers = 2\ncapacity = 16\n");
    std::fs::write(dir.path().join("b.toml"), reordered).unwrap();
    let b = show(&dir.path().join("b.toml"));
    assert_eq!(
        a.lines().next(),
        b.lines().next(),
        "hash differs for the same resolved spec"
    );
}
