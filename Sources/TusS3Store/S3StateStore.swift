import FoundationEssentials
import Synchronization
public import TusCore
import TusLoop
public import TusProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// Upload records as objects, `P<id>.info` (the JSON of `UploadRecord`, the file store's format), next to the
/// data: `--store s3` without `--redis` keeps everything in the bucket.
///
/// Consistency: S3 has no atomic compare-and-set that every implementation offers (Ceph RGW 16 has no
/// conditional PUT), so every change is read-modify-write, and create is "HEAD, then PUT". One instance is
/// safe: its `MemoryLocker` serializes the writers of an upload, ids are random, and S3's read-after-write
/// consistency shows each instance its own writes. Several instances on one bucket are NOT: two could both
/// change one record, or both take one upload. Use `--redis` for a cluster (the records then live in Redis).
///
/// Removal replaces the record with a gone marker, `{"gone":"terminated","at":<unix seconds>}` (or `expired`), so a
/// removed id answers 410 for `goneLifetimeSeconds` (`--expiration`, or 24 h when expiration is off); after that it
/// answers 404 and the sweep deletes the marker, so the bucket does not keep one object per upload ever removed.
/// `listExpired` lists the bucket's `.info` objects and reads each (a sweep costs one GET per upload record; fine
/// for the sizes one instance serves, and it runs once a minute): that pass is also where old markers are deleted
/// and where markers written before they had a time (no `at`) get one, starting their window then.
public final class S3StateStore: UploadStateStore {
    public let client: any S3Transport
    public let keys: S3Keys
    public let progressPolicy: UploadProgressPolicy
    /// How long a removed id answers 410 (then 404, and the sweep deletes its marker).
    public let goneLifetimeSeconds: Int64
    /// Unix seconds; injected so marker lifetimes are testable.
    let now: @Sendable () -> Int64
    /// Record updates waiting for an earlier one of the same upload to finish. A record is read, changed and written
    /// back with two requests, so two updates of one upload in flight at once (a write's checkpoint beside the length
    /// a completing request declares) would each write back what it read, and the later would undo the other.
    private let queuedUpdates = Mutex<[String: [@Sendable () -> Void]]>([:])

    public static let defaultGoneLifetimeSeconds: Int64 = 86_400

    @Sendable public static func systemNow() -> Int64 { Int64(time(nil)) }

    public init(
        client: any S3Transport, goneLifetimeSeconds: Int64 = S3StateStore.defaultGoneLifetimeSeconds,
        now: @escaping @Sendable () -> Int64 = S3StateStore.systemNow
    ) {
        self.client = client
        self.goneLifetimeSeconds = goneLifetimeSeconds
        self.now = now
        keys = S3Keys(prefix: client.configuration.prefix)
        // The data store confirms bytes a part at a time, so checking more often would record nothing new.
        progressPolicy = .durableCheckpoints(bytes: client.configuration.partSize, milliseconds: 1000)
    }

    enum Stored {
        case record(UploadInfo)
        /// A gone marker, removed at `since` (nil: written before markers had a time).
        case gone(since: Int64?)
        case missing
    }

    private struct GoneMarker: Codable {
        var gone: String
        var at: Int64?
    }

    private func isPastItsWindow(_ since: Int64?) -> Bool {
        guard let since else { return false }
        return since + goneLifetimeSeconds <= now()
    }

    private func loop(of executor: any LoopExecutor) -> EventLoop {
        executor.eventLoop
    }

    private func fetch(_ id: String, on loop: EventLoop, _ completion: @escaping (Result<Stored, StoreError>) -> Void) {
        client.send(S3Request(method: .GET, key: keys.info(id)), on: loop) { result in
            switch result {
            case .failure(let error) where error.statusCode == 404: completion(.success(.missing))
            case .failure(let error): completion(.failure(Self.storeError(error, "GET \(id).info")))
            case .success(let response): completion(Self.decode(response.body))
            }
        }
    }

    static func decode(_ body: [UInt8]) -> Result<Stored, StoreError> {
        if let record = try? JSONDecoder().decode(UploadRecord.self, from: Data(body)) {
            return .success(.record(record.info))
        }
        if let marker = try? JSONDecoder().decode(GoneMarker.self, from: Data(body)) {
            return .success(.gone(since: marker.at))
        }
        return .failure(.io("malformed upload record: \(String(decoding: body.prefix(200), as: UTF8.self))"))
    }

