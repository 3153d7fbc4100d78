//! Row-major GEMM through cuBLAS: C[m×n] = α·op(A)·op(B) + β·C with f32 accumulation, single or
//! strided-batched. bf16 inputs run on tensor cores (output bf16, or f32 for weight gradients
//! accumulated into f32 masters); f32 inputs run in full f32, or on tensor cores with TF32 or bf16
//! products (cuBLAS converts the f32 operands itself, so storage stays f32).

use std::ffi::c_void;

use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType_t,
};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, PushKernelArg};
use half::bf16;

use super::device::CudaBackend;
use super::dtype::Float;
use super::error::CudaError;
use super::ops::cfg;
use super::source::Family;

/// Arithmetic used for f32 GEMMs (ignored for bf16 inputs, which always use tensor cores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmMath {
    /// IEEE f32 multiply-add.
    F32,
    /// TF32 tensor cores (10-bit mantissa products, f32 accumulation).
    Tf32,
    /// bf16 tensor cores (operands rounded to bf16, f32 accumulation and output), like PyTorch's
    /// bf16 autocast for matrix products; activations and parameters stay f32.
    Bf16,
}

impl std::str::FromStr for GemmMath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "f32" => Ok(GemmMath::F32),
            "tf32" => Ok(GemmMath::Tf32),
            "bf16" => Ok(GemmMath::Bf16),
            other => Err(format!(
                "unknown GEMM math `{other}` (expected f32, tf32 or bf16)"
            )),
        }
    }
}

impl GemmMath {
    /// Short name used in reports and specs: `f32`, `tf32`, `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            GemmMath::F32 => "f32",
            GemmMath::Tf32 => "tf32",
            GemmMath::Bf16 => "bf16",
        }
    }
}

/// Shape and transposition of one row-major GEMM. op(A) is m×k (A stored k×m when `trans_a`),
/// op(B) is k×n (B stored n×k when `trans_b`), C is m×n.
#[derive(Debug, Clone, Copy)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl GemmShape {
    /// (rows, cols) of A and of B as stored row-major; the cols are their leading dimensions when
    /// the matrices are dense.
    fn stored(&self) -> ((usize, usize), (usize, usize)) {
        let (m, n, k) = (self.m, self.n, self.k);
        let a = if self.trans_a { (k, m) } else { (m, k) };
        let b = if self.trans_b { (n, k) } else { (k, n) };
        (a, b)
    }

    /// m, n, k as cuBLAS ints, refusing an empty GEMM or `count` = 0 matrices.
    fn dims(&self, op: &'static str, count: usize) -> Result<(i32, i32, i32), CudaError> {
        let (m, n, k) = (self.m, self.n, self.k);
        if m == 0 || n == 0 || k == 0 || count == 0 {
            return Err(CudaError::shape(
                op,
                format!("empty GEMM {count} × m={m} n={n} k={k}"),
            ));
        }
        Ok((dim(op, "m", m)?, dim(op, "n", n)?, dim(op, "k", k)?))
    }
}

