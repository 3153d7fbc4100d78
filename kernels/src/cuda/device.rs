//! One CUDA device: context, stream, cuBLAS handle and the lazily compiled kernel modules.
//! Construction checks that the driver, NVRTC, cuBLAS and the CUDA headers are all present before
//! cudarc is asked to touch them, so a machine without a GPU gets an error, never a panic.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr,
    ValidAsZeroBits,
};

use super::error::CudaError;
use super::gemm::GemmMath;
use super::source::{
    arch_for, compile_family, find_include_dir, nvrtc_available, sass_arch, Family,
};

/// Whether libcuda (the driver) can be loaded.
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether libcublas can be loaded.
pub fn cublas_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// Stops the device's default memory pool from returning freed memory to the driver at every
/// synchronisation (its default release threshold is 0). Activations are allocated and freed every
/// step; keeping the pages mapped makes re-allocation cheap, like PyTorch's caching allocator.
fn keep_pool_memory(ctx: &Arc<CudaContext>) -> Result<(), CudaError> {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: plain driver calls on a live context's device with valid out-pointers.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device())
            .result()
            .map_err(CudaError::driver("getting the default memory pool"))?;
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold) as *mut u64 as *mut std::ffi::c_void,
        )
        .result()
        .map_err(CudaError::driver(
            "setting the memory pool release threshold",
        ))
    }
}

/// The CUDA backend for one device. Kernel families are compiled by NVRTC on first use and cached
/// for the lifetime of the backend (one module per family per device).
pub struct CudaBackend {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) blas: CudaBlas,
    arch: &'static str,
    include_dir: PathBuf,
    modules: Mutex<HashMap<Family, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    pub(crate) sm_count: u32,
    /// First error of an infallible [`crate::Backend`] call, kept until [`Self::take_error`].
    sticky: Mutex<Option<CudaError>>,
    /// GEMM arithmetic for f32 [`crate::Backend`] calls.
    pub(crate) math: GemmMath,
    /// Events after each [`crate::Backend`] op while profiling ([`Self::profile_start`]).
    profile: Mutex<Option<Vec<(&'static str, CudaEvent)>>>,
    /// Copy stream and slots of [`crate::Backend::start_upload`], created on first use.
    pub(crate) stager: Mutex<Option<super::upload::Stager>>,
}

/// Events that record time (cudarc's default flags disable timing).
const TIMED: cudarc::driver::sys::CUevent_flags =
    cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT;

/// Device time spent in one kind of [`crate::Backend`] op during a profiled stretch.
#[derive(Debug, Clone)]
pub struct OpTime {
    pub op: &'static str,
    pub calls: usize,
    pub ms: f64,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ctx.ordinal())
            .field("arch", &self.arch)
            .field("include_dir", &self.include_dir)
            .finish()
    }
}

