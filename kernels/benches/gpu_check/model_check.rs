//! Full-network checks through the `model` crate's generic network: `tiny` forward/backward on
//! CUDA against the CPU backend (same weights, same input, same drop-path/dropout draws), and the
//! `base` SAM training step throughput on CUDA.

use kernels::cuda::{CudaBackend, GemmMath};
use kernels::{AdamParams, Backend, CpuBackend};
use model::params::Inventory;
use model::{Mode, ModelConfig, Network};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::report::{rand_vec, Report, TOL_F32};

/// Deterministic, well-conditioned random weights (not the official init: parity only needs both
/// backends to see the same values).
fn host_weights(inv: &Inventory, seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let params = inv
        .params
        .iter()
        .map(|p| {
            let n = p.numel();
            if p.name.contains("token")
                || p.name.ends_with("pos_embed")
                || p.name.ends_with("time_embed")
            {
                rand_vec(&mut r, n, 0.02)
            } else if p.shape.len() >= 2 {
                let fan_in: usize = p.shape[1..].iter().product();
                rand_vec(&mut r, n, 1.0 / (fan_in as f32).sqrt())
            } else if p.name.ends_with("weight") {
                (0..n).map(|_| 1.0 + r.gen_range(-0.1..0.1)).collect()
            } else {
                rand_vec(&mut r, n, 0.1)
            }
        })
        .collect();
    let buffers = inv
        .buffers
        .iter()
        .map(|b| {
            let n = b.numel();
            if b.name.ends_with("running_var") {
                (0..n).map(|_| 1.0 + r.gen_range(0.0..0.5)).collect()
            } else {
                rand_vec(&mut r, n, 0.1)
            }
        })
        .collect();
    (params, buffers)
}

fn network<B: Backend>(
    be: &B,
    cfg: ModelConfig,
    mode: Mode,
    seed: u64,
) -> Result<Network<B>, String> {
    let mut net = Network::new(be, cfg, mode).map_err(|e| e.to_string())?;
    let (params, buffers) = host_weights(&net.inv, seed);
    net.weights.params = params.iter().map(|p| be.upload(p)).collect();
    net.weights.buffers = buffers.iter().map(|b| be.upload(b)).collect();
    Ok(net)
}

/// Forward + backward on one backend; returns [cls, temp_loc, hm, running buffers, all grads].
fn pass<B: Backend>(
    be: &B,
    cfg: ModelConfig,
    mode: Mode,
    batch: usize,
    x: &[f32],
    dout: &[Vec<f32>; 3],
) -> Result<Vec<(String, Vec<f32>)>, String> {
    let mut net = network(be, cfg, mode, 21)?;
    let xb = be.upload(x);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let tr = net
        .forward(be, &xb, batch, true, &mut rng)
        .map_err(|e| e.to_string())?;
    let mut out = vec![
        ("cls".to_string(), be.download(&tr.cls)),
        ("temp_loc".to_string(), be.download(&tr.temp_loc)),
        ("hm".to_string(), be.download(&tr.hm)),
        (
            "BN running stats".to_string(),
            net.weights
                .buffers
                .iter()
                .flat_map(|b| be.download(b))
                .collect(),
        ),
    ];
    let mut grads: Vec<B::Buf> = net.inv.params.iter().map(|p| be.zeros(p.numel())).collect();
    let (dc, dt, dh) = (
        be.upload(&dout[0]),
        be.upload(&dout[1]),
        be.upload(&dout[2]),
    );
    net.backward(be, &tr, &dc, &dt, &dh, &mut grads, false)
        .map_err(|e| e.to_string())?;
    for (p, g) in net.inv.params.iter().zip(&grads) {
        out.push((format!("grad {}", p.name), be.download(g)));
    }
    Ok(out)
}

