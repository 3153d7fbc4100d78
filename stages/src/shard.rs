//! The shard store: preprocessed videos as sharded binary files of checksummed bincode records,
//! an index for random access by video and frame range, and export to the official layout.
//!
//! Shard file: `FSSHARD1` magic, u32 version (2; 1 is still read), then records `[u32 len][u32 crc32(payload)]
//! [payload]`, payload = bincode 2 of [`Record`], then the footer `FSSHEND1` + u64 record count
//! (so a cut exactly between records is still detected). A video's frame records come first, then its
//! [`VideoMeta`] record, which closes it. Shards are written as `*.tmp` and renamed when closed;
//! the index (`index.bin`: magic, u64 length, u32 crc32, bincode [`Index`]) is rewritten atomically
//! after every closed shard and lists only videos in closed shards, so a crash loses at most the
//! open shard and a re-run redoes exactly those videos. Every read checks the file size, record
//! length and checksum: a truncated or corrupted shard is an error, never data.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::crop::CropRegion;
use crate::decode::DecodeReport;
use crate::detect::Face;
use crate::lossless::{self, EncodedImage, ImageCodec};
use crate::rgb::RgbImage;

const SHARD_MAGIC: &[u8; 8] = b"FSSHARD1";
const INDEX_MAGIC: &[u8; 8] = b"FSINDEX1";
/// Closes a finished shard: magic + u64 record count. Its first four bytes read as a record
/// length above [`MAX_RECORD`], so it cannot be mistaken for a record.
const FOOTER_MAGIC: &[u8; 8] = b"FSSHEND1";
const FOOTER_LEN: usize = 16;
/// Written into new shards. Version 2 added the `med_pack` crop codec (a new
/// [`ImageCodec`] variant, so version-1 readers would fail on it with a less clear error);
/// its records are otherwise laid out as in version 1, which is still read.
const VERSION: u32 = 2;
/// Shard versions this reader understands.
const READABLE_VERSIONS: std::ops::RangeInclusive<u32> = 1..=2;
const HEADER_LEN: u64 = 12;
const MAX_RECORD: u32 = 256 << 20;
pub const INDEX_FILE: &str = "index.bin";

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
}

/// Per-video metadata, written after the video's frames.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VideoMeta {
    /// Unique id in the store (the official layout uses it as the frame folder name).
    pub video_id: String,
    /// Input path as given.
    pub source: String,
    /// Official sub-folder (FAKETYPE), e.g. `original`, `Deepfakes`, `Celeb-real`.
    pub category: String,
    /// `train`, `val` or `test`.
    pub split: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub frame_count: u64,
    /// Frames the selection asked for that were decoded but had no face.
    pub no_face: Vec<u64>,
    pub decode: DecodeReport,
}

/// One stored face crop with its geometry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrameCrop {
    pub frame_index: u64,
    pub time_s: f64,
    /// Detector box, score and 5 points in frame pixels.
    pub face: Face,
    /// The frame rectangle the crop was cut from.
    pub region: CropRegion,
    /// Dense landmarks (68 or 81) in crop pixels; empty when none were computed.
    pub landmarks: Vec<[f32; 2]>,
    pub image: EncodedImage,
}

impl FrameCrop {
    /// The crop pixels.
    pub fn decode_image(&self) -> Result<RgbImage, lossless::CodecError> {
        lossless::decode(&self.image)
    }
}

/// What a shard record holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Record {
    Frame { video_id: String, crop: FrameCrop },
    Video(VideoMeta),
}

/// Where a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordLoc {
    pub shard: u32,
    /// Offset of the record header in the shard file.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

/// Index entry of one stored frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameEntry {
    pub frame_index: u64,
    pub loc: RecordLoc,
}

/// Index entry of one video.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VideoEntry {
    pub meta: VideoMeta,
    pub meta_loc: RecordLoc,
    /// Stored frames in increasing frame index.
    pub frames: Vec<FrameEntry>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub bytes: u64,
    pub records: u64,
}

