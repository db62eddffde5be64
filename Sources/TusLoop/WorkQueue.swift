internal import CLibuv

extension EventLoop {
    /// Runs `work` on libuv's threadpool (`uv_queue_work`), then `completion` on this loop's thread.
    ///
    /// For CPU work that must not stall the loop's other connections (a checksum over a large PATCH). The
    /// threadpool is shared with file I/O (`UV_THREADPOOL_SIZE`, default 4). `work` runs exactly once, and
    /// `completion` after it; if libuv refuses the request, both run at once on the calling thread (rule 3 of
    /// the module's ownership rules, applied so that callers need no error path).
    public func offload(_ work: @escaping @Sendable () -> Void, completion: @escaping () -> Void) {
        assertOnLoopThread()
        let job = WorkJob(work: work, completion: completion)
        let request = UnsafeMutablePointer<uv_work_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(job).toOpaque()
        let status = uv_queue_work(loop, request, runWork, workFinished)
        if status != 0 {
            Unmanaged<WorkJob>.fromOpaque(request.pointee.data).release()
            request.deallocate()
            work()
            completion()
        }
    }
}

/// Crosses to a worker thread and back; libuv orders the two calls (work happens-before completion).
private final class WorkJob: @unchecked Sendable {
    let work: @Sendable () -> Void
    let completion: () -> Void
    init(work: @escaping @Sendable () -> Void, completion: @escaping () -> Void) {
        self.work = work
        self.completion = completion
    }
}

private func runWork(_ request: UnsafeMutablePointer<uv_work_t>?) {
    Unmanaged<WorkJob>.fromOpaque(request!.pointee.data).takeUnretainedValue().work()
}

private func workFinished(_ request: UnsafeMutablePointer<uv_work_t>?, _ status: Int32) {
    let job = Unmanaged<WorkJob>.fromOpaque(request!.pointee.data).takeRetainedValue()
    request!.deallocate()
    job.completion()
}
