public import TusCore
import TusHTTP1

/// How a state store wants to hear about bytes that landed during a non-discardable write.
public enum UploadProgressPolicy: Sendable, Equatable {
    /// After every write, before the data is synced: the state lives in this process's memory, so a progress
    /// update costs nothing and a crash recovers the offset from the data itself (the file store).
    case everyWrite
    /// At most every `bytes` bytes or `milliseconds`, whichever comes first, each time only after the data
    /// written so far is durable: the state is shared (Redis), so every update is a round trip, and another
    /// instance may take over from the recorded offset at any moment.
    case durableCheckpoints(bytes: Int64, milliseconds: UInt64)
}

/// How a finished write changes the expiry.
public enum ExpiryUpdate: Sendable, Equatable {
    /// Rollbacks: the upload did not progress.
    case keep
    /// Sliding expiration after progress; `nil` = never. A complete upload never expires, whatever is set.
    case set(Int64?)
}

/// Upload records: id, offset, length or deferred, metadata as received, expiry, and gone markers. The bytes
/// are an `UploadDataStore`'s business; `ComposedUploadStore` keeps the two in step.
///
/// Every call names its executor (the caller's loop); completions run there, possibly synchronously. A state
/// store shared by several server instances (Redis) may fail any call with `.unavailable`.
///
/// Writes to one upload's record come from one lock holder at a time. A shared store also checks that the
/// holder still holds `lock` when it moves the offset (`.conflict` otherwise), so a writer whose lease lapsed
/// can never move the offset.
public protocol UploadStateStore: AnyObject, Sendable {
    var progressPolicy: UploadProgressPolicy { get }

    func lookup(
        _ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void)

    /// Stores a new record (`alreadyExists` if the id is taken or gone). Durable before success.
    func create(
        _ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// Sets a deferred length (`lengthAlreadySet` once set; `exceedsLength` below the offset). With `completing`, the
    /// declaring request is the draft's completing one: an upload that `awaitsCompletion` stops waiting in the same
    /// change, whether its length was deferred until now or declared before (then it must be `length`); one change,
    /// so a chunked completing append costs one record update, not two. Rules: `UploadInfo.declaringLength`.
    func declareLength(
        id: String, length: Int64, completing: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// A write starts at `offset`: checks that the record is at `offset` (`.conflict` otherwise) and returns it.
    /// For a discardable write the store remembers, durably, where it started, if the store is one whose
    /// crash recovery would otherwise count bytes that were never verified (the file store).
    func beginWrite(
        id: String, at offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// Bytes up to `offset` landed (and are durable, for `.durableCheckpoints`) during a non-discardable write.
    func recordProgress(
        id: String, offset: Int64, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void)

    /// The write ended with the data durable up to `offset` (a rollback passes the starting offset): records
    /// it, forgets the discardable marker, and updates the expiry.
    func finishWrite(
        id: String, offset: Int64, expiry: ExpiryUpdate, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// Replaces the record with a gone marker, so `lookup` answers `.gone` (for as long as the store remembers).
    func remove(
        id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void)

    func listExpired(
        now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void)

    /// Marks a final upload complete at `length` (its data is already assembled): `offset = length`, no expiry.
    /// No lock: nothing else writes a final's record, and every caller writes the same values. `.notFound` /
    /// `.gone` as for other calls; a record that is not a final is `.conflict`.
    func completeFinal(
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// The finals that list `partialID` (sorted, each once), so that the request completing a partial can complete
    /// its finals at once instead of waiting for somebody to look at them.
    func finals(
        referencing partialID: String, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void)
}

extension UploadStateStore {
    /// A declaration that does not complete the upload (tus's `Upload-Length`, a draft's length sent ahead).
    public func declareLength(
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        declareLength(id: id, length: length, completing: false, on: executor, completion: completion)
    }
}

extension UploadInfo {
    /// The record after a request declared `length` (`UploadStateStore.declareLength`), the one rule every state
    /// store applies (Redis in its script): a deferred length is set once, never below the offset; `completing` also
    /// ends the wait for the completing request, and may name a length already declared.
    public func declaringLength(_ length: Int64, completing: Bool) -> Result<UploadInfo, StoreError> {
        var info = self
        if let known = self.length {
            guard completing, awaitsCompletion, known == length else { return .failure(.lengthAlreadySet) }
        } else {
            guard length >= offset else { return .failure(.exceedsLength) }
            info.length = length
        }
        if completing { info.awaitsCompletion = false }
        return .success(info)
    }

    /// The record after a write finished at `offset`.
    public func finishingWrite(at offset: Int64, expiry: ExpiryUpdate) -> UploadInfo {
        var info = self
        info.offset = offset
        if case .set(let expiresAt) = expiry { info.expiresAt = expiresAt }
        if info.isComplete { info.expiresAt = nil }
        return info
    }
}
