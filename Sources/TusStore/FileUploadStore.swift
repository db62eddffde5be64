import Synchronization
import TusHTTP1
import TusLoop
public import TusProtocol

/// Uploads as files in one directory: `<id>` holds the bytes, `<id>.info` the state (format: `UploadRecord`).
///
/// Restart safety: `init` recovers the directory (see `FileUploadStore+Recovery.swift`) before anything is
/// served: it loads every record, quarantines unreadable ones as `<id>.info.corrupt`, deletes leftover
/// `<id>.info.tmp` files, and reconciles each record with its data file, so that
/// - a checksummed PATCH that never committed (record still has `pendingDiscardFrom`) is truncated back to where
///   it started;
/// - otherwise every byte that reached the data file counts (offset = data size, cut to `length`): the spec
///   asks servers to store as much of an interrupted upload as possible.
/// How much survives power loss (rather than a process crash) depends on the `FsyncPolicy`.
///
/// Synchronization boundary: the uploads' state lives in memory behind one `Mutex` (loops on several threads
/// share the store), which makes `lookup` (HEAD) and `listExpired` cheap and I/O-free. The files are the durable
/// copy; every change is written there first (as far as the policy demands) and then applied in memory.
///
/// Threading: every method except `lookup` and `listExpired` must be called on a TusLoop thread. The file I/O
/// runs as libuv threadpool requests of that calling loop (`EventLoop.current`), so the completions come back on
/// the caller's thread, always asynchronously except when a request cannot even be started.
///
/// Concurrency between requests is the handler's (the upload lock); a record is rewritten by one operation
/// at a time per upload, which is what makes the fixed `<id>.info.tmp` name safe.
public final class FileUploadStore: UploadStore {
    struct State {
        var uploads: [String: UploadInfo] = [:]
        /// Ids whose `create` is writing files right now: taken, but not visible yet.
        var creating: Set<String> = []
        var gone: RecentlyGoneIDs
    }

    public let directory: String
    public let fsyncPolicy: FsyncPolicy
    public var capabilities: UploadStoreCapabilities { .all }
    let state: Mutex<State>
    let log: @Sendable (String) -> Void

    /// Opens (creating it if needed) and recovers `directory`; synchronous, so call it before serving.
    ///
    /// - Parameters:
    ///   - fsync: see `FsyncPolicy`; `.commit` unless you know why not.
    ///   - rememberedGoneIDs: how many terminated/expired ids `lookup` keeps answering `.gone` for.
    ///   - log: recovery findings (quarantined records, truncated data) and I/O errors, one line each.
    /// - Throws: `StoreError.io` when the directory cannot be created or listed.
    public init(
        directory: String, fsync: FsyncPolicy = .commit, rememberedGoneIDs: Int = 100_000,
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        self.directory = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.fsyncPolicy = fsync
        self.log = log
        let uploads = try Self.recover(directory: self.directory, policy: fsync, log: log)
        state = Mutex(State(uploads: uploads, gone: RecentlyGoneIDs(capacity: rememberedGoneIDs)))
    }

    // MARK: paths

    func dataPath(_ id: String) -> String { directory + "/" + id }
    func recordPath(_ id: String) -> String { directory + "/" + id + ".info" }
    func temporaryRecordPath(_ id: String) -> String { directory + "/" + id + ".info.tmp" }

    static func callingLoop(_ function: StaticString = #function) -> EventLoop {
        guard let loop = EventLoop.current else {
            preconditionFailure("FileUploadStore.\(function) must be called on a TusLoop thread")
        }
        return loop
    }

    // MARK: UploadStore

    public func lookup(_ id: String) -> UploadLookup {
        state.withLock { state in
            if let info = state.uploads[id] { return .found(info) }
            return state.gone.contains(id) ? .gone : .notFound
        }
    }

    public func listExpired(now: Int64) -> [String] {
        state.withLock { state in
            state.uploads.values.compactMap { info in
                guard !info.isComplete, let expiresAt = info.expiresAt, expiresAt <= now else { return nil }
                return info.id
            }.sorted()
        }
    }

