import Synchronization
public import TusCore
import TusLoop
public import TusProtocol

/// Upload records as files: `<id>.info` (format: `UploadRecord`) next to the data file `<id>` that a
/// `FileDataStore` on the same directory keeps. The embedded default; `FileUploadStore` pairs the two. With
/// `recordsInLog`, a creation appends its record to the record log (`RecordLog`) instead, and only later changes
/// write `<id>.info`.
///
/// Restart safety: `init` recovers the directory (see `FileStateStore+Recovery.swift`) before anything is
/// served: it loads every record, quarantines unreadable ones as `<id>.info.corrupt`, deletes leftover
/// `<id>.info.tmp` files, and reconciles each record with its data file, so that
/// - a checksummed PATCH that never committed (record still has `pendingDiscardFrom`) is truncated back to where
///   it started;
/// - otherwise every byte that reached the data file counts (offset = data size, cut to `length`): the spec
///   asks servers to store as much of an interrupted upload as possible.
/// How much survives power loss (rather than a process crash) depends on the `FsyncPolicy`.
/// A full disk or an I/O error at any of these steps, or at a later record write, does not make an upload vanish:
/// it is served from memory and listed in `repairs`, and its next change first brings its files in line
/// (`repairingFirst`), answering 507 while the disk is still full.
///
/// Synchronization boundary: the uploads' state lives in memory behind one `Mutex` (loops on several threads
/// share the store), which makes `lookup` (HEAD) and `listExpired` I/O-free: their completions run
/// synchronously. The files are the durable copy; every change is written there first (as far as the policy
/// demands) and then applied in memory. Progress during a write is memory-only (`progressPolicy` is
/// `.everyWrite`): recovery finds it again in the data file.
///
/// Threading: record writes run as libuv threadpool requests of the executor's loop (which must be
/// `LoopExecutor.eventLoop`), so completions come back on the caller's thread.
///
/// Concurrency between requests is the handler's (the upload lock); a record is rewritten by one operation
/// at a time per upload, which is what makes the fixed `<id>.info.tmp` name safe. A new upload's first record
/// skips it (`createRecord`), and a write that moves only the offset rewrites no record (`finishWrite`).
public final class FileStateStore: UploadStateStore {
    struct State {
        var index: UploadIndex
        /// Ids whose `create` is writing files right now: taken, but not visible yet.
        var creating: Set<String> = []
        /// Uploads whose files may not say what memory serves (a record write failed); see `PendingRepair`.
        var repairs: [String: PendingRepair] = [:]
        /// Ids whose record on disk carries `pendingDiscardFrom` (a discardable write is running): their
        /// `finishWrite` must rewrite it.
        var discardPending: Set<String> = []
        /// Uploads whose record is their creation entry in the record log, and its segment (`RecordLog`).
        var logged: [String: Int] = [:]
    }

    public let directory: String
    public let fsyncPolicy: FsyncPolicy
    /// `create` makes the data file `<id>` too, in the record's threadpool job (`FileUploadStore`; the paired
    /// `FileDataStore` then leaves creation to us).
    let createsDataFiles: Bool
    /// Where creations write their record when `logsCreations`; also kept, for removals, when segments written
    /// under `--records log` are still on disk.
    let recordLog: RecordLog?
    /// A creation appends its record to `recordLog` instead of making `<id>.info` (`--records log`).
    let logsCreations: Bool
    let directorySync: DirectorySyncGroup
    /// Per loop: creations waiting for that loop's batch on the threadpool to finish (`FileStateStore+Create`).
    let creationQueues = Mutex<[ObjectIdentifier: CreationQueue]>([:])
    /// The one threadpool job that makes those batches, whichever loop they come from.
    let creationJob = CreationJob()
    public var progressPolicy: UploadProgressPolicy { .everyWrite }
    let state: Mutex<State>
    let log: @Sendable (String) -> Void
    /// Set by `watchRemovals`; stopped with the store.
    let removalWatcher = Mutex<RemovalWatcher?>(nil)

