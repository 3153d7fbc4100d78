//! The parameter store: every tensor of the official state dict, by its official name, plus
//! typed indices the network uses to find them.

use crate::config::ModelConfig;
use kernels::Backend;

/// Index of a Linear/Conv layer's weight and bias in the store.
#[derive(Debug, Clone, Copy)]
pub struct Affine {
    /// Weight index.
    pub w: usize,
    /// Bias index.
    pub b: usize,
}

/// Indices of one backbone block.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct BlockParams {
    pub norm1: Affine,
    pub qkv: Affine,
    pub proj: Affine,
    pub temporal_norm1: Affine,
    pub temporal_qkv: Affine,
    pub temporal_proj: Affine,
    pub temporal_fc: Affine,
    pub norm2: Affine,
    pub fc1: Affine,
    pub fc2: Affine,
}

/// Indices of a BatchNorm3d: affine parameters plus running-stat buffers (buffer indices).
#[derive(Debug, Clone, Copy)]
pub struct BnParams {
    /// Weight/bias (parameters).
    pub affine: Affine,
    /// `running_mean` buffer index.
    pub mean: usize,
    /// `running_var` buffer index.
    pub var: usize,
    /// Index into the `num_batches_tracked` counters.
    pub tracked: usize,
}

/// Typed view of where each tensor lives.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Layout {
    pub cls_token: usize,
    pub pos_embed: usize,
    pub temp_token: usize,
    pub time_embed: usize,
    pub patch: Affine,
    pub blocks: Vec<BlockParams>,
    pub norm: Affine,
    pub norm_s_cls: Affine,
    pub norm_t_cls: Affine,
    pub hm_conv0: Affine,
    pub hm_bn0: BnParams,
    pub hm_conv1: Affine,
    pub hm_bn1: BnParams,
    pub hm_conv2: Affine,
    pub cls_fc: Affine,
    pub tl_fc1: Affine,
    pub tl_out: Affine,
}

/// Name, shape and whether it belongs to the backbone, for one learnable parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Official state-dict name.
    pub name: String,
    /// Official shape.
    pub shape: Vec<usize>,
}

impl ParamSpec {
    /// Element count.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// True for `backbone.*` parameters (frozen during warm-up).
    pub fn is_backbone(&self) -> bool {
        self.name.starts_with("backbone.")
    }
}

/// Names/shapes of all parameters and BN buffers of a configuration, plus the typed layout.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Learnable parameters, in a fixed order.
    pub params: Vec<ParamSpec>,
    /// Float buffers (`running_mean`, `running_var`).
    pub buffers: Vec<ParamSpec>,
    /// Names of the `num_batches_tracked` counters.
    pub tracked: Vec<String>,
    /// Typed indices.
    pub layout: Layout,
}

struct Builder {
    params: Vec<ParamSpec>,
    buffers: Vec<ParamSpec>,
    tracked: Vec<String>,
}

impl Builder {
    fn p(&mut self, name: String, shape: &[usize]) -> usize {
        self.params.push(ParamSpec {
            name,
            shape: shape.to_vec(),
        });
        self.params.len() - 1
    }
    fn affine(&mut self, prefix: &str, w: &[usize], b: &[usize]) -> Affine {
        Affine {
            w: self.p(format!("{prefix}.weight"), w),
            b: self.p(format!("{prefix}.bias"), b),
        }
    }
    fn bn(&mut self, prefix: &str, c: usize) -> BnParams {
        let affine = self.affine(prefix, &[c], &[c]);
        self.buffers.push(ParamSpec {
            name: format!("{prefix}.running_mean"),
            shape: vec![c],
        });
        self.buffers.push(ParamSpec {
            name: format!("{prefix}.running_var"),
            shape: vec![c],
        });
        self.tracked.push(format!("{prefix}.num_batches_tracked"));
        BnParams {
            affine,
            mean: self.buffers.len() - 2,
            var: self.buffers.len() - 1,
            tracked: self.tracked.len() - 1,
        }
    }
}

