//! Bias, residual/drop-path, token merge, row gather/scatter and casts (kernels/cuda/elementwise.cu).

use cudarc::driver::{CudaSlice, PushKernelArg};
use half::bf16;

use super::{cfg, int, launched, long, need};
use crate::cuda::device::CudaBackend;
use crate::cuda::dtype::{kernel_name, Float};
use crate::cuda::error::CudaError;
use crate::cuda::source::Family;

/// Rows summed per block in the first stage of a column sum.
const ROWS_PER_BLOCK: usize = 256;

/// A validated row permutation/selection on the device: every entry < `src_rows` and no entry
/// repeated (so the scatter backward can add without atomics).
#[derive(Debug)]
pub struct RowIndex {
    idx: CudaSlice<i32>,
    len: usize,
    src_rows: usize,
}

impl RowIndex {
    /// Number of selected rows.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether no rows are selected.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Rows of the indexed (source) matrix.
    pub fn src_rows(&self) -> usize {
        self.src_rows
    }
}

/// Token-merge geometry (spec §2.2.2 step 3): out[b] = base[b] + mean_g src[(b·groups + g)·seq_len + pos].
#[derive(Debug, Clone, Copy)]
pub struct MergeShape {
    pub batch: usize,
    pub groups: usize,
    pub seq_len: usize,
    pub pos: usize,
    pub cols: usize,
    /// Row stride (in elements) of `base` and `out`.
    pub base_stride: usize,
    pub out_stride: usize,
}

