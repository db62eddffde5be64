import TusHTTP1

extension TusHandler {
    /// termination. Takes the lock like a PATCH (asking an in-flight PATCH to let go, tusd behaviour since
    /// #320) so data is never removed under a writer.
    func handleDelete(_ request: TusRequest, id: String) {
        guard store.capabilities.contains(.termination) else {
            return fail(request, .methodNotAllowed, headers: ["Allow": "HEAD, PATCH, GET, OPTIONS"])
        }
        switch liveLookup(id) {
        case .notFound: return fail(request, .notFound)
        case .gone: return fail(request, .gone)
        case .found: break
        }
        locker.lock(
            id: id, executor: request.exchange.executor,
            timeoutMilliseconds: configuration.lockReleaseTimeoutMilliseconds,
            onReleaseRequested: {}  // a removal is short; the next request waits for it
        ) { [self] result in
            guard case .success(let lock) = result else { return fail(request, .uploadLocked) }
            switch liveLookup(id) {
            case .notFound:
                lock.release()
                return fail(request, .notFound)
            case .gone:
                lock.release()
                return fail(request, .gone)
            case .found: break
            }
            store.remove(id: id, reason: .terminated) { [self] result in
                lock.release()
                switch result {
                case .success: send(request, HTTPResponse(status: .noContent))
                case .failure(let error): fail(request, Self.mapStoreError(error))
                }
            }
        }
    }
}