    /// Opens (creating it if needed) and recovers `directory`; synchronous, so call it before serving.
    ///
    /// - Parameters:
    ///   - fsync: see `FsyncPolicy`; `.commit` unless you know why not.
    ///   - rememberedGoneIDs: how many terminated/expired ids `lookup` keeps answering `.gone` for.
    ///   - recordsInLog: new uploads' records go to the record log (`RecordLog`) instead of `<id>.info` files; only
    ///     with `createsDataFiles` (the log relies on the data file to tell a live upload from one deleted outside
    ///     the server). Either way, records of both kinds found on disk are read.
    ///   - log: recovery findings (quarantined records, truncated data) and I/O errors, one line each.
    /// - Throws: `StoreError.io` when the directory cannot be created or listed.
    public init(
        directory: String, fsync: FsyncPolicy = .commit, rememberedGoneIDs: Int = 100_000,
        createsDataFiles: Bool = false, recordsInLog: Bool = false, log: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        self.directory = Self.normalized(directory)
        self.fsyncPolicy = fsync
        self.createsDataFiles = createsDataFiles
        logsCreations = recordsInLog && createsDataFiles
        directorySync = DirectorySyncGroup(path: self.directory)
        self.log = log
        let recovered = try Self.recover(
            directory: self.directory, policy: fsync, recordsInLog: logsCreations, log: log)
        recordLog = recovered.log
        state = Mutex(
            State(
                index: UploadIndex(uploads: recovered.uploads, rememberedGoneIDs: rememberedGoneIDs),
                repairs: recovered.repairs, logged: recovered.logged))
    }

    deinit {
        removalWatcher.withLock { $0?.stop() }
    }

    static func normalized(_ directory: String) -> String {
        directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
    }

    // MARK: paths

    func recordPath(_ id: String) -> String { FileDirectory.path(directory, id, ".info") }
    func temporaryRecordPath(_ id: String) -> String { FileDirectory.path(directory, id, ".info.tmp") }

    // MARK: synchronous views (HEAD's cost, tests)

    public func lookup(_ id: String) -> UploadLookup { state.withLock { $0.index.lookup(id) } }

    public func listExpired(now: Int64) -> [String] { state.withLock { $0.index.expired(now: now) } }

    // MARK: UploadStateStore

    public func lookup(
        _ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void
    ) {
        completion(.success(lookup(id)))
    }

    public func listExpired(
        now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        completion(.success(listExpired(now: now)))
    }

    /// The id is reserved in memory while the record is written, so a second create of the same id fails at once.
    /// The record goes straight to its final name (`createRecord`).
    public func create(
        _ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        let loop = executor.eventLoop
        let id = info.id
        precondition(UploadID.isValid(id), "the handler validates ids")
        let reserved = state.withLock { state in
            guard !state.index.isTaken(id), !state.creating.contains(id) else { return false }
            state.creating.insert(id)
            return true
        }
        guard reserved else { return completion(.failure(.alreadyExists)) }
        createRecord(UploadRecord(info), loop: loop) { [self] error, segment in
            state.withLock { state in
                state.creating.remove(id)
                if error == nil { state.index.uploads[id] = info }
                if error == nil, let segment { state.logged[id] = segment }
            }
            completion(error.map { .failure($0) } ?? .success(info))
        }
    }

    public func declareLength(
        id: String, length: Int64, completing: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        if repairingFirst(id, on: executor, failing: completion, retry: { [self] in
            declareLength(id: id, length: length, completing: completing, on: executor, completion: completion)
        }) { return }
        let checked: Result<UploadInfo, StoreError> = state.withLock { state in
            guard let info = state.index.uploads[id] else { return .failure(state.index.missing(id)) }
            return info.declaringLength(length, completing: completing)
        }
        guard case .success(let updated) = checked else { return completion(checked) }
        persist(UploadRecord(updated), loop: executor.eventLoop) { [self] error in
            if let error { return completion(.failure(error)) }
            let info: UploadInfo? = state.withLock { state in
                state.index.uploads[id]?.length = length
                state.index.uploads[id]?.awaitsCompletion = updated.awaitsCompletion
                return state.index.uploads[id]
            }
            completion(info.map { .success($0) } ?? .failure(.notFound))
        }
    }

