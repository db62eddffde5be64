public import TusCore
import TusHTTP1

/// What the server knows about one upload. Persisted by stores (hence `Codable`), and copied freely.
public struct UploadInfo: Codable, Sendable, Equatable {
    /// `[A-Za-z0-9_-]{1,128}`, validated by the handler before any store sees it.
    public var id: String
    /// nil while the length is deferred (`Upload-Defer-Length: 1`); once set it never changes.
    public var length: Int64?
    /// Bytes stored and committed (or, for non-discardable writers, stored so far).
    public var offset: Int64
    /// The `Upload-Metadata` header exactly as received; nil when absent or blank. Kept raw because the spec
    /// says HEAD returns the value "as specified by the Client".
    public var metadata: String?
    /// Unix seconds.
    public var createdAt: Int64
    /// Unix seconds after which an unfinished upload is gone; nil = never (finished, or expiration off).
    public var expiresAt: Int64?
    /// The `Upload-Concat` header exactly as received (HEAD echoes it "as received"); nil for a plain upload.
    public var concat: String?
    /// Created with `Upload-Concat: partial`: a piece of a future final upload, not a finished file of its own
    /// (hooks and post-processing must tell them apart, as tusd's `IsPartial` does).
    public var isPartial: Bool
    /// For a final upload (`Upload-Concat: final;...`): the ids of its partial uploads in list order, an id as
    /// often as it was listed. Empty for every other upload.
    public var partialIDs: [String]

    /// Who created it (the authorizer's subject); nil = anyone may use it. Set once, at creation.
    public var owner: String?
    /// The IETF draft's upload is complete only when a request says so (`Upload-Complete: ?1`), not when its offset
    /// reaches a length declared earlier: until then it awaits that request, and even at offset == length it is
    /// neither complete nor finished. Set at a draft creation that does not complete; cleared by
    /// `UploadStateStore.declareLength(completing: true)`. Always false for tus.
    public var awaitsCompletion: Bool
    /// The draft's representation digests from creation (v6..v8, RFC 9530), checked or answered when a later
    /// request completes the upload: `Repr-Digest` to verify (`sha-256=:base64:`) and `Want-Repr-Digest`'s chosen
    /// algorithm (`sha-256`). nil for tus and for drafts that sent none.
    public var representationDigest: String?
    public var wantedDigest: String?

    public init(
        id: String, length: Int64?, offset: Int64 = 0, metadata: String? = nil, createdAt: Int64,
        expiresAt: Int64? = nil, owner: String? = nil, concat: String? = nil, isPartial: Bool = false,
        partialIDs: [String] = [], awaitsCompletion: Bool = false, representationDigest: String? = nil,
        wantedDigest: String? = nil
    ) {
        self.representationDigest = representationDigest
        self.wantedDigest = wantedDigest
        self.owner = owner
        self.awaitsCompletion = awaitsCompletion
        self.id = id
        self.length = length
        self.offset = offset
        self.metadata = metadata
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.concat = concat
        self.isPartial = isPartial
        self.partialIDs = partialIDs
    }

    /// Records persisted before concatenation, owners or the draft's completion existed have none of their keys;
    /// they read as plain uploads that anyone may use.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        length = try container.decodeIfPresent(Int64.self, forKey: .length)
        offset = try container.decode(Int64.self, forKey: .offset)
        metadata = try container.decodeIfPresent(String.self, forKey: .metadata)
        createdAt = try container.decode(Int64.self, forKey: .createdAt)
        expiresAt = try container.decodeIfPresent(Int64.self, forKey: .expiresAt)
        concat = try container.decodeIfPresent(String.self, forKey: .concat)
        isPartial = try container.decodeIfPresent(Bool.self, forKey: .isPartial) ?? false
        partialIDs = try container.decodeIfPresent([String].self, forKey: .partialIDs) ?? []
        owner = try container.decodeIfPresent(String.self, forKey: .owner)
        awaitsCompletion = try container.decodeIfPresent(Bool.self, forKey: .awaitsCompletion) ?? false
        representationDigest = try container.decodeIfPresent(String.self, forKey: .representationDigest)
        wantedDigest = try container.decodeIfPresent(String.self, forKey: .wantedDigest)
    }

    public var isLengthDeferred: Bool { length == nil }
    public var isComplete: Bool { length == offset && !awaitsCompletion }
    /// A final upload: its bytes are its partials' bytes, and it is never PATCHed.
    public var isFinal: Bool { !partialIDs.isEmpty }
}

