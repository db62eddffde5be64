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
        store.listExpired(now: cutoff, on: executor) { [self] listed in
            guard case .success(let candidates) = listed else { return completion([]) }
            var removed: [String] = []
            var pending = candidates.count + 1
            func finishOne() {
                pending -= 1
                if pending == 0 { completion(removed) }
            }
            for id in candidates {
                // Every instance of a cluster sweeps; the lock makes each upload's removal happen once.
                locker.tryLock(id: id, executor: executor, onReleaseRequested: {}) { [self] locked in
                    guard case .success(let acquired) = locked, let lock = acquired else { return finishOne() }
                    // A PATCH (on another loop or instance) may have committed and moved the expiry, or another
                    // sweeper removed it, between the listing and the lock.
                    store.lookup(id, on: executor) { [self] looked in
                        guard case .success(.found(let info)) = looked, !info.isComplete,
                            let expiresAt = info.expiresAt, expiresAt <= cutoff
                        else {
                            lock.release()
                            return finishOne()
                        }
                        store.remove(id: id, reason: .expired, on: executor) { result in
                            lock.release()
                            if case .success = result { removed.append(id) }
                            finishOne()
                        }
                    }
                }
            }
            finishOne()
        }
    }
}
