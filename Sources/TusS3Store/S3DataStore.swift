public import TusCore
import TusLoop
public import TusProtocol
import TusClient

#if canImport(Glibc)
    import Glibc
#endif

/// Upload bytes in S3 (AWS, Ceph RGW, MinIO): each tus upload is one multipart upload of the object `P<id>`.
///
/// - create: `CreateMultipartUpload`. The upload id S3 returns is cached per process; another instance (or this
///   one after a restart) finds it again with `ListMultipartUploads?prefix=P<id>`.
/// - write: bytes go, in order, to a local spill file per part (`--upload-dir/s3-spill/<id>.<n>.<writer>`) and, as they land
///   there, into that part's `UploadPart` request, whose `Content-Length` is the part size fixed in advance
///   (`S3PartWriter`). A PATCH that ends inside a part writes the part's bytes so far to `P<id>.part.<n>`
///   (the incomplete-part object); the next PATCH starts that part again from it.
/// - finish: when the offset reaches the length, `ListParts` + `CompleteMultipartUpload` (every part checked
///   for its size first), then the incomplete-part objects are deleted.
/// - read: ranged `GET P<id>`, streamed. Only finished uploads can be read (S3 cannot read the parts of an
///   unfinished multipart upload): an unfinished upload's GET answers 404.
/// - remove: `AbortMultipartUpload` for every multipart upload of the key, then `DELETE` of `P<id>` and of
///   each `P<id>.part.<n>`.
/// - concatenate: the final's multipart upload made of its partials' objects (`S3DataStore+Concatenation`).
public final class S3DataStore: TruncatingUploadDataStore, ReadableUploadDataStore, ConcatenatingUploadDataStore {
    public let client: any S3Transport
    public let keys: S3Keys
    public let layout: S3PartLayout
    let log: @Sendable (String) -> Void
    let uploadIDs = UploadIDCache()

    public init(client: any S3Transport, log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.client = client
        keys = S3Keys(prefix: client.configuration.prefix)
        layout = S3PartLayout(partSize: client.configuration.partSize)
        self.log = log
        var status = stat()
        if stat(client.configuration.spillDirectory, &status) != 0 {
            guard mkdir(client.configuration.spillDirectory, 0o755) == 0 || errno == EEXIST else {
                throw StoreError.io("spill directory \(client.configuration.spillDirectory) cannot be created")
            }
        }
        Self.removeAbandonedSpillFiles(in: client.configuration.spillDirectory)
    }

