internal import CLibuv

/// What `tus-server` tells glibc's malloc at start-up, to keep its private memory small (issue 19).
///
/// By default every thread that mallocs (each event loop, each libuv threadpool worker) gets an arena of its own,
/// up to eight per core, each reserving 64 MiB and keeping the pages it touched, including what it freed. The loops
/// allocate little per request (bodies go into chunks that are reused, or through splice pipes, none of it per
/// thread), so one shared arena costs no throughput we could measure, while it took about 60 KiB off the peak
/// private memory of one upload and 220 KiB off 32 (bench/results/2026-12-07-memory).
public enum MallocTuning {
    /// `mallopt(M_ARENA_MAX, count)`. It only bounds arenas created later: call it before any thread starts.
    /// Returns false when the allocator in use ignores it: a sanitizer's allocator (AddressSanitizer replaces malloc
    /// and answers 0) or another malloc preloaded by the operator. The server then runs as before, only with more
    /// arenas, so that is no reason to stop.
    @discardableResult
    public static func limitArenas(to count: Int) -> Bool {
        precondition(count >= 1, "MallocTuning.limitArenas: count must be at least 1")
        return CLibuv_set_malloc_arena_max(Int32(count)) == 1
    }

    /// `malloc_trim(0)`: hands the free pages of every arena back to the kernel. Once, when start-up is over: argument
    /// parsing and configuration leave about 60 KiB freed in the main heap that would otherwise stay resident.
    public static func releaseFreePages() {
        CLibuv_malloc_trim()
    }
}
