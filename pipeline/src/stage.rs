//! The `Stage` abstraction: one record type in, zero or more records out, per-worker state.
//!
//! Stages are written against concrete types; the engine erases them (`DynStage`) so that a spec
//! can wire any chain whose neighbouring types agree. That check happens in `spec check`, before a
//! run starts, so a downcast in the engine can never fail at run time.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::manifest::ManifestRow;
use crate::provenance::Provenance;

/// A per-record failure: the item is marked failed, the run goes on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StageError(pub String);

impl StageError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl From<String> for StageError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for StageError {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// What a stage knows about the item its record belongs to.
#[derive(Debug)]
pub struct ItemInfo {
    /// Position in the manifest (after filtering); fixes report order.
    pub ordinal: u64,
    pub row: ManifestRow,
    /// The manifest's folder, against which relative paths resolve.
    pub manifest_dir: PathBuf,
}

impl ItemInfo {
    pub fn id(&self) -> &str {
        &self.row.id
    }

    /// The input file of this item, resolved against the manifest's folder.
    pub fn path(&self) -> PathBuf {
        self.row.resolved_path(&self.manifest_dir)
    }
}

/// Everything a stage factory may need; one per stage worker thread.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Output folder of the run.
    pub out_dir: PathBuf,
    /// Folder of the spec file, for resolving relative paths in parameters.
    pub spec_dir: PathBuf,
    pub provenance: Provenance,
    /// Global index of the stage worker thread (for logging only: results must not depend on it).
    pub worker: usize,
    /// Set on Ctrl-C; long stages may poll it to stop early.
    pub cancel: Arc<AtomicBool>,
}

/// Per-record side channel a stage writes into; the engine turns it into the run report.
pub struct StageContext<'a, O> {
    pub(crate) item: &'a ItemInfo,
    pub(crate) emit: &'a mut dyn FnMut(O),
    pub(crate) notes: &'a mut RecordNotes,
}

/// Skips and counters noted while handling one record.
#[derive(Debug, Default)]
pub struct RecordNotes {
    pub skipped: Vec<String>,
    pub counters: BTreeMap<String, u64>,
    pub emitted: u64,
}

impl<O> StageContext<'_, O> {
    pub fn item(&self) -> &ItemInfo {
        self.item
    }

    /// Passes a record to the next stage (blocks while that stage's queue is full).
    pub fn emit(&mut self, out: O) {
        self.notes.emitted += 1;
        (self.emit)(out)
    }

    /// Records that a sub-record was dropped for a reason (a frame with no face): the item goes on.
    pub fn skip(&mut self, reason: impl Into<String>) {
        self.notes.skipped.push(reason.into());
    }

    /// Adds to a named per-item counter that ends up in the report (e.g. `frames_decoded`).
    pub fn count(&mut self, key: &str, n: u64) {
        *self.notes.counters.entry(key.to_owned()).or_default() += n;
    }
}

/// One step of a pipeline. An instance lives on one worker thread, so `&mut self` is its
/// per-worker state; all records of one item reach the same instance, in order.
pub trait Stage: Send + 'static {
    type In: Send + 'static;
    type Out: Send + 'static;

    /// Handles one record. An `Err` marks the item failed (with this stage and reason) and the run
    /// goes on with the next record.
    fn process(
        &mut self,
        input: Self::In,
        ctx: &mut StageContext<'_, Self::Out>,
    ) -> Result<(), StageError>;

    /// Called once after the last record of an item has passed through this instance; sinks
    /// commit the item's output here. `failed` tells whether an earlier stage failed the item.
    fn finish_item(
        &mut self,
        _failed: bool,
        _ctx: &mut StageContext<'_, Self::Out>,
    ) -> Result<(), StageError> {
        Ok(())
    }
}

/// A type name the wiring check compares and prints.
#[derive(Debug, Clone, Copy)]
pub struct TypeTag {
    pub id: TypeId,
    pub name: &'static str,
}

impl TypeTag {
    pub fn of<T: 'static>() -> Self {
        let full = std::any::type_name::<T>();
        // Short, readable names in diagnostics: `stages::decode::Frame` -> `Frame`.
        let name = full.rsplit("::").next().unwrap_or(full);
        Self {
            id: TypeId::of::<T>(),
            name,
        }
    }
}

impl PartialEq for TypeTag {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

pub type AnyRecord = Box<dyn Any + Send>;

/// The engine's view of a stage: records are boxed and downcast at the edge.
pub trait DynStage: Send {
    fn process(
        &mut self,
        input: AnyRecord,
        item: &ItemInfo,
        emit: &mut dyn FnMut(AnyRecord),
        notes: &mut RecordNotes,
    ) -> Result<(), StageError>;

    fn finish_item(
        &mut self,
        failed: bool,
        item: &ItemInfo,
        emit: &mut dyn FnMut(AnyRecord),
        notes: &mut RecordNotes,
    ) -> Result<(), StageError>;
}

pub(crate) struct Erased<S>(pub S);

impl<S: Stage> DynStage for Erased<S> {
    fn process(
        &mut self,
        input: AnyRecord,
        item: &ItemInfo,
        emit: &mut dyn FnMut(AnyRecord),
        notes: &mut RecordNotes,
    ) -> Result<(), StageError> {
        let input = input.downcast::<S::In>().map_err(|_| {
            StageError::new(format!(
                "internal wiring error: expected {}",
                std::any::type_name::<S::In>()
            ))
        })?;
        let mut typed_emit = |o: S::Out| emit(Box::new(o));
        let mut ctx = StageContext {
            item,
            emit: &mut typed_emit,
            notes,
        };
        self.0.process(*input, &mut ctx)
    }

    fn finish_item(
        &mut self,
        failed: bool,
        item: &ItemInfo,
        emit: &mut dyn FnMut(AnyRecord),
        notes: &mut RecordNotes,
    ) -> Result<(), StageError> {
        let mut typed_emit = |o: S::Out| emit(Box::new(o));
        let mut ctx = StageContext {
            item,
            emit: &mut typed_emit,
            notes,
        };
        self.0.finish_item(failed, &mut ctx)
    }
}
