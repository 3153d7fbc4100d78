//! The FakeSTormer network (spec §2) composed from backend ops: forward with saved activations
//! ([`Trace`]) and an explicit backward pass that accumulates parameter gradients.

use crate::config::ModelConfig;
use crate::params::{Affine, BnParams, Inventory, Weights};
use crate::ModelError;
use kernels::{AttnDims, Backend, Conv3dDims, EmbedDims, TempTokenSource};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// LayerNorm epsilon of every backbone norm.
pub const LN_EPS: f32 = 1e-6;
/// BatchNorm3d epsilon.
pub const BN_EPS: f32 = 1e-5;
/// BatchNorm3d momentum of the hm head.
pub const BN_MOMENTUM: f32 = 0.05;

/// Whether to reproduce the official bugs of spec §9 items 1–2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Temp token from sample 0's frame-0 patch b; scrambled patch map to the hm head.
    Compat,
    /// Learned temp token (+ `time_embed[T]`); natural (t, i, j) patch map.
    Clean,
}

/// The two independent bug switches a [`Mode`] sets (spec §9 items 1–2). Exposed separately so
/// the fixture's derived "clean temp token, official map" variant can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// Source of the temp token (item 1).
    pub temp_token: TempTokenSource,
    /// Hand the hm head the scrambled "(n t) read as (t n)" patch map (item 2).
    pub scrambled_map: bool,
}

impl Mode {
    /// The bug switches of this mode.
    pub fn behaviour(self) -> Behaviour {
        match self {
            Mode::Compat => Behaviour {
                temp_token: TempTokenSource::Compat,
                scrambled_map: true,
            },
            Mode::Clean => Behaviour {
                temp_token: TempTokenSource::Clean,
                scrambled_map: false,
            },
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "compat" => Ok(Mode::Compat),
            "clean" => Ok(Mode::Clean),
            o => Err(ModelError::Config(format!(
                "unknown mode {o:?} (expected compat or clean)"
            ))),
        }
    }
}

/// Stochastic regularisation used in training mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Regularisation {
    /// Maximum drop-path rate; block ℓ uses `rate·ℓ/(depth−1)` (official 0.3).
    pub drop_path_rate: f32,
    /// Dropout after the spatial-branch head's GELU (official 0.2).
    pub head_dropout: f32,
}

impl Default for Regularisation {
    fn default() -> Self {
        Self {
            drop_path_rate: 0.3,
            head_dropout: 0.2,
        }
    }
}

/// Saved activations of one block.
#[allow(missing_docs)]
pub struct BlockTrace<B: Backend> {
    pub tseq: B::Buf,
    pub tln: B::Buf,
    pub tmean: B::Buf,
    pub trstd: B::Buf,
    pub tqkv: B::Buf,
    pub tprobs: B::Buf,
    pub tatt: B::Buf,
    /// Temporal attention output after drop-path (input of `temporal_fc`).
    pub tproj: B::Buf,
    pub tdrop: Vec<f32>,
    /// Output of `temporal_fc` (R).
    pub r: B::Buf,
    pub sseq: B::Buf,
    pub sln: B::Buf,
    pub smean: B::Buf,
    pub srstd: B::Buf,
    pub sqkv: B::Buf,
    pub sprobs: B::Buf,
    pub satt: B::Buf,
    /// Spatial attention output after drop-path (V).
    pub v: B::Buf,
    pub sdrop: Vec<f32>,
    /// Merged tokens entering the MLP.
    pub y: B::Buf,
    pub ln2: B::Buf,
    pub mean2: B::Buf,
    pub rstd2: B::Buf,
    pub h1: B::Buf,
    pub g: B::Buf,
    /// MLP output after drop-path.
    pub h2: B::Buf,
    pub mdrop: Vec<f32>,
}

