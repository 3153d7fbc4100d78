//! The `tiny` model on CUDA against the golden fixtures of the official PyTorch model
//! (../shared/fixtures, carried in `.cache/gpu-bin/fixtures` by `scripts/gpu-check.sh --build`):
//! eval-mode outputs for B = 1 and 2 (`tiny_io`), and the first SAM pass of a training step —
//! losses, every parameter gradient and the gradient norm (`tiny_grads`). Same tolerances as the
//! CPU parity tests in model/tests (the fixture README's): outputs atol 1e-5 + rtol 1e-4,
//! gradients atol 1e-5·max|g| + rtol 1e-3, losses and norm rtol 1e-5.

use std::path::PathBuf;

use kernels::Backend;
use model::safetensors_io::{read_safetensors, HostTensor, StateDict};
use model::train::{loss_and_grads, sam_perturb, TrainBatch};
use model::{Mode, ModelConfig, Network};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::report::Report;

/// `$FAKESTORMER_FIXTURES`, else `fixtures/` beside the binary.
fn dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FAKESTORMER_FIXTURES") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join("fixtures"))
}

fn f32s(sd: &StateDict, key: &str) -> Result<Vec<f32>, String> {
    match sd.get(key) {
        Some(HostTensor::F32 { data, .. }) => Ok(data.clone()),
        Some(HostTensor::I64 { data, .. }) => Ok(data.iter().map(|&v| v as f32).collect()),
        None => Err(format!("fixture key {key} missing")),
    }
}

/// Max |got − want| and whether every element is within atol + rtol·|want|.
fn within(got: &[f32], want: &[f32], atol: f64, rtol: f64) -> (f64, bool) {
    let mut max = 0.0f64;
    let mut ok = got.len() == want.len();
    for (&g, &w) in got.iter().zip(want) {
        let d = (g as f64 - w as f64).abs();
        if d.is_nan() || d > atol + rtol * (w as f64).abs() {
            ok = false;
        }
        if d.is_nan() || d > max {
            max = d;
        }
    }
    (max, ok)
}

fn line(rep: &mut Report, what: &str, (max, ok): (f64, bool), tol: &str) {
    rep.checks += 1;
    if ok {
        println!("{what:<44} {:>5} {max:>11.3e} {tol:>8}  ok", "f32");
    } else {
        rep.fail(&format!("{what}: max abs error {max:.3e} exceeds {tol}"));
    }
}

fn network<B: Backend>(be: &B, weights: &StateDict) -> Result<Network<B>, String> {
    let mut n = Network::new(be, ModelConfig::tiny(), Mode::Compat).map_err(|e| e.to_string())?;
    n.load_state_dict(be, weights).map_err(|e| e.to_string())?;
    Ok(n)
}

/// Runs the checks on `be` (the CUDA backend; `gpu_check --cpu-fixtures` runs them on the CPU
/// reference to check the check itself).
pub fn run<B: Backend>(be: &B, rep: &mut Report, take_error: impl Fn() -> Option<String>) {
    if let Err(e) = checks(be, rep, take_error) {
        rep.fail(&format!("fixture parity: {e}"));
    }
}

fn checks<B: Backend>(
    be: &B,
    rep: &mut Report,
    take_error: impl Fn() -> Option<String>,
) -> Result<(), String> {
    let dir = dir().ok_or("cannot locate the fixtures directory")?;
    let load = |name: &str| {
        read_safetensors(&dir.join(name)).map_err(|e| {
            format!("{e} (run scripts/gpu-check.sh --build with ../shared/fixtures present, or set FAKESTORMER_FIXTURES)")
        })
    };
    let weights = load("tiny_weights.safetensors")?;

    let io = load("tiny_io.safetensors")?;
    let mut net = network(be, &weights)?;
    for (key, batch) in [("b1", 1usize), ("b2", 2)] {
        let x = Backend::upload(be, &f32s(&io, &format!("x_{key}"))?);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let tr = net
            .forward(be, &x, batch, false, &mut rng)
            .map_err(|e| e.to_string())?;
        for (name, buf) in [("cls", &tr.cls), ("temp_loc", &tr.temp_loc), ("hm", &tr.hm)] {
            let got = Backend::download(be, buf);
            let want = f32s(&io, &format!("{key}.{name}"))?;
            line(
                rep,
                &format!("tiny_io {key} eval forward: {name}"),
                within(&got, &want, 1e-5, 1e-4),
                "1e-5+1e-4",
            );
        }
    }

    let fx = load("tiny_grads.safetensors")?;
    let mut net = network(be, &weights)?;
    // The fixture was made with drop-path and the temp_loc dropout off.
    net.reg.drop_path_rate = 0.0;
    net.reg.head_dropout = 0.0;
    let batch = TrainBatch {
        x: f32s(&fx, "x")?,
        batch: 2,
        labels: f32s(&fx, "labels")?,
        hm_target: f32s(&fx, "hm_target")?,
        mask: f32s(&fx, "mask_out_p")?,
        temp_loc_target: f32s(&fx, "temp_loc_target")?
            .iter()
            .map(|&v| v as f64)
            .collect(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let has = net.has_grad(false);
    let p1 = loss_and_grads(be, &mut net, &batch, &mut rng, false).map_err(|e| e.to_string())?;
    let want_loss = f32s(&fx, "pass1.loss")?[0] as f64;
    let rel = (p1.loss.total - want_loss).abs() / want_loss.abs();
    line(
        rep,
        "tiny_grads pass 1: loss (relative)",
        (rel, rel <= 1e-5),
        "1e-5",
    );
    let mut grads = Vec::new();
    for (i, p) in net.inv.params.iter().enumerate() {
        if has[i] {
            grads.push((
                p.name.clone(),
                Backend::download(be, &p1.grads[i]),
                f32s(&fx, &format!("grad.{}", p.name))?,
            ));
        }
    }
    let gmax = grads
        .iter()
        .flat_map(|(_, _, w)| w.iter())
        .fold(0.0f32, |a, v| a.max(v.abs())) as f64;
    let mut worst = (0.0f64, true);
    for (name, got, want) in &grads {
        let (m, ok) = within(got, want, 1e-5 * gmax, 1e-3);
        if !ok {
            println!("    gradient {name}: max abs error {m:.3e}");
        }
        worst = (worst.0.max(m), worst.1 && ok);
    }
    line(
        rep,
        &format!("tiny_grads pass 1: {} parameter gradients", grads.len()),
        worst,
        "1e-5·max|g|+1e-3",
    );
    let (_, norm) = sam_perturb(be, &mut net, &p1.grads, &has, 0.05);
    let rel = (norm - 153.04991149902344).abs() / 153.04991149902344;
    line(
        rep,
        "tiny_grads: gradient norm (relative)",
        (rel, rel <= 1e-5),
        "1e-5",
    );
    if let Some(e) = take_error() {
        return Err(format!("backend error: {e}"));
    }
    Ok(())
}