/// The store's table of contents.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Index {
    pub shards: Vec<ShardEntry>,
    pub videos: Vec<VideoEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: truncated: {reason}")]
    Truncated { path: PathBuf, reason: String },
    #[error("{path}: corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("no video {0:?} in the store")]
    UnknownVideo(String),
    #[error("video {video}: frame positions {range:?} out of 0..{stored}")]
    OutOfRange {
        video: String,
        range: Range<usize>,
        stored: usize,
    },
    #[error("writer misuse: {0}")]
    Usage(String),
    #[error("encoding record: {0}")]
    Encode(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShardError + '_ {
    move |e| ShardError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn shard_name(id: u32) -> String {
    format!("shard-{id:05}.fsh")
}

/// Frames `[u32 len][u32 crc][payload]` for one record. The payload is encoded straight
/// after the header into a buffer sized for the crop, so the image bytes are copied once.
fn frame_record(rec: &Record) -> Result<Vec<u8>, ShardError> {
    let hint = match rec {
        Record::Frame { crop, .. } => crop.image.bytes.len() + 64 * crop.landmarks.len() + 1024,
        Record::Video(_) => 1024,
    };
    let mut out = Vec::with_capacity(8 + hint);
    out.extend_from_slice(&[0u8; 8]);
    bincode::serde::encode_into_std_write(rec, &mut out, bincode_config())
        .map_err(|e| ShardError::Encode(e.to_string()))?;
    let len = out.len() - 8;
    if len as u64 > MAX_RECORD as u64 {
        return Err(ShardError::Encode(format!(
            "record of {len} bytes exceeds the {MAX_RECORD} byte limit"
        )));
    }
    let crc = crc32fast::hash(&out[8..]);
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks a record's framing and checksum and decodes it.
fn parse_record(path: &Path, offset: u64, buf: &[u8]) -> Result<Record, ShardError> {
    let corrupt = |reason: String| ShardError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("8-byte header")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("8-byte header"));
    let payload = &buf[8..];
    if payload.len() != len {
        return Err(corrupt(format!(
            "record length {len} does not match the expected {}",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    let (rec, used): (Record, usize) = bincode::serde::decode_from_slice(payload, bincode_config())
        .map_err(|e| corrupt(format!("undecodable record: {e}")))?;
    if used != payload.len() {
        return Err(corrupt("trailing bytes in record".into()));
    }
    Ok(rec)
}

fn check_header(path: &Path, head: &[u8]) -> Result<(), ShardError> {
    if head.len() < HEADER_LEN as usize {
        return Err(ShardError::Truncated {
            path: path.to_path_buf(),
            reason: "shorter than the shard header".into(),
        });
    }
    if &head[0..8] != SHARD_MAGIC {
        return Err(ShardError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: "not a shard file (bad magic)".into(),
        });
    }
    let v = u32::from_le_bytes(head[8..12].try_into().expect("12-byte header"));
    if !READABLE_VERSIONS.contains(&v) {
        return Err(ShardError::Corrupt {
            path: path.to_path_buf(),
            offset: 8,
            reason: format!("unsupported shard version {v}"),
        });
    }
    Ok(())
}

/// Reads a whole shard file sequentially, checking every record; the records with their offsets.
/// Any truncation or corruption is an error (used to verify shards and rebuild indexes).
pub fn scan_shard(path: &Path) -> Result<Vec<(u64, Record)>, ShardError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    check_header(path, &bytes)?;
    let mut pos = HEADER_LEN as usize;
    let mut out = Vec::new();
    loop {
        if pos == bytes.len() {
            return Err(ShardError::Truncated {
                path: path.to_path_buf(),
                reason: format!("no end-of-shard footer after {} records", out.len()),
            });
        }
        if bytes.len() - pos >= 8 && &bytes[pos..pos + 8] == FOOTER_MAGIC {
            if bytes.len() - pos != FOOTER_LEN {
                return Err(ShardError::Truncated {
                    path: path.to_path_buf(),
                    reason: format!("footer at byte {pos} is not the last {FOOTER_LEN} bytes"),
                });
            }
            let n = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().expect("8 bytes"));
            if n != out.len() as u64 {
                return Err(ShardError::Corrupt {
                    path: path.to_path_buf(),
                    offset: pos as u64,
                    reason: format!("footer counts {n} records, found {}", out.len()),
                });
            }
            return Ok(out);
        }
        if bytes.len() - pos < 8 {
            return Err(ShardError::Truncated {
                path: path.to_path_buf(),
                reason: format!("partial record header at byte {pos}"),
            });
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Err(ShardError::Corrupt {
                path: path.to_path_buf(),
                offset: pos as u64,
                reason: format!("record length {len} exceeds the limit"),
            });
        }
        let end = pos + 8 + len as usize;
        if end > bytes.len() {
            return Err(ShardError::Truncated {
                path: path.to_path_buf(),
                reason: format!(
                    "record at byte {pos} needs {end} bytes, file has {}",
                    bytes.len()
                ),
            });
        }
        out.push((
            pos as u64,
            parse_record(path, pos as u64, &bytes[pos..end])?,
        ));
        pos = end;
    }
}

fn write_index(dir: &Path, index: &Index) -> Result<(), ShardError> {
    let path = dir.join(INDEX_FILE);
    let payload = bincode::serde::encode_to_vec(index, bincode_config())
        .map_err(|e| ShardError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(payload.len() + 20);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    write_atomic(&path, &out).map_err(io_err(&path))
}

/// Reads and verifies `dir/index.bin`.
pub fn read_index(dir: &Path) -> Result<Index, ShardError> {
    let path = dir.join(INDEX_FILE);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let corrupt = |offset: u64, reason: &str| ShardError::Corrupt {
        path: path.clone(),
        offset,
        reason: reason.into(),
    };
    if bytes.len() < 20 {
        return Err(ShardError::Truncated {
            path: path.clone(),
            reason: "shorter than the index header".into(),
        });
    }
    if &bytes[0..8] != INDEX_MAGIC {
        return Err(corrupt(0, "not an index file (bad magic)"));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if bytes.len() as u64 - 20 != len {
        return Err(ShardError::Truncated {
            path: path.clone(),
            reason: format!("payload is {} bytes, header says {len}", bytes.len() - 20),
        });
    }
    let payload = &bytes[20..];
    if crc32fast::hash(payload) != crc {
        return Err(corrupt(20, "checksum mismatch"));
    }
    let (index, _): (Index, usize) =
        bincode::serde::decode_from_slice(payload, bincode_config())
            .map_err(|e| corrupt(20, &format!("undecodable index: {e}")))?;
    Ok(index)
}

/// Shard writer settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardConfig {
    /// A new shard starts (between videos) once the current one reaches this size.
    pub max_shard_bytes: u64,
    pub codec: ImageCodec,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            max_shard_bytes: 1 << 30,
            codec: ImageCodec::default(),
        }
    }
}

struct OpenShard {
    id: u32,
    tmp: PathBuf,
    file: BufWriter<File>,
    offset: u64,
    records: u64,
    /// Videos finished in this shard, committed to the index when the shard closes.
    videos: Vec<VideoEntry>,
}

struct PendingVideo {
    video_id: String,
    frames: Vec<FrameEntry>,
}

/// Appends videos to a store. One writer per store directory at a time.
pub struct ShardWriter {
    dir: PathBuf,
    cfg: ShardConfig,
    index: Index,
    done: std::collections::HashSet<String>,
    cur: Option<OpenShard>,
    pending: Option<PendingVideo>,
}

impl ShardWriter {
    /// Opens (or creates) the store in `dir`; an existing index is kept and appended to, and
    /// leftover `*.tmp` shards of an interrupted run are removed.
    pub fn open(dir: impl AsRef<Path>, cfg: ShardConfig) -> Result<Self, ShardError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let index = if dir.join(INDEX_FILE).exists() {
            read_index(&dir)?
        } else {
            Index::default()
        };
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let p = e.map_err(io_err(&dir))?.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                tracing::warn!(path = %p.display(), "removing unfinished shard of an earlier run");
                std::fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        let done = index
            .videos
            .iter()
            .map(|v| v.meta.video_id.clone())
            .collect();
        Ok(Self {
            dir,
            cfg,
            index,
            done,
            cur: None,
            pending: None,
        })
    }

    pub fn config(&self) -> &ShardConfig {
        &self.cfg
    }

    /// Whether `video_id` is already stored (finished in a closed shard or in the open one).
    pub fn contains(&self, video_id: &str) -> bool {
        self.done.contains(video_id)
    }

    fn shard(&mut self) -> Result<&mut OpenShard, ShardError> {
        if self.cur.is_none() {
            let id = self.index.shards.len() as u32;
            let tmp = self.dir.join(format!("{}.tmp", shard_name(id)));
            let f = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut file = BufWriter::with_capacity(1 << 20, f);
            file.write_all(SHARD_MAGIC).map_err(io_err(&tmp))?;
            file.write_all(&VERSION.to_le_bytes())
                .map_err(io_err(&tmp))?;
            self.cur = Some(OpenShard {
                id,
                tmp,
                file,
                offset: HEADER_LEN,
                records: 0,
                videos: Vec::new(),
            });
        }
        Ok(self.cur.as_mut().expect("opened above"))
    }

    fn append(&mut self, rec: &Record) -> Result<RecordLoc, ShardError> {
        let bytes = frame_record(rec)?;
        let s = self.shard()?;
        s.file.write_all(&bytes).map_err(io_err(&s.tmp))?;
        let loc = RecordLoc {
            shard: s.id,
            offset: s.offset,
            len: (bytes.len() - 8) as u32,
        };
        s.offset += bytes.len() as u64;
        s.records += 1;
        Ok(loc)
    }

    /// Starts a video; its frames follow with [`ShardWriter::push_frame`].
    pub fn begin_video(&mut self, video_id: &str) -> Result<(), ShardError> {
        if let Some(p) = &self.pending {
            return Err(ShardError::Usage(format!(
                "begin_video({video_id}) while {} is open",
                p.video_id
            )));
        }
        if self.contains(video_id) {
            return Err(ShardError::Usage(format!(
                "video {video_id} is already stored"
            )));
        }
        if self
            .cur
            .as_ref()
            .is_some_and(|s| s.offset >= self.cfg.max_shard_bytes)
        {
            self.close_shard()?;
        }
        self.pending = Some(PendingVideo {
            video_id: video_id.to_string(),
            frames: Vec::new(),
        });
        Ok(())
    }

    /// Appends one crop of the open video (frames in increasing index).
    pub fn push_frame(&mut self, crop: FrameCrop) -> Result<(), ShardError> {
        let Some(p) = &self.pending else {
            return Err(ShardError::Usage("push_frame without begin_video".into()));
        };
        if p.frames
            .last()
            .is_some_and(|l| l.frame_index >= crop.frame_index)
        {
            return Err(ShardError::Usage(format!(
                "frame {} pushed out of order",
                crop.frame_index
            )));
        }
        let video_id = p.video_id.clone();
        let frame_index = crop.frame_index;
        let loc = self.append(&Record::Frame { video_id, crop })?;
        self.pending
            .as_mut()
            .expect("checked above")
            .frames
            .push(FrameEntry { frame_index, loc });
        Ok(())
    }

    /// Closes the open video with its metadata.
    pub fn end_video(&mut self, meta: VideoMeta) -> Result<(), ShardError> {
        let Some(p) = self.pending.take() else {
            return Err(ShardError::Usage("end_video without begin_video".into()));
        };
        if p.video_id != meta.video_id {
            return Err(ShardError::Usage(format!(
                "end_video({}) for open video {}",
                meta.video_id, p.video_id
            )));
        }
        let meta_loc = self.append(&Record::Video(meta.clone()))?;
        self.done.insert(meta.video_id.clone());
        self.cur
            .as_mut()
            .expect("append opened a shard")
            .videos
            .push(VideoEntry {
                meta,
                meta_loc,
                frames: p.frames,
            });
        Ok(())
    }

    /// Drops the open video (e.g. after a failure); its records stay as unindexed bytes.
    pub fn abort_video(&mut self) {
        self.pending = None;
    }

    fn close_shard(&mut self) -> Result<(), ShardError> {
        let Some(mut s) = self.cur.take() else {
            return Ok(());
        };
        s.file.write_all(FOOTER_MAGIC).map_err(io_err(&s.tmp))?;
        s.file
            .write_all(&s.records.to_le_bytes())
            .map_err(io_err(&s.tmp))?;
        s.offset += FOOTER_LEN as u64;
        s.file.flush().map_err(io_err(&s.tmp))?;
        let f = s.file.into_inner().map_err(|e| ShardError::Io {
            path: s.tmp.clone(),
            reason: e.to_string(),
        })?;
        f.sync_all().map_err(io_err(&s.tmp))?;
        drop(f);
        let name = shard_name(s.id);
        let path = self.dir.join(&name);
        std::fs::rename(&s.tmp, &path).map_err(io_err(&path))?;
        self.index.shards.push(ShardEntry {
            file: name,
            bytes: s.offset,
            records: s.records,
        });
        self.index.videos.append(&mut s.videos);
        write_index(&self.dir, &self.index)
    }

    /// Closes the current shard and writes the index, making everything so far durable.
    pub fn checkpoint(&mut self) -> Result<(), ShardError> {
        if self.pending.is_some() {
            return Err(ShardError::Usage("checkpoint with an open video".into()));
        }
        self.close_shard()
    }

    /// Finishes the store; returns the index.
    pub fn finish(mut self) -> Result<Index, ShardError> {
        self.checkpoint()?;
        if !self.dir.join(INDEX_FILE).exists() {
            write_index(&self.dir, &self.index)?;
        }
        Ok(self.index)
    }
}