    /// Creates `<id>` exclusively, then writes the record; the id is reserved in memory meanwhile so a second
    /// create of the same id fails at once.
    public func create(_ info: UploadInfo, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        let loop = Self.callingLoop()
        var info = info
        info.offset = 0
        let id = info.id
        precondition(UploadRecord.isValidID(id), "the handler validates ids")
        let reserved = state.withLock { state in
            guard state.uploads[id] == nil, !state.creating.contains(id), !state.gone.contains(id) else { return false }
            state.creating.insert(id)
            return true
        }
        guard reserved else { return completion(.failure(.alreadyExists)) }
        let finish: (Result<UploadInfo, StoreError>) -> Void = { [self] result in
            state.withLock { state in
                state.creating.remove(id)
                if case .success(let info) = result { state.uploads[id] = info }
            }
            completion(result)
        }
        AsyncFile.open(loop: loop, path: dataPath(id), flags: [.writeOnly, .create, .exclusive]) { [self] opened in
            switch opened {
            case .failure(let error):
                finish(.failure(error == .alreadyExists ? .alreadyExists : ioError("create \(dataPath(id))", error)))
            case .success(let file):
                file.close()
                // The directory sync after the record's rename also makes the data file's entry durable.
                persist(UploadRecord(info), loop: loop) { [self] error in
                    if let error {
                        FileSystem.unlink(loop: loop, path: dataPath(id)) { _ in finish(.failure(error)) }
                    } else {
                        finish(.success(info))
                    }
                }
            }
        }
    }

    public func declareLength(
        id: String, length: Int64, completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        let loop = Self.callingLoop()
        let checked: Result<UploadInfo, StoreError> = state.withLock { state in
            guard var info = state.uploads[id] else { return .failure(state.gone.contains(id) ? .gone : .notFound) }
            guard info.length == nil else { return .failure(.lengthAlreadySet) }
            guard length >= info.offset else { return .failure(.exceedsLength) }
            info.length = length
            return .success(info)
        }
        guard case .success(let updated) = checked else { return completion(checked) }
        persist(UploadRecord(updated), loop: loop) { [self] error in
            if let error { return completion(.failure(error)) }
            let info: UploadInfo? = state.withLock { state in
                state.uploads[id]?.length = length
                return state.uploads[id]
            }
            completion(info.map { .success($0) } ?? .failure(.notFound))
        }
    }

    public func openWriter(
        id: String, startingAt offset: Int64, discardable: Bool,
        completion: @escaping (Result<any UploadWriter, StoreError>) -> Void
    ) {
        let loop = Self.callingLoop()
        let checked: Result<UploadInfo, StoreError> = state.withLock { state in
            guard let info = state.uploads[id] else { return .failure(state.gone.contains(id) ? .gone : .notFound) }
            guard info.offset == offset else { return .failure(.io("offset moved: \(info.offset) != \(offset)")) }
            return .success(info)
        }
        let info: UploadInfo
        switch checked {
        case .failure(let error): return completion(.failure(error))
        case .success(let found): info = found
        }
        AsyncFile.open(loop: loop, path: dataPath(id), flags: [.writeOnly]) { [self] opened in
            switch opened {
            case .failure(let error):
                completion(.failure(ioError("open \(dataPath(id))", error)))
            case .success(let file):
                let writer = FileUploadWriter(
                    store: self, loop: loop, file: file, id: id, start: offset, length: info.length,
                    discardable: discardable)
                guard discardable else { return completion(.success(writer)) }
                // Durable before the first byte lands, so a crash mid-PATCH recovers to `offset`.
                persist(UploadRecord(info, pendingDiscardFrom: offset), loop: loop) { error in
                    if let error {
                        file.close()
                        completion(.failure(error))
                    } else {
                        completion(.success(writer))
                    }
                }
            }
        }
    }

