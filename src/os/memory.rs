//! Giving the kernel back memory the allocator holds but tend no longer uses.
//!
//! glibc's malloc returns freed memory to the kernel only from the top of its heap; pages freed
//! below a block still in use stay in tend's RSS until malloc_trim(3) hands them back
//! (madvise(MADV_DONTNEED) on every free page, in every arena). A burst of work leaves many
//! such holes: starting 1,000 servers frees about 1 MiB of config parsing, SSE frames and
//! replies in the middle of the heap (docs/NOTES.md). musl's allocator returns freed pages
//! itself and has no such call.

/// Returns the free pages of every malloc arena to the kernel; true if any were.
#[cfg(target_env = "gnu")]
pub fn release_freed() -> bool {
    // SAFETY: malloc_trim only walks the allocator's own free lists under its locks; pad 0
    // keeps nothing spare at the top of the heap.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(target_env = "gnu"))]
pub fn release_freed() -> bool {
    false
}