    /// Spill files of a process that died (kill -9, power loss) are never read again: their bytes are either in S3
    /// or were never acknowledged. A file untouched for an hour is such a leftover (a live one is written as its
    /// client sends, and clients that stall are cut off by --body-timeout long before); younger ones may belong to
    /// another instance sharing the directory. Start-up only, synchronous.
    static func removeAbandonedSpillFiles(in directory: String, olderThanSeconds: Int = 3600) {
        guard let handle = opendir(directory) else { return }
        defer { closedir(handle) }
        let now = time(nil)
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard name != ".", name != ".." else { continue }
            let path = directory + "/" + name
            var status = stat()
            guard stat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG,
                now - status.st_mtim.tv_sec > olderThanSeconds
            else { continue }
            unlink(path)
        }
    }

    public func create(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        createMultipartUpload(id, on: loop(of: executor), completion)
    }

    func createMultipartUpload(_ id: String, on loop: EventLoop, _ completion: @escaping (StoreError?) -> Void) {
        let request = S3Request(
            method: .POST, key: keys.data(id), query: [("uploads", "")],
            headers: [("content-type", "application/octet-stream")])
        client.send(request, on: loop) { [self] result in
            switch result {
            case .failure(let error): completion(storeError(error, "CreateMultipartUpload \(id)"))
            case .success(let response):
                guard let uploadID = S3Responses.uploadID(fromInitiate: String(decoding: response.body, as: UTF8.self))
                else { return completion(.io("CreateMultipartUpload \(id): no UploadId in the answer")) }
                uploadIDs.set(id, uploadID)
                completion(nil)
            }
        }
    }

    /// Truncation (checksum rollback) works: until the commit, a PATCH's bytes are only in parts that the next
    /// writer uploads again, and in a spill file; the incomplete-part object is written only by the commit.
    public func openTruncatableWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any TruncatableUploadDataWriter, StoreError>) -> Void
    ) {
        let loop = loop(of: executor)
        findUploadIDs(id, on: loop) { [self] found in
            switch found {
            case .failure(let error): completion(.failure(error))
            case .success(let ids):
                guard let uploadID = ids.last else { return completion(.failure(.gone)) }
                let writer = S3PartWriter(
                    store: self, id: id, uploadID: uploadID, start: offset, length: length, loop: loop)
                writer.open { error in
                    if let error {
                        writer.close()
                        return completion(.failure(error))
                    }
                    completion(.success(writer))
                }
            }
        }
    }

    public func openReader(
        id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void
    ) {
        // A HEAD first: the download's status line goes out before the first read, so a missing object (an
        // unfinished upload: its parts cannot be read) must be known here, not halfway through a 200.
        let loop = loop(of: executor)
        let key = keys.data(id)
        client.send(S3Request(method: .HEAD, key: key), on: loop) { [self] result in
            switch result {
            case .failure(let error): completion(.failure(storeError(error, "HEAD \(key)")))
            case .success: completion(.success(S3UploadReader(store: self, key: key, loop: loop)))
            }
        }
    }

    /// `Upload-Length: 0`: the finished upload is an empty object (a multipart upload needs at least one part).
    public func completeEmpty(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        let loop = loop(of: executor)
        findUploadIDs(id, on: loop) { [self] found in
            switch found {
            case .failure(let error): completion(error)
            case .success(let ids):
                guard let uploadID = ids.last else { return completion(.gone) }
                completeUpload(id: id, uploadID: uploadID, length: 0, on: loop, completion)
            }
        }
    }

    public func remove(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        let loop = loop(of: executor)
        uploadIDs.remove(id)
        listUploadIDs(id, on: loop) { [self] found in
            let ids: [String]
            switch found {
            case .failure(let error): return completion(error)
            case .success(let list): ids = list
            }
            let aborts = ids.map { uploadID in
                S3Request(method: .DELETE, key: keys.data(id), query: [("uploadId", uploadID)])
            }
            sendAll(aborts, on: loop, ignoring404: true) { [self] error in
                if let error { return completion(error) }
                listKeys(prefix: keys.tailPrefix(id), on: loop) { [self] listed in
                    let tails: [String]
                    switch listed {
                    case .failure(let error): return completion(error)
                    case .success(let keys): tails = keys
                    }
                    let deletes = ([keys.data(id)] + tails).map { S3Request(method: .DELETE, key: $0) }
                    sendAll(deletes, on: loop, ignoring404: true, completion)
                }
            }
        }
    }

    // MARK: Helpers shared with the writer and reader

    func loop(of executor: any LoopExecutor) -> EventLoop {
        executor.eventLoop
    }

    func storeError(_ error: S3Error, _ what: String) -> StoreError {
        let message = "\(what): \(error)"
        switch error.storeError {
        case .unavailable:
            log("S3DataStore: " + message)
            return .unavailable(message)
        case .notFound: return .notFound
        case .io:
            log("S3DataStore: " + message)
            return .io(message)
        }
    }

    /// The multipart upload ids of `P<id>` (normally one): cached, else listed.
    func findUploadIDs(_ id: String, on loop: EventLoop, _ completion: @escaping (Result<[String], StoreError>) -> Void) {
        if let cached = uploadIDs.get(id) { return completion(.success([cached])) }
        listUploadIDs(id, on: loop) { [self] result in
            if case .success(let ids) = result, ids.count == 1 { uploadIDs.set(id, ids[0]) }
            completion(result)
        }
    }

    private func listUploadIDs(
        _ id: String, on loop: EventLoop, marker: (String, String)? = nil, found: [String] = [],
        _ completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        var query = [("uploads", ""), ("prefix", keys.data(id))]
        if let marker { query += [("key-marker", marker.0), ("upload-id-marker", marker.1)] }
        client.send(S3Request(method: .GET, key: nil, query: query), on: loop) { [self] result in
            switch result {
            case .failure(let error): completion(.failure(storeError(error, "ListMultipartUploads \(id)")))
            case .success(let response):
                let page = S3Responses.uploads(fromListMultipartUploads: String(decoding: response.body, as: UTF8.self))
                let ids = found + page.uploads.filter { $0.key == keys.data(id) }.map(\.uploadID)
                if let key = page.nextKeyMarker, let uploadID = page.nextUploadIDMarker {
                    return listUploadIDs(id, on: loop, marker: (key, uploadID), found: ids, completion)
                }
                completion(.success(ids))
            }
        }
    }

    func listKeys(
        prefix: String, on loop: EventLoop, continuation: String? = nil, found: [String] = [],
        _ completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        var query = [("list-type", "2"), ("prefix", prefix)]
        if let continuation { query.append(("continuation-token", continuation)) }
        client.send(S3Request(method: .GET, key: nil, query: query), on: loop) { [self] result in
            switch result {
            case .failure(let error): completion(.failure(storeError(error, "ListObjectsV2 \(prefix)")))
            case .success(let response):
                let page = S3Responses.keys(fromListObjects: String(decoding: response.body, as: UTF8.self))
                let keys = found + page.keys
                if let next = page.continuation {
                    return listKeys(prefix: prefix, on: loop, continuation: next, found: keys, completion)
                }
                completion(.success(keys))
            }
        }
    }

    func listParts(
        key: String, uploadID: String, on loop: EventLoop, marker: String? = nil, found: [S3Part] = [],
        _ completion: @escaping (Result<[S3Part], StoreError>) -> Void
    ) {
        var query = [("uploadId", uploadID)]
        if let marker { query.append(("part-number-marker", marker)) }
        client.send(S3Request(method: .GET, key: key, query: query), on: loop) { [self] result in
            switch result {
            case .failure(let error): completion(.failure(storeError(error, "ListParts \(key)")))
            case .success(let response):
                let page = S3Responses.parts(fromListParts: String(decoding: response.body, as: UTF8.self))
                let parts = found + page.parts
                if let next = page.nextMarker {
                    return listParts(key: key, uploadID: uploadID, on: loop, marker: next, found: parts, completion)
                }
                completion(.success(parts))
            }
        }
    }

    /// One after the other (removal is rare; no need to load S3 with a burst); the first error ends it.
    func sendAll(
        _ requests: [S3Request], on loop: EventLoop, ignoring404: Bool, _ completion: @escaping (StoreError?) -> Void
    ) {
        guard let first = requests.first else { return completion(nil) }
        client.send(first, on: loop) { [self] result in
            if case .failure(let error) = result, !(ignoring404 && error.statusCode == 404) {
                return completion(storeError(error, "\(first.method.rawValue) \(first.key ?? "")"))
            }
            sendAll(Array(requests.dropFirst()), on: loop, ignoring404: ignoring404, completion)
        }
    }

    /// Completes the multipart upload of `id` from what `ListParts` reports, after checking every part's size:
    /// `partSizes`, or the layout's parts of an upload of `length` bytes.
    func completeUpload(
        id: String, uploadID: String, length: Int64, partSizes: [Int64]? = nil, on loop: EventLoop,
        _ completion: @escaping (StoreError?) -> Void
    ) {
        let key = keys.data(id)
        guard length > 0 else {
            // No parts to complete with: the object is written empty and the multipart upload aborted.
            let put = S3Request(method: .PUT, key: key, headers: [("content-type", "application/octet-stream")], body: .bytes([]))
            let abort = S3Request(method: .DELETE, key: key, query: [("uploadId", uploadID)])
            return sendAll([put, abort], on: loop, ignoring404: true) { [self] error in
                if error == nil { uploadIDs.remove(id) }
                completion(error)
            }
        }
        listParts(key: key, uploadID: uploadID, on: loop) { [self] listed in
            let all: [S3Part]
            switch listed {
            case .failure(let error): return completion(error)
            case .success(let parts): all = parts
            }
            let checked =
                if let partSizes { S3PartLayout.completeParts(all, sizes: partSizes) } else {
                    layout.completeParts(all, uploadLength: length)
                }
            guard let parts = checked else {
                return completion(.io("CompleteMultipartUpload \(key): the parts S3 holds do not add up to \(length) bytes"))
            }
            let body = Array(S3Responses.completeBody(parts).utf8)
            let request = S3Request(
                method: .POST, key: key, query: [("uploadId", uploadID)],
                headers: [("content-type", "application/xml")], body: .bytes(body))
            client.send(request, on: loop) { [self] result in
                switch result {
                case .failure(let error): completion(storeError(error, "CompleteMultipartUpload \(key)"))
                case .success(let response):
                    // S3 may answer 200 with an error document once it has started (AWS's documented quirk).
                    let text = String(decoding: response.body, as: UTF8.self)
                    if text.contains("<Error>"), let (code, message) = S3Responses.error(from: text) {
                        return completion(.unavailable("CompleteMultipartUpload \(key): \(code) \(message)"))
                    }
                    uploadIDs.remove(id)
                    listKeys(prefix: keys.tailPrefix(id), on: loop) { [self] tails in
                        // Leftover incomplete-part objects are only wasted space; the upload is done either way.
                        let deletes = ((try? tails.get()) ?? []).map { S3Request(method: .DELETE, key: $0) }
                        sendAll(deletes, on: loop, ignoring404: true) { _ in completion(nil) }
                    }
                }
            }
        }
    }

    /// `<id>.<part>.<writer>`: one file per writer, so that a writer that takes an upload over (a lock handed to
    /// another request, on this instance or another one sharing the directory) never truncates a file the
    /// previous writer's part request may still be reading.
    func spillPath(_ id: String, part: Int, writer: String) -> String {
        client.configuration.spillDirectory + "/" + id + ".\(part)." + writer
    }
}

/// Upload id → S3 multipart upload id, for this process (a hint: a miss lists the bucket's multipart uploads).
final class UploadIDCache: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var map: [String: String] = [:]

    init() { pthread_mutex_init(lock, nil) }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    func get(_ id: String) -> String? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return map[id]
    }

    func set(_ id: String, _ uploadID: String) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        map[id] = uploadID
    }

    func remove(_ id: String) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        map[id] = nil
    }
}
