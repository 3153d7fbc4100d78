//! The backend boundary: every op the FakeSTormer network needs, with explicit forward and backward
//! functions (llm.c style, no autograd graph). The model crate is generic over [`Backend`]; the CPU
//! implementation ([`crate::cpu::CpuBackend`]) is the numerical reference, a CUDA implementation
//! lives in `kernels/src/cuda/`.
//!
//! # Conventions (all backends)
//! * Every buffer holds `f32` values, dense, row-major, last dimension fastest. Shapes are passed
//!   explicitly; buffers may be longer than the region an op touches (only the prefix is used).
//! * "rows × cols" means a matrix stored as `rows` contiguous rows of `cols` values.
//! * Forward ops **overwrite** their outputs. Backward ops **overwrite** the input gradient (`dx`)
//!   unless documented as "accumulates", and always **accumulate** (`+=`) parameter gradients, so
//!   the caller zeroes parameter gradients once per pass.
//! * Token layout of the backbone (per sample, `L = 2 + N·T` tokens of width `C`): index 0 = CLS,
//!   index `1 + n·T + t` = patch `n` of frame `t` ("(n t)" order), index `L-1` = temp token.
//! * Index arrays (`&[u32]`) and small scalars live on the host; implementations may upload them.

/// An upload started by [`Backend::start_upload`].
pub enum PendingUpload<B> {
    /// Already a device buffer (backends without a copy engine, or a fallback).
    Ready(B),
    /// Travelling on a device's copy stream.
    InFlight(InFlight),
}

/// A copy in flight: its landing slot, length and the copy thread's reply.
pub struct InFlight {
    pub(crate) slot: usize,
    pub(crate) len: usize,
    pub(crate) done: std::sync::mpsc::Receiver<Result<(), String>>,
}

/// Which value initialises the temp token (spec §2.2.1 item 4, §9 item 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempTokenSource {
    /// Official behaviour: sample `b` gets patch `b` of frame 0 of sample 0 (plus `pos[1+b]` and
    /// `time[0]`). Requires `B <= N`.
    Compat,
    /// Fixed behaviour: every sample gets `temp_token + time[T]`.
    Clean,
}

/// Shape of the token embedding (`embed_tokens_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedDims {
    /// Batch size B.
    pub batch: usize,
    /// Frames T.
    pub frames: usize,
    /// Patches per frame N.
    pub patches: usize,
    /// Channels C.
    pub dim: usize,
}

impl EmbedDims {
    /// Tokens per sample, `2 + N·T`.
    pub fn tokens(&self) -> usize {
        2 + self.patches * self.frames
    }
}

/// Shape of a batch of attention sequences: `seqs` sequences of `len` tokens, `heads` heads of
/// width `head_dim` (model width `C = heads·head_dim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnDims {
    /// Number of independent sequences.
    pub seqs: usize,
    /// Tokens per sequence.
    pub len: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// Shape for the temporal Conv3d with kernel (3,1,1), padding (1,0,0), stride 1, in the
/// channel-last layout `[batch, frames, cells, channels]` (cells = H·W flattened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dDims {
    /// Batch size.
    pub batch: usize,
    /// Temporal length (the convolved axis).
    pub frames: usize,
    /// Spatial cells H·W (kernel is 1×1 there).
    pub cells: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
}

/// Hyper-parameters of one Adam update (L2 weight decay added to the gradient, PyTorch `Adam`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator epsilon.
    pub eps: f32,
    /// L2 decay coefficient added to the gradient.
    pub weight_decay: f32,
    /// 1-based step count (bias correction).
    pub step: u64,
}

/// Every op the network needs. See the module docs for layout and overwrite/accumulate rules.
pub trait Backend {
    /// Device buffer of `f32`.
    type Buf;