impl CudaBackend {
    /// x[r, c] += bias[c] in place.
    pub fn bias_add<T: Float>(
        &self,
        x: &mut CudaSlice<T>,
        bias: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "bias_add";
        need(OP, "x", x.len(), rows * cols)?;
        need(OP, "bias", bias.len(), cols)?;
        let (r, c) = (long(OP, "rows", rows)?, int(OP, "cols", cols)?);
        let name = kernel_name::<T>("bias_add");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(bias).arg(&r).arg(&c);
        // SAFETY: every buffer was checked against the rows * cols elements the kernel covers.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(rows * cols), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// out[c] += Σ_r x[r, c] (bias gradient), deterministic two-stage reduction.
    pub fn col_sum_accumulate<T: Float>(
        &self,
        x: &CudaSlice<T>,
        rows: usize,
        cols: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        const OP: &str = "col_sum_accumulate";
        need(OP, "x", x.len(), rows * cols)?;
        need(OP, "out", out.len(), cols)?;
        let (r, c) = (int(OP, "rows", rows)?, int(OP, "cols", cols)?);
        let nblocks = rows.div_ceil(ROWS_PER_BLOCK).max(1);
        let mut partial = self.zeros::<f32>(nblocks * cols)?;
        let rpb = ROWS_PER_BLOCK as i32;
        let name = kernel_name::<T>("col_sum_partial");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(&mut partial).arg(&r).arg(&c).arg(&rpb);
        // SAFETY: partial holds nblocks·cols; x holds rows·cols.
        launched(
            &name,
            unsafe {
                b.launch(cfg(
                    (cols.div_ceil(32) as u32, nblocks as u32, 1),
                    (32, 8, 1),
                ))
            }
            .map(drop),
        )?;
        let nb = int(OP, "nblocks", nblocks)?;
        let f = self.function(Family::Elementwise, "col_sum_finish")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(&partial).arg(&nb).arg(&c).arg(out);
        // SAFETY: out holds cols.
        launched(
            "col_sum_finish",
            unsafe { b.launch(cfg((cols.div_ceil(256) as u32, 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    fn check_groups(
        op: &'static str,
        scale: &CudaSlice<f32>,
        rows: usize,
        rows_per_group: usize,
    ) -> Result<i32, CudaError> {
        if rows_per_group == 0 {
            return Err(CudaError::shape(op, "rows_per_group must be > 0"));
        }
        need(op, "scale", scale.len(), rows.div_ceil(rows_per_group))?;
        int(op, "rows_per_group", rows_per_group)
    }

    /// out[r] = x[r]·scale[r / rows_per_group] (drop-path; also its backward on gradients).
    #[allow(clippy::too_many_arguments)]
    pub fn drop_path<T: Float>(
        &self,
        x: &CudaSlice<T>,
        scale: &CudaSlice<f32>,
        out: &mut CudaSlice<T>,
        rows: usize,
        cols: usize,
        rows_per_group: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "drop_path";
        need(OP, "x", x.len(), rows * cols)?;
        need(OP, "out", out.len(), rows * cols)?;
        let g = Self::check_groups(OP, scale, rows, rows_per_group)?;
        let (r, c) = (long(OP, "rows", rows)?, int(OP, "cols", cols)?);
        let name = kernel_name::<T>("drop_path");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(scale).arg(out).arg(&r).arg(&c).arg(&g);
        // SAFETY: every buffer was checked against the rows * cols elements the kernel covers.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(rows * cols), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// out = a + drop_path(b).
    #[allow(clippy::too_many_arguments)]
    pub fn residual_drop_path<T: Float>(
        &self,
        a: &CudaSlice<T>,
        b_in: &CudaSlice<T>,
        scale: &CudaSlice<f32>,
        out: &mut CudaSlice<T>,
        rows: usize,
        cols: usize,
        rows_per_group: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "residual_drop_path";
        need(OP, "a", a.len(), rows * cols)?;
        need(OP, "b", b_in.len(), rows * cols)?;
        need(OP, "out", out.len(), rows * cols)?;
        let g = Self::check_groups(OP, scale, rows, rows_per_group)?;
        let (r, c) = (long(OP, "rows", rows)?, int(OP, "cols", cols)?);
        let name = kernel_name::<T>("residual_drop_path");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(a)
            .arg(b_in)
            .arg(scale)
            .arg(out)
            .arg(&r)
            .arg(&c)
            .arg(&g);
        // SAFETY: every buffer was checked against the rows * cols elements the kernel covers.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(rows * cols), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// out = a + b over `n` elements.
    pub fn add<T: Float>(
        &self,
        a: &CudaSlice<T>,
        b_in: &CudaSlice<T>,
        out: &mut CudaSlice<T>,
        n: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "add";
        need(OP, "a", a.len(), n)?;
        need(OP, "b", b_in.len(), n)?;
        need(OP, "out", out.len(), n)?;
        let nl = long(OP, "n", n)?;
        let name = kernel_name::<T>("add");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(a).arg(b_in).arg(out).arg(&nl);
        // SAFETY: every buffer was checked against the n elements the kernel covers.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(n), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    fn check_merge(
        op: &'static str,
        s: &MergeShape,
        base_len: Option<usize>,
        src_len: usize,
        out_len: usize,
    ) -> Result<(), CudaError> {
        if s.groups == 0 || s.pos >= s.seq_len {
            return Err(CudaError::shape(op, format!("invalid merge shape {s:?}")));
        }
        if s.base_stride < s.cols || s.out_stride < s.cols {
            return Err(CudaError::shape(
                op,
                format!("row strides smaller than cols in {s:?}"),
            ));
        }
        if s.batch > 0 {
            if let Some(base_len) = base_len {
                need(op, "base", base_len, (s.batch - 1) * s.base_stride + s.cols)?;
            }
            need(op, "out", out_len, (s.batch - 1) * s.out_stride + s.cols)?;
        }
        need(op, "src", src_len, s.batch * s.groups * s.seq_len * s.cols)
    }

    /// Token merge forward (CLS: mean over frames of the spatial CLS rows; temp token: mean over
    /// locations of the temporal τ rows), added to `base`.
    pub fn token_merge_fwd<T: Float>(
        &self,
        s: MergeShape,
        base: &CudaSlice<T>,
        src: &CudaSlice<T>,
        out: &mut CudaSlice<T>,
    ) -> Result<(), CudaError> {
        const OP: &str = "token_merge_fwd";
        Self::check_merge(OP, &s, Some(base.len()), src.len(), out.len())?;
        let (bs, os) = (
            long(OP, "base_stride", s.base_stride)?,
            long(OP, "out_stride", s.out_stride)?,
        );
        let (bb, g, sl, p, c) = (
            int(OP, "batch", s.batch)?,
            int(OP, "groups", s.groups)?,
            int(OP, "seq_len", s.seq_len)?,
            int(OP, "pos", s.pos)?,
            int(OP, "cols", s.cols)?,
        );
        let name = kernel_name::<T>("token_merge_fwd");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(base)
            .arg(&bs)
            .arg(src)
            .arg(out)
            .arg(&os)
            .arg(&bb)
            .arg(&g)
            .arg(&sl)
            .arg(&p)
            .arg(&c);
        // SAFETY: every buffer was checked against the s.batch * s.cols elements the kernel covers.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(s.batch * s.cols), 1, 1), (256, 1, 1))) }
                .map(drop),
        )
    }

    /// Token merge backward: g_src rows at `pos` of every group get g_out[b]/groups (written); other
    /// rows of g_src are untouched. The base gradient is g_out itself.
    pub fn token_merge_bwd<T: Float>(
        &self,
        s: MergeShape,
        g_out: &CudaSlice<T>,
        g_src: &mut CudaSlice<T>,
    ) -> Result<(), CudaError> {
        const OP: &str = "token_merge_bwd";
        Self::check_merge(OP, &s, None, g_src.len(), g_out.len())?;
        let os = long(OP, "out_stride", s.out_stride)?;
        let (bb, g, sl, p, c) = (
            int(OP, "batch", s.batch)?,
            int(OP, "groups", s.groups)?,
            int(OP, "seq_len", s.seq_len)?,
            int(OP, "pos", s.pos)?,
            int(OP, "cols", s.cols)?,
        );
        let name = kernel_name::<T>("token_merge_bwd");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(g_out)
            .arg(&os)
            .arg(g_src)
            .arg(&bb)
            .arg(&g)
            .arg(&sl)
            .arg(&p)
            .arg(&c);
        // SAFETY: every buffer was checked against the s.batch * s.groups * s.cols elements the kernel covers.
        launched(
            &name,
            unsafe {
                b.launch(cfg(
                    (self.grid_for(s.batch * s.groups * s.cols), 1, 1),
                    (256, 1, 1),
                ))
            }
            .map(drop),
        )
    }

    /// Uploads and validates a row index: entries in 0..src_rows, no repeats.
    pub fn row_index(&self, idx: &[usize], src_rows: usize) -> Result<RowIndex, CudaError> {
        const OP: &str = "row_index";
        let mut seen = vec![false; src_rows];
        let mut host = Vec::with_capacity(idx.len());
        for (k, &i) in idx.iter().enumerate() {
            if i >= src_rows {
                return Err(CudaError::shape(
                    OP,
                    format!("entry {k} = {i} out of range 0..{src_rows}"),
                ));
            }
            if std::mem::replace(&mut seen[i], true) {
                return Err(CudaError::shape(
                    OP,
                    format!("row {i} selected twice (entry {k})"),
                ));
            }
            host.push(int(OP, "row", i)?);
        }
        Ok(RowIndex {
            idx: self.upload(&host)?,
            len: idx.len(),
            src_rows,
        })
    }

    /// out[r] = src[idx[r]] for rows of `cols`.
    pub fn gather_rows<T: Float>(
        &self,
        src: &CudaSlice<T>,
        idx: &RowIndex,
        out: &mut CudaSlice<T>,
        cols: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "gather_rows";
        need(OP, "src", src.len(), idx.src_rows * cols)?;
        need(OP, "out", out.len(), idx.len * cols)?;
        let (r, c) = (long(OP, "rows", idx.len)?, int(OP, "cols", cols)?);
        let name = kernel_name::<T>("gather_rows");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(src).arg(&idx.idx).arg(out).arg(&r).arg(&c);
        // SAFETY: every buffer was checked against the idx.len * cols elements the kernel covers.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(idx.len * cols), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// dst[idx[r]] += src[r] (backward of [`Self::gather_rows`]).
    pub fn scatter_add_rows<T: Float>(
        &self,
        src: &CudaSlice<T>,
        idx: &RowIndex,
        dst: &mut CudaSlice<T>,
        cols: usize,
    ) -> Result<(), CudaError> {
        const OP: &str = "scatter_add_rows";
        need(OP, "src", src.len(), idx.len * cols)?;
        need(OP, "dst", dst.len(), idx.src_rows * cols)?;
        let (r, c) = (long(OP, "rows", idx.len)?, int(OP, "cols", cols)?);
        let name = kernel_name::<T>("scatter_add_rows");
        let f = self.function(Family::Elementwise, &name)?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(src).arg(&idx.idx).arg(dst).arg(&r).arg(&c);
        // SAFETY: every buffer was checked against the idx.len * cols elements the kernel covers.
        launched(
            &name,
            unsafe { b.launch(cfg((self.grid_for(idx.len * cols), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// bf16 copy of f32 values (round to nearest even).
    pub fn cast_to_bf16(
        &self,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<bf16>,
        n: usize,
    ) -> Result<(), CudaError> {
        need("cast_to_bf16", "x", x.len(), n)?;
        need("cast_to_bf16", "y", y.len(), n)?;
        let nl = long("cast_to_bf16", "n", n)?;
        let f = self.function(Family::Elementwise, "cast_f32_bf16")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(y).arg(&nl);
        // SAFETY: sizes checked above.
        launched(
            "cast_f32_bf16",
            unsafe { b.launch(cfg((self.grid_for(n), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }

    /// f32 copy of bf16 values.
    pub fn cast_to_f32(
        &self,
        x: &CudaSlice<bf16>,
        y: &mut CudaSlice<f32>,
        n: usize,
    ) -> Result<(), CudaError> {
        need("cast_to_f32", "x", x.len(), n)?;
        need("cast_to_f32", "y", y.len(), n)?;
        let nl = long("cast_to_f32", "n", n)?;
        let f = self.function(Family::Elementwise, "cast_bf16_f32")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(x).arg(y).arg(&nl);
        // SAFETY: sizes checked above.
        launched(
            "cast_bf16_f32",
            unsafe { b.launch(cfg((self.grid_for(n), 1, 1), (256, 1, 1))) }.map(drop),
        )
    }
}
