//! Video decoding with frame selection (FFmpeg through `video-rs`'s re-exported `ffmpeg-next`).
//!
//! Frames are numbered by their position in presentation (decoder output) order and timed as
//! `index / fps`; packet timestamps are not used because they are wrong for B-frame streams.
//! Only the frames a [`FrameSelection`] asks for are converted to RGB, and decoding stops after
//! the last one. Every failure is a [`DecodeError`] naming the file and the reason; decode errors
//! in the middle of a stream are counted in the [`DecodeReport`], never silently dropped.

use std::path::{Path, PathBuf};
use std::sync::Once;

use video_rs::ffmpeg;

use crate::rgb::RgbView;
use video_rs::ffmpeg::format::Pixel;
use video_rs::ffmpeg::software::scaling;

/// Which frames of a video to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", content = "n", rename_all = "snake_case")]
pub enum FrameSelection {
    /// Frames `0..n` (the official training extraction, `DATA_TYPE = 'videos'`, n = 256).
    FirstN(usize),
    /// `n` frames at `linspace(0, total − 1, n)` truncated to integers like numpy's int64 cast
    /// (the official test extraction, `DATA_TYPE = 'frames'`, n = 32). Duplicates collapse.
    Uniform(usize),
    /// Frames `0, k, 2k, …`.
    EveryKth(usize),
    /// Every frame.
    All,
}

impl FrameSelection {
    /// Whether the selection needs the total frame count up front.
    pub fn needs_total(&self) -> bool {
        matches!(self, FrameSelection::Uniform(_))
    }

    /// The sorted, duplicate-free frame indices selected out of `total` frames.
    pub fn indices(&self, total: u64) -> Vec<u64> {
        match *self {
            FrameSelection::FirstN(n) => (0..total.min(n as u64)).collect(),
            FrameSelection::Uniform(n) => {
                let mut v = linspace_indices(total, n);
                v.dedup();
                v
            }
            FrameSelection::EveryKth(k) => (0..total).step_by(k.max(1)).collect(),
            FrameSelection::All => (0..total).collect(),
        }
    }

    /// Whether frame `index` is selected (for selections that do not need the total).
    fn contains_streaming(&self, index: u64) -> bool {
        match *self {
            FrameSelection::FirstN(n) => index < n as u64,
            FrameSelection::EveryKth(k) => index.checked_rem(k.max(1) as u64) == Some(0),
            FrameSelection::All => true,
            FrameSelection::Uniform(_) => false,
        }
    }
}

/// `np.linspace(0, total - 1, n).astype(np.int64)`: numpy computes `i * step + start` in f64,
/// forces the last element to `stop`, and the cast truncates toward zero.
pub fn linspace_indices(total: u64, n: usize) -> Vec<u64> {
    if total == 0 || n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![0];
    }
    let stop = (total - 1) as f64;
    let step = stop / (n - 1) as f64;
    let mut v: Vec<u64> = (0..n).map(|i| (i as f64 * step) as u64).collect();
    v[n - 1] = total - 1;
    v
}

/// Stream properties of an opened video.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// Average frame rate (falls back to the stream's real base rate, then 25).
    pub fps: f64,
    /// Frame count from the container, or counted by demuxing when the container has none.
    pub frame_count: u64,
    /// FFmpeg codec name, e.g. `h264`.
    pub codec: String,
}

/// One decoded frame: tightly packed RGB, row-major, `width * height * 3` bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFrame {
    /// Position in presentation order, starting at 0.
    pub index: u64,
    /// `index / fps`, seconds.
    pub time_s: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl DecodedFrame {
    /// The pixels as an [`RgbView`].
    pub fn view(&self) -> RgbView<'_> {
        RgbView {
            width: self.width,
            height: self.height,
            data: &self.rgb,
        }
    }
}

