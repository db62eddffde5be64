public import TusCore
import TusHTTP1

/// The `UploadStore` the handler talks to, composed of a state store (records) and a data store (bytes), like
/// tusd's `StoreComposer`. It owns the orders that keep the two consistent:
///
/// - create: data first, then the record, so a record never names missing data (a failed record removes the
///   data again, unless the id was already taken);
/// - write: bytes → (durable, per the data store's policy) → offset recorded → acknowledged. The recorded
///   offset therefore never exceeds the bytes really stored, whatever crashes when;
/// - remove: the record first (it becomes a gone marker), then the data: a crash in between leaves orphan
///   bytes, never a record without data.
///
/// Capabilities, and so `Tus-Extension`, come from the ability protocols the data store conforms to: what it has
/// code for, never a flag it sets.
public final class ComposedUploadStore<State: UploadStateStore, Data: UploadDataStore>: UploadStore {
    public let state: State
    public let data: Data
    public let capabilities: UploadStoreCapabilities

    /// `disabled` takes capabilities away (an operator who does not offer termination, a test).
    public init(state: State, data: Data, disabled: UploadStoreCapabilities = []) {
        self.state = state
        self.data = data
        self.capabilities = Self.capabilities(of: data).subtracting(disabled)
    }

    /// What a data store of this kind can do: termination always (every data store removes), the rest by
    /// conformance.
    public static func capabilities(of data: Data) -> UploadStoreCapabilities {
        var capabilities: UploadStoreCapabilities = [.termination]
        if data is any TruncatingUploadDataStore { capabilities.insert(.discardableWrites) }
        if data is any ReadableUploadDataStore { capabilities.insert(.download) }
        if data is any ConcatenatingUploadDataStore { capabilities.insert(.concatenation) }
        return capabilities
    }

    public func lookup(
        _ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void
    ) {
        state.lookup(id, on: executor, completion: completion)
    }

    public func create(
        _ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        var info = info
        info.offset = 0
        data.create(id: info.id, on: executor) { [self] error in
            if let error { return completion(.failure(error)) }
            let createRecord = { [self] in
                state.create(info, on: executor) { [self] result in
                    // An id the state store already has is another upload's, and so is any data under it (a
                    // data store may leave creating the data to its state store, so this create made none).
                    guard case .failure(let error) = result, error != .alreadyExists else { return completion(result) }
                    data.remove(id: info.id, on: executor) { _ in completion(result) }
                }
            }
            guard info.length == 0 else { return createRecord() }
            data.completeEmpty(id: info.id, on: executor) { [self] error in
                guard let error else { return createRecord() }
                data.remove(id: info.id, on: executor) { _ in completion(.failure(error)) }
            }
        }
    }

    public func declareLength(
        id: String, length: Int64, completing: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        state.declareLength(id: id, length: length, completing: completing, on: executor, completion: completion)
    }