/// Saved activations of a forward pass; outputs are `cls` `[B]`, `temp_loc` `[B, T]`, `hm`
/// `[B, 1, T, g, g]`.
#[allow(missing_docs)]
pub struct Trace<B: Backend> {
    pub batch: usize,
    pub train: bool,
    pub cols: B::Buf,
    pub e: B::Buf,
    /// `tokens[0]` = embedding, `tokens[i+1]` = output of block i.
    pub tokens: Vec<B::Buf>,
    pub blocks: Vec<BlockTrace<B>>,
    pub z: B::Buf,
    pub zmean: B::Buf,
    pub zrstd: B::Buf,
    pub zc: B::Buf,
    pub s_raw: B::Buf,
    pub s_norm: B::Buf,
    pub s_mean: B::Buf,
    pub s_rstd: B::Buf,
    pub tl_a: B::Buf,
    /// GELU output after dropout (input of `fc_out`).
    pub tl_g: B::Buf,
    pub tl_mask: Option<B::Buf>,
    /// Channel-last patch map `[B, T, g·g, C]` handed to the hm head.
    pub f: B::Buf,
    pub c0: B::Buf,
    pub bn0: BnTrace<B>,
    pub g0: B::Buf,
    pub c1: B::Buf,
    pub bn1: BnTrace<B>,
    pub g1: B::Buf,
    pub cls: B::Buf,
    pub temp_loc: B::Buf,
    pub hm: B::Buf,
}

/// Saved BatchNorm state.
#[allow(missing_docs)]
pub struct BnTrace<B: Backend> {
    pub out: B::Buf,
    pub mean: B::Buf,
    pub rstd: B::Buf,
}

/// The network: configuration, inventory, weights and mode.
pub struct Network<B: Backend> {
    /// Architecture.
    pub cfg: ModelConfig,
    /// Names/shapes/layout.
    pub inv: Inventory,
    /// Values.
    pub weights: Weights<B>,
    /// Bug switches (from the compat/clean [`Mode`]).
    pub behaviour: Behaviour,
    /// Training-mode regularisation.
    pub reg: Regularisation,
}

fn drop_scales(rng: &mut ChaCha8Rng, groups: usize, rate: f32) -> Vec<f32> {
    (0..groups)
        .map(|_| {
            if rng.gen::<f32>() < 1.0 - rate {
                1.0 / (1.0 - rate)
            } else {
                0.0
            }
        })
        .collect()
}

impl<B: Backend> Network<B> {
    /// A network with zero weights (load or initialise them afterwards).
    pub fn new(be: &B, cfg: ModelConfig, mode: Mode) -> Result<Self, ModelError> {
        cfg.validate()?;
        let inv = Inventory::new(&cfg);
        let weights = Weights::zeros(be, &inv);
        Ok(Self {
            cfg,
            inv,
            weights,
            behaviour: mode.behaviour(),
            reg: Regularisation::default(),
        })
    }

    fn dims(&self, batch: usize) -> EmbedDims {
        EmbedDims {
            batch,
            frames: self.cfg.num_frames,
            patches: self.cfg.patches(),
            dim: self.cfg.embed_dim,
        }
    }

    fn temp_src(&self) -> TempTokenSource {
        self.behaviour.temp_token
    }

    /// Row indices of `Z` that form the channel-last hm-head map `[B, T, g·g, C]`.
    pub fn embed_map_rows(&self, batch: usize) -> Vec<u32> {
        let (t_, n_, l) = (self.cfg.num_frames, self.cfg.patches(), self.cfg.tokens());
        let mut idx = Vec::with_capacity(batch * t_ * n_);
        for b in 0..batch {
            for t in 0..t_ {
                for s in 0..n_ {
                    let k = if self.behaviour.scrambled_map {
                        n_ * t + s
                    } else {
                        s * t_ + t
                    };
                    idx.push((b * l + 1 + k) as u32);
                }
            }
        }
        idx
    }