/// What happened while decoding one video (for the run report).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecodeReport {
    /// Frames produced.
    pub frames_out: u64,
    /// Frames decoded (produced or skipped without conversion).
    pub frames_decoded: u64,
    /// Packets the demuxer could not read (corrupt data).
    pub read_errors: u64,
    /// Packets or frames the decoder rejected.
    pub decode_errors: u64,
    /// Frames the decoder flagged as corrupt (still produced).
    pub corrupt_frames: u64,
    /// Selected indices that never came out of the decoder (stream shorter than declared).
    pub missing: Vec<u64>,
    /// The stream ended early because of an I/O error (text of the error).
    pub truncated: Option<String>,
}

/// Why a video could not be decoded at all.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{path}: file not found")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read file: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: empty file (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path}: not a readable media container: {reason}")]
    NotMedia { path: PathBuf, reason: String },
    #[error("{path}: no video stream")]
    NoVideoStream { path: PathBuf },
    #[error("{path}: unsupported codec {codec}: {reason}")]
    UnsupportedCodec {
        path: PathBuf,
        codec: String,
        reason: String,
    },
    #[error("{path}: no frame could be decoded ({reason})")]
    NoFrames { path: PathBuf, reason: String },
    #[error("{path}: frame conversion to RGB failed: {reason}")]
    Convert { path: PathBuf, reason: String },
    #[error("invalid frame selection: {0}")]
    Selection(String),
}

/// Decoder tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeOptions {
    /// FFmpeg decoder threads; 0 lets FFmpeg choose.
    pub threads: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { threads: 1 }
    }
}

static FFMPEG_INIT: Once = Once::new();

fn init_ffmpeg() {
    FFMPEG_INIT.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// Checks the path before FFmpeg sees it, so the common failures get precise reasons.
fn check_file(path: &Path) -> Result<(), DecodeError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DecodeError::NotFound {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(DecodeError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Ok(m) if m.is_dir() => Err(DecodeError::Io {
            path: path.to_path_buf(),
            reason: "is a directory".into(),
        }),
        Ok(m) if m.len() == 0 => Err(DecodeError::Empty {
            path: path.to_path_buf(),
        }),
        Ok(_) => Ok(()),
    }
}

fn rate_to_f64(r: ffmpeg::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| r.numerator() as f64 / r.denominator() as f64)
}

/// An opened video, ready to produce selected frames once.
pub struct VideoDecoder {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    decoder: ffmpeg::decoder::Video,
    info: VideoInfo,
}