pub fn tiny_parity(gpu: &CudaBackend, rep: &mut Report) {
    let cfg = ModelConfig::tiny();
    let batch = 2;
    let mut r = ChaCha8Rng::seed_from_u64(99);
    let x = rand_vec(
        &mut r,
        batch * 3 * cfg.num_frames * cfg.img_size * cfg.img_size,
        2.0,
    );
    let g = cfg.grid();
    let dout = [
        rand_vec(&mut r, batch, 1.0),
        rand_vec(&mut r, batch * cfg.num_frames, 1.0),
        rand_vec(&mut r, batch * cfg.num_frames * g * g, 1.0),
    ];
    for mode in [Mode::Compat, Mode::Clean] {
        let cpu = pass(&CpuBackend, cfg, mode, batch, &x, &dout);
        let cuda = pass(gpu, cfg, mode, batch, &x, &dout);
        let (cpu, cuda) = match (cpu, cuda) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                rep.fail(&format!(
                    "tiny {mode:?}: cpu {:?} / cuda {:?}",
                    a.err(),
                    b.err()
                ));
                continue;
            }
        };
        if let Some(e) = gpu.take_error() {
            rep.fail(&format!("tiny {mode:?}: CUDA error {e}"));
            continue;
        }
        let (mut all_c, mut all_g) = (Vec::new(), Vec::new());
        let mut worst = (0.0f64, String::new());
        for ((name, c), (_, gg)) in cpu.iter().zip(&cuda) {
            if name.starts_with("grad ") {
                let e = crate::report::rel_err(gg, c);
                if e > worst.0 && c.iter().any(|v| *v != 0.0) {
                    worst = (e, name.clone());
                }
                all_c.extend_from_slice(c);
                all_g.extend_from_slice(gg);
            } else {
                rep.check(&format!("tiny {mode:?} fwd: {name}"), "f32", gg, c, TOL_F32);
            }
        }
        rep.check(
            &format!("tiny {mode:?} bwd: all parameter grads"),
            "f32",
            &all_g,
            &all_c,
            TOL_F32,
        );
        println!("    (worst single tensor: {} rel {:.3e})", worst.1, worst.0);
    }
}

/// Multiply-accumulates of one forward pass of one clip (spec §2.5: 106.6 GMACs for `base`).
pub fn forward_macs(cfg: &ModelConfig) -> f64 {
    let (c, t, n, p) = (
        cfg.embed_dim as f64,
        cfg.num_frames as f64,
        cfg.patches() as f64,
        cfg.patch_size as f64,
    );
    let (hid, l, hmw, shw) = (
        cfg.hidden() as f64,
        cfg.tokens() as f64,
        cfg.hm_width() as f64,
        cfg.spatial_head_width as f64,
    );
    let rows_t = n * (t + 1.0);
    let rows_s = t * (n + 1.0);
    let block = rows_t * 5.0 * c * c
        + n * (t + 1.0).powi(2) * c * 2.0
        + rows_s * 4.0 * c * c
        + t * (n + 1.0).powi(2) * c * 2.0
        + l * 2.0 * c * hid;
    let patch = t * n * 3.0 * p * p * c;
    let heads =
        t * n * 3.0 * c * c + t * n * 3.0 * c * hmw + t * n * 3.0 * hmw + t * c * shw + c * 4.0 + c;
    cfg.depth as f64 * block + patch + heads
}

/// Dense peak FLOP/s for a device name and arithmetic (SXM numbers for H100/H200).
fn peak_flops(device: &str, math: &str) -> Option<(f64, &'static str)> {
    let pcie = device.contains("PCIe");
    if device.contains("H100") || device.contains("H200") {
        return Some(match (math, pcie) {
            ("f32", false) => (66.9e12, "H100/H200 SXM FP32 67 TFLOP/s"),
            ("tf32", false) => (494.7e12, "H100/H200 SXM TF32 dense 495 TFLOP/s"),
            ("bf16", false) => (989.4e12, "H100/H200 SXM BF16 dense 989 TFLOP/s"),
            ("f32", true) => (51.2e12, "H100 PCIe FP32 51 TFLOP/s"),
            ("tf32", true) => (378.0e12, "H100 PCIe TF32 dense 378 TFLOP/s"),
            (_, true) => (756.0e12, "H100 PCIe BF16 dense 756 TFLOP/s"),
            _ => return None,
        });
    }
    None
}