    fn ln(&self, be: &B, x: &B::Buf, p: Affine, rows: usize) -> (B::Buf, B::Buf, B::Buf) {
        let c = self.cfg.embed_dim;
        let w = &self.weights.params;
        let mut y = be.alloc(rows * c);
        let mut m = be.alloc(rows);
        let mut r = be.alloc(rows);
        be.layernorm_fwd(x, &w[p.w], &w[p.b], &mut y, &mut m, &mut r, rows, c, LN_EPS);
        (y, m, r)
    }

    fn linear(&self, be: &B, x: &B::Buf, p: Affine, m: usize, k: usize, n: usize) -> B::Buf {
        let w = &self.weights.params;
        let mut y = be.alloc(m * n);
        be.linear_fwd(x, &w[p.w], Some(&w[p.b]), &mut y, m, k, n);
        y
    }

    fn bn(
        &mut self,
        be: &B,
        x: &B::Buf,
        p: BnParams,
        rows: usize,
        ch: usize,
        train: bool,
    ) -> BnTrace<B> {
        let mut out = be.alloc(rows * ch);
        let mut mean = be.alloc(ch);
        let mut rstd = be.alloc(ch);
        let (lo, hi) = self.weights.buffers.split_at_mut(p.var);
        be.batchnorm_fwd(
            x,
            &self.weights.params[p.affine.w],
            &self.weights.params[p.affine.b],
            &mut lo[p.mean],
            &mut hi[0],
            &mut out,
            &mut mean,
            &mut rstd,
            rows,
            ch,
            train,
            BN_MOMENTUM,
            BN_EPS,
        );
        if train {
            self.weights.tracked[p.tracked] += 1;
        }
        BnTrace { out, mean, rstd }
    }

