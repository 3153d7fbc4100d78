//! [`crate::Backend`] for [`CudaBackend`]: the f32 model path on the GPU. The trait's methods
//! cannot return errors, so a failure is kept as a sticky error ([`CudaBackend::take_error`]) and
//! never panics; the caller checks it once per step.

use cudarc::driver::{CudaSlice, DevicePtrMut, PushKernelArg};

use super::device::CudaBackend;
use super::dtype::Float;
use super::error::CudaError;
use super::gemm::{GemmMath, GemmShape};
use super::ops::{cfg, int, launched, long, need, AttentionShape};
use super::source::Family;
use super::upload::Stager;
use crate::backend::{
    AdamParams, AttnDims, Backend, Conv3dDims, EmbedDims, PendingUpload, TempTokenSource,
};

/// An f32 device buffer; `None` only when its allocation failed (that error is recorded).
#[derive(Debug)]
pub struct CudaBuf(Option<CudaSlice<f32>>);

impl CudaBuf {
    /// The device slice, if allocated.
    pub fn slice(&self) -> Option<&CudaSlice<f32>> {
        self.0.as_ref()
    }

    /// The device slice for writing (collectives that update a buffer in place).
    pub fn slice_mut(&mut self) -> Option<&mut CudaSlice<f32>> {
        self.0.as_mut()
    }
}

fn get(b: &CudaBuf) -> Result<&CudaSlice<f32>, CudaError> {
    b.0.as_ref()
        .ok_or_else(|| CudaError::shape("buffer", "unavailable: its allocation failed earlier"))
}

fn get_mut(b: &mut CudaBuf) -> Result<&mut CudaSlice<f32>, CudaError> {
    b.0.as_mut()
        .ok_or_else(|| CudaError::shape("buffer", "unavailable: its allocation failed earlier"))
}

/// Launches `$name` of `$fam` with a 1-D grid-stride configuration over `$n` threads.
macro_rules! launch_flat {
    ($self:ident, $fam:expr, $name:expr, $n:expr; $($arg:expr),* $(,)?) => {{
        let name: &str = $name;
        let f = $self.function($fam, name)?;
        let mut b = $self.stream.launch_builder(&f);
        $( b.arg($arg); )*
        let grid = $self.grid_for($n);
        // SAFETY: the calling trait method checked every buffer against the extents it passes.
        launched(name, unsafe { b.launch(cfg((grid, 1, 1), (256, 1, 1))) }.map(drop))
    }};
}

/// Rows per block of the two-stage column reductions.
const ROWS_PER_BLOCK: usize = 256;

fn dims(op: &'static str, d: EmbedDims) -> Result<[i32; 4], CudaError> {
    Ok([
        int(op, "batch", d.batch)?,
        int(op, "frames", d.frames)?,
        int(op, "patches", d.patches)?,
        int(op, "dim", d.dim)?,
    ])
}

impl CudaBackend {
    fn try_zeros(&self, len: usize) -> CudaBuf {
        match self.zeros::<f32>(len) {
            Ok(s) => CudaBuf(Some(s)),
            Err(e) => {
                self.record(Err(e));
                CudaBuf(None)
            }
        }
    }

    fn attn_shape(op: &'static str, d: AttnDims) -> Result<AttentionShape, CudaError> {
        if d.heads == 0 {
            return Err(CudaError::shape(op, "zero heads"));
        }
        Ok(AttentionShape {
            seqs: d.seqs,
            len: d.len,
            heads: d.heads,
            head_dim: d.head_dim,
        })
    }

    fn conv_cols(&self, x: &CudaSlice<f32>, d: Conv3dDims) -> Result<CudaSlice<f32>, CudaError> {
        const OP: &str = "conv3d_im2col";
        let rows = d.batch * d.frames * d.cells;
        need(OP, "x", x.len(), rows * d.cin)?;
        let mut cols = self.zeros::<f32>(rows * 3 * d.cin)?;
        let (b, t, s, c) = (
            int(OP, "batch", d.batch)?,
            int(OP, "frames", d.frames)?,
            int(OP, "cells", d.cells)?,
            int(OP, "cin", d.cin)?,
        );
        launch_flat!(self, Family::Conv3d, "conv3d_im2col_f32", rows * 3 * d.cin; x, &mut cols, &b, &t, &s, &c)?;
        Ok(cols)
    }
}

impl CudaBackend {
    /// dx = dy·w (overwrites) and dw += dyᵀ·x, on f32 operands or their bf16 copies.
    #[allow(clippy::too_many_arguments)]
    fn linear_bwd_gemms<T: Float>(
        &self,
        dy: &CudaSlice<T>,
        x: Option<&CudaSlice<T>>,
        w: Option<&CudaSlice<T>>,
        dx: Option<&mut CudaSlice<f32>>,
        dw: Option<&mut CudaSlice<f32>>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), CudaError> {
        let missing = || CudaError::shape("linear_bwd", "operand not prepared");
        if let Some(dx) = dx {
            let shape = GemmShape {
                m,
                n: k,
                k: n,
                trans_a: false,
                trans_b: false,
            };
            self.gemm(shape, dy, w.ok_or_else(missing)?, dx, 1.0, 0.0, self.math)?;
        }
        if let Some(dw) = dw {
            let shape = GemmShape {
                m: n,
                n: k,
                k: m,
                trans_a: true,
                trans_b: false,
            };
            self.gemm(shape, dy, x.ok_or_else(missing)?, dw, 1.0, 1.0, self.math)?;
        }
        Ok(())
    }
}

