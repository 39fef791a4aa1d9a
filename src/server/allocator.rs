//! The hub process's allocator settings: what keeps whole-process memory near what the hub
//! holds (docs/ARCHITECTURE.md, "Memory model").
//!
//! The matching index is rebuilt in the background in large arrays (segment merges: tens to
//! hundreds of MB each) that live for a while and are then freed. glibc's
//! malloc raises its mmap threshold to the size of each large block freed (up to 32 MiB), so
//! later blocks of that size come from the heap arenas instead of their own mappings, and the
//! arenas keep what is freed in their middle: measured at 10M PDQ hashes, the hub that ingested
//! held 2.5 GiB once settled against 1.1 GiB after a restart with the same index. Two settings
//! keep freed memory returned to the system:
//!
//! - [`configure`] fixes the mmap threshold at [`MMAP_THRESHOLD`] (which also stops the
//!   dynamic raise), so every block from 128 KiB up is its own mapping, unmapped when freed;
//! - [`release_free_memory`] (`malloc_trim(0)`) after a merge or a snapshot write gives back
//!   the free pages the arenas hold.
//!
//! Elsewhere (another libc or OS) both are no-ops.

/// Blocks of at least this many bytes are mapped on their own and returned when freed.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Applies the settings; called once when the hub starts serving.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's tuning parameters; it is thread-safe
        // and any value is valid (an unsupported one is refused with 0, harmlessly).
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
        if ok == 0 {
            tracing::warn!(
                "the allocator refused its mmap threshold; memory may be kept after index merges"
            );
        }
    }
}

/// Returns the free memory the allocator's arenas hold to the system.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory; it is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