    public func openWriter(
        id: String, startingAt offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<any UploadWriter, StoreError>) -> Void
    ) {
        state.lookup(id, on: executor) { [self] looked in
            let info: UploadInfo
            switch looked.flatMap(\.record) {
            case .failure(let error): return completion(.failure(error))
            case .success(let found): info = found
            }
            openDataWriter(id: id, at: offset, length: info.length, discardable: discardable, on: executor) {
                [self] opened in
                let dataWriter: any UploadDataWriter
                switch opened {
                case .failure(let error): return completion(.failure(error))
                case .success(let writer): dataWriter = writer
                }
                state.beginWrite(id: id, at: offset, discardable: discardable, lock: lock, on: executor) { [self] begun in
                    switch begun {
                    case .failure(let error):
                        dataWriter.close()
                        completion(.failure(error))
                    case .success:
                        completion(
                            .success(
                                ComposedUploadWriter(
                                    state: state, data: dataWriter, id: id, start: offset, discardable: discardable,
                                    lock: lock, executor: executor)))
                    }
                }
            }
        }
    }

    /// A discardable writer comes from the truncating ability; the handler asks for one only when
    /// `.discardableWrites` is offered (checksums need it).
    private func openDataWriter(
        id: String, at offset: Int64, length: Int64?, discardable: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<any UploadDataWriter, StoreError>) -> Void
    ) {
        guard discardable else {
            return data.openWriter(id: id, at: offset, length: length, on: executor, completion: completion)
        }
        guard capabilities.contains(.discardableWrites), let truncating = data as? any TruncatingUploadDataStore else {
            preconditionFailure("a discardable writer asked of a store without .discardableWrites")
        }
        truncating.openTruncatableWriter(id: id, at: offset, length: length, on: executor) { completion($0.map { $0 }) }
    }

    public func remove(
        id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        state.remove(id: id, reason: reason, on: executor) { [self] result in
            guard case .success = result else { return completion(result) }
            // The upload is gone from here on; leftover bytes are only wasted space.
            data.remove(id: id, on: executor) { _ in completion(.success(())) }
        }
    }

    public func openReader(
        id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void
    ) {
        // The handler answers GET without `.download` itself; reaching here without it is a caller bug.
        guard capabilities.contains(.download), let readable = data as? any ReadableUploadDataStore else {
            preconditionFailure("openReader on a store without .download")
        }
        readable.openReader(id: id, on: executor, completion: completion)
    }

    public func listExpired(
        now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        state.listExpired(now: now, on: executor, completion: completion)
    }

    /// A write that moved no bytes: the state store's `finishWrite` at the same offset is the one call every
    /// state store already has for changing an expiry under a lock.
    public func moveExpiry(
        of upload: UploadInfo, to expiresAt: Int64, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        state.finishWrite(
            id: upload.id, offset: upload.offset, expiry: .set(expiresAt), lock: lock, on: executor,
            completion: completion)
    }

    public func finals(
        referencing partialID: String, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        state.finals(referencing: partialID, on: executor, completion: completion)
    }

    /// Data before record, as everywhere: the record says "complete" only once the assembled bytes are durable,
    /// so a crash in between leaves a final that is not complete yet and is assembled again (idempotently).
    public func completeConcatenation(
        _ final: UploadInfo, partials: [UploadInfo], on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        if final.isComplete { return completion(.success(final)) }
        let lengths = partials.compactMap { $0.isComplete ? $0.length : nil }
        guard final.isFinal, lengths.count == final.partialIDs.count, partials.map(\.id) == final.partialIDs else {
            return completion(.failure(.conflict))
        }
        // The handler refuses `Upload-Concat` without `.concatenation`; reaching here without it is a caller bug.
        guard capabilities.contains(.concatenation), let concatenating = data as? any ConcatenatingUploadDataStore
        else { preconditionFailure("completeConcatenation on a store without .concatenation") }
        concatenating.concatenate(id: final.id, parts: final.partialIDs, lengths: lengths, on: executor) {
            [self] error in
            if let error { return completion(.failure(error)) }
            state.completeFinal(id: final.id, length: lengths.reduce(0, +), on: executor, completion: completion)
        }
    }
}

/// One request's appends: bytes to the data writer, progress to the state store as its policy asks, and at
/// the end one durable sync followed by one record update.
///
/// Checkpoints (shared state) run one at a time and never overlap `commit`: commit waits for the one in flight.
/// They are driven by bytes (every `bytes`, from the write that crosses the mark) and by time: a timer on the
/// request's loop, armed while written bytes are unrecorded, takes one `milliseconds` after they first were. Time
/// must not wait for the next write: a body that stalls (a phone that lost its network, a half-open connection)
/// would leave what it sent invisible to every other instance, whose HEAD then reports an offset the holder
/// overtakes as soon as it lets go, and a client resuming there gets 409.
final class ComposedUploadWriter<State: UploadStateStore>: DirectUploadWriter {
    private let state: State
    private let data: any UploadDataWriter
    private let id: String
    private let start: Int64
    private let discardable: Bool
    private let lock: any UploadLock
    private let executor: any LoopExecutor

    /// End of the bytes the data writer reported written.
    private var writtenEnd: Int64
    /// Offset last sent to the state store.
    private var recordedEnd: Int64
    /// The time-driven checkpoint, armed while bytes are unrecorded (and the last checkpoint moved the offset).
    private var checkpointTimer: (any Cancellable)?
    /// Set by commit and rollback: no checkpoint may start any more.
    private var isEnding = false
    private var isCheckpointing = false
    /// Runs once the checkpoint in flight is done (commit waiting for it).
    private var afterCheckpoint: (() -> Void)?
    /// A checkpoint that failed because the lease is gone ends this writer: nothing more may be recorded.
    private var checkpointFailure: StoreError?

    init(
        state: State, data: any UploadDataWriter, id: String, start: Int64, discardable: Bool, lock: any UploadLock,
        executor: any LoopExecutor
    ) {
        self.state = state
        self.data = data
        self.id = id
        self.start = start
        self.discardable = discardable
        self.lock = lock
        self.executor = executor
        writtenEnd = start
        recordedEnd = start
    }