impl Backend for CudaBackend {
    type Buf = CudaBuf;

    fn zeros(&self, len: usize) -> CudaBuf {
        let buf = self.try_zeros(len);
        self.record_op("zeros", Ok(()));
        buf
    }

    fn alloc(&self, len: usize) -> CudaBuf {
        match self.scratch::<f32>(len) {
            Ok(s) => {
                self.record_op("alloc", Ok(()));
                CudaBuf(Some(s))
            }
            Err(e) => {
                self.record_op("alloc", Err(e));
                CudaBuf(None)
            }
        }
    }

    fn upload(&self, data: &[f32]) -> CudaBuf {
        match CudaBackend::upload(self, data) {
            Ok(s) => {
                self.record_op("upload", Ok(()));
                CudaBuf(Some(s))
            }
            Err(e) => {
                self.record_op("upload", Err(e));
                CudaBuf(None)
            }
        }
    }

    fn start_upload(&self, data: Vec<f32>) -> PendingUpload<CudaBuf> {
        let mut stager = self.stager.lock().unwrap_or_else(|p| p.into_inner());
        if stager.is_none() {
            match Stager::new(self.ctx.clone()) {
                Ok(s) => *stager = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no copy stream; uploading synchronously");
                    return PendingUpload::Ready(Backend::upload(self, &data));
                }
            }
        }
        let Some(s) = stager.as_mut() else {
            return PendingUpload::Ready(Backend::upload(self, &data));
        };
        // A failed start leaves `data` with the stager; it is reported and the op chain goes on
        // with an unavailable buffer, like any other failed op.
        match s.start(data) {
            Ok(Some(f)) => PendingUpload::InFlight(f),
            Ok(None) => {
                self.record_op(
                    "start_upload",
                    Err(CudaError::shape(
                        "start_upload",
                        "both upload slots hold batches nobody took; take one first",
                    )),
                );
                PendingUpload::Ready(CudaBuf(None))
            }
            Err(e) => {
                self.record_op("start_upload", Err(e));
                PendingUpload::Ready(CudaBuf(None))
            }
        }
    }

    fn finish_upload(&self, up: PendingUpload<CudaBuf>) -> CudaBuf {
        let f = match up {
            PendingUpload::Ready(b) => return b,
            PendingUpload::InFlight(f) => f,
        };
        let r = (|| {
            let mut buf = self.scratch::<f32>(f.len)?;
            let len = buf.len();
            let (ptr, _guard) = buf.device_ptr_mut(&self.stream);
            let mut stager = self.stager.lock().unwrap_or_else(|p| p.into_inner());
            let s = stager
                .as_mut()
                .ok_or_else(|| CudaError::shape("finish_upload", "no copy stream"))?;
            s.finish(f, self.stream.cu_stream(), len, ptr)?;
            drop(_guard);
            Ok(buf)
        })();
        match r {
            Ok(b) => {
                self.record_op("finish_upload", Ok(()));
                CudaBuf(Some(b))
            }
            Err(e) => {
                self.record_op("finish_upload", Err(e));
                CudaBuf(None)
            }
        }
    }

    fn download(&self, buf: &CudaBuf) -> Vec<f32> {
        match get(buf).and_then(|s| CudaBackend::download(self, s)) {
            Ok(v) => {
                self.record_op("download", Ok(()));
                v
            }
            Err(e) => {
                self.record_op("download", Err(e));
                // NaN, not zeros, so a caller that ignores the sticky error cannot mistake it for data.
                vec![f32::NAN; buf.0.as_ref().map_or(0, |s| s.len())]
            }
        }
    }

    fn len(&self, buf: &CudaBuf) -> usize {
        buf.0.as_ref().map_or(0, |s| s.len())
    }

    fn fill_zero(&self, buf: &mut CudaBuf) {
        self.record_op(
            "fill_zero",
            get_mut(buf).and_then(|s| {
                self.stream
                    .memset_zeros(s)
                    .map_err(CudaError::driver("memset"))
            }),
        );
    }

    fn copy(&self, src: &CudaBuf, dst: &mut CudaBuf) {
        self.record_op(
            "copy",
            (|| {
                let (s, d) = (get(src)?, get_mut(dst)?);
                need("copy", "dst", d.len(), s.len())?;
                let n = s.len();
                let mut view = d.slice_mut(0..n);
                self.stream
                    .memcpy_dtod(s, &mut view)
                    .map_err(CudaError::driver("device copy"))
            })(),
        );
    }

    fn axpy(&self, alpha: f32, x: &CudaBuf, y: &mut CudaBuf, n: usize) {
        self.record_op(
            "axpy",
            (|| {
                let (x, y) = (get(x)?, get_mut(y)?);
                need("axpy", "x", x.len(), n)?;
                need("axpy", "y", y.len(), n)?;
                let nl = long("axpy", "n", n)?;
                launch_flat!(self, Family::Elementwise, "axpy_f32", n; &alpha, x, y, &nl)
            })(),
        );
    }

    fn mul_inplace(&self, x: &mut CudaBuf, m: &CudaBuf, n: usize) {
        self.record_op(
            "mul_inplace",
            (|| {
                let (x, m) = (get_mut(x)?, get(m)?);
                need("mul_inplace", "x", x.len(), n)?;
                need("mul_inplace", "m", m.len(), n)?;
                let nl = long("mul_inplace", "n", n)?;
                launch_flat!(self, Family::Elementwise, "mul_inplace_f32", n; x, m, &nl)
            })(),
        );
    }

    fn scale_groups(&self, x: &mut CudaBuf, scale: &[f32], group_len: usize) {
        self.record_op("scale_groups", (|| {
            if scale.is_empty() || group_len == 0 {
                return Ok(());
            }
            let x = get_mut(x)?;
            need("scale_groups", "x", x.len(), scale.len() * group_len)?;
            let s = CudaBackend::upload(self, scale)?;
            let (g, gl) = (long("scale_groups", "groups", scale.len())?, long("scale_groups", "group_len", group_len)?);
            launch_flat!(self, Family::Elementwise, "scale_groups_f32", scale.len() * group_len; x, &s, &g, &gl)
        })());
    }

    fn sum_squares(&self, x: &CudaBuf, n: usize) -> f64 {
        let r = (|| {
            let x = get(x)?;
            need("sum_squares", "x", x.len(), n)?;
            let nl = long("sum_squares", "n", n)?;
            const BLOCKS: usize = 512;
            let mut partial = self.zeros::<f32>(BLOCKS)?;
            let f = self.function(Family::Adam, "sq_sum_partial")?;
            let mut b = self.stream.launch_builder(&f);
            b.arg(x).arg(&nl).arg(&mut partial);
            // SAFETY: partial has one slot per block.
            launched(
                "sq_sum_partial",
                unsafe { b.launch(cfg((BLOCKS as u32, 1, 1), (256, 1, 1))) }.map(drop),
            )?;
            let host = CudaBackend::download(self, &partial)?;
            Ok(host.iter().map(|&v| v as f64).sum::<f64>())
        })();
        match r {
            Ok(v) => v,
            Err(e) => {
                self.record_op("sum_squares", Err(e));
                f64::NAN
            }
        }
    }

    fn linear_fwd(
        &self,
        x: &CudaBuf,
        w: &CudaBuf,
        b: Option<&CudaBuf>,
        y: &mut CudaBuf,
        m: usize,
        k: usize,
        n: usize,
    ) {
        self.record_op(
            "linear_fwd",
            (|| {
                let (xs, ws, ys) = (get(x)?, get(w)?, get_mut(y)?);
                self.gemm(
                    GemmShape {
                        m,
                        n,
                        k,
                        trans_a: false,
                        trans_b: true,
                    },
                    xs,
                    ws,
                    ys,
                    1.0,
                    0.0,
                    self.math,
                )?;
                if let Some(b) = b {
                    self.bias_add(ys, get(b)?, m, n)?;
                }
                Ok(())
            })(),
        );
    }

    fn linear_bwd(
        &self,
        dy: &CudaBuf,
        x: &CudaBuf,
        w: &CudaBuf,
        dx: Option<&mut CudaBuf>,
        dw: Option<&mut CudaBuf>,
        db: Option<&mut CudaBuf>,
        m: usize,
        k: usize,
        n: usize,
    ) {
        self.record_op(
            "linear_bwd",
            (|| {
                let (dys, xs, ws) = (get(dy)?, get(x)?, get(w)?);
                let dx = match dx {
                    Some(dx) => Some(get_mut(dx)?),
                    None => None,
                };
                let dw = match dw {
                    Some(dw) => Some(get_mut(dw)?),
                    None => None,
                };
                if self.math == GemmMath::Bf16 {
                    // Round dy once for both products (the GEMM would round it per call).
                    let dy16 = self.to_bf16(dys, m * n)?;
                    let w16 = match dx {
                        Some(_) => Some(self.to_bf16(ws, n * k)?),
                        None => None,
                    };
                    let x16 = match dw {
                        Some(_) => Some(self.to_bf16(xs, m * k)?),
                        None => None,
                    };
                    self.linear_bwd_gemms(&dy16, x16.as_ref(), w16.as_ref(), dx, dw, m, k, n)?;
                } else {
                    self.linear_bwd_gemms(dys, Some(xs), Some(ws), dx, dw, m, k, n)?;
                }
                if let Some(db) = db {
                    self.col_sum_accumulate(dys, m, n, get_mut(db)?)?;
                }
                Ok(())
            })(),
        );
    }

    fn layernorm_fwd(
        &self,
        x: &CudaBuf,
        gamma: &CudaBuf,
        beta: &CudaBuf,
        y: &mut CudaBuf,
        mean: &mut CudaBuf,
        rstd: &mut CudaBuf,
        rows: usize,
        cols: usize,
        eps: f32,
    ) {
        self.record_op(
            "layernorm_fwd",
            (|| {
                CudaBackend::layernorm_fwd(
                    self,
                    get(x)?,
                    get(gamma)?,
                    get(beta)?,
                    get_mut(y)?,
                    get_mut(mean)?,
                    get_mut(rstd)?,
                    rows,
                    cols,
                    eps,
                )
            })(),
        );
    }

    fn layernorm_bwd(
        &self,
        dy: &CudaBuf,
        x: &CudaBuf,
        gamma: &CudaBuf,
        mean: &CudaBuf,
        rstd: &CudaBuf,
        dx: &mut CudaBuf,
        dgamma: &mut CudaBuf,
        dbeta: &mut CudaBuf,
        rows: usize,
        cols: usize,
    ) {
        self.record_op(
            "layernorm_bwd",
            (|| {
                CudaBackend::layernorm_bwd(
                    self,
                    get(x)?,
                    get(dy)?,
                    get(gamma)?,
                    get(mean)?,
                    get(rstd)?,
                    get_mut(dx)?,
                    get_mut(dgamma)?,
                    get_mut(dbeta)?,
                    rows,
                    cols,
                )
            })(),
        );
    }

    fn gelu_fwd(&self, x: &CudaBuf, y: &mut CudaBuf, n: usize) {
        self.record_op(
            "gelu_fwd",
            (|| CudaBackend::gelu_fwd(self, get(x)?, get_mut(y)?, n))(),
        );
    }

    fn gelu_bwd(&self, dy: &CudaBuf, x: &CudaBuf, dx: &mut CudaBuf, n: usize) {
        self.record_op(
            "gelu_bwd",
            (|| CudaBackend::gelu_bwd(self, get(x)?, get(dy)?, get_mut(dx)?, n))(),
        );
    }

    /// Probabilities are saved in `probs` (`[seqs, heads, len, len]`), so the backward needs
    /// no recomputation; the formulation depends on the length ([`super::AttnPath`]).
    fn attention_fwd(&self, qkv: &CudaBuf, out: &mut CudaBuf, probs: &mut CudaBuf, d: AttnDims) {
        self.record_op(
            "attention_fwd",
            (|| {
                let shape = Self::attn_shape("attention_fwd", d)?;
                self.attention_probs_fwd(
                    shape,
                    get(qkv)?,
                    get_mut(out)?,
                    get_mut(probs)?,
                    self.math,
                )
            })(),
        );
    }

    fn attention_bwd(
        &self,
        dout: &CudaBuf,
        qkv: &CudaBuf,
        probs: &CudaBuf,
        dqkv: &mut CudaBuf,
        d: AttnDims,
    ) {
        self.record_op(
            "attention_bwd",
            (|| {
                let shape = Self::attn_shape("attention_bwd", d)?;
                self.attention_probs_bwd(
                    shape,
                    get(qkv)?,
                    get(dout)?,
                    get(probs)?,
                    get_mut(dqkv)?,
                    self.math,
                )
            })(),
        );
    }

    fn patchify(
        &self,
        x: &CudaBuf,
        cols: &mut CudaBuf,
        batch: usize,
        cin: usize,
        frames: usize,
        height: usize,
        width: usize,
        patch: usize,
    ) {
        self.record_op(
            "patchify",
            (|| {
                let geom = super::ops::PatchGeom {
                    batch,
                    in_ch: cin,
                    frames,
                    height,
                    width,
                    patch,
                    dim: 1,
                };
                self.patch_unfold(geom, get(x)?, get_mut(cols)?)
            })(),
        );
    }

    fn embed_tokens_fwd(
        &self,
        e: &CudaBuf,
        cls: &CudaBuf,
        pos: &CudaBuf,
        time: &CudaBuf,
        temp: &CudaBuf,
        tokens: &mut CudaBuf,
        d: EmbedDims,
        src: TempTokenSource,
    ) {
        self.record_op("embed_tokens_fwd", (|| {
            const OP: &str = "embed_tokens_fwd";
            let [b, t, n, c] = dims(OP, d)?;
            let compat = i32::from(src == TempTokenSource::Compat);
            if src == TempTokenSource::Compat && d.batch > d.patches {
                return Err(CudaError::shape(OP, format!("compat temp token needs batch {} <= patches {}", d.batch, d.patches)));
            }
            let (es, cs, ps, ts, tps, out) = (get(e)?, get(cls)?, get(pos)?, get(time)?, get(temp)?, get_mut(tokens)?);
            need(OP, "e", es.len(), d.batch * d.frames * d.patches * d.dim)?;
            need(OP, "cls", cs.len(), d.dim)?;
            need(OP, "pos", ps.len(), (d.patches + 1) * d.dim)?;
            need(OP, "time", ts.len(), (d.frames + 1) * d.dim)?;
            need(OP, "temp", tps.len(), d.dim)?;
            need(OP, "tokens", out.len(), d.batch * d.tokens() * d.dim)?;
            launch_flat!(self, Family::Tokens, "embed_fwd_f32", d.batch * d.tokens() * d.dim; es, cs, ps, ts, tps, out, &b, &t, &n, &c, &compat)
        })());
    }

    fn embed_tokens_bwd(
        &self,
        dtokens: &CudaBuf,
        de: &mut CudaBuf,
        dcls: &mut CudaBuf,
        dpos: &mut CudaBuf,
        dtime: &mut CudaBuf,
        dtemp: &mut CudaBuf,
        d: EmbedDims,
        src: TempTokenSource,
    ) {
        self.record_op("embed_tokens_bwd", (|| {
            const OP: &str = "embed_tokens_bwd";
            let [b, t, n, c] = dims(OP, d)?;
            let compat = i32::from(src == TempTokenSource::Compat);
            let dt = get(dtokens)?;
            need(OP, "dtokens", dt.len(), d.batch * d.tokens() * d.dim)?;
            let des = get_mut(de)?;
            need(OP, "de", des.len(), d.batch * d.frames * d.patches * d.dim)?;
            launch_flat!(self, Family::Tokens, "embed_bwd_e_f32", d.batch * d.frames * d.patches * d.dim; dt, des, &b, &t, &n, &c, &compat)?;
            let (dc, dp, dtm, dtp) = (get_mut(dcls)?, get_mut(dpos)?, get_mut(dtime)?, get_mut(dtemp)?);
            need(OP, "dcls", dc.len(), d.dim)?;
            need(OP, "dpos", dp.len(), (d.patches + 1) * d.dim)?;
            need(OP, "dtime", dtm.len(), (d.frames + 1) * d.dim)?;
            need(OP, "dtemp", dtp.len(), d.dim)?;
            launch_flat!(self, Family::Tokens, "embed_bwd_params_f32", (d.patches + d.frames + 2) * d.dim; dt, dc, dp, dtm, dtp, &b, &t, &n, &c, &compat)
        })());
    }

    fn temporal_gather_fwd(&self, tokens: &CudaBuf, seq: &mut CudaBuf, d: EmbedDims) {
        self.record_op("temporal_gather_fwd", (|| {
            const OP: &str = "temporal_gather_fwd";
            let [b, t, n, c] = dims(OP, d)?;
            let (tk, sq) = (get(tokens)?, get_mut(seq)?);
            need(OP, "tokens", tk.len(), d.batch * d.tokens() * d.dim)?;
            let total = d.batch * d.patches * (d.frames + 1) * d.dim;
            need(OP, "seq", sq.len(), total)?;
            launch_flat!(self, Family::Tokens, "temporal_gather_fwd_f32", total; tk, sq, &b, &t, &n, &c)
        })());
    }

    fn temporal_gather_bwd(&self, dseq: &CudaBuf, dtokens: &mut CudaBuf, d: EmbedDims) {
        self.record_op("temporal_gather_bwd", (|| {
            const OP: &str = "temporal_gather_bwd";
            let [b, t, n, c] = dims(OP, d)?;
            let (ds, dt) = (get(dseq)?, get_mut(dtokens)?);
            need(OP, "dseq", ds.len(), d.batch * d.patches * (d.frames + 1) * d.dim)?;
            need(OP, "dtokens", dt.len(), d.batch * d.tokens() * d.dim)?;
            let total = d.batch * d.patches * d.frames * d.dim + d.batch * d.dim;
            launch_flat!(self, Family::Tokens, "temporal_gather_bwd_f32", total; ds, dt, &b, &t, &n, &c)
        })());
    }

    fn spatial_gather_fwd(&self, tokens: &CudaBuf, r: &CudaBuf, seq: &mut CudaBuf, d: EmbedDims) {
        self.record_op("spatial_gather_fwd", (|| {
            const OP: &str = "spatial_gather_fwd";
            let [b, t, n, c] = dims(OP, d)?;
            let (tk, rs, sq) = (get(tokens)?, get(r)?, get_mut(seq)?);
            need(OP, "tokens", tk.len(), d.batch * d.tokens() * d.dim)?;
            need(OP, "r", rs.len(), d.batch * d.patches * (d.frames + 1) * d.dim)?;
            let total = d.batch * d.frames * (d.patches + 1) * d.dim;
            need(OP, "seq", sq.len(), total)?;
            launch_flat!(self, Family::Tokens, "spatial_gather_fwd_f32", total; tk, rs, sq, &b, &t, &n, &c)
        })());
    }

    fn spatial_gather_bwd(
        &self,
        dseq: &CudaBuf,
        dtokens: &mut CudaBuf,
        dr: &mut CudaBuf,
        d: EmbedDims,
    ) {
        self.record_op("spatial_gather_bwd", (|| {
            const OP: &str = "spatial_gather_bwd";
            let [b, t, n, c] = dims(OP, d)?;
            let (ds, dt, drs) = (get(dseq)?, get_mut(dtokens)?, get_mut(dr)?);
            need(OP, "dseq", ds.len(), d.batch * d.frames * (d.patches + 1) * d.dim)?;
            need(OP, "dtokens", dt.len(), d.batch * d.tokens() * d.dim)?;
            need(OP, "dr", drs.len(), d.batch * d.patches * (d.frames + 1) * d.dim)?;
            let total = d.batch * d.patches * d.frames * d.dim + d.batch * d.dim;
            launch_flat!(self, Family::Tokens, "spatial_gather_bwd_f32", total; ds, dt, drs, &b, &t, &n, &c)
        })());
    }

    fn merge_fwd(&self, tokens: &CudaBuf, r: &CudaBuf, v: &CudaBuf, y: &mut CudaBuf, d: EmbedDims) {
        self.record_op("merge_fwd", (|| {
            const OP: &str = "merge_fwd";
            let [b, t, n, c] = dims(OP, d)?;
            let (tk, rs, vs, ys) = (get(tokens)?, get(r)?, get(v)?, get_mut(y)?);
            let total = d.batch * d.tokens() * d.dim;
            need(OP, "tokens", tk.len(), total)?;
            need(OP, "r", rs.len(), d.batch * d.patches * (d.frames + 1) * d.dim)?;
            need(OP, "v", vs.len(), d.batch * d.frames * (d.patches + 1) * d.dim)?;
            need(OP, "y", ys.len(), total)?;
            launch_flat!(self, Family::Tokens, "merge_fwd_f32", total; tk, rs, vs, ys, &b, &t, &n, &c)
        })());
    }

    fn merge_bwd(
        &self,
        dy: &CudaBuf,
        dtokens: &mut CudaBuf,
        dr: &mut CudaBuf,
        dv: &mut CudaBuf,
        d: EmbedDims,
    ) {
        self.record_op("merge_bwd", (|| {
            const OP: &str = "merge_bwd";
            let [b, t, n, c] = dims(OP, d)?;
            let (dys, dt, drs, dvs) = (get(dy)?, get_mut(dtokens)?, get_mut(dr)?, get_mut(dv)?);
            let ntok = d.batch * d.tokens() * d.dim;
            let nr = d.batch * d.patches * (d.frames + 1) * d.dim;
            let nv = d.batch * d.frames * (d.patches + 1) * d.dim;
            need(OP, "dy", dys.len(), ntok)?;
            need(OP, "dtokens", dt.len(), ntok)?;
            need(OP, "dr", drs.len(), nr)?;
            need(OP, "dv", dvs.len(), nv)?;
            launch_flat!(self, Family::Tokens, "merge_bwd_f32", ntok + nr + nv; dys, dt, drs, dvs, &b, &t, &n, &c)
        })());
    }

    fn gather_rows(&self, src: &CudaBuf, idx: &[u32], dst: &mut CudaBuf, cols: usize) {
        self.record_op(
            "gather_rows",
            (|| {
                if cols == 0 {
                    return Err(CudaError::shape("gather_rows", "cols must be > 0"));
                }
                let s = get(src)?;
                let rows: Vec<usize> = idx.iter().map(|&i| i as usize).collect();
                let index = self.row_index(&rows, s.len() / cols)?;
                CudaBackend::gather_rows(self, s, &index, get_mut(dst)?, cols)
            })(),
        );
    }

    fn scatter_add_rows(&self, ddst: &CudaBuf, idx: &[u32], dsrc: &mut CudaBuf, cols: usize) {
        self.record_op(
            "scatter_add_rows",
            (|| {
                if cols == 0 {
                    return Err(CudaError::shape("scatter_add_rows", "cols must be > 0"));
                }
                let d = get_mut(dsrc)?;
                let rows: Vec<usize> = idx.iter().map(|&i| i as usize).collect();
                let index = self.row_index(&rows, d.len() / cols)?;
                CudaBackend::scatter_add_rows(self, get(ddst)?, &index, d, cols)
            })(),
        );
    }

    fn conv3d_t_fwd(&self, x: &CudaBuf, w: &CudaBuf, b: &CudaBuf, y: &mut CudaBuf, d: Conv3dDims) {
        self.record_op(
            "conv3d_t_fwd",
            (|| {
                let rows = d.batch * d.frames * d.cells;
                let cols = self.conv_cols(get(x)?, d)?;
                let ys = get_mut(y)?;
                self.gemm(
                    GemmShape {
                        m: rows,
                        n: d.cout,
                        k: 3 * d.cin,
                        trans_a: false,
                        trans_b: true,
                    },
                    &cols,
                    get(w)?,
                    ys,
                    1.0,
                    0.0,
                    self.math,
                )?;
                self.bias_add(ys, get(b)?, rows, d.cout)
            })(),
        );
    }

    fn conv3d_t_bwd(
        &self,
        dy: &CudaBuf,
        x: &CudaBuf,
        w: &CudaBuf,
        dx: Option<&mut CudaBuf>,
        dw: &mut CudaBuf,
        db: &mut CudaBuf,
        d: Conv3dDims,
    ) {
        self.record_op("conv3d_t_bwd", (|| {
            const OP: &str = "conv3d_t_bwd";
            let rows = d.batch * d.frames * d.cells;
            let (dys, ws) = (get(dy)?, get(w)?);
            let cols = self.conv_cols(get(x)?, d)?;
            self.gemm(GemmShape { m: d.cout, n: 3 * d.cin, k: rows, trans_a: true, trans_b: false }, dys, &cols, get_mut(dw)?, 1.0, 1.0, self.math)?;
            self.col_sum_accumulate(dys, rows, d.cout, get_mut(db)?)?;
            if let Some(dx) = dx {
                let mut dcols = self.zeros::<f32>(rows * 3 * d.cin)?;
                self.gemm(GemmShape { m: rows, n: 3 * d.cin, k: d.cout, trans_a: false, trans_b: false }, dys, ws, &mut dcols, 1.0, 0.0, self.math)?;
                let dxs = get_mut(dx)?;
                need(OP, "dx", dxs.len(), rows * d.cin)?;
                let (b, t, s, c) = (int(OP, "batch", d.batch)?, int(OP, "frames", d.frames)?, int(OP, "cells", d.cells)?, int(OP, "cin", d.cin)?);
                launch_flat!(self, Family::Conv3d, "conv3d_col2im_f32", rows * d.cin; &dcols, dxs, &b, &t, &s, &c)?;
            }
            Ok(())
        })());
    }

    fn batchnorm_fwd(
        &self,
        x: &CudaBuf,
        gamma: &CudaBuf,
        beta: &CudaBuf,
        running_mean: &mut CudaBuf,
        running_var: &mut CudaBuf,
        y: &mut CudaBuf,
        mean: &mut CudaBuf,
        rstd: &mut CudaBuf,
        rows: usize,
        ch: usize,
        train: bool,
        momentum: f32,
        eps: f32,
    ) {
        self.record_op("batchnorm_fwd", (|| {
            const OP: &str = "batchnorm_fwd";
            let (xs, gs, bs, rm, rv, ys, ms, rs) = (get(x)?, get(gamma)?, get(beta)?, get_mut(running_mean)?, get_mut(running_var)?, get_mut(y)?, get_mut(mean)?, get_mut(rstd)?);
            for (name, have, len) in [("x", xs.len(), rows * ch), ("y", ys.len(), rows * ch), ("gamma", gs.len(), ch), ("beta", bs.len(), ch), ("running_mean", rm.len(), ch), ("running_var", rv.len(), ch), ("mean", ms.len(), ch), ("rstd", rs.len(), ch)] {
                need(OP, name, have, len)?;
            }
            if rows == 0 || ch == 0 {
                return Err(CudaError::shape(OP, "empty input"));
            }
            let (r, c) = (int(OP, "rows", rows)?, int(OP, "ch", ch)?);
            let finish_grid = (ch.div_ceil(256) as u32, 1, 1);
            if train {
                let nblocks = rows.div_ceil(ROWS_PER_BLOCK);
                let mut partial = self.zeros::<f32>(nblocks * ch)?;
                let (rpb, nb) = (ROWS_PER_BLOCK as i32, int(OP, "nblocks", nblocks)?);
                let grid = (ch.div_ceil(32) as u32, nblocks as u32, 1);
                for mode in [0i32, 1] {
                    let f = self.function(Family::BatchNorm, "bn_col_partial")?;
                    let mut b = self.stream.launch_builder(&f);
                    b.arg(xs).arg(&*ms).arg(&mode).arg(&mut partial).arg(&r).arg(&c).arg(&rpb);
                    // SAFETY: partial holds nblocks·ch; x holds rows·ch; mean holds ch.
                    launched("bn_col_partial", unsafe { b.launch(cfg(grid, (32, 8, 1))) }.map(drop))?;
                    if mode == 0 {
                        let f = self.function(Family::BatchNorm, "bn_mean_finish")?;
                        let mut b = self.stream.launch_builder(&f);
                        b.arg(&partial).arg(&nb).arg(&r).arg(&c).arg(&mut *ms);
                        // SAFETY: mean holds ch.
                        launched("bn_mean_finish", unsafe { b.launch(cfg(finish_grid, (256, 1, 1))) }.map(drop))?;
                    }
                }
                let f = self.function(Family::BatchNorm, "bn_var_finish")?;
                let mut b = self.stream.launch_builder(&f);
                b.arg(&partial).arg(&nb).arg(&r).arg(&c).arg(&eps).arg(&momentum).arg(&*ms).arg(&mut *rs).arg(rm).arg(rv);
                // SAFETY: all per-channel buffers hold ch.
                launched("bn_var_finish", unsafe { b.launch(cfg(finish_grid, (256, 1, 1))) }.map(drop))?;
            } else {
                let f = self.function(Family::BatchNorm, "bn_eval_stats")?;
                let mut b = self.stream.launch_builder(&f);
                b.arg(&*rm).arg(&*rv).arg(&mut *ms).arg(&mut *rs).arg(&c).arg(&eps);
                // SAFETY: all per-channel buffers hold ch.
                launched("bn_eval_stats", unsafe { b.launch(cfg(finish_grid, (256, 1, 1))) }.map(drop))?;
            }
            let rl = long(OP, "rows", rows)?;
            launch_flat!(self, Family::BatchNorm, "bn_apply", rows * ch; xs, gs, bs, &*ms, &*rs, ys, &rl, &c)
        })());
    }

    fn batchnorm_bwd(
        &self,
        dy: &CudaBuf,
        x: &CudaBuf,
        gamma: &CudaBuf,
        mean: &CudaBuf,
        rstd: &CudaBuf,
        dx: &mut CudaBuf,
        dgamma: &mut CudaBuf,
        dbeta: &mut CudaBuf,
        rows: usize,
        ch: usize,
    ) {
        self.record_op("batchnorm_bwd", (|| {
            const OP: &str = "batchnorm_bwd";
            let (dys, xs, gs, ms, rs, dxs, dg, dbt) = (get(dy)?, get(x)?, get(gamma)?, get(mean)?, get(rstd)?, get_mut(dx)?, get_mut(dgamma)?, get_mut(dbeta)?);
            for (name, have, len) in [("dy", dys.len(), rows * ch), ("x", xs.len(), rows * ch), ("dx", dxs.len(), rows * ch), ("gamma", gs.len(), ch), ("mean", ms.len(), ch), ("rstd", rs.len(), ch), ("dgamma", dg.len(), ch), ("dbeta", dbt.len(), ch)] {
                need(OP, name, have, len)?;
            }
            if rows == 0 || ch == 0 {
                return Err(CudaError::shape(OP, "empty input"));
            }
            let (r, c) = (int(OP, "rows", rows)?, int(OP, "ch", ch)?);
            let nblocks = rows.div_ceil(ROWS_PER_BLOCK);
            let mut partial = self.zeros::<f32>(nblocks * 2 * ch)?;
            let mut m = self.zeros::<f32>(2 * ch)?;
            let (rpb, nb) = (ROWS_PER_BLOCK as i32, int(OP, "nblocks", nblocks)?);
            let f = self.function(Family::BatchNorm, "bn_bwd_partial")?;
            let mut b = self.stream.launch_builder(&f);
            b.arg(dys).arg(xs).arg(ms).arg(rs).arg(&mut partial).arg(&r).arg(&c).arg(&rpb);
            // SAFETY: partial holds nblocks·2·ch.
            launched("bn_bwd_partial", unsafe { b.launch(cfg((ch.div_ceil(32) as u32, nblocks as u32, 1), (32, 8, 1))) }.map(drop))?;
            let f = self.function(Family::BatchNorm, "bn_bwd_finish")?;
            let mut b = self.stream.launch_builder(&f);
            b.arg(&partial).arg(&nb).arg(&r).arg(&c).arg(dg).arg(dbt).arg(&mut m);
            // SAFETY: per-channel buffers hold ch, m holds 2·ch.
            launched("bn_bwd_finish", unsafe { b.launch(cfg((ch.div_ceil(256) as u32, 1, 1), (256, 1, 1))) }.map(drop))?;
            let rl = long(OP, "rows", rows)?;
            launch_flat!(self, Family::BatchNorm, "bn_bwd_dx", rows * ch; dys, xs, gs, ms, rs, &m, dxs, &rl, &c)
        })());
    }

    fn adam_step(
        &self,
        p: &mut CudaBuf,
        g: &CudaBuf,
        m: &mut CudaBuf,
        v: &mut CudaBuf,
        n: usize,
        h: AdamParams,
    ) {
        self.record_op(
            "adam_step",
            (|| {
                let step = u32::try_from(h.step)
                    .map_err(|_| CudaError::shape("adam_step", "step count exceeds u32"))?;
                let hp = super::ops::AdamHyper {
                    lr: h.lr,
                    beta1: h.beta1,
                    beta2: h.beta2,
                    eps: h.eps,
                    weight_decay: h.weight_decay,
                    step,
                };
                CudaBackend::adam_step(
                    self,
                    get_mut(p)?,
                    get(g)?,
                    get_mut(m)?,
                    get_mut(v)?,
                    None,
                    n,
                    hp,
                )
            })(),
        );
    }
}
