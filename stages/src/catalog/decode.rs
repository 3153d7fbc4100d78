//! `decode`: a manifest row in, its selected frames out.

use std::sync::atomic::Ordering;

use pipeline::manifest::ManifestRow;
use pipeline::{
    BuildContext, ParamProblem, Params, Stage, StageContext, StageError, ValidateContext,
};
use serde::{Deserialize, Serialize};

use crate::decode::{DecodeOptions, DecodedFrame, FrameSelection, VideoDecoder};

/// How many frames to take, and which.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeParams {
    /// `first` (N consecutive from frame 0), `uniform` (N at linspace(0, n-1, N)), `every`
    /// (every k-th frame) or `all`.
    pub select: String,
    /// N for `first` and `uniform`.
    pub frames: usize,
    /// k for `every`.
    pub every: usize,
    /// FFmpeg decoder threads per stage worker (1 keeps the core budget predictable).
    pub threads: usize,
}

impl Default for DecodeParams {
    fn default() -> Self {
        Self {
            select: "uniform".into(),
            frames: 32,
            every: 1,
            threads: 1,
        }
    }
}

impl DecodeParams {
    pub fn selection(&self) -> FrameSelection {
        match self.select.as_str() {
            "first" => FrameSelection::FirstN(self.frames),
            "every" => FrameSelection::EveryKth(self.every),
            "all" => FrameSelection::All,
            _ => FrameSelection::Uniform(self.frames),
        }
    }
}

impl Params for DecodeParams {
    fn validate(&self, _ctx: &ValidateContext) -> Vec<ParamProblem> {
        let mut p = Vec::new();
        const MODES: [&str; 4] = ["first", "uniform", "every", "all"];
        if !MODES.contains(&self.select.as_str()) {
            p.push(
                ParamProblem::new("select", format!("unknown selection `{}`", self.select))
                    .hint(format!("one of: {}", MODES.join(", "))),
            );
        }
        if matches!(self.select.as_str(), "first" | "uniform")
            && !(1..=100_000).contains(&self.frames)
        {
            p.push(ParamProblem::new(
                "frames",
                format!("{} is out of range 1..=100000", self.frames),
            ));
        }
        if self.select == "every" && self.every == 0 {
            p.push(
                ParamProblem::new("every", "must be at least 1").hint("every = 1 takes all frames"),
            );
        }
        if self.threads > 64 {
            p.push(ParamProblem::new(
                "threads",
                format!("{} is out of range 0..=64", self.threads),
            ));
        }
        p
    }
}

pub struct DecodeStage {
    selection: FrameSelection,
    options: DecodeOptions,
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DecodeStage {
    pub fn new(p: &DecodeParams, ctx: &BuildContext) -> Result<Self, String> {
        Ok(Self {
            selection: p.selection(),
            options: DecodeOptions { threads: p.threads },
            cancel: ctx.cancel.clone(),
        })
    }
}

impl Stage for DecodeStage {
    type In = ManifestRow;
    type Out = DecodedFrame;

    fn process(
        &mut self,
        _row: ManifestRow,
        ctx: &mut StageContext<'_, DecodedFrame>,
    ) -> Result<(), StageError> {
        let path = ctx.item().path();
        let decoder = VideoDecoder::open_with(&path, self.options)
            .map_err(|e| StageError::new(e.to_string()))?;
        let cancel = self.cancel.clone();
        let report = decoder
            .decode(self.selection, |frame| {
                ctx.emit(frame);
                !cancel.load(Ordering::Relaxed)
            })
            .map_err(|e| StageError::new(e.to_string()))?;
        if self.cancel.load(Ordering::Relaxed) {
            // Stopped early on Ctrl-C: fail the item so no sink commits a partial video.
            return Err(StageError::new(format!(
                "interrupted (Ctrl-C) after {} frames",
                report.frames_out
            )));
        }
        ctx.count("frames_decoded", report.frames_decoded);
        ctx.count("frames_out", report.frames_out);
        for (key, n) in [
            ("read_errors", report.read_errors),
            ("decode_errors", report.decode_errors),
            ("corrupt_frames", report.corrupt_frames),
        ] {
            if n > 0 {
                ctx.count(key, n);
            }
        }
        for i in &report.missing {
            ctx.skip(format!(
                "frame {i} selected but never decoded (stream shorter than declared)"
            ));
        }
        if let Some(t) = report.truncated {
            ctx.skip(format!("stream truncated: {t}"));
        }
        Ok(())
    }
}