    /// A discardable write is announced durably before its first byte lands, so a crash mid-PATCH recovers to
    /// `offset` instead of counting unverified bytes.
    public func beginWrite(
        id: String, at offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        if repairingFirst(id, on: executor, failing: completion, retry: { [self] in
            beginWrite(id: id, at: offset, discardable: discardable, lock: lock, on: executor, completion: completion)
        }) { return }
        let checked: Result<UploadInfo, StoreError> = state.withLock { state in
            guard let info = state.index.uploads[id] else { return .failure(state.index.missing(id)) }
            return info.offset == offset ? .success(info) : .failure(.conflict)
        }
        guard discardable, case .success(let info) = checked else { return completion(checked) }
        persist(UploadRecord(info, pendingDiscardFrom: offset), loop: executor.eventLoop) { [self] error in
            if error == nil { state.withLock { _ = $0.discardPending.insert(id) } }
            completion(error.map { .failure($0) } ?? .success(info))
        }
    }

    /// Memory only: a HEAD on another loop sees the progress at once, and recovery finds it in the data file.
    public func recordProgress(
        id: String, offset: Int64, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void
    ) {
        let known = state.withLock { state -> Bool in
            guard state.index.uploads[id] != nil else { return false }
            state.index.uploads[id]?.offset = offset
            return true
        }
        completion(known ? nil : .notFound)
    }

    /// The record with the new offset and no `pendingDiscardFrom`, then memory; memory alone when recovery would
    /// find the same. The data file holds every byte written (made durable by the data store's sync before this
    /// call, per policy); recovery takes the offset from its size whenever the record has no
    /// `pendingDiscardFrom`, and drops the expiry of an upload that is complete. So a plain PATCH writes no
    /// record unless it moves the expiry of an upload that stays incomplete, or clears a discardable write's
    /// mark: an upload sent in one PATCH has its record written once, at creation.
    public func finishWrite(
        id: String, offset: Int64, expiry: ExpiryUpdate, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        if repairingFirst(id, on: executor, failing: completion, retry: { [self] in
            finishWrite(id: id, offset: offset, expiry: expiry, lock: lock, on: executor, completion: completion)
        }) { return }
        let found = state.withLock { state in state.index.uploads[id].map { ($0, state.discardPending.contains(id)) } }
        guard let (info, discardPending) = found else { return completion(.failure(.notFound)) }
        let finished = info.finishingWrite(at: offset, expiry: expiry)
        let apply = { [self] in
            state.withLock { state in
                state.discardPending.remove(id)
                state.index.uploads[id]?.offset = finished.offset
                state.index.uploads[id]?.expiresAt = finished.expiresAt
            }
            completion(.success(finished))
        }
        let expiryAsRecovered = finished.expiresAt == info.expiresAt || finished.isComplete
        if !discardPending && expiryAsRecovered { return apply() }
        persist(UploadRecord(finished), loop: executor.eventLoop) { error in
            if let error { return completion(.failure(error)) }
            apply()
        }
    }

    /// The record first, then memory, like every other change.
    public func completeFinal(
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        if repairingFirst(id, on: executor, failing: completion, retry: { [self] in
            completeFinal(id: id, length: length, on: executor, completion: completion)
        }) { return }
        let checked: Result<UploadInfo, StoreError> = state.withLock { state in
            guard let info = state.index.uploads[id] else { return .failure(state.index.missing(id)) }
            return info.isFinal ? .success(info) : .failure(.conflict)
        }
        guard case .success(var completed) = checked else { return completion(checked) }
        if completed.isComplete { return completion(.success(completed)) }
        completed.length = length
        completed.offset = length
        completed.expiresAt = nil
        persist(UploadRecord(completed), loop: executor.eventLoop) { [self] error in
            if let error { return completion(.failure(error)) }
            state.withLock { state in
                if state.index.uploads[id] != nil { state.index.uploads[id] = completed }
            }
            completion(.success(completed))
        }
    }

