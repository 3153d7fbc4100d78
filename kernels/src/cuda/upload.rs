//! Input batches travel to the device on a copy stream while the compute stream works, so the next
//! batch is on the GPU when the current step ends (issue 6, item 2). A background thread does the
//! host side — it copies the batch into a page-locked slot (a copy straight from pageable memory
//! is staged by the driver and was measured not to overlap the compute stream's kernels) and
//! queues the DMA on the copy stream. The compute stream waits for it only where the batch is
//! taken ([`crate::Backend::finish_upload`]) and then moves the device slot into a fresh buffer at
//! device bandwidth (≈ 0.05 ms for a B = 32 batch of 77 MB), so the slot is free for the next one.
//!
//! Raw driver calls on purpose: a second cudarc stream would switch the context into cudarc's
//! multi-stream mode, which records an event at every buffer use of every op.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use cudarc::driver::{sys, CudaContext};

use super::error::CudaError;
use crate::backend::InFlight;

/// Driver handles moved to the worker thread (plain handles; the driver is thread-safe).
struct Handles {
    stream: sys::CUstream,
    host: *mut f32,
    dst: sys::CUdeviceptr,
    copied: sys::CUevent,
    released: sys::CUevent,
}
// SAFETY: CUDA driver handles may be used from any thread that has the context bound.
unsafe impl Send for Handles {}

struct Job {
    data: Vec<f32>,
    at: Handles,
    reply: mpsc::Sender<Result<(), String>>,
}

/// One device landing area with its events: `copied` is recorded on the copy stream after the
/// host-to-device copy, `released` on the compute stream after the slot was moved out.
struct Slot {
    host: *mut f32,
    dev: sys::CUdeviceptr,
    cap: usize,
    copied: sys::CUevent,
    released: sys::CUevent,
    pending: bool,
}

/// The copy stream, its worker thread and two slots.
pub(crate) struct Stager {
    ctx: Arc<CudaContext>,
    copy: sys::CUstream,
    slots: Vec<Slot>,
    next: usize,
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

// SAFETY: the stager owns its driver handles and page-locked buffer; the driver API is
// thread-safe, and the backend serialises access through a mutex.
unsafe impl Send for Stager {}

fn check(r: sys::CUresult, during: &str) -> Result<(), CudaError> {
    r.result().map_err(CudaError::driver(during.to_string()))
}

impl Stager {
    pub(crate) fn new(ctx: Arc<CudaContext>) -> Result<Self, CudaError> {
        ctx.bind_to_thread()
            .map_err(CudaError::driver("binding the context"))?;
        let mut copy: sys::CUstream = std::ptr::null_mut();
        let flags = sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32;
        // SAFETY: valid out-pointer; the context is bound to this thread.
        check(
            unsafe { sys::cuStreamCreate(&mut copy, flags) },
            "creating the copy stream",
        )?;
        let (tx, rx) = mpsc::channel::<Job>();
        let worker_ctx = ctx.clone();
        let worker = std::thread::Builder::new()
            .name("cuda-upload".into())
            .spawn(move || {
                let bound = worker_ctx.bind_to_thread().map_err(|e| e.to_string());
                for job in rx {
                    let r = bound.clone().and_then(|()| copy_job(&job));
                    let _ = job.reply.send(r);
                }
            })
            .map_err(|e| {
                CudaError::shape("upload", format!("cannot start the copy thread: {e}"))
            })?;
        Ok(Self {
            ctx,
            copy,
            slots: Vec::new(),
            next: 0,
            jobs: Some(tx),
            worker: Some(worker),
        })
    }

    /// Queues `data` for the copy stream; `None` when both slots still hold batches nobody took
    /// (the caller then uploads synchronously).
    pub(crate) fn start(&mut self, data: Vec<f32>) -> Result<Option<InFlight>, CudaError> {
        if self.slots.is_empty() {
            for _ in 0..2 {
                self.slots.push(self.new_slot()?);
            }
        }
        let i = self.next;
        if self.slots[i].pending {
            return Ok(None);
        }
        self.next = (i + 1) % self.slots.len();
        if self.slots[i].cap < data.len() {
            self.grow(i, data.len())?;
        }
        let slot = &mut self.slots[i];
        slot.pending = true;
        let (reply, done) = mpsc::channel();
        let len = data.len();
        let job = Job {
            data,
            at: Handles {
                stream: self.copy,
                host: slot.host,
                dst: slot.dev,
                copied: slot.copied,
                released: slot.released,
            },
            reply,
        };
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| CudaError::shape("upload", "the copy thread has stopped"))?;
        Ok(Some(InFlight { slot: i, len, done }))
    }

