//! glibc malloc tuning for the synthesis workload.
//!
//! Every frame allocates and frees dozens of 0.1–0.6 MB buffers (ours and OpenCV's). With glibc's
//! defaults those sizes bounce between `mmap`/`munmap` and heap trimming, so each new buffer is
//! faulted in again page by page (≈ 15 % of the synthesis CPU time was kernel page-fault work).
//! Raising the mmap and trim thresholds keeps the pages mapped for reuse. Process-wide: call once
//! at start-up from the binary that runs the loader.

/// Applies the tuning; returns false where it is not available (non-glibc targets) or refused.
pub fn tune_for_synthesis() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only adjusts allocator parameters; it is thread-safe in glibc.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
                && mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1
                && mallopt(M_TOP_PAD, 64 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