    private func store(_ info: UploadInfo, on loop: EventLoop, _ completion: @escaping (StoreError?) -> Void) {
        let request = S3Request(
            method: .PUT, key: keys.info(info.id), headers: [("content-type", "application/json")],
            body: .bytes(UploadRecord(info).encodedJSON))
        client.send(request, on: loop) { result in
            if case .failure(let error) = result { return completion(Self.storeError(error, "PUT \(info.id).info")) }
            completion(nil)
        }
    }

    /// Reads the record, lets `change` compute the new one (or refuse), writes it back; one update of an upload at a
    /// time in this process (`queuedUpdates`), in the order they were asked for. Across instances the upload's lock
    /// keeps writers apart.
    private func update(
        _ id: String, on executor: any LoopExecutor,
        _ change: @escaping (UploadInfo) -> Result<UploadInfo, StoreError>,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        nonisolated(unsafe) let change = change
        nonisolated(unsafe) let completion = completion
        let run: @Sendable () -> Void = { [self] in
            updateNow(id, on: executor, change) { [self] result in
                completion(result)
                startNextUpdate(of: id)
            }
        }
        let startsNow = queuedUpdates.withLock { queued in
            if queued[id] != nil {
                // Run on the asker's own loop when its turn comes, not on the loop that finished the one before.
                queued[id]!.append { executor.execute(run) }
                return false
            }
            queued[id] = []
            return true
        }
        if startsNow { run() }
    }

    private func startNextUpdate(of id: String) {
        let next = queuedUpdates.withLock { queued -> (@Sendable () -> Void)? in
            guard var waiting = queued[id], !waiting.isEmpty else {
                queued[id] = nil
                return nil
            }
            let first = waiting.removeFirst()
            queued[id] = waiting
            return first
        }
        next?()
    }

    private func updateNow(
        _ id: String, on executor: any LoopExecutor,
        _ change: @escaping (UploadInfo) -> Result<UploadInfo, StoreError>,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        let loop = loop(of: executor)
        fetch(id, on: loop) { [self] fetched in
            switch fetched {
            case .failure(let error): completion(.failure(error))
            case .success(.missing): completion(.failure(.notFound))
            case .success(.gone(let since)): completion(.failure(isPastItsWindow(since) ? .notFound : .gone))
            case .success(.record(let info)):
                switch change(info) {
                case .failure(let error): completion(.failure(error))
                case .success(let changed) where changed == info: completion(.success(info))
                case .success(let changed):
                    store(changed, on: loop) { error in completion(error.map { .failure($0) } ?? .success(changed)) }
                }
            }
        }
    }

    public func lookup(
        _ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void
    ) {
        fetch(id, on: loop(of: executor)) { [self] result in
            completion(
                result.map {
                    switch $0 {
                    case .record(let info): .found(info)
                    case .gone(let since): isPastItsWindow(since) ? .notFound : .gone
                    case .missing: .notFound
                    }
                })
        }
    }

    public func create(
        _ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        let loop = loop(of: executor)
        fetch(info.id, on: loop) { [self] fetched in
            switch fetched {
            case .failure(let error): completion(.failure(error))
            case .success(.record), .success(.gone): completion(.failure(.alreadyExists))
            case .success(.missing):
                store(info, on: loop) { error in completion(error.map { .failure($0) } ?? .success(info)) }
            }
        }
    }

    public func declareLength(
        id: String, length: Int64, completing: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        update(id, on: executor, { info in
            info.declaringLength(length, completing: completing).map { declared in
                var changed = declared
                if changed.isComplete { changed.expiresAt = nil }
                return changed
            }
        }, completion: completion)
    }

    public func beginWrite(
        id: String, at offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        update(id, on: executor, { info in info.offset == offset ? .success(info) : .failure(.conflict) },
            completion: completion)
    }

    public func recordProgress(
        id: String, offset: Int64, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void
    ) {
        update(id, on: executor, { info in
            var changed = info
            changed.offset = max(info.offset, offset)
            return .success(changed)
        }) { result in
            if case .failure(let error) = result { return completion(error) }
            completion(nil)
        }
    }

    public func finishWrite(
        id: String, offset: Int64, expiry: ExpiryUpdate, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        update(id, on: executor, { info in .success(info.finishingWrite(at: offset, expiry: expiry)) },
            completion: completion)
    }

    public func remove(
        id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        let loop = loop(of: executor)
        fetch(id, on: loop) { [self] fetched in
            switch fetched {
            case .failure(let error): completion(.failure(error))
            case .success(.missing): completion(.failure(.notFound))
            case .success(.gone(let since)): completion(.failure(isPastItsWindow(since) ? .notFound : .gone))
            case .success(.record):
                let request = goneMarker(id, reason: reason == .terminated ? "terminated" : "expired", at: now())
                client.send(request, on: loop) { result in
                    if case .failure(let error) = result {
                        return completion(.failure(Self.storeError(error, "PUT \(id).info (gone)")))
                    }
                    completion(.success(()))
                }
            }
        }
    }

