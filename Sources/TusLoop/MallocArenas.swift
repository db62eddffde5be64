internal import CLibuv

/// How many glibc malloc arenas the process may have. Set by `tus-server` before it starts any thread.
///
/// By default every thread that mallocs (each event loop, each libuv threadpool worker) gets an arena of its own,
/// up to eight per core, each reserving 64 MiB and keeping the pages it touched, including what it freed. The loops
/// allocate little per request (bodies go into chunks that are reused, or through splice pipes, none of it per
/// thread), so one shared arena costs no throughput we could measure, while it took about 60 KiB off the peak
/// private memory of one upload and 220 KiB off 32 (bench/results/2026-12-07-memory, issue 19).
public enum MallocArenas {
    /// `mallopt(M_ARENA_MAX, count)`. It only bounds arenas created later: call it before any thread starts.
    public static func limit(to count: Int) {
        precondition(count >= 1, "MallocArenas.limit: count must be at least 1")
        // mallopt returns 0 only for a parameter it does not know; M_ARENA_MAX exists since glibc 2.10.
        precondition(CLibuv_set_malloc_arena_max(Int32(count)) == 1, "mallopt(M_ARENA_MAX, \(count)) failed")
    }
}