/// The answer to "does this upload exist?", which must be cheap: HEAD answers from it without I/O.
public enum UploadLookup: Sendable, Equatable {
    case found(UploadInfo)
    /// Terminated or expired, and still remembered (answered 410 rather than 404).
    case gone
    case notFound

    /// The record, or the outcome as the error of a caller that needs one (`.notFound`, `.gone`).
    public var record: Result<UploadInfo, StoreError> {
        switch self {
        case .found(let info): .success(info)
        case .gone: .failure(.gone)
        case .notFound: .failure(.notFound)
        }
    }
}

/// Why an upload's data and state are removed; stores remember both as `.gone`.
public enum UploadRemovalReason: Sendable, Equatable {
    case terminated
    case expired
}

public enum StoreError: Error, Sendable, Equatable {
    case notFound
    case gone
    /// The id is already taken (create).
    case alreadyExists
    /// A write would pass `length`, or a declared length is below the offset: a handler bug, never a client's.
    case exceedsLength
    /// The length was already declared.
    case lengthAlreadySet
    /// The stored offset is not the one the writer started from, or the writer no longer holds the upload's
    /// lock (a lease that lapsed): the write must not move the offset.
    case conflict
    /// The shared state cannot be reached right now (Redis down or too slow). Clients get `503` with
    /// `Retry-After`, never a wrong answer.
    case unavailable(String)
    /// The disk (or quota) is full: ENOSPC or EDQUOT. Clients get `507`; the upload stays consistent.
    case insufficientStorage
    /// An I/O failure; the message is for logs only, never for clients.
    case io(String)
}

/// What a store can do beyond the core protocol. `Tus-Extension` is computed from this, never hand-written.
public struct UploadStoreCapabilities: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// `remove(id:reason: .terminated)` works (the `termination` extension).
    public static let termination = UploadStoreCapabilities(rawValue: 1 << 0)
    /// Discardable writers can roll back, also across a crash (needed for the `checksum` extension).
    public static let discardableWrites = UploadStoreCapabilities(rawValue: 1 << 1)
    /// `openReader` works (GET downloads).
    public static let download = UploadStoreCapabilities(rawValue: 1 << 2)

    /// `concatenate` works: final uploads can be made of partial ones (`concatenation` and
    /// `concatenation-unfinished`).
    public static let concatenation = UploadStoreCapabilities(rawValue: 1 << 3)

    public static let all: UploadStoreCapabilities = [.termination, .discardableWrites, .download, .concatenation]
}

/// Where uploads live, as the handler sees it: one record and one byte stream per upload.
///
/// Every operation is asynchronous and names its executor: the loop the caller runs on. Completions run on
/// that loop, possibly synchronously before the call returns (an in-memory store), otherwise later (file
/// I/O on the loop's threadpool, a Redis round trip). A store never looks for "the current loop" itself.
///
/// Concurrency between requests is the handler's job: it holds the upload's `UploadLocker` lock around
/// every writer and around `remove`, so a store never sees two writers for one upload. `lookup` may run
/// concurrently with a writer (HEAD takes no lock).
///
/// The one implementation is `ComposedUploadStore`, which builds this contract from an `UploadStateStore`
/// (records) and an `UploadDataStore` (bytes); tests wrap it to inject faults.
public protocol UploadStore: AnyObject, Sendable {
    var capabilities: UploadStoreCapabilities { get }

    /// The HEAD path. Expiry is NOT applied here (the handler owns the clock): an expired upload that was not
    /// swept yet is still `.found`. Fails only when the state cannot be reached (`.unavailable`).
    func lookup(
        _ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void)

