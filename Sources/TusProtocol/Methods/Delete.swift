import TusHTTP1

extension TusHandler {
    /// termination. Takes the lock like a PATCH (asking an in-flight PATCH to let go, tusd behaviour since
    /// #320) so data is never removed under a writer.
    func handleDelete(_ request: TusRequest, id: String) {
        guard capabilities.contains(.termination) else { return failMethodNotAllowed(request) }
        let executor = request.exchange.executor
        withUpload(request, id: id) { [self] _ in
            let waitStarted = Self.monotonicNanoseconds()
            locker.lock(
                id: id, executor: executor, timeoutMilliseconds: configuration.lockReleaseTimeoutMilliseconds,
                onReleaseRequested: {}  // a removal is short; the next request waits for it
            ) { [self] result in
                let lock: any UploadLock
                switch result {
                case .success(let acquired):
                    lock = acquired
                    measureLockWait(since: waitStarted, request)
                case .failure(let error): return fail(request, Self.mapLockError(error))
                }
                withUpload(request, id: id, release: lock) { [self] info in
                    gate(.preTerminate, request, upload: info, rejection: .terminationRejected, release: lock) {
                        [self] verdict in
                        store.remove(id: id, reason: .terminated, on: executor) { [self] result in
                            lock.release()
                            switch result {
                            case .success:
                                notify(.terminated, request, upload: info)
                                var response = HTTPResponse(status: .noContent)
                                response.apply(verdict.response)
                                send(request, response)
                            case .failure(let error): fail(request, Self.mapStoreError(error))
                            }
                        }
                    }
                }
            }
        }
    }
}