    private func goneMarker(_ id: String, reason: String, at: Int64) -> S3Request {
        let marker = (try? JSONEncoder().encode(GoneMarker(gone: reason, at: at))).map { Array($0) } ?? []
        return S3Request(
            method: .PUT, key: keys.info(id), headers: [("content-type", "application/json")], body: .bytes(marker))
    }

    public func listExpired(
        now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        let loop = loop(of: executor)
        listInfoKeys(on: loop, continuation: nil, found: []) { [self] listed in
            switch listed {
            case .failure(let error): completion(.failure(error))
            case .success(let ids):
                collect(ids[...], on: loop, found: [], sweepingMarkers: true, where: { info in
                    guard !info.isComplete, let expiresAt = info.expiresAt else { return false }
                    return expiresAt <= now
                }, completion)
            }
        }
    }

    /// A final becomes complete once: length and offset set to the partials' sum, no expiry.
    public func completeFinal(
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        update(id, on: executor, { info in
            guard info.isFinal else { return .failure(.conflict) }
            guard !info.isComplete else { return .success(info) }
            var completed = info
            completed.length = length
            completed.offset = length
            completed.expiresAt = nil
            return .success(completed)
        }, completion: completion)
    }

    /// Reads every record (one GET each, like the expiry sweep): without `--redis` the bucket has no index of
    /// finals by partial, and a single instance's bucket is small enough for that.
    public func finals(
        referencing partialID: String, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        let loop = loop(of: executor)
        listInfoKeys(on: loop, continuation: nil, found: []) { [self] listed in
            switch listed {
            case .failure(let error): completion(.failure(error))
            case .success(let ids):
                collect(ids[...], on: loop, found: [], where: { $0.partialIDs.contains(partialID) }) { result in
                    completion(result.map { Array(Set($0)).sorted() })
                }
            }
        }
    }

    /// Reads each record and keeps the ids `matches` accepts. `sweepingMarkers` (the expiry sweep): a gone marker
    /// past its window is deleted, one without a time gets one (a failure there only delays it to the next sweep).
    private func collect(
        _ ids: ArraySlice<String>, on loop: EventLoop, found: [String], sweepingMarkers: Bool = false,
        where matches: @escaping (UploadInfo) -> Bool, _ completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        guard let id = ids.first else { return completion(.success(found)) }
        fetch(id, on: loop) { [self] fetched in
            var found = found
            let next = { [self] in
                collect(
                    ids.dropFirst(), on: loop, found: found, sweepingMarkers: sweepingMarkers, where: matches,
                    completion)
            }
            switch fetched {
            case .success(.record(let info)):
                if matches(info) { found.append(id) }
                next()
            case .success(.gone(let since)) where sweepingMarkers && since == nil:
                client.send(goneMarker(id, reason: "removed", at: now()), on: loop) { _ in next() }
            case .success(.gone(let since)) where sweepingMarkers && isPastItsWindow(since):
                client.send(S3Request(method: .DELETE, key: keys.info(id)), on: loop) { _ in next() }
            default:
                next()
            }
        }
    }

    private func listInfoKeys(
        on loop: EventLoop, continuation: String?, found: [String],
        _ completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        var query = [("list-type", "2"), ("prefix", keys.prefix)]
        if let continuation { query.append(("continuation-token", continuation)) }
        client.send(S3Request(method: .GET, key: nil, query: query), on: loop) { [self] result in
            switch result {
            case .failure(let error): completion(.failure(Self.storeError(error, "ListObjectsV2")))
            case .success(let response):
                let page = S3Responses.keys(fromListObjects: String(decoding: response.body, as: UTF8.self))
                let ids = found + page.keys.compactMap { key -> String? in
                    guard key.hasSuffix(".info"), key.hasPrefix(keys.prefix) else { return nil }
                    let id = String(key.dropFirst(keys.prefix.count).dropLast(5))
                    return id.isEmpty || id.contains("/") || id.contains(".") ? nil : id
                }
                if let next = page.continuation {
                    return listInfoKeys(on: loop, continuation: next, found: ids, completion)
                }
                completion(.success(ids))
            }
        }
    }

    static func storeError(_ error: S3Error, _ what: String) -> StoreError {
        switch error.storeError {
        case .unavailable: .unavailable("\(what): \(error)")
        case .notFound: .notFound
        case .io: .io("\(what): \(error)")
        }
    }
}