    /// Creates an empty upload (`info.offset` is 0). Durable before completion reports success, so a
    /// `201` always names an upload that survives a restart.
    func create(
        _ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// Sets the length of a deferred upload, once (`lengthAlreadySet` otherwise; `exceedsLength` when below
    /// the offset); `completing`: see `UploadStateStore.declareLength`.
    func declareLength(
        id: String, length: Int64, completing: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// Starts appending at `offset`, which the handler has checked equals the current offset, under `lock`.
    ///
    /// `discardable` is true when the bytes may have to be thrown away (the request carries `Upload-Checksum`):
    /// until `commit`, `lookup` keeps reporting the starting offset, and a crash before `commit` must leave
    /// the upload at the starting offset. When false, `lookup` shows progress as bytes land (after every write,
    /// or at checkpoints for a shared state store), and a crash keeps what was recorded.
    func openWriter(
        id: String, startingAt offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<any UploadWriter, StoreError>) -> Void)

    /// Deletes data and state; afterwards `lookup` answers `.gone` (for as long as the store remembers).
    func remove(
        id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void)

    /// Opens the stored bytes for reading (downloads). Callers read only below the offset they looked up.
    func openReader(
        id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void)

    /// Completes a final upload whose partials are all complete (`partials`: their records, in the final's list
    /// order): its data becomes the partials' bytes in a form that outlives them, then its record says
    /// `offset == length`. Idempotent, and safe to run on several instances at once; a crash in between
    /// leaves a final that is not complete yet and is completed by the next call.
    func completeConcatenation(
        _ final: UploadInfo, partials: [UploadInfo], on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// Sets the expiry of `upload`, an unfinished upload no request writes to (a final waiting for its partials),
    /// whose lock the caller holds; its offset stays `upload.offset`. The expiry sweep moves a due final to its
    /// partials' later expiry with it.
    func moveExpiry(
        of upload: UploadInfo, to expiresAt: Int64, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void)

    /// The finals that list `partialID` (see `UploadStateStore.finals(referencing:)`).
    func finals(
        referencing partialID: String, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void)

    /// Unfinished uploads whose `expiresAt` is at or before `now` (unix seconds).
    func listExpired(
        now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void)
}

/// One PATCH's (or creation-with-upload POST's) appends.
///
/// Calls come in order on the loop that opened it: any number of `write`s (the next may be issued before the
/// previous completes; the store keeps them in order), then exactly one of `commit` or `rollback`, issued
/// only after every write completed. After that the writer is finished.
public protocol UploadWriter: AnyObject {
    /// Appends the fragment's bytes. Completion gets the offset after this write. The store keeps a
    /// reference to the fragment until the bytes are written (no copy needed).
    func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void)
    /// Makes every written byte durable and visible, and sets the new expiry (nil = never). Completion
    /// gets the resulting state. Acknowledging bytes to the client happens only after this.
    func commit(expiresAt: Int64?, completion: @escaping (Result<UploadInfo, StoreError>) -> Void)
    /// Truncates back to the starting offset (checksum mismatch, interrupted checksummed request).
    func rollback(completion: @escaping (Result<UploadInfo, StoreError>) -> Void)
}

/// A writer whose bytes go to a local file the HTTP layer may write into itself (splice), sparing the copy through
/// user memory. Only the file data store offers it; the HTTP layer asks only for cleartext Content-Length bodies,
/// and a checksummed one takes it only when the target `isReadable` (its ranges are hashed by reading them back).
/// Between `beginDirectWrite` and `endDirectWrite` no `write` is made; direct bytes are reported in order.
public protocol DirectUploadWriter: UploadWriter {
    /// The file and the offset of the next byte, or nil when direct writing is not possible now (writes queued or in
    /// flight, a failed write, a lost lease). `maxCount` bounds the bytes (the upload's length).
    func beginDirectWrite() -> DirectBodyTarget?
    /// The next `count` bytes are in the file. Returns the offset after them, or why the upload cannot continue
    /// (the writer's lease is gone): the request must then stop as after a failed write.
    func directlyWritten(count: Int) -> Result<Int64, StoreError>
    /// No direct write is in flight any more; `error` when the last one failed (its torn tail is cut at commit).
    func endDirectWrite(error: StoreError?)
}

/// Reads stored bytes, on the loop that opened it.
public protocol UploadReader: AnyObject {
    /// Up to `maxLength` bytes from `offset`; fewer (never zero unless at the end of the data) is fine.
    func read(at offset: Int64, maxLength: Int, completion: @escaping (Result<BodyFragment, StoreError>) -> Void)
    func close()
}

extension UploadStore {
    /// A declaration that does not complete the upload.
    public func declareLength(
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        declareLength(id: id, length: length, completing: false, on: executor, completion: completion)
    }
}