impl Inventory {
    /// The official state-dict inventory for `cfg` (spec §2.6).
    pub fn new(cfg: &ModelConfig) -> Self {
        let c = cfg.embed_dim;
        let (p, t, n) = (cfg.patch_size, cfg.num_frames, cfg.patches());
        let hid = cfg.hidden();
        let mut bld = Builder {
            params: vec![],
            buffers: vec![],
            tracked: vec![],
        };
        let cls_token = bld.p("backbone.cls_token".into(), &[1, 1, c]);
        let pos_embed = bld.p("backbone.pos_embed".into(), &[1, n + 1, c]);
        let temp_token = bld.p("backbone.temp_token".into(), &[1, 1, c]);
        let time_embed = bld.p("backbone.time_embed".into(), &[1, t + 1, c]);
        let patch = bld.affine("backbone.patch_embed.proj", &[c, 3, p, p], &[c]);
        let mut blocks = Vec::new();
        for i in 0..cfg.depth {
            let pre = format!("backbone.blocks.{i}");
            let ln = |b: &mut Builder, s: &str| b.affine(&format!("{pre}.{s}"), &[c], &[c]);
            let norm1 = ln(&mut bld, "norm1");
            let qkv = bld.affine(&format!("{pre}.attn.qkv"), &[3 * c, c], &[3 * c]);
            let proj = bld.affine(&format!("{pre}.attn.proj"), &[c, c], &[c]);
            let temporal_norm1 = ln(&mut bld, "temporal_norm1");
            let temporal_qkv =
                bld.affine(&format!("{pre}.temporal_attn.qkv"), &[3 * c, c], &[3 * c]);
            let temporal_proj = bld.affine(&format!("{pre}.temporal_attn.proj"), &[c, c], &[c]);
            let temporal_fc = bld.affine(&format!("{pre}.temporal_fc"), &[c, c], &[c]);
            let norm2 = ln(&mut bld, "norm2");
            let fc1 = bld.affine(&format!("{pre}.mlp.fc1"), &[hid, c], &[hid]);
            let fc2 = bld.affine(&format!("{pre}.mlp.fc2"), &[c, hid], &[c]);
            blocks.push(BlockParams {
                norm1,
                qkv,
                proj,
                temporal_norm1,
                temporal_qkv,
                temporal_proj,
                temporal_fc,
                norm2,
                fc1,
                fc2,
            });
        }
        let norm = bld.affine("backbone.norm", &[c], &[c]);
        let norm_s_cls = bld.affine("backbone.norm_s_cls", &[c], &[c]);
        let norm_t_cls = bld.affine("backbone.norm_t_cls", &[c], &[c]);
        let hw = cfg.hm_width();
        let hm_conv0 = bld.affine("keypoint_head.hm.before_proj.0.0", &[c, c, 3, 1, 1], &[c]);
        let hm_bn0 = bld.bn("keypoint_head.hm.before_proj.0.1", c);
        let hm_conv1 = bld.affine("keypoint_head.hm.proj.0.0", &[hw, c, 3, 1, 1], &[hw]);
        let hm_bn1 = bld.bn("keypoint_head.hm.proj.0.1", hw);
        let hm_conv2 = bld.affine("keypoint_head.hm.proj.1", &[1, hw, 3, 1, 1], &[1]);
        let cls_fc = bld.affine("keypoint_head.cls.fc_out", &[1, c], &[1]);
        let sw = cfg.spatial_head_width;
        let tl_fc1 = bld.affine("keypoint_head.temp_loc.fc1.0", &[sw, c], &[sw]);
        let tl_out = bld.affine("keypoint_head.temp_loc.fc_out", &[t, t * sw], &[t]);
        let layout = Layout {
            cls_token,
            pos_embed,
            temp_token,
            time_embed,
            patch,
            blocks,
            norm,
            norm_s_cls,
            norm_t_cls,
            hm_conv0,
            hm_bn0,
            hm_conv1,
            hm_bn1,
            hm_conv2,
            cls_fc,
            tl_fc1,
            tl_out,
        };
        Self {
            params: bld.params,
            buffers: bld.buffers,
            tracked: bld.tracked,
            layout,
        }
    }

    /// Total learnable parameter count.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(ParamSpec::numel).sum()
    }

    /// Index of a parameter by official name.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }
}

/// Parameter values, BN buffers and counters on a backend.
pub struct Weights<B: Backend> {
    /// One buffer per [`Inventory::params`] entry.
    pub params: Vec<B::Buf>,
    /// One buffer per [`Inventory::buffers`] entry.
    pub buffers: Vec<B::Buf>,
    /// `num_batches_tracked` values.
    pub tracked: Vec<i64>,
}

impl<B: Backend> Weights<B> {
    /// Zero-initialised weights for an inventory.
    pub fn zeros(be: &B, inv: &Inventory) -> Self {
        Self {
            params: inv.params.iter().map(|p| be.zeros(p.numel())).collect(),
            buffers: inv.buffers.iter().map(|p| be.zeros(p.numel())).collect(),
            tracked: vec![0; inv.tracked.len()],
        }
    }
}