    /// Forward pass on `x` (`[B, 3, T, H, W]`). In training mode BN uses batch statistics (and
    /// updates its running stats), drop-path and head dropout draw from `rng`.
    pub fn forward(
        &mut self,
        be: &B,
        x: &B::Buf,
        batch: usize,
        train: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<Trace<B>, ModelError> {
        let cfg = self.cfg;
        let (t_, n_, c, l) = (cfg.num_frames, cfg.patches(), cfg.embed_dim, cfg.tokens());
        let (p, hid, heads, hd) = (cfg.patch_size, cfg.hidden(), cfg.num_heads, cfg.head_dim());
        let need = batch * 3 * t_ * cfg.img_size * cfg.img_size;
        if batch == 0 || be.len(x) != need {
            return Err(ModelError::Input(format!(
                "x: expected B×3×{t_}×{s}×{s} with B ≥ 1 ({need} values for B={batch}), got {}",
                be.len(x),
                s = cfg.img_size
            )));
        }
        if self.behaviour.temp_token == TempTokenSource::Compat && batch > n_ {
            return Err(ModelError::Input(format!(
                "compat mode takes the temp token of sample b from patch b of sample 0, so B must be ≤ {n_} (got {batch})"
            )));
        }
        let d = self.dims(batch);
        let lay = self.inv.layout.clone();
        let kp = 3 * p * p;
        let mut cols = be.alloc(batch * t_ * n_ * kp);
        be.patchify(x, &mut cols, batch, 3, t_, cfg.img_size, cfg.img_size, p);
        let e = self.linear(be, &cols, lay.patch, batch * t_ * n_, kp, c);
        let mut tok0 = be.alloc(batch * l * c);
        {
            let w = &self.weights.params;
            be.embed_tokens_fwd(
                &e,
                &w[lay.cls_token],
                &w[lay.pos_embed],
                &w[lay.time_embed],
                &w[lay.temp_token],
                &mut tok0,
                d,
                self.temp_src(),
            );
        }
        let rows_t = batch * n_ * (t_ + 1);
        let rows_s = batch * t_ * (n_ + 1);
        let rows = batch * l;
        let mut tokens = vec![tok0];
        let mut blocks = Vec::with_capacity(cfg.depth);
        for (i, bp) in lay.blocks.iter().enumerate() {
            let rate = if cfg.depth > 1 {
                self.reg.drop_path_rate * i as f32 / (cfg.depth - 1) as f32
            } else {
                0.0
            };
            let active = train && rate > 0.0;
            let tin = tokens.last().expect("tokens start non-empty");
            // temporal attention over [p(n,0..T); τ]
            let mut tseq = be.alloc(rows_t * c);
            be.temporal_gather_fwd(tin, &mut tseq, d);
            let (tln, tmean, trstd) = self.ln(be, &tseq, bp.temporal_norm1, rows_t);
            let tqkv = self.linear(be, &tln, bp.temporal_qkv, rows_t, c, 3 * c);
            let ad = AttnDims {
                seqs: batch * n_,
                len: t_ + 1,
                heads,
                head_dim: hd,
            };
            let mut tatt = be.alloc(rows_t * c);
            let mut tprobs = be.alloc(batch * n_ * heads * (t_ + 1) * (t_ + 1));
            be.attention_fwd(&tqkv, &mut tatt, &mut tprobs, ad);
            let mut tproj = self.linear(be, &tatt, bp.temporal_proj, rows_t, c, c);
            let tdrop = if active {
                drop_scales(rng, batch * n_, rate)
            } else {
                vec![]
            };
            if active {
                be.scale_groups(&mut tproj, &tdrop, (t_ + 1) * c);
            }
            let r = self.linear(be, &tproj, bp.temporal_fc, rows_t, c, c);
            // spatial attention over [CLS; p'(·,t)]
            let mut sseq = be.alloc(rows_s * c);
            be.spatial_gather_fwd(tin, &r, &mut sseq, d);
            let (sln, smean, srstd) = self.ln(be, &sseq, bp.norm1, rows_s);
            let sqkv = self.linear(be, &sln, bp.qkv, rows_s, c, 3 * c);
            let ad = AttnDims {
                seqs: batch * t_,
                len: n_ + 1,
                heads,
                head_dim: hd,
            };
            let mut satt = be.alloc(rows_s * c);
            let mut sprobs = be.alloc(batch * t_ * heads * (n_ + 1) * (n_ + 1));
            be.attention_fwd(&sqkv, &mut satt, &mut sprobs, ad);
            let mut v = self.linear(be, &satt, bp.proj, rows_s, c, c);
            let sdrop = if active {
                drop_scales(rng, batch * t_, rate)
            } else {
                vec![]
            };
            if active {
                be.scale_groups(&mut v, &sdrop, (n_ + 1) * c);
            }
            let mut y = be.alloc(rows * c);
            be.merge_fwd(tin, &r, &v, &mut y, d);
            // MLP
            let (ln2, mean2, rstd2) = self.ln(be, &y, bp.norm2, rows);
            let h1 = self.linear(be, &ln2, bp.fc1, rows, c, hid);
            let mut g = be.alloc(rows * hid);
            be.gelu_fwd(&h1, &mut g, rows * hid);
            let mut h2 = self.linear(be, &g, bp.fc2, rows, hid, c);
            let mdrop = if active {
                drop_scales(rng, batch, rate)
            } else {
                vec![]
            };
            if active {
                be.scale_groups(&mut h2, &mdrop, l * c);
            }
            let mut out = be.alloc(rows * c);
            be.copy(&y, &mut out);
            be.axpy(1.0, &h2, &mut out, rows * c);
            tokens.push(out);
            blocks.push(BlockTrace {
                tseq,
                tln,
                tmean,
                trstd,
                tqkv,
                tprobs,
                tatt,
                tproj,
                tdrop,
                r,
                sseq,
                sln,
                smean,
                srstd,
                sqkv,
                sprobs,
                satt,
                v,
                sdrop,
                y,
                ln2,
                mean2,
                rstd2,
                h1,
                g,
                h2,
                mdrop,
            });
        }
        let last = tokens.last().expect("tokens start non-empty");
        let (z, zmean, zrstd) = self.ln(be, last, lay.norm, rows);
        // cls head on the temp token
        let tau_rows: Vec<u32> = (0..batch).map(|b| (b * l + l - 1) as u32).collect();
        let mut zc = be.alloc(batch * c);
        be.gather_rows(&z, &tau_rows, &mut zc, c);
        let cls = self.linear(be, &zc, lay.cls_fc, batch, c, 1);
        // temp_loc head (paper: spatial branch) on the last block's per-frame CLS residuals
        let s_rows: Vec<u32> = (0..batch * t_).map(|bt| (bt * (n_ + 1)) as u32).collect();
        let mut s_raw = be.alloc(batch * t_ * c);
        be.gather_rows(&blocks.last().expect("depth ≥ 1").v, &s_rows, &mut s_raw, c);
        let (s_norm, s_mean, s_rstd) = self.ln(be, &s_raw, lay.norm_s_cls, batch * t_);
        let sw = cfg.spatial_head_width;
        let tl_a = self.linear(be, &s_norm, lay.tl_fc1, batch * t_, c, sw);
        let mut tl_g = be.alloc(batch * t_ * sw);
        be.gelu_fwd(&tl_a, &mut tl_g, batch * t_ * sw);
        let tl_mask = if train && self.reg.head_dropout > 0.0 {
            let q = self.reg.head_dropout;
            let m: Vec<f32> = (0..batch * t_ * sw)
                .map(|_| {
                    if rng.gen::<f32>() < 1.0 - q {
                        1.0 / (1.0 - q)
                    } else {
                        0.0
                    }
                })
                .collect();
            let m = be.upload(&m);
            be.mul_inplace(&mut tl_g, &m, batch * t_ * sw);
            Some(m)
        } else {
            None
        };
        let temp_loc = self.linear(be, &tl_g, lay.tl_out, batch, t_ * sw, t_);
        // hm head (paper: temporal branch) on the patch map
        let idx = self.embed_map_rows(batch);
        let mut f = be.alloc(idx.len() * c);
        be.gather_rows(&z, &idx, &mut f, c);
        let hw = cfg.hm_width();
        let hrows = batch * t_ * n_;
        let cd = |cin, cout| Conv3dDims {
            batch,
            frames: t_,
            cells: n_,
            cin,
            cout,
        };
        let conv = |x: &B::Buf, a: Affine, cin: usize, cout: usize, w: &Weights<B>| {
            let mut y = be.alloc(hrows * cout);
            be.conv3d_t_fwd(x, &w.params[a.w], &w.params[a.b], &mut y, cd(cin, cout));
            y
        };
        let c0 = conv(&f, lay.hm_conv0, c, c, &self.weights);
        let bn0 = self.bn(be, &c0, lay.hm_bn0, hrows, c, train);
        let mut g0 = be.alloc(hrows * c);
        be.gelu_fwd(&bn0.out, &mut g0, hrows * c);
        let c1 = conv(&g0, lay.hm_conv1, c, hw, &self.weights);
        let bn1 = self.bn(be, &c1, lay.hm_bn1, hrows, hw, train);
        let mut g1 = be.alloc(hrows * hw);
        be.gelu_fwd(&bn1.out, &mut g1, hrows * hw);
        let hm = conv(&g1, lay.hm_conv2, hw, 1, &self.weights);
        Ok(Trace {
            batch,
            train,
            cols,
            e,
            tokens,
            blocks,
            z,
            zmean,
            zrstd,
            zc,
            s_raw,
            s_norm,
            s_mean,
            s_rstd,
            tl_a,
            tl_g,
            tl_mask,
            f,
            c0,
            bn0,
            g0,
            c1,
            bn1,
            g1,
            cls,
            temp_loc,
            hm,
        })
    }

    /// Which parameters receive a gradient: everything except `norm_t_cls` (never used), and
    /// only head parameters while the backbone is frozen.
    pub fn has_grad(&self, frozen_backbone: bool) -> Vec<bool> {
        let t = self.inv.layout.norm_t_cls;
        self.inv
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| i != t.w && i != t.b && !(frozen_backbone && p.is_backbone()))
            .collect()
    }