impl VideoDecoder {
    /// Opens `path` and its best video stream with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DecodeError> {
        Self::open_with(path, DecodeOptions::default())
    }

    /// Opens `path` and its best video stream.
    pub fn open_with(path: impl AsRef<Path>, opts: DecodeOptions) -> Result<Self, DecodeError> {
        let path = path.as_ref().to_path_buf();
        check_file(&path)?;
        init_ffmpeg();
        let input = ffmpeg::format::input(&path).map_err(|e| DecodeError::NotMedia {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| DecodeError::NoVideoStream { path: path.clone() })?;
        let stream_index = stream.index();
        let params = stream.parameters();
        let codec_id = params.id();
        let codec = format!("{codec_id:?}").to_lowercase();
        let unsupported = |reason: String| DecodeError::UnsupportedCodec {
            path: path.clone(),
            codec: codec.clone(),
            reason,
        };
        if ffmpeg::decoder::find(codec_id).is_none() {
            return Err(unsupported("no decoder in this FFmpeg build".into()));
        }
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(params)
            .map_err(|e| unsupported(e.to_string()))?;
        ctx.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: opts.threads,
            ..Default::default()
        });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(|e| unsupported(e.to_string()))?;
        if decoder.width() == 0 || decoder.height() == 0 || decoder.format() == Pixel::None {
            return Err(unsupported("missing frame size or pixel format".into()));
        }
        let fps = rate_to_f64(stream.avg_frame_rate())
            .or_else(|| rate_to_f64(stream.rate()))
            .unwrap_or(25.0);
        let declared = stream.frames().max(0) as u64;
        let info = VideoInfo {
            width: decoder.width(),
            height: decoder.height(),
            fps,
            frame_count: declared,
            codec,
        };
        let mut this = Self {
            path,
            input,
            stream_index,
            decoder,
            info,
        };
        if declared == 0 {
            this.info.frame_count = this.count_packets()?;
        }
        Ok(this)
    }

    /// Stream properties.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Counts video packets by demuxing (no decoding) and rewinds; used when the container
    /// does not declare a frame count.
    fn count_packets(&mut self) -> Result<u64, DecodeError> {
        let mut n = 0u64;
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() == self.stream_index {
                        n += 1;
                    }
                }
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(_) => break,
            }
        }
        self.input.seek(0, ..).map_err(|e| DecodeError::Io {
            path: self.path.clone(),
            reason: format!("cannot rewind after counting frames: {e}"),
        })?;
        Ok(n)
    }

    /// Decodes the selected frames, handing each to `sink` in index order. Decoding stops after
    /// the last selected frame. `sink` returning `false` stops early (e.g. on cancellation).
    pub fn decode(
        mut self,
        selection: FrameSelection,
        mut sink: impl FnMut(DecodedFrame) -> bool,
    ) -> Result<DecodeReport, DecodeError> {
        if let FrameSelection::EveryKth(0) = selection {
            return Err(DecodeError::Selection("every-k-th needs k ≥ 1".into()));
        }
        // Selected set: explicit (sorted) for Uniform, a predicate otherwise.
        let explicit = selection
            .needs_total()
            .then(|| selection.indices(self.info.frame_count));
        let last_needed: Option<u64> = match (&explicit, selection) {
            (Some(v), _) => Some(v.last().copied().unwrap_or(0)),
            (None, FrameSelection::FirstN(n)) => Some((n as u64).saturating_sub(1)),
            _ => None,
        };
        let wanted_none = matches!(&explicit, Some(v) if v.is_empty())
            || matches!(selection, FrameSelection::FirstN(0));
        let mut report = DecodeReport::default();
        if wanted_none {
            return Ok(report);
        }
        let is_selected = |i: u64| match &explicit {
            Some(v) => v.binary_search(&i).is_ok(),
            None => selection.contains_streaming(i),
        };

        let mut next_index = 0u64;
        let mut frame = ffmpeg::frame::Video::empty();
        let mut conv = RgbConverter::default();
        let mut first_error: Option<String> = None;
        let mut stopped = false;
        let mut packet = ffmpeg::Packet::empty();
        let mut eof = false;
        let mut consecutive_invalid = 0u32;

        'outer: loop {
            if !eof {
                match packet.read(&mut self.input) {
                    Ok(()) => {
                        consecutive_invalid = 0;
                        if packet.stream() != self.stream_index {
                            continue;
                        }
                        if let Err(e) = self.decoder.send_packet(&packet) {
                            report.decode_errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                            continue;
                        }
                    }
                    Err(ffmpeg::Error::Eof) => {
                        eof = true;
                        let _ = self.decoder.send_eof();
                    }
                    Err(ffmpeg::Error::InvalidData) => {
                        report.read_errors += 1;
                        consecutive_invalid += 1;
                        first_error.get_or_insert_with(|| "invalid data in container".into());
                        if consecutive_invalid > 1000 {
                            report.truncated = Some("too many consecutive invalid packets".into());
                            eof = true;
                            let _ = self.decoder.send_eof();
                        }
                        continue;
                    }
                    Err(e) => {
                        report.truncated = Some(e.to_string());
                        first_error.get_or_insert_with(|| e.to_string());
                        eof = true;
                        let _ = self.decoder.send_eof();
                    }
                }
            }
            // Drain every frame the decoder has ready.
            loop {
                match self.decoder.receive_frame(&mut frame) {
                    Ok(()) => {
                        let index = next_index;
                        next_index += 1;
                        report.frames_decoded += 1;
                        if frame.is_corrupt() {
                            report.corrupt_frames += 1;
                        }
                        if is_selected(index) {
                            let rgb =
                                conv.convert(&frame)
                                    .map_err(|reason| DecodeError::Convert {
                                        path: self.path.clone(),
                                        reason,
                                    })?;
                            report.frames_out += 1;
                            let out = DecodedFrame {
                                index,
                                time_s: index as f64 / self.info.fps,
                                width: frame.width(),
                                height: frame.height(),
                                rgb,
                            };
                            if !sink(out) {
                                stopped = true;
                                break 'outer;
                            }
                        }
                        if last_needed.is_some_and(|l| index >= l) {
                            stopped = true;
                            break 'outer;
                        }
                    }
                    Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                        break
                    }
                    Err(ffmpeg::Error::Eof) => break 'outer,
                    Err(e) => {
                        report.decode_errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                        if eof {
                            // A failing drain cannot make progress.
                            break 'outer;
                        }
                        break;
                    }
                }
            }
        }

        if !stopped {
            if let Some(v) = &explicit {
                report.missing = v.iter().copied().filter(|&i| i >= next_index).collect();
            } else if let FrameSelection::FirstN(n) = selection {
                let total = self.info.frame_count.min(n as u64);
                report.missing = (next_index..total).collect();
            } else {
                let total = self.info.frame_count;
                report.missing = (next_index..total).filter(|&i| is_selected(i)).collect();
            }
        }
        if report.frames_decoded == 0 {
            return Err(DecodeError::NoFrames {
                path: self.path.clone(),
                reason: first_error.unwrap_or_else(|| "stream holds no decodable frame".into()),
            });
        }
        if report.decode_errors + report.read_errors > 0 || !report.missing.is_empty() {
            tracing::warn!(
                path = %self.path.display(),
                decode_errors = report.decode_errors,
                read_errors = report.read_errors,
                missing = report.missing.len(),
                "video decoded with errors"
            );
        }
        Ok(report)
    }

    /// Decodes the selected frames into memory (convenience over [`VideoDecoder::decode`]).
    pub fn decode_all(
        self,
        selection: FrameSelection,
    ) -> Result<(Vec<DecodedFrame>, DecodeReport), DecodeError> {
        let mut frames = Vec::new();
        let report = self.decode(selection, |f| {
            frames.push(f);
            true
        })?;
        Ok((frames, report))
    }
}