/// One SAM step (spec §6): pass 1 fwd/bwd, perturb w += ρ·g/‖g‖, pass 2 fwd/bwd, restore, Adam.
/// The loss gradient w.r.t. the outputs is a fixed device buffer (the host loss on B·789 values
/// is not part of the device work being measured).
struct SamState {
    g1: Vec<kernels::cuda::CudaBuf>,
    g2: Vec<kernels::cuda::CudaBuf>,
    m: Vec<kernels::cuda::CudaBuf>,
    v: Vec<kernels::cuda::CudaBuf>,
    step: u64,
}

fn sam_step(
    be: &CudaBackend,
    net: &mut Network<CudaBackend>,
    st: &mut SamState,
    x: &kernels::cuda::CudaBuf,
    dout: &[kernels::cuda::CudaBuf; 3],
    batch: usize,
    rng: &mut ChaCha8Rng,
) -> Result<usize, String> {
    let err = |e: model::ModelError| e.to_string();
    for g in st.g1.iter_mut().chain(st.g2.iter_mut()) {
        be.fill_zero(g);
    }
    let tr = net.forward(be, x, batch, true, rng).map_err(err)?;
    net.backward(be, &tr, &dout[0], &dout[1], &dout[2], &mut st.g1, false)
        .map_err(err)?;
    let used = be
        .context()
        .mem_get_info()
        .map(|(free, total)| total - free)
        .unwrap_or(0);
    drop(tr);
    let ss: f64 = st.g1.iter().map(|g| be.sum_squares(g, be.len(g))).sum();
    let scale = (0.05 / (ss.sqrt() + 1e-12)) as f32;
    for (w, g) in net.weights.params.iter_mut().zip(&st.g1) {
        let n = be.len(g);
        be.axpy(scale, g, w, n);
    }
    let tr = net.forward(be, x, batch, true, rng).map_err(err)?;
    net.backward(be, &tr, &dout[0], &dout[1], &dout[2], &mut st.g2, false)
        .map_err(err)?;
    drop(tr);
    st.step += 1;
    let h = AdamParams {
        lr: 5e-5,
        beta1: 0.9,
        beta2: 0.995,
        eps: 1e-8,
        weight_decay: 1e-4,
        step: st.step,
    };
    for (i, w) in net.weights.params.iter_mut().enumerate() {
        let n = be.len(w);
        be.axpy(-scale, &st.g1[i], w, n);
        Backend::adam_step(be, w, &st.g2[i], &mut st.m[i], &mut st.v[i], n, h);
    }
    be.synchronize().map_err(|e| e.to_string())?;
    if let Some(e) = be.take_error() {
        return Err(e.to_string());
    }
    Ok(used)
}

pub fn base_step(be: &CudaBackend, device: &str, rep: &mut Report) {
    let cfg = ModelConfig::base();
    let step_flops = 6.0 * 2.0 * forward_macs(&cfg);
    println!(
        "forward {:.1} GMACs/clip; SAM step = 2 x (fwd + bwd) = {:.2} TFLOP/clip",
        forward_macs(&cfg) / 1e9,
        step_flops / 1e12
    );
    println!(
        "{:<6} {:>4} {:>10} {:>10} {:>8} {:>12}  peak assumed",
        "math", "B", "step ms", "clips/s", "MFU", "mem GiB"
    );
    for math in [GemmMath::F32, GemmMath::Tf32, GemmMath::Bf16] {
        // The Backend path keeps one GEMM setting per backend; a second backend would double the
        // context, so switch the setting on a fresh one per run.
        let mut local = match CudaBackend::new(0) {
            Ok(b) => b,
            Err(e) => {
                rep.fail(&format!("base step: {e}"));
                return;
            }
        };
        local.set_gemm_math(math);
        let label = math.name();
        for batch in [8usize, 32] {
            match run_base(&local, cfg, batch, batch == 32) {
                Ok((ms, mem)) => {
                    let clips = batch as f64 / (ms / 1e3);
                    let (mfu, peak) = match peak_flops(device, label) {
                        Some((p, what)) => {
                            (format!("{:.1}%", 100.0 * clips * step_flops / p), what)
                        }
                        None => ("n/a".into(), "unknown device"),
                    };
                    println!(
                        "{label:<6} {batch:>4} {ms:>10.1} {clips:>10.2} {mfu:>8} {:>12.1}  {peak}",
                        mem as f64 / (1u64 << 30) as f64
                    );
                }
                Err(e) => rep.fail(&format!("base step {label} B={batch}: {e}")),
            }
        }
    }
    println!("(bf16 = Linear/patch GEMMs on bf16-rounded operands with f32 accumulation, as under PyTorch's bf16 autocast; attention products in TF32; activations stored in f32. f32 = IEEE f32 products.)");
    let _ = be;
}

