//! Model size configuration: presets and the TOML model-config keys (`img_size`, `patch_size`,
//! `embed_dim`, `depth`, `num_heads`, `mlp_ratio`, `num_frames`, `spatial_head_width`, or
//! `preset = "base"`).

use crate::ModelError;
use serde::Deserialize;

/// Architecture hyper-parameters of the FakeSTormer network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// Square input size in pixels (224 official).
    pub img_size: usize,
    /// Square patch size (16 official).
    pub patch_size: usize,
    /// Token width C (768 official).
    pub embed_dim: usize,
    /// Number of blocks (12 official).
    pub depth: usize,
    /// Attention heads (12 official).
    pub num_heads: usize,
    /// MLP hidden = `mlp_ratio · C` (4 official).
    pub mlp_ratio: usize,
    /// Frames per clip T (4 official).
    pub num_frames: usize,
    /// Hidden width of the spatial-branch (`temp_loc`) head per frame (192 = C/4 official). The
    /// official `fc_out` takes `C` inputs, which equals `T·width` only for T=4, width C/4.
    pub spatial_head_width: usize,
}

/// Presets selectable with `preset = "..."`.
pub const PRESETS: [&str; 3] = ["base", "small", "tiny"];

impl ModelConfig {
    /// Official ViT-B/16 FakeSTormer (123,627,078 parameters).
    pub fn base() -> Self {
        Self {
            img_size: 224,
            patch_size: 16,
            embed_dim: 768,
            depth: 12,
            num_heads: 12,
            mlp_ratio: 4,
            num_frames: 4,
            spatial_head_width: 192,
        }
    }

    /// ViT-S/16-sized variant (384 wide, 6 heads, 12 blocks) at 224².
    pub fn small() -> Self {
        Self {
            img_size: 224,
            patch_size: 16,
            embed_dim: 384,
            depth: 12,
            num_heads: 6,
            mlp_ratio: 4,
            num_frames: 4,
            spatial_head_width: 96,
        }
    }

    /// The configuration of the golden fixtures (32², patch 8, C=64, depth 2, 4 heads).
    pub fn tiny() -> Self {
        Self {
            img_size: 32,
            patch_size: 8,
            embed_dim: 64,
            depth: 2,
            num_heads: 4,
            mlp_ratio: 4,
            num_frames: 4,
            spatial_head_width: 16,
        }
    }

    /// Preset by name.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        match name {
            "base" => Ok(Self::base()),
            "small" => Ok(Self::small()),
            "tiny" => Ok(Self::tiny()),
            other => Err(ModelError::Config(format!(
                "unknown preset {other:?} (expected one of {PRESETS:?})"
            ))),
        }
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size
    }
    /// Patches per frame N.
    pub fn patches(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Tokens per sample `2 + N·T`.
    pub fn tokens(&self) -> usize {
        2 + self.patches() * self.num_frames
    }
    /// Head width.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }
    /// MLP hidden width.
    pub fn hidden(&self) -> usize {
        self.embed_dim * self.mlp_ratio
    }
    /// Width of the hm head's middle Conv3d (C/4, official 192).
    pub fn hm_width(&self) -> usize {
        self.embed_dim / 4
    }

    /// Check internal consistency; errors name the offending key.
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87, MSRV is 1.86
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.patch_size == 0 || self.img_size == 0 || self.img_size % self.patch_size != 0 {
            return bad(format!(
                "img_size {} must be a positive multiple of patch_size {}",
                self.img_size, self.patch_size
            ));
        }
        if self.num_heads == 0 || self.embed_dim % self.num_heads != 0 {
            return bad(format!(
                "embed_dim {} must be divisible by num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if self.embed_dim < 4 || self.embed_dim % 4 != 0 {
            return bad(format!(
                "embed_dim {} must be a positive multiple of 4",
                self.embed_dim
            ));
        }
        if self.depth == 0
            || self.mlp_ratio == 0
            || self.num_frames == 0
            || self.spatial_head_width == 0
        {
            return bad(
                "depth, mlp_ratio, num_frames and spatial_head_width must be positive".into(),
            );
        }
        Ok(())
    }

    /// The explicit TOML form [`ModelConfig::from_toml`] reads back.
    pub fn to_toml(&self) -> String {
        format!(
            "img_size = {}\npatch_size = {}\nembed_dim = {}\ndepth = {}\nnum_heads = {}\nmlp_ratio = {}\nnum_frames = {}\nspatial_head_width = {}\n",
            self.img_size,
            self.patch_size,
            self.embed_dim,
            self.depth,
            self.num_heads,
            self.mlp_ratio,
            self.num_frames,
            self.spatial_head_width
        )
    }

    /// Parse a TOML model config: either `preset = "base"` (other keys then override it) or all
    /// eight explicit keys.
    pub fn from_toml(text: &str) -> Result<Self, ModelError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            preset: Option<String>,
            img_size: Option<usize>,
            patch_size: Option<usize>,
            embed_dim: Option<usize>,
            depth: Option<usize>,
            num_heads: Option<usize>,
            mlp_ratio: Option<usize>,
            num_frames: Option<usize>,
            spatial_head_width: Option<usize>,
        }
        let raw: Raw =
            toml::from_str(text).map_err(|e| ModelError::Config(format!("model config: {e}")))?;
        let base = match &raw.preset {
            Some(p) => Some(Self::preset(p)?),
            None => None,
        };
        let pick =
            |v: Option<usize>, f: fn(&Self) -> usize, key: &str| -> Result<usize, ModelError> {
                match (v, &base) {
                    (Some(v), _) => Ok(v),
                    (None, Some(b)) => Ok(f(b)),
                    (None, None) => Err(ModelError::Config(format!(
                        "model config: missing key `{key}` (or give `preset`)"
                    ))),
                }
            };
        let cfg = Self {
            img_size: pick(raw.img_size, |c| c.img_size, "img_size")?,
            patch_size: pick(raw.patch_size, |c| c.patch_size, "patch_size")?,
            embed_dim: pick(raw.embed_dim, |c| c.embed_dim, "embed_dim")?,
            depth: pick(raw.depth, |c| c.depth, "depth")?,
            num_heads: pick(raw.num_heads, |c| c.num_heads, "num_heads")?,
            mlp_ratio: pick(raw.mlp_ratio, |c| c.mlp_ratio, "mlp_ratio")?,
            num_frames: pick(raw.num_frames, |c| c.num_frames, "num_frames")?,
            spatial_head_width: pick(
                raw.spatial_head_width,
                |c| c.spatial_head_width,
                "spatial_head_width",
            )?,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_preset_and_explicit_agree() {
        let a = ModelConfig::from_toml("preset = \"base\"").unwrap();
        let b = ModelConfig::from_toml(
            "img_size = 224\npatch_size = 16\nembed_dim = 768\ndepth = 12\nnum_heads = 12\nmlp_ratio = 4\nnum_frames = 4\nspatial_head_width = 192\n",
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, ModelConfig::base());
        for c in [
            ModelConfig::base(),
            ModelConfig::small(),
            ModelConfig::tiny(),
        ] {
            assert_eq!(ModelConfig::from_toml(&c.to_toml()).unwrap(), c);
        }
    }

    #[test]
    fn toml_errors_name_the_key() {
        let e = ModelConfig::from_toml("img_size = 224")
            .unwrap_err()
            .to_string();
        assert!(e.contains("patch_size"), "{e}");
        let e = ModelConfig::from_toml("preset = \"huge\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("huge"), "{e}");
        let e = ModelConfig::from_toml("preset = \"tiny\"\nnum_heads = 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_heads"), "{e}");
    }
}
