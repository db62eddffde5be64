import FoundationEssentials
public import TusHTTP1
import TusLoop
public import TusProtocol
import TusStore

/// Upload records as objects, `P<id>.info` (the JSON of `UploadRecord`, the file store's format), next to the
/// data: `--store s3` without `--redis` keeps everything in the bucket.
///
/// Consistency: S3 has no atomic compare-and-set that every implementation offers (Ceph RGW 16 has no
/// conditional PUT), so every change is read-modify-write, and create is "HEAD, then PUT". One instance is
/// safe: its `MemoryLocker` serializes the writers of an upload, ids are random, and S3's read-after-write
/// consistency shows each instance its own writes. Several instances on one bucket are NOT: two could both
/// change one record, or both take one upload. Use `--redis` for a cluster (the records then live in Redis).
///
/// Removal replaces the record with `{"gone":"terminated"}` (or `expired`), kept for good, so a removed id
/// answers 410. `listExpired` lists the bucket's `.info` objects and reads each (a sweep costs one GET per
/// upload record; fine for the sizes one instance serves, and it runs once a minute).
public final class S3StateStore: UploadStateStore {
    public let client: any S3Transport
    public let keys: S3Keys
    public let progressPolicy: UploadProgressPolicy

    public init(client: any S3Transport) {
        self.client = client
        keys = S3Keys(prefix: client.configuration.prefix)
        // The data store confirms bytes a part at a time, so checking more often would record nothing new.
        progressPolicy = .durableCheckpoints(bytes: client.configuration.partSize, milliseconds: 1000)
    }

    enum Stored {
        case record(UploadInfo)
        case gone
        case missing
    }

    private func loop(of executor: any LoopExecutor) -> EventLoop {
        guard let bound = executor as? any EventLoopBound else {
            preconditionFailure("the S3 store needs an executor backed by a TusLoop EventLoop")
        }
        return bound.eventLoop
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
        if String(decoding: body, as: UTF8.self).contains("\"gone\"") { return .success(.gone) }
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

    /// Reads the record, lets `change` compute the new one (or refuse), writes it back.
    private func update(
        _ id: String, on executor: any LoopExecutor,
        _ change: @escaping (UploadInfo) -> Result<UploadInfo, StoreError>,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        let loop = loop(of: executor)
        fetch(id, on: loop) { [self] fetched in
            switch fetched {
            case .failure(let error): completion(.failure(error))
            case .success(.missing): completion(.failure(.notFound))
            case .success(.gone): completion(.failure(.gone))
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
        fetch(id, on: loop(of: executor)) { result in
            completion(
                result.map {
                    switch $0 {
                    case .record(let info): .found(info)
                    case .gone: .gone
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
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        update(id, on: executor, { info in
            guard info.length == nil else { return .failure(.lengthAlreadySet) }
            guard length >= info.offset else { return .failure(.exceedsLength) }
            var changed = info
            changed.length = length
            if changed.isComplete { changed.expiresAt = nil }
            return .success(changed)
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
            case .success(.gone): completion(.failure(.gone))
            case .success(.record):
                let marker = "{\"gone\":\"\(reason == .terminated ? "terminated" : "expired")\"}"
                let request = S3Request(
                    method: .PUT, key: keys.info(id), headers: [("content-type", "application/json")],
                    body: .bytes(Array(marker.utf8)))
                client.send(request, on: loop) { result in
                    if case .failure(let error) = result {
                        return completion(.failure(Self.storeError(error, "PUT \(id).info (gone)")))
                    }
                    completion(.success(()))
                }
            }
        }
    }

    public func listExpired(
        now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        let loop = loop(of: executor)
        listInfoKeys(on: loop, continuation: nil, found: []) { [self] listed in
            switch listed {
            case .failure(let error): completion(.failure(error))
            case .success(let ids):
                collect(ids[...], on: loop, found: [], where: { info in
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

    private func collect(
        _ ids: ArraySlice<String>, on loop: EventLoop, found: [String], where matches: @escaping (UploadInfo) -> Bool,
        _ completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        guard let id = ids.first else { return completion(.success(found)) }
        fetch(id, on: loop) { [self] fetched in
            var found = found
            if case .success(.record(let info)) = fetched, matches(info) { found.append(id) }
            collect(ids.dropFirst(), on: loop, found: found, where: matches, completion)
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