/// Returns freed pool memory to the driver so the next measurement starts from what is live.
fn trim_pool(be: &CudaBackend) -> usize {
    use cudarc::driver::sys;
    let _ = be.synchronize();
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: driver calls on the backend's live context with a valid out-pointer.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, be.context().cu_device())
            == sys::CUresult::CUDA_SUCCESS
        {
            let _ = sys::cuMemPoolTrimTo(pool, 0);
        }
    }
    be.context()
        .mem_get_info()
        .map(|(free, total)| total - free)
        .unwrap_or(0)
}

fn run_base(
    be: &CudaBackend,
    cfg: ModelConfig,
    batch: usize,
    profile: bool,
) -> Result<(f64, usize), String> {
    let before = trim_pool(be);
    let mut net = network(be, cfg, Mode::Compat, 3)?;
    let mut r = ChaCha8Rng::seed_from_u64(17);
    let x = Backend::upload(
        be,
        &rand_vec(
            &mut r,
            batch * 3 * cfg.num_frames * cfg.img_size * cfg.img_size,
            2.0,
        ),
    );
    let g = cfg.grid();
    let dout = [
        Backend::upload(be, &rand_vec(&mut r, batch, 1.0 / batch as f32)),
        Backend::upload(
            be,
            &rand_vec(&mut r, batch * cfg.num_frames, 1.0 / batch as f32),
        ),
        Backend::upload(be, &rand_vec(&mut r, batch * cfg.num_frames * g * g, 1e-3)),
    ];
    let zeros = |be: &CudaBackend| -> Vec<kernels::cuda::CudaBuf> {
        net.inv
            .params
            .iter()
            .map(|p| Backend::zeros(be, p.numel()))
            .collect()
    };
    let mut st = SamState {
        g1: zeros(be),
        g2: zeros(be),
        m: zeros(be),
        v: zeros(be),
        step: 0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    sam_step(be, &mut net, &mut st, &x, &dout, batch, &mut rng)?; // warm-up (module loads, pools)
    let mut times = Vec::new();
    let mut mem = 0;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        mem = mem.max(sam_step(be, &mut net, &mut st, &x, &dout, batch, &mut rng)?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    if profile {
        be.profile_start().map_err(|e| e.to_string())?;
        sam_step(be, &mut net, &mut st, &x, &dout, batch, &mut rng)?;
        let ops = match be.profile_finish() {
            Ok(ops) => ops,
            Err(e) => {
                println!("    (profile unavailable: {e})");
                Vec::new()
            }
        };
        let total: f64 = ops.iter().map(|t| t.ms).sum();
        println!(
            "    profile of one step (B={batch}, {}): {total:.1} ms attributed; top ops:",
            be.gemm_math().name()
        );
        for t in ops.iter().take(14) {
            println!(
                "      {:<22} {:>5} calls {:>9.2} ms {:>5.1}%",
                t.op,
                t.calls,
                t.ms,
                100.0 * t.ms / total
            );
        }
    }
    Ok((times[1], mem.saturating_sub(before)))
}
