//! `frame-stats`: a sink that records, per item, which frames came out and a hash of each, so a
//! decode run can be checked and compared across machines without storing pixels.

use std::collections::HashMap;
use std::path::PathBuf;

use pipeline::provenance::Provenance;
use pipeline::{BuildContext, Params, Stage, StageContext, StageError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decode::DecodedFrame;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameStatsParams {}

impl Params for FrameStatsParams {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameStat {
    pub index: u64,
    pub time_s: f64,
    pub width: u32,
    pub height: u32,
    /// sha256 of the RGB bytes.
    pub sha256: String,
    /// Mean of all RGB values (0..255).
    pub mean: f64,
}

/// What `frame-stats` writes per item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemFrames {
    pub provenance: Provenance,
    pub id: String,
    pub label: u8,
    pub frames: Vec<FrameStat>,
}

pub struct FrameStats {
    out: PathBuf,
    provenance: Provenance,
    open: HashMap<String, Vec<FrameStat>>,
}

impl FrameStats {
    pub fn new(_p: &FrameStatsParams, ctx: &BuildContext) -> Self {
        Self {
            out: ctx.out_dir.clone(),
            provenance: ctx.provenance.clone(),
            open: HashMap::new(),
        }
    }
}

impl Stage for FrameStats {
    type In = DecodedFrame;
    type Out = PathBuf;

    fn process(
        &mut self,
        f: DecodedFrame,
        ctx: &mut StageContext<'_, PathBuf>,
    ) -> Result<(), StageError> {
        let sum: u64 = f.rgb.iter().map(|&v| u64::from(v)).sum();
        let stat = FrameStat {
            index: f.index,
            time_s: f.time_s,
            width: f.width,
            height: f.height,
            sha256: hex::encode(Sha256::digest(&f.rgb)),
            mean: if f.rgb.is_empty() {
                0.0
            } else {
                sum as f64 / f.rgb.len() as f64
            },
        };
        self.open
            .entry(ctx.item().id().to_owned())
            .or_default()
            .push(stat);
        Ok(())
    }

    fn finish_item(
        &mut self,
        failed: bool,
        ctx: &mut StageContext<'_, PathBuf>,
    ) -> Result<(), StageError> {
        let frames = self.open.remove(ctx.item().id()).unwrap_or_default();
        if failed {
            // A failed item leaves no output behind: a later rerun must not mistake it for done.
            return Ok(());
        }
        let item = ItemFrames {
            provenance: self.provenance.clone(),
            id: ctx.item().id().to_owned(),
            label: ctx.item().row.label,
            frames,
        };
        let path = pipeline::naming::item_path(&self.out, &item.id, "json");
        let bytes = serde_json::to_vec_pretty(&item).map_err(|e| StageError::new(e.to_string()))?;
        pipeline::atomic_file::write_atomic(&path, &bytes)
            .map_err(|e| StageError::new(format!("cannot write {}: {e}", path.display())))?;
        ctx.emit(path);
        Ok(())
    }
}