impl CudaBackend {
    /// Opens device `ordinal`. Errors (never panics) when the driver, the device, NVRTC, cuBLAS or
    /// the CUDA headers are missing.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        if !driver_available() {
            return Err(CudaError::NoDriver);
        }
        if !nvrtc_available() {
            return Err(CudaError::NoNvrtc);
        }
        if !cublas_available() {
            return Err(CudaError::NoCublas);
        }
        let include_dir = find_include_dir()?;
        let count = CudaContext::device_count().map_err(CudaError::driver("cuDeviceGetCount"))?;
        let count = usize::try_from(count).unwrap_or(0);
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal).map_err(CudaError::driver("creating the context"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(CudaError::driver("querying the compute capability"))?;
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(CudaError::driver("querying the SM count"))?;
        if ctx.has_async_alloc() {
            keep_pool_memory(&ctx)?;
        }
        let stream = ctx.default_stream();
        let blas =
            CudaBlas::new(stream.clone()).map_err(CudaError::cublas("creating the handle"))?;
        let arch = arch_for(major, minor);
        tracing::info!(ordinal, arch, include = %include_dir.display(), "CUDA backend ready");
        Ok(Self {
            ctx,
            stream,
            blas,
            arch,
            include_dir,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            sm_count: u32::try_from(sm_count).unwrap_or(1).max(1),
            sticky: Mutex::new(None),
            math: GemmMath::F32,
            profile: Mutex::new(None),
            stager: Mutex::new(None),
        })
    }

    /// Selects f32 or TF32 arithmetic for the f32 GEMMs of the [`crate::Backend`] implementation
    /// (default f32, which the CPU parity checks need).
    pub fn set_gemm_math(&mut self, math: GemmMath) {
        self.math = math;
    }

    /// The GEMM arithmetic of the f32 [`crate::Backend`] calls.
    pub fn gemm_math(&self) -> GemmMath {
        self.math
    }

    /// Keeps the first failure of an infallible trait call (the trait has no error channel).
    pub(crate) fn record(&self, r: Result<(), CudaError>) {
        if let Err(e) = r {
            tracing::error!(error = %e, "CUDA backend op failed");
            let mut slot = self.sticky.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }

    /// [`Self::record`] for the trait op `op`, timestamping its end on the stream while profiling.
    pub(crate) fn record_op(&self, op: &'static str, r: Result<(), CudaError>) {
        self.record(r);
        let mut profile = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(events) = profile.as_mut() {
            match self.ctx.new_event(Some(TIMED)) {
                Ok(ev) if ev.record(&self.stream).is_ok() => events.push((op, ev)),
                _ => tracing::warn!(op, "profiling event failed; op left out"),
            }
        }
    }

    /// Starts attributing device time to [`crate::Backend`] ops: each op is charged the time from
    /// the previous op's end to its own end on the stream (launch gaps included, so a starved
    /// GPU shows up as time in the op that waited). Diagnostic only: events cost host time.
    pub fn profile_start(&self) -> Result<(), CudaError> {
        let ev = self
            .ctx
            .new_event(Some(TIMED))
            .map_err(CudaError::driver("creating a profiling event"))?;
        ev.record(&self.stream)
            .map_err(CudaError::driver("recording a profiling event"))?;
        *self.profile.lock().unwrap_or_else(|p| p.into_inner()) = Some(vec![("start", ev)]);
        Ok(())
    }

    /// Stops profiling and returns device time per op kind, largest first.
    pub fn profile_finish(&self) -> Result<Vec<OpTime>, CudaError> {
        let events = self
            .profile
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        self.synchronize()?;
        let mut per_op: Vec<OpTime> = Vec::new();
        for pair in events.windows(2) {
            let ms = pair[0]
                .1
                .elapsed_ms(&pair[1].1)
                .map_err(CudaError::driver("reading a profiling event"))?
                as f64;
            let op = pair[1].0;
            match per_op.iter_mut().find(|t| t.op == op) {
                Some(t) => {
                    t.calls += 1;
                    t.ms += ms;
                }
                None => per_op.push(OpTime { op, calls: 1, ms }),
            }
        }
        per_op.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(per_op)
    }

    /// The first error recorded by a [`crate::Backend`] call since the last check, clearing it.
    /// After an error, later trait calls still run but their results are meaningless.
    pub fn take_error(&self) -> Option<CudaError> {
        self.sticky.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Device name as reported by the driver.
    pub fn device_name(&self) -> Result<String, CudaError> {
        self.ctx
            .name()
            .map_err(CudaError::driver("querying the device name"))
    }

    /// NVRTC virtual architecture the kernels are compiled for.
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    /// The stream every op of this backend is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The CUDA context (for events and memory queries).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream
            .synchronize()
            .map_err(CudaError::driver("synchronizing the stream"))
    }

    /// Copies a host slice to a new device buffer.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, CudaError> {
        self.stream
            .clone_htod(host)
            .map_err(CudaError::driver("host-to-device copy"))
    }

    /// Copies a device buffer back to the host.
    pub fn download<T: DeviceRepr + Default + Clone>(
        &self,
        dev: &CudaSlice<T>,
    ) -> Result<Vec<T>, CudaError> {
        self.stream
            .clone_dtoh(dev)
            .map_err(CudaError::driver("device-to-host copy"))
    }

    /// A zero-filled device buffer of `len` elements.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<CudaSlice<T>, CudaError> {
        self.stream
            .alloc_zeros(len)
            .map_err(CudaError::driver("allocating device memory"))
    }

    /// A device buffer of `len` elements with unspecified contents, for scratch that a kernel
    /// overwrites completely before anything reads it (skips the memset of [`Self::zeros`]).
    pub(crate) fn scratch<T: DeviceRepr>(&self, len: usize) -> Result<CudaSlice<T>, CudaError> {
        // SAFETY: callers write every element before reading it; T is plain device data.
        unsafe { self.stream.alloc::<T>(len) }
            .map_err(CudaError::driver("allocating device memory"))
    }

    /// Ensures a family's module is compiled and loaded (compiling it on first use).
    pub fn load_family(&self, family: Family) -> Result<Arc<CudaModule>, CudaError> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(&family) {
            return Ok(m.clone());
        }
        let ptx = compile_family(family, self.arch, &self.include_dir)?;
        let module = match self.ctx.load_module(ptx) {
            Ok(m) => m,
            // A driver older than NVRTC rejects the PTX ISA; a cubin for the exact SM still loads.
            Err(first) => match sass_arch(self.arch) {
                Some(sass) => {
                    tracing::warn!(family = family.name(), error = ?first, "PTX rejected, loading a {sass} cubin");
                    let cubin = compile_family(family, sass, &self.include_dir)?;
                    self.ctx
                        .load_module(cubin)
                        .map_err(CudaError::driver(format!(
                            "loading module {} ({sass} cubin; PTX failed with {first:?})",
                            family.name()
                        )))?
                }
                None => {
                    return Err(CudaError::Driver {
                        during: format!("loading module {}", family.name()),
                        source: first,
                    })
                }
            },
        };
        tracing::debug!(family = family.name(), "compiled and loaded CUDA module");
        modules.insert(family, module.clone());
        Ok(module)
    }

    /// The kernel `name` of `family`, from the per-backend cache.
    pub(crate) fn function(&self, family: Family, name: &str) -> Result<CudaFunction, CudaError> {
        {
            let functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = functions.get(name) {
                return Ok(f.clone());
            }
        }
        let module = self.load_family(family)?;
        let f = module
            .load_function(name)
            .map_err(CudaError::driver(format!("looking up kernel {name}")))?;
        self.functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Grid size for a grid-stride loop over `n` elements with 256-thread blocks.
    pub(crate) fn grid_for(&self, n: usize) -> u32 {
        let blocks = n.div_ceil(256).max(1);
        let cap = self.sm_count as usize * 32;
        u32::try_from(blocks.min(cap)).unwrap_or(u32::MAX)
    }
}
