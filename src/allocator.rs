//! The process's memory allocator settings, applied once at start-up by `main` before any
//! command runs.

/// Fixes glibc's mmap threshold, so a large message's buffer always comes from its own mapping
/// and goes back to the system when the message has been written.
///
/// By default glibc raises the threshold to the size of the last mapped block freed (up to
/// 32 MiB): after one 16 MiB answer the next one is carved from the heap, which is not given
/// back and fragments, and a run of such answers held about two copies' worth of resident
/// memory at the peak instead of one (measured with `examples/bench.rs`). Only buffers of
/// 256 KiB and more are affected; small allocations keep the heap's speed.
pub fn hold_large_messages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(
                param: std::os::raw::c_int,
                value: std::os::raw::c_int,
            ) -> std::os::raw::c_int;
        }
        const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
        // SAFETY: glibc's mallopt only changes the allocator's policy for later allocations;
        // it takes the allocator's own lock and is safe to call at any time.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 256 * 1024);
        }
    }
}
