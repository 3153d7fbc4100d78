//! The staged batch upload: bit-exact through both slots and slot reuse, and overlapped with
//! compute (a B = 32 batch next to a stretch of GEMMs, against the synchronous upload).

use kernels::cuda::CudaBackend;
use kernels::Backend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::report::{rand_vec, Report};

/// Queues about `reps` × 1.8 ms of f32 GEMMs (qkv-sized Linear forwards).
fn queue_work(
    be: &CudaBackend,
    x: &kernels::cuda::CudaBuf,
    w: &kernels::cuda::CudaBuf,
    y: &mut kernels::cuda::CudaBuf,
    reps: usize,
) {
    for _ in 0..reps {
        be.linear_fwd(x, w, None, y, 25152, 768, 2304);
    }
}

pub fn run(be: &CudaBackend, rep: &mut Report) {
    let mut r = ChaCha8Rng::seed_from_u64(23);
    let n = 32 * 3 * 4 * 224 * 224;
    let batches: Vec<Vec<f32>> = (0..3).map(|_| rand_vec(&mut r, n, 1.0)).collect();
    // Two in flight at once (both slots), then a third into a reused slot.
    let a = be.start_upload(batches[0].clone());
    let b = be.start_upload(batches[1].clone());
    let (da, db) = (be.finish_upload(a), be.finish_upload(b));
    let c = be.start_upload(batches[2].clone());
    let dc = be.finish_upload(c);
    for (i, d) in [da, db, dc].iter().enumerate() {
        let got = Backend::download(be, d);
        let exact = got.len() == n
            && got
                .iter()
                .zip(&batches[i])
                .all(|(x, y)| x.to_bits() == y.to_bits());
        rep.checks += 1;
        if exact {
            println!("staged upload {i} of {n} f32: bit-identical  ok");
        } else {
            rep.fail(&format!("staged upload {i}: data differs"));
        }
    }
    if let Some(e) = be.take_error() {
        rep.fail(&format!("staged upload: {e}"));
        return;
    }
    let x = Backend::upload(be, &rand_vec(&mut r, 25152 * 768, 1.0));
    let w = Backend::upload(be, &rand_vec(&mut r, 2304 * 768, 0.05));
    let mut y = Backend::zeros(be, 25152 * 2304);
    let reps = 30;
    let time = |f: &mut dyn FnMut()| {
        let _ = be.synchronize();
        let t = std::time::Instant::now();
        f();
        let _ = be.synchronize();
        t.elapsed().as_secs_f64() * 1e3
    };
    let mut best = [f64::MAX; 4];
    for _ in 0..3 {
        let data = batches[0].clone();
        best[0] = best[0].min(time(&mut || queue_work(be, &x, &w, &mut y, reps)));
        best[1] = best[1].min(time(&mut || drop(Backend::upload(be, &data))));
        best[2] = best[2].min(time(&mut || {
            queue_work(be, &x, &w, &mut y, reps);
            drop(Backend::upload(be, &data));
        }));
        let staged = batches[1].clone();
        let mut staged = Some(staged);
        best[3] = best[3].min(time(&mut || {
            let up = be.start_upload(staged.take().unwrap_or_default());
            queue_work(be, &x, &w, &mut y, reps);
            drop(be.finish_upload(up));
        }));
    }
    println!(
        "B=32 batch ({:.0} MB): GEMMs alone {:.1} ms, upload alone {:.1} ms, GEMMs then upload {:.1} ms, staged upload beside the GEMMs {:.1} ms",
        (n * 4) as f64 / 1e6,
        best[0],
        best[1],
        best[2],
        best[3]
    );
    if let Some(e) = be.take_error() {
        rep.fail(&format!("staged upload timing: {e}"));
    }
}
