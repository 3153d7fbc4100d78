//! Model summary for `fakestormer model info`: parameters per part and multiply-accumulates per
//! clip (analytic, from the configuration; spec §2.5).

use crate::config::ModelConfig;
use crate::params::Inventory;
use std::fmt;

/// Parameter count of one named part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Part name (code names; `hm` = paper's temporal branch, `temp_loc` = spatial branch).
    pub name: String,
    /// Learnable parameters.
    pub params: usize,
}

/// Parameters per part, total, and compute per clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The configuration summarised.
    pub config: ModelConfig,
    /// Parts in state-dict order.
    pub parts: Vec<Part>,
    /// Total learnable parameters (BN running statistics excluded).
    pub total_params: usize,
    /// Multiply-accumulates of one forward pass on one clip.
    pub macs_per_clip: u64,
}

fn part_of(name: &str) -> &'static str {
    if name.starts_with("keypoint_head.hm.") {
        "head hm (temporal branch)"
    } else if name.starts_with("keypoint_head.cls.") {
        "head cls"
    } else if name.starts_with("keypoint_head.temp_loc.") {
        "head temp_loc (spatial branch)"
    } else if name.contains(".temporal_") {
        "backbone temporal attention (all blocks)"
    } else if name.starts_with("backbone.blocks.") {
        "backbone spatial blocks (attn + MLP, all blocks)"
    } else if name.starts_with("backbone.norm") {
        "backbone final norms"
    } else {
        "backbone embeddings"
    }
}

/// Analytic multiply-accumulate count of one forward pass for one clip.
pub fn macs_per_clip(cfg: &ModelConfig) -> u64 {
    let (c, t, n, p) = (
        cfg.embed_dim as u64,
        cfg.num_frames as u64,
        cfg.patches() as u64,
        cfg.patch_size as u64,
    );
    let (h, hd, hid) = (
        cfg.num_heads as u64,
        cfg.head_dim() as u64,
        cfg.hidden() as u64,
    );
    let l = cfg.tokens() as u64;
    let patch = t * n * c * 3 * p * p;
    let tr = n * (t + 1);
    let sr = t * (n + 1);
    let temporal = tr * c * 3 * c + n * h * 2 * (t + 1) * (t + 1) * hd + 2 * tr * c * c;
    let spatial = sr * c * 3 * c + t * h * 2 * (n + 1) * (n + 1) * hd + sr * c * c;
    let mlp = 2 * l * c * hid;
    let blocks = cfg.depth as u64 * (temporal + spatial + mlp);
    let taps = 3 * t - 2; // Conv3d k=3 along T with zero padding: edge frames use 2 taps
    let hw = cfg.hm_width() as u64;
    let hm = taps * n * (c * c + c * hw + hw);
    let sw = cfg.spatial_head_width as u64;
    let heads = hm + c + t * c * sw + t * sw * t;
    patch + blocks + heads
}

impl ModelInfo {
    /// Summary of a configuration.
    pub fn new(cfg: &ModelConfig) -> Self {
        let inv = Inventory::new(cfg);
        let mut parts: Vec<Part> = Vec::new();
        for p in &inv.params {
            let name = part_of(&p.name);
            match parts.iter_mut().find(|x| x.name == name) {
                Some(x) => x.params += p.numel(),
                None => parts.push(Part {
                    name: name.to_string(),
                    params: p.numel(),
                }),
            }
        }
        Self {
            config: *cfg,
            parts,
            total_params: inv.num_params(),
            macs_per_clip: macs_per_clip(cfg),
        }
    }
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "FakeSTormer: img {} patch {} dim {} depth {} heads {} mlp×{} frames {} spatial-head width {}",
            c.img_size, c.patch_size, c.embed_dim, c.depth, c.num_heads, c.mlp_ratio, c.num_frames, c.spatial_head_width
        )?;
        for p in &self.parts {
            writeln!(f, "  {:<50} {:>12}", p.name, p.params)?;
        }
        writeln!(
            f,
            "  {:<50} {:>12} ({:.1} M)",
            "total parameters",
            self.total_params,
            self.total_params as f64 / 1e6
        )?;
        write!(
            f,
            "  compute per clip: {:.3} GMACs ({:.3} GFLOPs)",
            self.macs_per_clip as f64 / 1e9,
            2.0 * self.macs_per_clip as f64 / 1e9
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_matches_spec_counts() {
        let i = ModelInfo::new(&ModelConfig::base());
        assert_eq!(i.total_params, 123_627_078);
        let get = |n: &str| i.parts.iter().find(|p| p.name == n).unwrap().params;
        assert_eq!(get("head hm (temporal branch)"), 2_215_297);
        assert_eq!(get("head cls"), 769);
        assert_eq!(get("head temp_loc (spatial branch)"), 150_724);
        assert_eq!(
            get("backbone temporal attention (all blocks)"),
            12 * 2_954_496
        );
        assert_eq!(
            get("backbone spatial blocks (attn + MLP, all blocks)"),
            12 * 7_087_872
        );
        let backbone: usize = i
            .parts
            .iter()
            .filter(|p| p.name.starts_with("backbone"))
            .map(|p| p.params)
            .sum();
        assert_eq!(backbone, 121_260_288);
        // spec §2.5: ≈106.6 GMACs per 4×224² clip
        let g = i.macs_per_clip as f64 / 1e9;
        assert!((g - 106.6).abs() < 0.5, "{g} GMACs");
    }
}
