import TusHTTP1

extension TusHandler {
    /// termination. Takes the lock like a PATCH (asking an in-flight PATCH to let go, tusd behaviour since
    /// #320) so data is never removed under a writer.
    func handleDelete(_ request: TusRequest, id: String) {
        guard store.capabilities.contains(.termination) else {
            return fail(request, .methodNotAllowed, headers: ["Allow": "HEAD, PATCH, GET, OPTIONS"])
        }
        let executor = request.exchange.executor
        withUpload(request, id: id) { [self] _ in
            locker.lock(
                id: id, executor: executor, timeoutMilliseconds: configuration.lockReleaseTimeoutMilliseconds,
                onReleaseRequested: {}  // a removal is short; the next request waits for it
            ) { [self] result in
                let lock: any UploadLock
                switch result {
                case .success(let acquired): lock = acquired
                case .failure(let error): return fail(request, Self.mapLockError(error))
                }
                withUpload(request, id: id, release: lock) { [self] _ in
                    store.remove(id: id, reason: .terminated, on: executor) { [self] result in
                        lock.release()
                        switch result {
                        case .success: send(request, HTTPResponse(status: .noContent))
                        case .failure(let error): fail(request, Self.mapStoreError(error))
                        }
                    }
                }
            }
        }
    }
}