/// Lazily built swscale context, rebuilt when the input format or size changes mid-stream.
#[derive(Default)]
struct RgbConverter {
    ctx: Option<(scaling::Context, Pixel, u32, u32)>,
    out: Option<ffmpeg::frame::Video>,
}

impl RgbConverter {
    fn convert(&mut self, frame: &ffmpeg::frame::Video) -> Result<Vec<u8>, String> {
        let (fmt, w, h) = (frame.format(), frame.width(), frame.height());
        let stale = !matches!(&self.ctx, Some((_, f, cw, ch)) if *f == fmt && *cw == w && *ch == h);
        if stale {
            let ctx =
                scaling::Context::get(fmt, w, h, Pixel::RGB24, w, h, scaling::Flags::BILINEAR)
                    .map_err(|e| e.to_string())?;
            self.ctx = Some((ctx, fmt, w, h));
            self.out = None;
        }
        let (ctx, ..) = self.ctx.as_mut().expect("converter initialised above");
        let out = self.out.get_or_insert_with(ffmpeg::frame::Video::empty);
        ctx.run(frame, out).map_err(|e| e.to_string())?;
        let stride = out.stride(0);
        let data = out.data(0);
        let row = w as usize * 3;
        let mut rgb = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            rgb.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(rgb)
    }
}
