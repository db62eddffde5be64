public import TusHTTP1

extension TusHandler {
    /// Removes unfinished uploads whose expiry has passed (data and state; the store remembers them as gone,
    /// so they answer 410). Call from a timer on a loop: `executor` is that loop, and store completions
    /// come back on it. Uploads locked by an in-flight request are skipped; their commit moves the expiry.
    /// `completion` gets the ids removed.
    public func sweepExpired(
        now sweepTime: Int64? = nil, executor: any LoopExecutor, completion: @escaping ([String]) -> Void = { _ in }
    ) {
        guard configuration.expirationSeconds > 0 else { return completion([]) }
        let cutoff = sweepTime ?? now()
        let candidates = store.listExpired(now: cutoff)
        var removed: [String] = []
        var pending = candidates.count + 1
        func finishOne() {
            pending -= 1
            if pending == 0 { completion(removed) }
        }
        for id in candidates {
            guard let lock = locker.tryLock(id: id, executor: executor, onReleaseRequested: {}) else {
                finishOne()
                continue
            }
            // A PATCH on another loop may have committed (and moved the expiry) between the listing and the lock.
            guard case .found(let info) = store.lookup(id), !info.isComplete, let expiresAt = info.expiresAt,
                expiresAt <= cutoff
            else {
                lock.release()
                finishOne()
                continue
            }
            store.remove(id: id, reason: .expired) { result in
                lock.release()
                if case .success = result { removed.append(id) }
                finishOne()
            }
        }
        finishOne()
    }
}