/// Random access to a finished store. Shareable across threads (`&self` reads use `pread`).
pub struct ShardReader {
    dir: PathBuf,
    index: Index,
    files: Vec<File>,
    by_id: HashMap<String, usize>,
}

impl ShardReader {
    /// Opens `dir`, verifying the index checksum and that every shard has its indexed size.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ShardError> {
        let dir = dir.as_ref().to_path_buf();
        let index = read_index(&dir)?;
        let mut files = Vec::with_capacity(index.shards.len());
        for s in &index.shards {
            let path = dir.join(&s.file);
            let f = File::open(&path).map_err(io_err(&path))?;
            let len = f.metadata().map_err(io_err(&path))?.len();
            if len != s.bytes {
                return Err(ShardError::Truncated {
                    path,
                    reason: format!("{len} bytes, index says {}", s.bytes),
                });
            }
            let mut head = [0u8; HEADER_LEN as usize];
            f.read_exact_at(&mut head, 0).map_err(io_err(&path))?;
            check_header(&path, &head)?;
            let mut foot = [0u8; FOOTER_LEN];
            f.read_exact_at(&mut foot, len.saturating_sub(FOOTER_LEN as u64))
                .map_err(io_err(&path))?;
            if &foot[0..8] != FOOTER_MAGIC
                || u64::from_le_bytes(foot[8..16].try_into().expect("8 bytes")) != s.records
            {
                return Err(ShardError::Corrupt {
                    path,
                    offset: len.saturating_sub(FOOTER_LEN as u64),
                    reason: "bad end-of-shard footer".into(),
                });
            }
            files.push(f);
        }
        let by_id = index
            .videos
            .iter()
            .enumerate()
            .map(|(i, v)| (v.meta.video_id.clone(), i))
            .collect();
        Ok(Self {
            dir,
            index,
            files,
            by_id,
        })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn videos(&self) -> &[VideoEntry] {
        &self.index.videos
    }

