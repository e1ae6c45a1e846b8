//! Process-wide CPU settings for inference: keep glibc from returning libtorch's large
//! activation buffers to the OS after every layer, and flush subnormal floats.
//!
//! A forward pass on a segmentation tile allocates and frees tens of MB per layer. glibc
//! serves blocks above its mmap threshold with fresh `mmap`s, and threads other than the
//! main one allocate from secondary arenas made of 64 MB heaps that are unmapped and
//! remapped as they empty and fill; either way every layer pays page faults on zeroed
//! pages (measured: 5 s of system time for 12 tiles, against 0.6 s with these settings).
//! One arena, the largest mmap threshold (32 MB on 64-bit) and a trim threshold far above
//! it let freed buffers be reused. Tiles are sized so that one activation map fits under
//! that threshold (see `segment::SegmentOptions::tile`).

/// glibc's largest allowed mmap threshold on 64-bit targets.
pub const MAX_MMAP_THRESHOLD: usize = 32 << 20;

/// Applies the settings; call before starting threads (later calls still help the main
/// arena). A no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called with valid options.
    unsafe {
        // The pipeline's threads allocate little; the model thread's buffers are what count.
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Treats subnormal floats as zero on this thread and the threads it starts afterwards
/// (x86 FTZ/DAZ; threads inherit the floating-point environment). Activations decaying
/// towards zero otherwise hit microcode-slow subnormal arithmetic.
pub fn flush_subnormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only sets the flush-to-zero (bit 15) and denormals-are-zero (bit 6) flags.
    #[allow(deprecated)] // the intrinsics, not the instructions, are deprecated
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | (1 << 15) | (1 << 6));
    }
}