/// cuBLAS's transpose flag.
fn cublas_op(transpose: bool) -> cublasOperation_t {
    if transpose {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

fn dim(op: &'static str, name: &str, v: usize) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| CudaError::shape(op, format!("{name} = {v} exceeds i32")))
}

/// Where the matrices of a (sequence, head)-batched GEMM sit in one buffer: matrix (s, h) starts
/// `offset + s·stride_s + h·stride_h` elements in, its rows `ld` elements apart — so cuBLAS can
/// read heads straight out of a `[S, L, 3, H, D]` qkv row layout and write into `[S, L, H·D]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLayout {
    pub offset: usize,
    pub stride_s: usize,
    pub stride_h: usize,
    pub ld: usize,
}

impl HeadLayout {
    /// One past the last element reached by `seqs`×`heads` matrices of `rows`×`cols`.
    pub fn extent(&self, seqs: usize, heads: usize, rows: usize, cols: usize) -> usize {
        self.offset
            + (seqs - 1) * self.stride_s
            + (heads - 1) * self.stride_h
            + (rows - 1) * self.ld
            + cols
    }
}

impl CudaBackend {
    /// C = α·op(A)·op(B) + β·C. Supported (input, output) types: (f32, f32), (bf16, bf16),
    /// (bf16, f32).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm<T: Float, O: Float>(
        &self,
        shape: GemmShape,
        a: &impl DevicePtr<T>,
        b: &impl DevicePtr<T>,
        c: &mut impl DevicePtrMut<O>,
        alpha: f32,
        beta: f32,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        self.gemm_batched(shape, 1, a, b, c, alpha, beta, math)
    }

    /// A bf16 copy (round to nearest even) of the first `n` values of an f32 device buffer.
    pub(crate) fn to_bf16<T: Float>(
        &self,
        x: &impl DevicePtr<T>,
        n: usize,
    ) -> Result<CudaSlice<bf16>, CudaError> {
        let mut y = self.scratch::<bf16>(n)?;
        let nl = i64::try_from(n).map_err(|_| CudaError::shape("gemm", "operand too large"))?;
        let f = self.function(Family::Elementwise, "cast_f32_bf16")?;
        let (px, _gx) = x.device_ptr(&self.stream);
        let mut b = self.stream.launch_builder(&f);
        b.arg(&px).arg(&mut y).arg(&nl);
        // SAFETY: x holds at least n f32 values (checked by the caller), y holds n.
        unsafe { b.launch(cfg((self.grid_for(n), 1, 1), (256, 1, 1))) }
            .map(drop)
            .map_err(CudaError::driver("launching cast_f32_bf16"))?;
        Ok(y)
    }

    /// GEMMs of one shape over every (sequence, head) pair, each operand addressed through a
    /// [`HeadLayout`] (cuBLAS pointer-array batching; the arrays are built on the device). f32
    /// operands only, and bf16 math runs as TF32 here: the operands are read where they lie, so
    /// bf16 products would need rounded copies of qkv and of the `[seqs·heads, L, L]`
    /// probability matrices, which cost more than the products save (measured on an H100 with
    /// copies: 3.49 vs 2.56 ms per spatial attention layer at B = 32); TF32 is also the more
    /// precise of the two.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_heads(
        &self,
        shape: GemmShape,
        seqs: usize,
        heads: usize,
        (a, la): (&impl DevicePtr<f32>, HeadLayout),
        (b, lb): (&impl DevicePtr<f32>, HeadLayout),
        (c, lc): (&mut impl DevicePtrMut<f32>, HeadLayout),
        alpha: f32,
        beta: f32,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        const OP: &str = "gemm_heads";
        let GemmShape {
            m,
            n,
            k,
            trans_a,
            trans_b,
        } = shape;
        let batch = seqs * heads;
        let (mi, ni, ki) = shape.dims(OP, batch)?;
        let ((ar, ac), (br, bc)) = shape.stored();
        for (name, l, len, rows, cols) in [
            ("A", la, a.len(), ar, ac),
            ("B", lb, b.len(), br, bc),
            ("C", lc, c.len(), m, n),
        ] {
            if l.ld < cols || l.extent(seqs, heads, rows, cols) > len {
                return Err(CudaError::shape(
                    OP,
                    format!("{name}: layout {l:?} of {seqs}×{heads} {rows}×{cols} matrices does not fit {len} elements"),
                ));
            }
        }
        let (bi, hi) = (dim(OP, "batch", batch)?, dim(OP, "heads", heads)?);
        let lds = [
            dim(OP, "lda", la.ld)?,
            dim(OP, "ldb", lb.ld)?,
            dim(OP, "ldc", lc.ld)?,
        ];
        let mut ptrs = self.scratch::<u64>(3 * batch)?;
        let (pa, _ga) = a.device_ptr(&self.stream);
        let (pb, _gb) = b.device_ptr(&self.stream);
        let (pc, _gc) = c.device_ptr_mut(&self.stream);
        let at = |p: u64, l: HeadLayout| p + 4 * l.offset as u64;
        let st = |v: usize| v as i64;
        {
            let f = self.function(Family::Attention, "attn_gemm_ptrs")?;
            let mut lb_ = self.stream.launch_builder(&f);
            let (a0, b0, c0) = (at(pa, la), at(pb, lb), at(pc, lc));
            let (as_, ah, bs, bh, cs, ch) = (
                st(la.stride_s),
                st(la.stride_h),
                st(lb.stride_s),
                st(lb.stride_h),
                st(lc.stride_s),
                st(lc.stride_h),
            );
            lb_.arg(&mut ptrs)
                .arg(&bi)
                .arg(&hi)
                .arg(&a0)
                .arg(&as_)
                .arg(&ah)
                .arg(&b0)
                .arg(&bs)
                .arg(&bh)
                .arg(&c0)
                .arg(&cs)
                .arg(&ch);
            let blocks = batch.div_ceil(256) as u32;
            // SAFETY: ptrs holds 3·batch entries; the kernel writes exactly those.
            unsafe { lb_.launch(cfg((blocks, 1, 1), (256, 1, 1))) }
                .map(drop)
                .map_err(CudaError::driver("launching attn_gemm_ptrs"))?;
        }
        let compute = match math {
            GemmMath::F32 => cublasComputeType_t::CUBLAS_COMPUTE_32F,
            GemmMath::Tf32 | GemmMath::Bf16 => cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
        };
        let (arr, _gp) = ptrs.device_ptr(&self.stream);
        let (a_arr, b_arr, c_arr) = (arr, arr + 8 * batch as u64, arr + 16 * batch as u64);
        let f32t = cudaDataType_t::CUDA_R_32F;
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
        // SAFETY: every matrix of every operand was checked to lie inside its buffer; the pointer
        // arrays are filled by the kernel queued before on the same stream.
        unsafe {
            cudarc::cublas::sys::cublasGemmBatchedEx(
                *self.blas.handle(),
                cublas_op(trans_b),
                cublas_op(trans_a),
                ni,
                mi,
                ki,
                (&alpha) as *const f32 as *const c_void,
                b_arr as *const *const c_void,
                f32t,
                lds[1],
                a_arr as *const *const c_void,
                f32t,
                lds[0],
                (&beta) as *const f32 as *const c_void,
                c_arr as *const *mut c_void,
                f32t,
                lds[2],
                bi,
                compute,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .result()
        .map_err(CudaError::cublas(format!(
            "gemm_heads {seqs}×{heads} × m={m} n={n} k={k}"
        )))
    }

    /// `batch` independent GEMMs of one shape over consecutive matrices: A, B and C hold `batch`
    /// contiguous row-major matrices each (strides m·k, k·n and m·n elements).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_batched<T: Float, O: Float>(
        &self,
        shape: GemmShape,
        batch: usize,
        a: &impl DevicePtr<T>,
        b: &impl DevicePtr<T>,
        c: &mut impl DevicePtrMut<O>,
        alpha: f32,
        beta: f32,
        math: GemmMath,
    ) -> Result<(), CudaError> {
        const OP: &str = "gemm";
        let GemmShape {
            m,
            n,
            k,
            trans_a,
            trans_b,
        } = shape;
        if T::DATA_TYPE == cudaDataType_t::CUDA_R_32F && O::DATA_TYPE != cudaDataType_t::CUDA_R_32F
        {
            return Err(CudaError::shape(OP, "f32 inputs need an f32 output"));
        }
        for (name, have, need) in [
            ("A", a.len(), batch * m * k),
            ("B", b.len(), batch * k * n),
            ("C", c.len(), batch * m * n),
        ] {
            if have < need {
                return Err(CudaError::shape(
                    OP,
                    format!(
                        "{name} has {have} elements, needs {need} for {batch} × m={m} n={n} k={k}"
                    ),
                ));
            }
        }
        let (mi, ni, ki) = shape.dims(OP, batch)?;
        if T::DATA_TYPE == cudaDataType_t::CUDA_R_32F && math == GemmMath::Bf16 {
            // cuBLAS's FAST_16BF compute type on f32 operands runs TF32 kernels on Hopper (measured:
            // identical results and times), so round the operands to bf16 here and run a real
            // bf16 × bf16 → f32 GEMM.
            let a16 = self.to_bf16(a, batch * m * k)?;
            let b16 = self.to_bf16(b, batch * k * n)?;
            return self.gemm_batched::<bf16, O>(shape, batch, &a16, &b16, c, alpha, beta, math);
        }
        let bi = dim(OP, "batch", batch)?;
        // Leading dimensions of the dense operands: their stored row lengths.
        let ((_, a_cols), (_, b_cols)) = shape.stored();
        let (lda, ldb) = (dim(OP, "ldb", b_cols)?, dim(OP, "lda", a_cols)?);
        let compute = match (T::DATA_TYPE, math) {
            (cudaDataType_t::CUDA_R_32F, GemmMath::Tf32) => {
                cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
            }
            _ => cublasComputeType_t::CUBLAS_COMPUTE_32F,
        };
        let (pa, _ga) = a.device_ptr(&self.stream);
        let (pb, _gb) = b.device_ptr(&self.stream);
        let (pc, _gc) = c.device_ptr_mut(&self.stream);
        let what = || format!("gemm {batch} × m={m} n={n} k={k}");
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
        // SAFETY: buffer sizes were checked above against batch, m, n, k; pointers live for the call.
        unsafe {
            if batch == 1 {
                cudarc::cublas::result::gemm_ex(
                    *self.blas.handle(),
                    cublas_op(trans_b),
                    cublas_op(trans_a),
                    ni,
                    mi,
                    ki,
                    (&alpha) as *const f32 as *const c_void,
                    pb as *const c_void,
                    T::DATA_TYPE,
                    lda,
                    pa as *const c_void,
                    T::DATA_TYPE,
                    ldb,
                    (&beta) as *const f32 as *const c_void,
                    pc as *mut c_void,
                    O::DATA_TYPE,
                    ni,
                    compute,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            } else {
                cudarc::cublas::result::gemm_strided_batched_ex(
                    *self.blas.handle(),
                    cublas_op(trans_b),
                    cublas_op(trans_a),
                    ni,
                    mi,
                    ki,
                    (&alpha) as *const f32 as *const c_void,
                    pb as *const c_void,
                    T::DATA_TYPE,
                    lda,
                    (k * n) as i64,
                    pa as *const c_void,
                    T::DATA_TYPE,
                    ldb,
                    (m * k) as i64,
                    (&beta) as *const f32 as *const c_void,
                    pc as *mut c_void,
                    O::DATA_TYPE,
                    ni,
                    (m * n) as i64,
                    bi,
                    compute,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
        }
        .map_err(CudaError::cublas(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored shapes follow the transposition flags (their cols are the dense leading
    /// dimensions), and an empty GEMM is refused.
    #[test]
    fn stored_shapes_and_empty_gemms() {
        let g = |trans_a, trans_b| GemmShape {
            m: 2,
            n: 3,
            k: 5,
            trans_a,
            trans_b,
        };
        assert_eq!(g(false, false).stored(), ((2, 5), (5, 3)));
        assert_eq!(g(true, true).stored(), ((5, 2), (3, 5)));
        assert_eq!(g(false, false).dims("t", 1).unwrap(), (2, 3, 5));
        assert!(g(false, false).dims("t", 0).is_err());
        let empty = GemmShape {
            k: 0,
            ..g(false, false)
        };
        assert!(empty.dims("t", 4).is_err());
    }
}
