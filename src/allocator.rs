//! Allocator tuning both programs share. Each program names mimalloc as its global allocator;
//! this sets how it gives memory back.

/// mimalloc purges freed memory lazily, on a thread's next allocation after a delay. The threads
/// that free the most (Argon2 workers dropping 19 MiB, transfers dropping 256 KiB chunks) then
/// sleep, so the memory would stay resident; purging at once keeps an idle process small. Call it
/// first thing in `main`; an operator's MIMALLOC_PURGE_DELAY still wins.
pub fn purge_freed_memory_at_once() {
    /// `mi_option_purge_delay` in mimalloc's option enumeration.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one allocator option, which mimalloc reads atomically; it takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0) };
}
