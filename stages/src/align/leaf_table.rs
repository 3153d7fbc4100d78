//! The leaf values of all regression trees in one buffer backed by huge pages where the OS
//! allows it.
//!
//! Prediction reads one random 136-float leaf per tree from a table of tens of megabytes
//! (65 MB for dlib's 68-point model), so with 4 KiB pages nearly every leaf costs a TLB miss
//! and a page walk on top of the cache miss. Asking Linux for transparent huge pages
//! (`madvise(MADV_HUGEPAGE)`, needed when THP is in `madvise` mode, the common default) makes
//! the table a few dozen TLB entries. The values and their order are untouched.

/// An append-only `f32` table, filled once while a model loads.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeafTable {
    values: Vec<f32>,
}

impl LeafTable {
    /// An empty table with room for `capacity` values. Only the pages that get filled are
    /// ever touched, so a generous upper bound costs address space, not memory.
    pub fn with_capacity(capacity: usize) -> Self {
        let values = Vec::with_capacity(capacity);
        advise_huge_pages(values.as_ptr(), capacity);
        Self { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn extend_from_slice(&mut self, v: &[f32]) {
        self.values.extend_from_slice(v);
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }
}

/// Marks the 2 MiB-aligned interior of `v`'s (not yet touched) allocation for transparent
/// huge pages, so the pages faulted in while filling it are huge. A hint only: any failure
/// leaves ordinary pages.
#[cfg(target_os = "linux")]
fn advise_huge_pages(start: *const f32, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = start as usize;
    let end = start + len * std::mem::size_of::<f32>();
    let lo = start.next_multiple_of(HUGE);
    let hi = end / HUGE * HUGE;
    if hi > lo && std::env::var_os("FS_NO_HUGE").is_none() {
        // SAFETY: [lo, hi) lies inside the live allocation of `v` (capacity >= len) and
        // madvise(MADV_HUGEPAGE) only changes how the kernel backs those pages, never
        // their contents or validity.
        unsafe {
            libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: *const f32, _: usize) {}
