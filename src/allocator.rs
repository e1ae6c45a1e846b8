//! Keeps glibc from returning libtorch's large activation buffers to the OS after every
//! layer.
//!
//! A forward pass on a segmentation tile allocates and frees tens of MB per layer. glibc
//! serves blocks above its mmap threshold with fresh `mmap`s, so every layer pays page
//! faults on zeroed pages (on 2 cores, more system time than the convolutions' own).
//! Raising the threshold to its maximum (32 MB on 64-bit) and the trim threshold far
//! above it lets freed buffers be reused from the heap. Tiles are sized so that one
//! activation map fits under that maximum (see `segment::SegmentOptions::tile`).

/// glibc's largest allowed mmap threshold on 64-bit targets.
pub const MAX_MMAP_THRESHOLD: usize = 32 << 20;

/// Applies the settings; harmless to call more than once. A no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called with valid options.
    unsafe {
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
