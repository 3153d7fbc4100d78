//! Kernel timings with CUDA events: 3 warm-up runs, then 20 timed runs, median reported.

use half::bf16;
use kernels::cuda::{AttentionShape, CudaBackend, CudaError, Float, GemmMath, GemmShape};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::report::{rand_vec, Report};

const WARMUP: usize = 3;
const RUNS: usize = 20;

/// Median milliseconds of `f` between device events.
pub fn time_ms(
    be: &CudaBackend,
    mut f: impl FnMut() -> Result<(), CudaError>,
) -> Result<f64, CudaError> {
    for _ in 0..WARMUP {
        f()?;
    }
    let ctx = be.context();
    let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
    let ev = |what: &'static str| {
        move |source| CudaError::Driver {
            during: format!("event {what}"),
            source,
        }
    };
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = ctx.new_event(flags).map_err(ev("create"))?;
        let end = ctx.new_event(flags).map_err(ev("create"))?;
        start.record(be.stream()).map_err(ev("record"))?;
        f()?;
        end.record(be.stream()).map_err(ev("record"))?;
        times.push(start.elapsed_ms(&end).map_err(ev("elapsed"))? as f64);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[RUNS / 2])
}

fn line(what: &str, dtype: &str, ms: f64, work: f64, unit: &str) {
    println!(
        "{what:<44} {dtype:>5} {ms:>9.3} ms {:>9.1} {unit}",
        work / ms / 1e9
    );
}

fn attention<T: Float>(
    be: &CudaBackend,
    label: &str,
    shape: AttentionShape,
    r: &mut ChaCha8Rng,
) -> Result<(), CudaError> {
    let c = shape.heads * shape.head_dim;
    let tok = shape.seqs * shape.len;
    let qkv: Vec<T> = rand_vec(r, 3 * tok * c, 2.0)
        .into_iter()
        .map(T::from_f32)
        .collect();
    let dout: Vec<T> = rand_vec(r, tok * c, 1.0)
        .into_iter()
        .map(T::from_f32)
        .collect();
    let qb = be.upload(&qkv)?;
    let db = be.upload(&dout)?;
    let mut out = be.zeros::<T>(tok * c)?;
    let mut lse = be.zeros::<f32>(tok * shape.heads)?;
    let mut delta = be.zeros::<f32>(tok * shape.heads)?;
    let mut dq = be.zeros::<T>(3 * tok * c)?;
    // QKᵀ and PV: 2 GEMM-like products of seqs·heads·L²·hd MACs each.
    let flops = 4.0 * (shape.seqs * shape.heads * shape.len * shape.len * shape.head_dim) as f64;
    let ms = time_ms(be, || {
        be.attention_fwd(shape, &qb, &mut out, &mut lse, shape.scale())
    })?;
    line(&format!("{label} fwd"), T::SUFFIX, ms, flops, "TFLOP/s");
    let ms = time_ms(be, || {
        be.attention_bwd(
            shape,
            &qb,
            &out,
            &db,
            &lse,
            &mut delta,
            &mut dq,
            shape.scale(),
        )
    })?;
    line(
        &format!("{label} bwd"),
        T::SUFFIX,
        ms,
        2.0 * flops,
        "TFLOP/s",
    );
    Ok(())
}

/// The f32 `Backend` path's attention (what the model runs) at one GEMM math: one-warp kernel
/// for short sequences, batched GEMMs otherwise.
fn attention_path(
    be: &CudaBackend,
    label: &str,
    shape: AttentionShape,
    math: GemmMath,
    r: &mut ChaCha8Rng,
) -> Result<(), CudaError> {
    let c = shape.heads * shape.head_dim;
    let tok = shape.seqs * shape.len;
    let qb = be.upload(&rand_vec(r, 3 * tok * c, 1.0))?;
    let db = be.upload(&rand_vec(r, tok * c, 1.0))?;
    let mut out = be.zeros::<f32>(tok * c)?;
    let mut probs = be.zeros::<f32>(shape.seqs * shape.heads * shape.len * shape.len)?;
    let mut dq = be.zeros::<f32>(3 * tok * c)?;
    let flops = 4.0 * (shape.seqs * shape.heads * shape.len * shape.len * shape.head_dim) as f64;
    let what = format!("{label} ({:?}) fwd", shape.path());
    let ms = time_ms(be, || {
        be.attention_probs_fwd(shape, &qb, &mut out, &mut probs, math)
    })?;
    line(&what, math.name(), ms, flops, "TFLOP/s");
    let ms = time_ms(be, || {
        be.attention_probs_bwd(shape, &qb, &db, &probs, &mut dq, math)
    })?;
    line(
        &what.replace("fwd", "bwd"),
        math.name(),
        ms,
        2.0 * flops,
        "TFLOP/s",
    );
    Ok(())
}