    /// A scan of the in-memory index under the mutex, run once per completed partial: no reverse index to keep
    /// consistent, and recovery needs none (it is derived from the finals' records).
    public func finals(
        referencing partialID: String, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        completion(.success(state.withLock { state in
            state.index.uploads.values.filter { $0.partialIDs.contains(partialID) }.map(\.id).sorted()
        }))
    }

    /// Unlinks the record (durably, per policy); the data goes afterwards (`ComposedUploadStore`). A crash in
    /// between leaves an orphan data file (logged at the next start), never a record whose data vanished, which
    /// recovery would resurrect as an empty upload.
    public func remove(
        id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        let loop = executor.eventLoop
        let known: StoreError? = state.withLock { state in state.index.uploads[id] != nil ? nil : state.index.missing(id) }
        if let known { return completion(.failure(known)) }
        let removed = { [self] in
            let segment = state.withLock { state in
                state.index.remove(id)
                state.repairs[id] = nil
                state.discardPending.remove(id)
                return state.logged.removeValue(forKey: id)
            }
            if let segment { releaseLogged(segment, loop: loop) }
        }
        if let recordLog {
            return removeLogged(id, from: recordLog, loop: loop, removed: removed, completion: completion)
        }
        FileSystem.unlink(loop: loop, path: recordPath(id)) { [self] error in
            if let error, error != .notFound { return completion(.failure(ioError("unlink record of \(id)", error))) }
            removed()
            syncDirectory(loop: loop) { error in
                completion(error.map { .failure($0) } ?? .success(()))
            }
        }
    }

    // MARK: record persistence

    /// Writes `record` to `<id>.info.tmp`, syncs it (policy), renames it over `<id>.info` and syncs the directory
    /// (policy), all in one threadpool job. The caller updates memory only after success, so memory never runs
    /// ahead of the disk. After a failure either record may be on disk (the rename may have happened), so an
    /// upload already served is marked for repair before its next change (`PendingRepair.matchMemory`).
    func persist(_ record: UploadRecord, loop: EventLoop, completion: @escaping (StoreError?) -> Void) {
        let bytes = record.encodedJSON
        let temporaryPath = temporaryRecordPath(record.id)
        let finalPath = recordPath(record.id)
        let directorySync = directorySync
        let syncs = fsyncPolicy.syncsAtCommit
        loop.runBlocking({ () -> BlockingFileSystem.Failure? in
            if let failure = BlockingFileSystem.writeFile(temporaryPath, bytes: bytes, sync: syncs) { return failure }
            if let failure = BlockingFileSystem.rename(temporaryPath, to: finalPath) { return failure }
            return syncs ? directorySync.sync() : nil
        }, completion: { [self] failure in
            if failure != nil {
                state.withLock { state in
                    if state.index.uploads[record.id] != nil { state.repairs[record.id] = .matchMemory }
                }
            } else {
                // `<id>.info` now wins over the log's creation entry.
                releaseLogged(record.id, loop: loop)
                // Forgotten while this was on the threadpool (its data file deleted outside the server; the watcher
                // does not wait for the lock): the record just written would bring it back at the next start.
                let missing = state.withLock { state in
                    state.index.uploads[record.id] == nil ? state.index.missing(record.id) : nil
                }
                if let missing {
                    return FileSystem.unlink(loop: loop, path: finalPath) { _ in completion(missing) }
                }
            }
            completion(failure.map { ioError("\($0.operation) \($0.path)", $0.error) })
        })
    }

    func syncDirectory(loop: EventLoop, _ completion: @escaping (StoreError?) -> Void) {
        FileDirectory.sync(directorySync, policy: fsyncPolicy, loop: loop) { [self] error in
            completion(error.map { ioError("fsync \(directory)", $0) })
        }
    }

    func ioError(_ what: String, _ error: UVError) -> StoreError {
        let message = "\(what): \(error)"
        log("FileStateStore: " + message)
        return error.isOutOfSpace ? .insufficientStorage : .io(message)
    }
}