    /// Backward pass: accumulates into `grads` (one buffer per parameter, zeroed by the caller)
    /// from the output gradients `d_cls [B]`, `d_temp_loc [B·T]`, `d_hm [B·T·g·g]`. With
    /// `frozen_backbone` the pass stops at the heads' inputs.
    pub fn backward(
        &self,
        be: &B,
        tr: &Trace<B>,
        d_cls: &B::Buf,
        d_temp_loc: &B::Buf,
        d_hm: &B::Buf,
        grads: &mut [B::Buf],
        frozen_backbone: bool,
    ) -> Result<(), ModelError> {
        if !tr.train {
            return Err(ModelError::Input(
                "backward needs a training-mode forward trace".into(),
            ));
        }
        let cfg = self.cfg;
        let batch = tr.batch;
        let (t_, n_, c, l) = (cfg.num_frames, cfg.patches(), cfg.embed_dim, cfg.tokens());
        let (hid, heads, hd) = (cfg.hidden(), cfg.num_heads, cfg.head_dim());
        let lay = &self.inv.layout;
        let w = &self.weights.params;
        let d = self.dims(batch);
        let rows = batch * l;
        let hrows = batch * t_ * n_;
        let hw = cfg.hm_width();
        // Split borrows of two gradient buffers of one layer.
        fn pair<T>(v: &mut [T], a: Affine) -> (&mut T, &mut T) {
            if a.w < a.b {
                let (lo, hi) = v.split_at_mut(a.b);
                (&mut lo[a.w], &mut hi[0])
            } else {
                let (lo, hi) = v.split_at_mut(a.w);
                (&mut hi[0], &mut lo[a.b])
            }
        }
        let lin_bwd =
            |grads: &mut [B::Buf], dy: &B::Buf, x: &B::Buf, a: Affine, m, k, n, want_dx: bool| {
                let (dw, db) = pair(grads, a);
                if want_dx {
                    let mut dx = be.alloc(m * k);
                    be.linear_bwd(dy, x, &w[a.w], Some(&mut dx), Some(dw), Some(db), m, k, n);
                    Some(dx)
                } else {
                    be.linear_bwd(dy, x, &w[a.w], None, Some(dw), Some(db), m, k, n);
                    None
                }
            };
        let ln_bwd = |grads: &mut [B::Buf],
                      dy: &B::Buf,
                      x: &B::Buf,
                      mean: &B::Buf,
                      rstd: &B::Buf,
                      a: Affine,
                      rows| {
            let (dg, db) = pair(grads, a);
            let mut dx = be.alloc(rows * c);
            be.layernorm_bwd(dy, x, &w[a.w], mean, rstd, &mut dx, dg, db, rows, c);
            dx
        };
        let cd = |cin, cout| Conv3dDims {
            batch,
            frames: t_,
            cells: n_,
            cin,
            cout,
        };
        let conv_bwd =
            |grads: &mut [B::Buf], dy: &B::Buf, x: &B::Buf, a: Affine, cin: usize, cout: usize| {
                let (dw, db) = pair(grads, a);
                let mut dx = be.alloc(hrows * cin);
                be.conv3d_t_bwd(dy, x, &w[a.w], Some(&mut dx), dw, db, cd(cin, cout));
                dx
            };
        let bn_bwd = |grads: &mut [B::Buf],
                      dy: &B::Buf,
                      x: &B::Buf,
                      t: &BnTrace<B>,
                      p: BnParams,
                      ch: usize| {
            let (dg, db) = pair(grads, p.affine);
            let mut dx = be.alloc(hrows * ch);
            be.batchnorm_bwd(
                dy,
                x,
                &w[p.affine.w],
                &t.mean,
                &t.rstd,
                &mut dx,
                dg,
                db,
                hrows,
                ch,
            );
            dx
        };
        let gelu_bwd = |dy: &B::Buf, x: &B::Buf, n: usize| {
            let mut dx = be.alloc(n);
            be.gelu_bwd(dy, x, &mut dx, n);
            dx
        };
        // hm head
        let dg1 = conv_bwd(grads, d_hm, &tr.g1, lay.hm_conv2, hw, 1);
        let dbn1 = gelu_bwd(&dg1, &tr.bn1.out, hrows * hw);
        let dc1 = bn_bwd(grads, &dbn1, &tr.c1, &tr.bn1, lay.hm_bn1, hw);
        let dg0 = conv_bwd(grads, &dc1, &tr.g0, lay.hm_conv1, c, hw);
        let dbn0 = gelu_bwd(&dg0, &tr.bn0.out, hrows * c);
        let dc0 = bn_bwd(grads, &dbn0, &tr.c0, &tr.bn0, lay.hm_bn0, c);
        let df = conv_bwd(grads, &dc0, &tr.f, lay.hm_conv0, c, c);
        // cls head
        let dzc = lin_bwd(
            grads,
            d_cls,
            &tr.zc,
            lay.cls_fc,
            batch,
            c,
            1,
            !frozen_backbone,
        );
        // temp_loc head
        let sw = cfg.spatial_head_width;
        let mut dtl_g = lin_bwd(
            grads,
            d_temp_loc,
            &tr.tl_g,
            lay.tl_out,
            batch,
            t_ * sw,
            t_,
            true,
        )
        .expect("dx requested");
        if let Some(m) = &tr.tl_mask {
            be.mul_inplace(&mut dtl_g, m, batch * t_ * sw);
        }
        let dtl_a = gelu_bwd(&dtl_g, &tr.tl_a, batch * t_ * sw);
        let ds_norm = lin_bwd(
            grads,
            &dtl_a,
            &tr.s_norm,
            lay.tl_fc1,
            batch * t_,
            c,
            sw,
            !frozen_backbone,
        );
        if frozen_backbone {
            return Ok(());
        }
        let ds_norm = ds_norm.expect("dx requested");
        let ds_raw = ln_bwd(
            grads,
            &ds_norm,
            &tr.s_raw,
            &tr.s_mean,
            &tr.s_rstd,
            lay.norm_s_cls,
            batch * t_,
        );
        // into Z
        let mut dz = be.zeros(rows * c);
        be.scatter_add_rows(&df, &self.embed_map_rows(batch), &mut dz, c);
        let tau_rows: Vec<u32> = (0..batch).map(|b| (b * l + l - 1) as u32).collect();
        be.scatter_add_rows(&dzc.expect("dx requested"), &tau_rows, &mut dz, c);
        let mut dtok = ln_bwd(
            grads,
            &dz,
            &tr.tokens[cfg.depth],
            &tr.zmean,
            &tr.zrstd,
            lay.norm,
            rows,
        );
        let s_rows: Vec<u32> = (0..batch * t_).map(|bt| (bt * (n_ + 1)) as u32).collect();
        let rows_t = batch * n_ * (t_ + 1);
        let rows_s = batch * t_ * (n_ + 1);
        for (i, bp) in lay.blocks.iter().enumerate().rev() {
            let bt = &tr.blocks[i];
            // MLP
            let mut dh2 = be.alloc(rows * c);
            be.copy(&dtok, &mut dh2);
            if !bt.mdrop.is_empty() {
                be.scale_groups(&mut dh2, &bt.mdrop, l * c);
            }
            let dg = lin_bwd(grads, &dh2, &bt.g, bp.fc2, rows, hid, c, true).expect("dx requested");
            let dh1 = gelu_bwd(&dg, &bt.h1, rows * hid);
            let dln2 =
                lin_bwd(grads, &dh1, &bt.ln2, bp.fc1, rows, c, hid, true).expect("dx requested");
            let mut dy = ln_bwd(grads, &dln2, &bt.y, &bt.mean2, &bt.rstd2, bp.norm2, rows);
            be.axpy(1.0, &dtok, &mut dy, rows * c);
            // merge
            let mut dtin = be.zeros(rows * c);
            let mut dr = be.zeros(rows_t * c);
            let mut dv = be.zeros(rows_s * c);
            be.merge_bwd(&dy, &mut dtin, &mut dr, &mut dv, d);
            if i + 1 == cfg.depth {
                be.scatter_add_rows(&ds_raw, &s_rows, &mut dv, c);
            }
            // spatial branch
            if !bt.sdrop.is_empty() {
                be.scale_groups(&mut dv, &bt.sdrop, (n_ + 1) * c);
            }
            let dsatt =
                lin_bwd(grads, &dv, &bt.satt, bp.proj, rows_s, c, c, true).expect("dx requested");
            let mut dsqkv = be.alloc(rows_s * 3 * c);
            let ad = AttnDims {
                seqs: batch * t_,
                len: n_ + 1,
                heads,
                head_dim: hd,
            };
            be.attention_bwd(&dsatt, &bt.sqkv, &bt.sprobs, &mut dsqkv, ad);
            let dsln = lin_bwd(grads, &dsqkv, &bt.sln, bp.qkv, rows_s, c, 3 * c, true)
                .expect("dx requested");
            let dsseq = ln_bwd(
                grads, &dsln, &bt.sseq, &bt.smean, &bt.srstd, bp.norm1, rows_s,
            );
            be.spatial_gather_bwd(&dsseq, &mut dtin, &mut dr, d);
            // temporal branch
            let mut dtproj = lin_bwd(grads, &dr, &bt.tproj, bp.temporal_fc, rows_t, c, c, true)
                .expect("dx requested");
            if !bt.tdrop.is_empty() {
                be.scale_groups(&mut dtproj, &bt.tdrop, (t_ + 1) * c);
            }
            let dtatt = lin_bwd(
                grads,
                &dtproj,
                &bt.tatt,
                bp.temporal_proj,
                rows_t,
                c,
                c,
                true,
            )
            .expect("dx requested");
            let mut dtqkv = be.alloc(rows_t * 3 * c);
            let ad = AttnDims {
                seqs: batch * n_,
                len: t_ + 1,
                heads,
                head_dim: hd,
            };
            be.attention_bwd(&dtatt, &bt.tqkv, &bt.tprobs, &mut dtqkv, ad);
            let dtln = lin_bwd(
                grads,
                &dtqkv,
                &bt.tln,
                bp.temporal_qkv,
                rows_t,
                c,
                3 * c,
                true,
            )
            .expect("dx requested");
            let dtseq = ln_bwd(
                grads,
                &dtln,
                &bt.tseq,
                &bt.tmean,
                &bt.trstd,
                bp.temporal_norm1,
                rows_t,
            );
            be.temporal_gather_bwd(&dtseq, &mut dtin, d);
            dtok = dtin;
        }
        // embedding
        let mut de = be.alloc(batch * t_ * n_ * c);
        {
            let (a, rest) = grads.split_at_mut(lay.pos_embed);
            let dcls = &mut a[lay.cls_token];
            let (b, rest2) = rest.split_at_mut(lay.temp_token - lay.pos_embed);
            let dpos = &mut b[0];
            let (cbuf, rest3) = rest2.split_at_mut(lay.time_embed - lay.temp_token);
            let dtemp = &mut cbuf[0];
            let dtime = &mut rest3[0];
            be.embed_tokens_bwd(&dtok, &mut de, dcls, dpos, dtime, dtemp, d, self.temp_src());
        }
        let kp = 3 * cfg.patch_size * cfg.patch_size;
        lin_bwd(
            grads,
            &de,
            &tr.cols,
            lay.patch,
            batch * t_ * n_,
            kp,
            c,
            false,
        );
        Ok(())
    }
}