fn layernorm<T: Float>(
    be: &CudaBackend,
    rows: usize,
    cols: usize,
    r: &mut ChaCha8Rng,
) -> Result<(), CudaError> {
    let x: Vec<T> = rand_vec(r, rows * cols, 1.0)
        .into_iter()
        .map(T::from_f32)
        .collect();
    let xb = be.upload(&x)?;
    let g = be.upload(&vec![1.0f32; cols])?;
    let b = be.zeros::<f32>(cols)?;
    let mut y = be.zeros::<T>(rows * cols)?;
    let (mut m, mut rs) = (be.zeros::<f32>(rows)?, be.zeros::<f32>(rows)?);
    let bytes = (2 * rows * cols * std::mem::size_of::<T>()) as f64;
    let ms = time_ms(be, || {
        be.layernorm_fwd(&xb, &g, &b, &mut y, &mut m, &mut rs, rows, cols, 1e-6)
    })?;
    line(
        &format!("layernorm fwd {rows}x{cols}"),
        T::SUFFIX,
        ms,
        bytes,
        "GB/s",
    );
    let mut dx = be.zeros::<T>(rows * cols)?;
    let (mut dg, mut dbt) = (be.zeros::<f32>(cols)?, be.zeros::<f32>(cols)?);
    let ms = time_ms(be, || {
        be.layernorm_bwd(&xb, &y, &g, &m, &rs, &mut dx, &mut dg, &mut dbt, rows, cols)
    })?;
    line(
        &format!("layernorm bwd {rows}x{cols}"),
        T::SUFFIX,
        ms,
        2.0 * bytes,
        "GB/s",
    );
    Ok(())
}

fn gemm<T: Float>(
    be: &CudaBackend,
    label: &str,
    m: usize,
    k: usize,
    n: usize,
    math: GemmMath,
    r: &mut ChaCha8Rng,
) -> Result<(), CudaError> {
    let a: Vec<T> = rand_vec(r, m * k, 1.0)
        .into_iter()
        .map(T::from_f32)
        .collect();
    let w: Vec<T> = rand_vec(r, n * k, 0.05)
        .into_iter()
        .map(T::from_f32)
        .collect();
    let (ab, wb) = (be.upload(&a)?, be.upload(&w)?);
    let mut y = be.zeros::<T>(m * n)?;
    let shape = GemmShape {
        m,
        n,
        k,
        trans_a: false,
        trans_b: true,
    };
    let ms = time_ms(be, || be.gemm(shape, &ab, &wb, &mut y, 1.0, 0.0, math))?;
    let dtype = match (T::SUFFIX, math) {
        ("f32", GemmMath::Tf32) => "tf32",
        (s, _) => s,
    };
    line(
        &format!("gemm {label} {m}x{k}x{n}"),
        dtype,
        ms,
        2.0 * (m * n * k) as f64,
        "TFLOP/s",
    );
    Ok(())
}

pub fn run(be: &CudaBackend, rep: &mut Report) {
    let mut r = ChaCha8Rng::seed_from_u64(11);
    let b = 32usize;
    let spatial = AttentionShape {
        seqs: b * 4,
        len: 197,
        heads: 12,
        head_dim: 64,
    };
    let temporal = AttentionShape {
        seqs: b * 196,
        len: 5,
        heads: 12,
        head_dim: 64,
    };
    let rows = b * 786;
    let results = [
        attention::<f32>(be, "attention spatial B=32", spatial, &mut r),
        attention::<bf16>(be, "attention spatial B=32", spatial, &mut r),
        attention::<f32>(be, "attention temporal B=32", temporal, &mut r),
        attention::<bf16>(be, "attention temporal B=32", temporal, &mut r),
        attention_path(
            be,
            "model attention spatial B=32",
            spatial,
            GemmMath::F32,
            &mut r,
        ),
        attention_path(
            be,
            "model attention spatial B=32",
            spatial,
            GemmMath::Tf32,
            &mut r,
        ),
        attention_path(
            be,
            "model attention spatial B=32",
            spatial,
            GemmMath::Bf16,
            &mut r,
        ),
        attention_path(
            be,
            "model attention temporal B=32",
            temporal,
            GemmMath::F32,
            &mut r,
        ),
        layernorm::<f32>(be, rows, 768, &mut r),
        layernorm::<bf16>(be, rows, 768, &mut r),
        gemm::<f32>(be, "qkv", rows, 768, 2304, GemmMath::F32, &mut r),
        gemm::<f32>(be, "qkv", rows, 768, 2304, GemmMath::Tf32, &mut r),
        gemm::<bf16>(be, "qkv", rows, 768, 2304, GemmMath::F32, &mut r),
        gemm::<bf16>(be, "mlp fc1", rows, 768, 3072, GemmMath::F32, &mut r),
    ];
    for res in results {
        if let Err(e) = res {
            rep.fail(&format!("timing: {e}"));
        }
    }
}