    /// Makes `compute` wait for the copy, moves the slot into `dst` on `compute` and frees the slot.
    pub(crate) fn finish(
        &mut self,
        up: InFlight,
        compute: sys::CUstream,
        dst_len: usize,
        dst_ptr: sys::CUdeviceptr,
    ) -> Result<(), CudaError> {
        let copied = up.done.recv().map_err(|_| {
            CudaError::shape("upload", "the copy thread stopped mid-copy".to_string())
        })?;
        let slot = self
            .slots
            .get_mut(up.slot)
            .ok_or_else(|| CudaError::shape("upload", "unknown slot"))?;
        slot.pending = false;
        copied.map_err(|e| CudaError::shape("upload", format!("host-to-device copy: {e}")))?;
        let bytes = up.len * std::mem::size_of::<f32>();
        if dst_len < up.len {
            return Err(CudaError::shape("upload", "destination too small"));
        }
        // SAFETY: live handles; dst holds len values; the slot holds the copied batch once
        // `copied` has completed, which the compute stream waits for first.
        unsafe {
            check(
                sys::cuStreamWaitEvent(compute, slot.copied, 0),
                "waiting for the copy",
            )?;
            check(
                sys::cuMemcpyDtoDAsync_v2(dst_ptr, slot.dev, bytes, compute),
                "moving the batch out of its slot",
            )?;
            check(
                sys::cuEventRecord(slot.released, compute),
                "releasing the slot",
            )
        }
    }

    fn new_slot(&self) -> Result<Slot, CudaError> {
        let flags = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32;
        let (mut copied, mut released) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: valid out-pointers; the context is bound.
        unsafe {
            check(sys::cuEventCreate(&mut copied, flags), "creating an event")?;
            check(
                sys::cuEventCreate(&mut released, flags),
                "creating an event",
            )?;
        }
        Ok(Slot {
            host: std::ptr::null_mut(),
            dev: 0,
            cap: 0,
            copied,
            released,
            pending: false,
        })
    }

    /// Replaces slot `i`'s device memory with room for `len` values, once its last use is done.
    fn grow(&mut self, i: usize, len: usize) -> Result<(), CudaError> {
        self.ctx
            .bind_to_thread()
            .map_err(CudaError::driver("binding the context"))?;
        let slot = &mut self.slots[i];
        // SAFETY: live handles; the old memory is freed only after its last copy-out finished.
        unsafe {
            check(
                sys::cuEventSynchronize(slot.released),
                "waiting for the slot",
            )?;
            check(sys::cuEventSynchronize(slot.copied), "waiting for the slot")?;
            if slot.dev != 0 {
                check(sys::cuMemFree_v2(slot.dev), "freeing a slot")?;
                slot.dev = 0;
                slot.cap = 0;
            }
            if !slot.host.is_null() {
                check(sys::cuMemFreeHost(slot.host.cast()), "freeing a slot")?;
                slot.host = std::ptr::null_mut();
            }
            let bytes = len * std::mem::size_of::<f32>();
            let mut dev = 0;
            check(
                sys::cuMemAlloc_v2(&mut dev, bytes),
                "allocating an upload slot",
            )?;
            slot.dev = dev;
            let mut host: *mut std::ffi::c_void = std::ptr::null_mut();
            check(
                sys::cuMemHostAlloc(&mut host, bytes, 0),
                "allocating page-locked memory for an upload slot",
            )?;
            slot.host = host.cast();
        }
        slot.cap = len;
        Ok(())
    }
}

/// The worker's side of one job: wait until the slot's previous DMA has read its page-locked
/// buffer, fill it, then queue the DMA behind the slot's last move-out (a GPU-side wait).
fn copy_job(job: &Job) -> Result<(), String> {
    let at = &job.at;
    let n = job.data.len();
    let bytes = n * std::mem::size_of::<f32>();
    // SAFETY: live handles; both halves of the slot hold at least n values; the page-locked buffer
    // is written only after the previous DMA out of it completed (`copied` synchronised).
    unsafe {
        sys::cuEventSynchronize(at.copied)
            .result()
            .map_err(|e| format!("{e:?}"))?;
        std::ptr::copy_nonoverlapping(job.data.as_ptr(), at.host, n);
        sys::cuStreamWaitEvent(at.stream, at.released, 0)
            .result()
            .map_err(|e| format!("{e:?}"))?;
        sys::cuMemcpyHtoDAsync_v2(at.dst, at.host.cast_const().cast(), bytes, at.stream)
            .result()
            .map_err(|e| format!("{e:?}"))?;
        sys::cuEventRecord(at.copied, at.stream)
            .result()
            .map_err(|e| format!("{e:?}"))
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        let _ = self.ctx.bind_to_thread();
        // SAFETY: the worker has exited; every handle is live and destroyed once.
        unsafe {
            let _ = sys::cuStreamSynchronize(self.copy);
            for s in &self.slots {
                let _ = sys::cuEventSynchronize(s.released);
                if s.dev != 0 {
                    let _ = sys::cuMemFree_v2(s.dev);
                }
                if !s.host.is_null() {
                    let _ = sys::cuMemFreeHost(s.host.cast());
                }
                let _ = sys::cuEventDestroy_v2(s.copied);
                let _ = sys::cuEventDestroy_v2(s.released);
            }
            let _ = sys::cuStreamDestroy_v2(self.copy);
        }
    }
}