    /// A zero-filled buffer of `len` values.
    fn zeros(&self, len: usize) -> Self::Buf;
    /// A buffer of `len` values that the next op overwrites completely: a device backend may skip
    /// the zero fill. The CPU backend fills it with NaN, so a reader of an element nobody wrote
    /// poisons the results of the CPU tests instead of silently reading zero.
    fn alloc(&self, len: usize) -> Self::Buf {
        self.zeros(len)
    }
    /// A buffer holding a copy of `data`.
    fn upload(&self, data: &[f32]) -> Self::Buf;
    /// Starts copying `data` to the device without making queued work wait for it, so a batch
    /// can travel while the previous step computes; [`Backend::finish_upload`] turns it into a
    /// buffer that later ops see complete. Default: a plain upload.
    fn start_upload(&self, data: Vec<f32>) -> PendingUpload<Self::Buf> {
        PendingUpload::Ready(self.upload(&data))
    }
    /// The buffer of an upload started by [`Backend::start_upload`].
    fn finish_upload(&self, up: PendingUpload<Self::Buf>) -> Self::Buf {
        match up {
            PendingUpload::Ready(b) => b,
            // Only the CUDA backend creates in-flight uploads, and it overrides this method.
            PendingUpload::InFlight(f) => {
                debug_assert!(
                    false,
                    "an in-flight upload reached a backend without a copy engine"
                );
                self.zeros(f.len)
            }
        }
    }
    /// Copy the whole buffer to the host.
    fn download(&self, buf: &Self::Buf) -> Vec<f32>;
    /// Number of values in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// Set every value to 0.
    fn fill_zero(&self, buf: &mut Self::Buf);
    /// `dst[..src.len()] = src`.
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf);
    /// `y[i] += alpha·x[i]` for `i < n`.
    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf, n: usize);
    /// `x[i] *= m[i]` for `i < n` (dropout: `m` holds 0 or 1/(1-p)); also its own backward.
    fn mul_inplace(&self, x: &mut Self::Buf, m: &Self::Buf, n: usize);
    /// `x[g·group_len + i] *= scale[g]` (drop-path, one keep/scale value per group of rows); also
    /// its own backward. `scale` is on the host (0 or 1/(1-r)).
    fn scale_groups(&self, x: &mut Self::Buf, scale: &[f32], group_len: usize);
    /// Σ x[i]² over `i < n`, accumulated in f64.
    fn sum_squares(&self, x: &Self::Buf, n: usize) -> f64;

    /// `y[m×n] = x[m×k] · w[n×k]ᵀ + b[n]` (PyTorch `Linear` weight layout).
    #[allow(clippy::too_many_arguments)]
    fn linear_fwd(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: Option<&Self::Buf>,
        y: &mut Self::Buf,
        m: usize,
        k: usize,
        n: usize,
    );
    /// Backward of [`Backend::linear_fwd`]: `dx = dy·w` (overwrites), `dw += dyᵀ·x`,
    /// `db += Σ_rows dy`.
    #[allow(clippy::too_many_arguments)]
    fn linear_bwd(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        w: &Self::Buf,
        dx: Option<&mut Self::Buf>,
        dw: Option<&mut Self::Buf>,
        db: Option<&mut Self::Buf>,
        m: usize,
        k: usize,
        n: usize,
    );

    /// LayerNorm over the last dim of `x[rows×cols]`; saves per-row `mean`, `rstd`.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_fwd(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        y: &mut Self::Buf,
        mean: &mut Self::Buf,
        rstd: &mut Self::Buf,
        rows: usize,
        cols: usize,
        eps: f32,
    );
    /// Backward of LayerNorm: overwrites `dx`, accumulates `dgamma`, `dbeta`.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_bwd(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        rows: usize,
        cols: usize,
    );

    /// Exact (erf) GELU, elementwise over `n` values.
    fn gelu_fwd(&self, x: &Self::Buf, y: &mut Self::Buf, n: usize);
    /// Backward of GELU: `dx = dy·gelu'(x)` (overwrites).
    fn gelu_bwd(&self, dy: &Self::Buf, x: &Self::Buf, dx: &mut Self::Buf, n: usize);

    /// Multi-head softmax attention. `qkv` is `[seqs, len, 3C]` (the output of the qkv Linear:
    /// q = cols 0..C, k = C..2C, v = 2C..3C, head h = cols h·hd..(h+1)·hd inside each), `out` is
    /// `[seqs, len, C]` (heads merged), `probs` saves the softmax `[seqs, heads, len, len]`.
    /// Scale = 1/√head_dim applied to q.
    fn attention_fwd(
        &self,
        qkv: &Self::Buf,
        out: &mut Self::Buf,
        probs: &mut Self::Buf,
        d: AttnDims,
    );
    /// Backward of attention: overwrites `dqkv` (`[seqs, len, 3C]`).
    fn attention_bwd(
        &self,
        dout: &Self::Buf,
        qkv: &Self::Buf,
        probs: &Self::Buf,
        dqkv: &mut Self::Buf,
        d: AttnDims,
    );

    /// Unfold non-overlapping `p×p` patches of a clip `x[B, Cin, T, H, W]` into
    /// `cols[(b·T + t)·N + n, ci·p·p + ky·p + kx]` with `n = (H/p)·... row-major`, so that a Linear
    /// with the Conv2d weight reshaped to `[C, Cin·p·p]` is the patch embedding.
    #[allow(clippy::too_many_arguments)]
    fn patchify(
        &self,
        x: &Self::Buf,
        cols: &mut Self::Buf,
        batch: usize,
        cin: usize,
        frames: usize,
        height: usize,
        width: usize,
        patch: usize,
    );

    /// Build the token sequence entering block 0 from the patch embedding `e[(b·T+t)·N + n, C]`:
    /// CLS = `cls + pos[0]`; patch(n,t) = `e + pos[1+n] + time[t]`; temp token per `src`.
    /// `pos` is `[(1+N), C]`, `time` is `[(T+1), C]`, output `tokens[B, L, C]`.
    #[allow(clippy::too_many_arguments)]
    fn embed_tokens_fwd(
        &self,
        e: &Self::Buf,
        cls: &Self::Buf,
        pos: &Self::Buf,
        time: &Self::Buf,
        temp: &Self::Buf,
        tokens: &mut Self::Buf,
        d: EmbedDims,
        src: TempTokenSource,
    );
    /// Backward of [`Backend::embed_tokens_fwd`]: overwrites `de`; accumulates `dcls`, `dpos`,
    /// `dtime`, `dtemp` (in compat mode `dtemp` and `dtime[T]` receive nothing, i.e. zero).
    #[allow(clippy::too_many_arguments)]
    fn embed_tokens_bwd(
        &self,
        dtokens: &Self::Buf,
        de: &mut Self::Buf,
        dcls: &mut Self::Buf,
        dpos: &mut Self::Buf,
        dtime: &mut Self::Buf,
        dtemp: &mut Self::Buf,
        d: EmbedDims,
        src: TempTokenSource,
    );

    /// Temporal sequences from tokens: `seq[b·N + n, t, :] = tok(b, patch n, frame t)` for t<T,
    /// `seq[b·N + n, T, :] = tok(b, temp)`. Output `[B·N, T+1, C]`.
    fn temporal_gather_fwd(&self, tokens: &Self::Buf, seq: &mut Self::Buf, d: EmbedDims);
    /// Backward: **accumulates** into `dtokens` (temp token receives Σ_n).
    fn temporal_gather_bwd(&self, dseq: &Self::Buf, dtokens: &mut Self::Buf, d: EmbedDims);

    /// Spatial sequences: `seq[b·T + t, 0] = tok(b, CLS)`, `seq[b·T+t, 1+n] = tok(b,n,t) + r[b·N+n, t]`
    /// where `r` is the temporal branch output `[B·N, T+1, C]`. Output `[B·T, 1+N, C]`.
    fn spatial_gather_fwd(
        &self,
        tokens: &Self::Buf,
        r: &Self::Buf,
        seq: &mut Self::Buf,
        d: EmbedDims,
    );
    /// Backward: **accumulates** into `dtokens` and `dr`.
    fn spatial_gather_bwd(
        &self,
        dseq: &Self::Buf,
        dtokens: &mut Self::Buf,
        dr: &mut Self::Buf,
        d: EmbedDims,
    );

    /// Block merge (spec §2.2.2 steps 1–3): from block input tokens, temporal branch `r`
    /// (`[B·N, T+1, C]`) and spatial branch `v` (`[B·T, 1+N, C]`):
    /// CLS' = CLS + mean_t v[bt,0]; p' = p + r[bn,t] + v[bt,1+n]; τ' = τ + mean_n r[bn,T].
    fn merge_fwd(
        &self,
        tokens: &Self::Buf,
        r: &Self::Buf,
        v: &Self::Buf,
        y: &mut Self::Buf,
        d: EmbedDims,
    );
    /// Backward of the merge: **accumulates** into `dtokens`, `dr`, `dv`.
    fn merge_bwd(
        &self,
        dy: &Self::Buf,
        dtokens: &mut Self::Buf,
        dr: &mut Self::Buf,
        dv: &mut Self::Buf,
        d: EmbedDims,
    );

    /// `dst[i, :] = src[idx[i], :]` for rows of width `cols`.
    fn gather_rows(&self, src: &Self::Buf, idx: &[u32], dst: &mut Self::Buf, cols: usize);
    /// `dsrc[idx[i], :] += ddst[i, :]` (backward of [`Backend::gather_rows`]; indices unique).
    fn scatter_add_rows(&self, ddst: &Self::Buf, idx: &[u32], dsrc: &mut Self::Buf, cols: usize);

    /// Conv3d, kernel (3,1,1), padding (1,0,0), channel-last: `x[B, T, S, Cin]` → `y[B, T, S, Cout]`;
    /// weight in PyTorch layout `[Cout, Cin, 3, 1, 1]`, bias `[Cout]`.
    fn conv3d_t_fwd(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        y: &mut Self::Buf,
        d: Conv3dDims,
    );
    /// Backward: overwrites `dx` (if given), accumulates `dw`, `db`.
    fn conv3d_t_bwd(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        w: &Self::Buf,
        dx: Option<&mut Self::Buf>,
        dw: &mut Self::Buf,
        db: &mut Self::Buf,
        d: Conv3dDims,
    );

    /// BatchNorm over `x[rows, ch]` (channel-last; rows = B·T·H·W). Training: normalise with the
    /// batch mean and **biased** variance, save `mean`/`rstd`, update running stats with
    /// `momentum` using the **unbiased** variance. Eval (`train = false`): use running stats (the
    /// saved `mean`/`rstd` then hold the running values).
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_fwd(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        y: &mut Self::Buf,
        mean: &mut Self::Buf,
        rstd: &mut Self::Buf,
        rows: usize,
        ch: usize,
        train: bool,
        momentum: f32,
        eps: f32,
    );
    /// Backward of training-mode BatchNorm (batch statistics): overwrites `dx`, accumulates
    /// `dgamma`, `dbeta`.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_bwd(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        rows: usize,
        ch: usize,
    );

    /// One Adam step with L2 decay on `n` values: `g' = g + wd·p; m = β1 m + (1-β1) g';
    /// v = β2 v + (1-β2) g'²; p -= lr/(1-β1^t) · m / (√v/√(1-β2^t) + eps)`.
    fn adam_step(
        &self,
        p: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        n: usize,
        h: AdamParams,
    );
}
