//! CPU reference backend. The op modules are generic over [`crate::real::Real`] so the same code
//! runs in f64 for finite-difference gradient checks; [`CpuBackend`] binds them to `f32`.

pub mod adam;
pub mod attention;
pub mod batchnorm;
pub mod conv3d;
pub mod gelu;
pub mod layernorm;
pub mod matmul;
pub mod tokens;

use crate::backend::{AdamParams, AttnDims, Backend, Conv3dDims, EmbedDims, TempTokenSource};
use rayon::prelude::*;

/// The CPU backend: buffers are `Vec<f32>`, GEMMs use the `gemm` crate on the rayon pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    type Buf = Vec<f32>;

    fn zeros(&self, len: usize) -> Vec<f32> {
        vec![0.0; len]
    }
    fn alloc(&self, len: usize) -> Vec<f32> {
        vec![f32::NAN; len]
    }
    fn upload(&self, data: &[f32]) -> Vec<f32> {
        data.to_vec()
    }
    fn download(&self, buf: &Vec<f32>) -> Vec<f32> {
        buf.clone()
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn fill_zero(&self, buf: &mut Vec<f32>) {
        buf.iter_mut().for_each(|v| *v = 0.0);
    }
    fn copy(&self, src: &Vec<f32>, dst: &mut Vec<f32>) {
        dst[..src.len()].copy_from_slice(src);
    }
    fn axpy(&self, alpha: f32, x: &Vec<f32>, y: &mut Vec<f32>, n: usize) {
        y[..n]
            .par_iter_mut()
            .zip(x[..n].par_iter())
            .with_min_len(8192)
            .for_each(|(y, &x)| *y += alpha * x);
    }
    fn mul_inplace(&self, x: &mut Vec<f32>, m: &Vec<f32>, n: usize) {
        x[..n].iter_mut().zip(&m[..n]).for_each(|(x, &m)| *x *= m);
    }
    fn scale_groups(&self, x: &mut Vec<f32>, scale: &[f32], group_len: usize) {
        for (g, &s) in scale.iter().enumerate() {
            if s != 1.0 {
                x[g * group_len..(g + 1) * group_len]
                    .iter_mut()
                    .for_each(|v| *v *= s);
            }
        }
    }
    fn sum_squares(&self, x: &Vec<f32>, n: usize) -> f64 {
        x[..n].iter().map(|&v| (v as f64) * (v as f64)).sum()
    }
    fn linear_fwd(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        y: &mut Vec<f32>,
        m: usize,
        k: usize,
        n: usize,
    ) {
        matmul::linear_fwd(x, w, b.map(|b| b.as_slice()), y, m, k, n);
    }
    fn linear_bwd(
        &self,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        w: &Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        dw: Option<&mut Vec<f32>>,
        db: Option<&mut Vec<f32>>,
        m: usize,
        k: usize,
        n: usize,
    ) {
        matmul::linear_bwd(
            dy,
            x,
            w,
            dx.map(|v| v.as_mut_slice()),
            dw.map(|v| v.as_mut_slice()),
            db.map(|v| v.as_mut_slice()),
            m,
            k,
            n,
        );
    }
    fn layernorm_fwd(
        &self,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        y: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        rows: usize,
        cols: usize,
        eps: f32,
    ) {
        layernorm::forward(x, gamma, beta, y, mean, rstd, rows, cols, eps as f64);
    }
    fn layernorm_bwd(
        &self,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        mean: &Vec<f32>,
        rstd: &Vec<f32>,
        dx: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
        rows: usize,
        cols: usize,
    ) {
        layernorm::backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols);
    }
    fn gelu_fwd(&self, x: &Vec<f32>, y: &mut Vec<f32>, n: usize) {
        gelu::forward(x, y, n);
    }
    fn gelu_bwd(&self, dy: &Vec<f32>, x: &Vec<f32>, dx: &mut Vec<f32>, n: usize) {
        gelu::backward(dy, x, dx, n);
    }
    fn attention_fwd(&self, qkv: &Vec<f32>, out: &mut Vec<f32>, probs: &mut Vec<f32>, d: AttnDims) {
        attention::forward(qkv, out, probs, d);
    }
    fn attention_bwd(
        &self,
        dout: &Vec<f32>,
        qkv: &Vec<f32>,
        probs: &Vec<f32>,
        dqkv: &mut Vec<f32>,
        d: AttnDims,
    ) {
        attention::backward(dout, qkv, probs, dqkv, d);
    }
    fn patchify(
        &self,
        x: &Vec<f32>,
        cols: &mut Vec<f32>,
        batch: usize,
        cin: usize,
        frames: usize,
        height: usize,
        width: usize,
        patch: usize,
    ) {
        tokens::patchify(x, cols, batch, cin, frames, height, width, patch);
    }
    fn embed_tokens_fwd(
        &self,
        e: &Vec<f32>,
        cls: &Vec<f32>,
        pos: &Vec<f32>,
        time: &Vec<f32>,
        temp: &Vec<f32>,
        tok: &mut Vec<f32>,
        d: EmbedDims,
        src: TempTokenSource,
    ) {
        tokens::embed_fwd(e, cls, pos, time, temp, tok, d, src);
    }
    fn embed_tokens_bwd(
        &self,
        dtok: &Vec<f32>,
        de: &mut Vec<f32>,
        dcls: &mut Vec<f32>,
        dpos: &mut Vec<f32>,
        dtime: &mut Vec<f32>,
        dtemp: &mut Vec<f32>,
        d: EmbedDims,
        src: TempTokenSource,
    ) {
        tokens::embed_bwd(dtok, de, dcls, dpos, dtime, dtemp, d, src);
    }
    fn temporal_gather_fwd(&self, tok: &Vec<f32>, seq: &mut Vec<f32>, d: EmbedDims) {
        tokens::temporal_gather_fwd(tok, seq, d);
    }
    fn temporal_gather_bwd(&self, dseq: &Vec<f32>, dtok: &mut Vec<f32>, d: EmbedDims) {
        tokens::temporal_gather_bwd(dseq, dtok, d);
    }
    fn spatial_gather_fwd(&self, tok: &Vec<f32>, r: &Vec<f32>, seq: &mut Vec<f32>, d: EmbedDims) {
        tokens::spatial_gather_fwd(tok, r, seq, d);
    }
    fn spatial_gather_bwd(
        &self,
        dseq: &Vec<f32>,
        dtok: &mut Vec<f32>,
        dr: &mut Vec<f32>,
        d: EmbedDims,
    ) {
        tokens::spatial_gather_bwd(dseq, dtok, dr, d);
    }
    fn merge_fwd(
        &self,
        tok: &Vec<f32>,
        r: &Vec<f32>,
        v: &Vec<f32>,
        y: &mut Vec<f32>,
        d: EmbedDims,
    ) {
        tokens::merge_fwd(tok, r, v, y, d);
    }
    fn merge_bwd(
        &self,
        dy: &Vec<f32>,
        dtok: &mut Vec<f32>,
        dr: &mut Vec<f32>,
        dv: &mut Vec<f32>,
        d: EmbedDims,
    ) {
        tokens::merge_bwd(dy, dtok, dr, dv, d);
    }
    fn gather_rows(&self, src: &Vec<f32>, idx: &[u32], dst: &mut Vec<f32>, cols: usize) {
        tokens::gather_rows(src, idx, dst, cols);
    }
    fn scatter_add_rows(&self, ddst: &Vec<f32>, idx: &[u32], dsrc: &mut Vec<f32>, cols: usize) {
        tokens::scatter_add_rows(ddst, idx, dsrc, cols);
    }
    fn conv3d_t_fwd(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: &Vec<f32>,
        y: &mut Vec<f32>,
        d: Conv3dDims,
    ) {
        conv3d::forward(x, w, b, y, d);
    }
    fn conv3d_t_bwd(
        &self,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        w: &Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        dw: &mut Vec<f32>,
        db: &mut Vec<f32>,
        d: Conv3dDims,
    ) {
        conv3d::backward(dy, x, w, dx.map(|v| v.as_mut_slice()), dw, db, d);
    }
    fn batchnorm_fwd(
        &self,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        running_mean: &mut Vec<f32>,
        running_var: &mut Vec<f32>,
        y: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        rows: usize,
        ch: usize,
        train: bool,
        momentum: f32,
        eps: f32,
    ) {
        batchnorm::forward(
            x,
            gamma,
            beta,
            running_mean,
            running_var,
            y,
            mean,
            rstd,
            rows,
            ch,
            train,
            momentum as f64,
            eps as f64,
        );
    }
    fn batchnorm_bwd(
        &self,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        mean: &Vec<f32>,
        rstd: &Vec<f32>,
        dx: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
        rows: usize,
        ch: usize,
    ) {
        batchnorm::backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, ch);
    }
    fn adam_step(
        &self,
        p: &mut Vec<f32>,
        g: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        n: usize,
        h: AdamParams,
    ) {
        adam::step(&mut p[..n], &g[..n], &mut m[..n], &mut v[..n], h);
    }
}
