public import TusCore
import TusHTTP1

extension UploadService {
    /// Removes unfinished uploads whose expiry has passed (data and state; the store remembers them as gone,
    /// so they answer 410). Call from a timer on a loop: `executor` is that loop, and store completions
    /// come back on it. Uploads locked by an in-flight request are skipped; their commit moves the expiry.
    /// A due final is judged by its partials (`sweepDueFinal`). `completion` gets the ids removed.
    public func sweepExpired(
        now sweepTime: Int64? = nil, executor: any LoopExecutor, completion: @escaping ([String]) -> Void = { _ in }
    ) {
        // Runs with expiration off too (nothing has an expiry then): the S3 state store's listing also deletes gone
        // markers past their window.
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
                        let remove = { [self] in
                            store.remove(id: id, reason: .expired, on: executor) { result in
                                lock.release()
                                if case .success = result { removed.append(id) }
                                finishOne()
                            }
                        }
                        guard info.isFinal else { return remove() }
                        sweepDueFinal(info, lock: lock, cutoff: cutoff, on: executor) { verdict in
                            guard verdict == .remove else {
                                lock.release()
                                return finishOne()
                            }
                            remove()
                        }
                    }
                }
            }
            finishOne()
        }
    }

    /// What the sweep does with a final whose own expiry has passed.
    enum DueFinalVerdict: Equatable {
        /// A partial is gone (or the partials outgrew `--max-size`): it can never complete.
        case remove
        /// Kept: moved to its partials' later expiry, assembled, or left to the next sweep after a store failure.
        case keep
    }

    /// Under the final's lock (held by the sweep). A final with a partial still being uploaded gets that partial's
    /// expiry written to its record, so it is not listed again until then; one whose partials are all complete
    /// (the assembly after the last PATCH was cut short) is assembled here rather than thrown away.
    private func sweepDueFinal(
        _ final: UploadInfo, lock: any UploadLock, cutoff: Int64, on executor: any LoopExecutor,
        completion: @escaping (DueFinalVerdict) -> Void
    ) {
        lookUpPartials(final.partialIDs, owner: final.owner, on: executor) { [self] looked in
            let partials: [UploadInfo]
            switch looked {
            case .failure(.partialGone), .failure(.partialNotFound), .failure(.notPartial): return completion(.remove)
            case .failure: return completion(.keep)
            case .success(let found): partials = found
            }
            let lengths = partials.compactMap(\.length)
            if lengths.count == partials.count, let maxSize = configuration.maxSize, lengths.reduce(0, +) > maxSize {
                return completion(.remove)
            }
            if partials.allSatisfy(\.isComplete) {
                // `.gone`: a partial's bytes vanished under it, so no later attempt can succeed either.
                return store.completeConcatenation(final, partials: partials, on: executor) { assembled in
                    if case .failure(.gone) = assembled { return completion(.remove) }
                    completion(.keep)
                }
            }
            guard let later = finalExpiry(final, partials: partials), later > cutoff else { return completion(.remove) }
            store.moveExpiry(of: final, to: later, lock: lock, on: executor) { _ in completion(.keep) }
        }
    }
}