    /// Unlinks the record first, then the data: a crash in between leaves an orphan data file (logged at the next
    /// start), never a record whose data vanished, which recovery would resurrect as an empty upload.
    public func remove(
        id: String, reason: UploadRemovalReason, completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        let loop = Self.callingLoop()
        let known: StoreError? = state.withLock { state in
            state.uploads[id] != nil ? nil : (state.gone.contains(id) ? .gone : .notFound)
        }
        if let known { return completion(.failure(known)) }
        FileSystem.unlink(loop: loop, path: recordPath(id)) { [self] error in
            if let error, error != .notFound { return completion(.failure(ioError("unlink record of \(id)", error))) }
            // From here on the upload is gone whatever happens to the data file.
            state.withLock { state in
                state.uploads[id] = nil
                state.gone.insert(id)
            }
            FileSystem.unlink(loop: loop, path: dataPath(id)) { [self] error in
                if let error, error != .notFound { log("FileUploadStore: unlink \(dataPath(id)): \(error)") }
                syncDirectory(loop: loop) { error in
                    completion(error.map { .failure($0) } ?? .success(()))
                }
            }
        }
    }

    public func openReader(id: String, completion: @escaping (Result<any UploadReader, StoreError>) -> Void) {
        let loop = Self.callingLoop()
        let known: StoreError? = state.withLock { state in
            state.uploads[id] != nil ? nil : (state.gone.contains(id) ? .gone : .notFound)
        }
        if let known { return completion(.failure(known)) }
        AsyncFile.open(loop: loop, path: dataPath(id), flags: [.readOnly]) { [self] opened in
            switch opened {
            case .failure(let error):
                completion(.failure(error == .notFound ? .gone : ioError("open \(dataPath(id))", error)))
            case .success(let file):
                completion(.success(FileUploadReader(file: file)))
            }
        }
    }

    // MARK: record persistence

    /// Writes `record` to `<id>.info.tmp`, syncs it (policy), renames it over `<id>.info` and syncs the directory
    /// (policy). The caller updates memory only after success, so memory never runs ahead of the disk.
    func persist(_ record: UploadRecord, loop: EventLoop, completion: @escaping (StoreError?) -> Void) {
        let bytes = record.encodedJSON
        let chunk = ByteChunk(copying: bytes)
        let temporaryPath = temporaryRecordPath(record.id)
        let finalPath = recordPath(record.id)
        let policy = fsyncPolicy
        AsyncFile.open(loop: loop, path: temporaryPath, flags: [.writeOnly, .create, .truncate]) { [self] opened in
            let file: AsyncFile
            switch opened {
            case .failure(let error): return completion(ioError("open \(temporaryPath)", error))
            case .success(let opened): file = opened
            }
            file.write([chunk.bytes(0..<bytes.count)], at: 0, owner: chunk) { [self] written in
                if case .failure(let error) = written {
                    file.close()
                    return completion(ioError("write \(temporaryPath)", error))
                }
                let renameIntoPlace: (UVError?) -> Void = { [self] syncError in
                    file.close()
                    if let syncError { return completion(ioError("fdatasync \(temporaryPath)", syncError)) }
                    FileSystem.rename(loop: loop, from: temporaryPath, to: finalPath) { [self] error in
                        if let error { return completion(ioError("rename \(temporaryPath)", error)) }
                        syncDirectory(loop: loop, completion)
                    }
                }
                if policy.syncsAtCommit { file.datasync(renameIntoPlace) } else { renameIntoPlace(nil) }
            }
        }
    }

    /// fsync of the directory: what makes a rename, creation or unlink inside it durable. A no-op under `.none`.
    func syncDirectory(loop: EventLoop, _ completion: @escaping (StoreError?) -> Void) {
        guard fsyncPolicy.syncsAtCommit else { return completion(nil) }
        AsyncFile.open(loop: loop, path: directory, flags: [.readOnly]) { [self] opened in
            switch opened {
            case .failure(let error):
                completion(ioError("open \(directory)", error))
            case .success(let handle):
                handle.sync { [self] error in
                    handle.close()
                    completion(error.map { ioError("fsync \(directory)", $0) })
                }
            }
        }
    }

    func ioError(_ what: String, _ error: UVError) -> StoreError {
        let message = "\(what): \(error)"
        log("FileUploadStore: " + message)
        return .io(message)
    }
}