    func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void) {
        if let checkpointFailure { return completion(.failure(checkpointFailure)) }
        data.write(fragment) { [self] result in
            if case .success(let end) = result {
                writtenEnd = end
                if !discardable { recordProgressIfDue() }
            }
            completion(result)
        }
    }

    private func recordProgressIfDue() {
        guard !discardable else { return }
        switch state.progressPolicy {
        case .everyWrite:
            recordedEnd = writtenEnd
            state.recordProgress(id: id, offset: writtenEnd, lock: lock, on: executor) { _ in }
        case .durableCheckpoints(let bytes, let milliseconds):
            if writtenEnd - recordedEnd >= bytes { checkpoint() }
            armCheckpointTimer(milliseconds)
        }
    }

    private func checkpoint() {
        guard !isCheckpointing, !isEnding, checkpointFailure == nil, writtenEnd > recordedEnd else { return }
        isCheckpointing = true
        // Writes keep streaming while the sync runs; it covers those completed before it started.
        data.sync { [self] synced in
            switch synced {
            case .failure(let error): endCheckpoint(error, moved: false)
            // The sync may cover nothing new (S3 holds only whole parts until the commit): no record update then.
            case .success(let durableEnd) where durableEnd <= recordedEnd: endCheckpoint(nil, moved: false)
            case .success(let durableEnd):
                state.recordProgress(id: id, offset: durableEnd, lock: lock, on: executor) { [self] error in
                    if error == nil { recordedEnd = max(recordedEnd, durableEnd) }
                    endCheckpoint(error, moved: error == nil)
                }
            }
        }
    }

    private func armCheckpointTimer(_ milliseconds: UInt64) {
        guard checkpointTimer == nil, !isCheckpointing, !isEnding, checkpointFailure == nil, writtenEnd > recordedEnd
        else { return }
        // Weak: a writer dropped without commit (its request failed) must not be kept alive by its timer.
        checkpointTimer = executor.schedule(afterMilliseconds: milliseconds) { [weak self] in
            guard let self else { return }
            checkpointTimer = nil
            checkpoint()
        }
    }

    /// `moved`: the offset was recorded further. A checkpoint that moved nothing waits for the next write before
    /// the timer is armed again, so a stalled body whose bytes no sync can cover costs one sync, not one a second.
    private func endCheckpoint(_ error: StoreError?, moved: Bool) {
        isCheckpointing = false
        // Only a lost lease ends the writer; an unreachable state store just delays the next checkpoint.
        if error == .conflict { checkpointFailure = error }
        if let waiting = afterCheckpoint {
            afterCheckpoint = nil
            return waiting()
        }
        if moved || error != nil, case .durableCheckpoints(_, let milliseconds) = state.progressPolicy {
            armCheckpointTimer(milliseconds)
        }
    }

    /// Commit and rollback: no checkpoint starts from here on (one in flight is waited for).
    private func stopCheckpoints() {
        isEnding = true
        checkpointTimer?.cancel()
        checkpointTimer = nil
    }

    func commit(expiresAt: Int64?, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        precondition(!isWritingDirectly, "commit while a direct write may be in flight")
        stopCheckpoints()
        whenNoCheckpoint { [self] in
            if let checkpointFailure {
                data.close()
                return completion(.failure(checkpointFailure))
            }
            data.finish { [self] synced in
                switch synced {
                case .failure(let error):
                    data.close()
                    completion(.failure(error))
                case .success(let durableEnd):
                    state.finishWrite(id: id, offset: durableEnd, expiry: .set(expiresAt), lock: lock, on: executor) {
                        [self] result in
                        data.close()
                        completion(result)
                    }
                }
            }
        }
    }

    func rollback(completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        stopCheckpoints()
        // The handler rolls back only discardable writers, which exist only with `.discardableWrites`.
        guard let truncatable = data as? any TruncatableUploadDataWriter else {
            preconditionFailure("rollback of a writer whose data store cannot truncate")
        }
        whenNoCheckpoint { [self] in
            truncatable.truncate(to: start) { [self] error in
                if let error {
                    data.close()
                    return completion(.failure(error))
                }
                state.finishWrite(id: id, offset: start, expiry: .keep, lock: lock, on: executor) { [self] result in
                    data.close()
                    completion(result)
                }
            }
        }
    }

    private func whenNoCheckpoint(_ work: @escaping () -> Void) {
        if isCheckpointing { afterCheckpoint = work } else { work() }
    }

    // MARK: Direct writes (spliced bodies)

    private var isWritingDirectly = false

    func beginDirectWrite() -> DirectBodyTarget? {
        guard checkpointFailure == nil, !isWritingDirectly, let direct = data as? any DirectUploadDataWriter,
            let target = direct.beginDirectWrite()
        else { return nil }
        isWritingDirectly = true
        return target
    }

    /// Like a completed `write`: the offset moves, and checkpoints follow the state store's policy.
    func directlyWritten(count: Int) -> Result<Int64, StoreError> {
        guard let direct = data as? any DirectUploadDataWriter else { preconditionFailure("no direct write begun") }
        writtenEnd = direct.directlyWritten(count: count)
        if let checkpointFailure { return .failure(checkpointFailure) }
        recordProgressIfDue()
        return .success(writtenEnd)
    }

    func endDirectWrite(error: StoreError?) {
        guard isWritingDirectly, let direct = data as? any DirectUploadDataWriter else { return }
        isWritingDirectly = false
        direct.endDirectWrite(error: error)
    }
}