    pub fn video(&self, video_id: &str) -> Option<&VideoEntry> {
        self.by_id.get(video_id).map(|&i| &self.index.videos[i])
    }

    fn read_record(&self, loc: RecordLoc) -> Result<Record, ShardError> {
        let shard =
            self.index
                .shards
                .get(loc.shard as usize)
                .ok_or_else(|| ShardError::Corrupt {
                    path: self.dir.join(INDEX_FILE),
                    offset: 0,
                    reason: format!("index names missing shard {}", loc.shard),
                })?;
        let path = self.dir.join(&shard.file);
        let mut buf = vec![0u8; loc.len as usize + 8];
        self.files[loc.shard as usize]
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|e| ShardError::Truncated {
                path: path.clone(),
                reason: format!("record at byte {}: {e}", loc.offset),
            })?;
        parse_record(&path, loc.offset, &buf)
    }

    fn frame_at(&self, video_id: &str, e: &FrameEntry) -> Result<FrameCrop, ShardError> {
        match self.read_record(e.loc)? {
            Record::Frame { video_id: v, crop }
                if v == video_id && crop.frame_index == e.frame_index =>
            {
                Ok(crop)
            }
            _ => Err(ShardError::Corrupt {
                path: self.dir.join(&self.index.shards[e.loc.shard as usize].file),
                offset: e.loc.offset,
                reason: format!("record is not frame {} of {video_id}", e.frame_index),
            }),
        }
    }

    /// Stored frames at positions `range` (0 = first stored frame) of a video, e.g. a clip of
    /// consecutive stored frames for the training sampler.
    pub fn read_frames(
        &self,
        video_id: &str,
        range: Range<usize>,
    ) -> Result<Vec<FrameCrop>, ShardError> {
        let v = self
            .video(video_id)
            .ok_or_else(|| ShardError::UnknownVideo(video_id.to_string()))?;
        if range.start > range.end || range.end > v.frames.len() {
            return Err(ShardError::OutOfRange {
                video: video_id.to_string(),
                range,
                stored: v.frames.len(),
            });
        }
        v.frames[range]
            .iter()
            .map(|e| self.frame_at(video_id, e))
            .collect()
    }

    /// Stored frames whose frame index lies in `frames`.
    pub fn read_frame_indices(
        &self,
        video_id: &str,
        frames: Range<u64>,
    ) -> Result<Vec<FrameCrop>, ShardError> {
        let v = self
            .video(video_id)
            .ok_or_else(|| ShardError::UnknownVideo(video_id.to_string()))?;
        v.frames
            .iter()
            .filter(|e| frames.contains(&e.frame_index))
            .map(|e| self.frame_at(video_id, e))
            .collect()
    }

    /// Re-reads every shard record by record; the first damage found is the error.
    pub fn verify(&self) -> Result<u64, ShardError> {
        let mut n = 0;
        for s in &self.index.shards {
            n += scan_shard(&self.dir.join(&s.file))?.len() as u64;
        }
        Ok(n)
    }
}
