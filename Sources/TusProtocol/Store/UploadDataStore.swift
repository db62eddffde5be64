public import TusHTTP1

/// What a data store can do beyond appending.
public struct UploadDataCapabilities: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// `UploadDataWriter.truncate` works: written bytes can be thrown away (the `checksum` extension needs it).
    public static let truncate = UploadDataCapabilities(rawValue: 1 << 0)
    /// `openReader` works (GET downloads).
    public static let read = UploadDataCapabilities(rawValue: 1 << 1)

    /// `concatenate` works (the `concatenation` extensions).
    public static let concatenate = UploadDataCapabilities(rawValue: 1 << 2)

    public static let all: UploadDataCapabilities = [.truncate, .read, .concatenate]
}

/// Upload bytes: one append-only stream per upload id, replaceable (local files by default). Records are an
/// `UploadStateStore`'s business; the data store never decides what the offset is.
///
/// Every call names its executor; completions run on it. Bytes past the recorded offset may exist (a write that
/// was not recorded before a crash): a writer opened at the recorded offset overwrites them.
public protocol UploadDataStore: AnyObject, Sendable {
    var capabilities: UploadDataCapabilities { get }

    /// Creates empty data for a new id, exclusively (`alreadyExists`), durably.
    func create(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void)

    /// Opens the data for appending at `offset`. `length` (when known) bounds the writes.
    func openWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any UploadDataWriter, StoreError>) -> Void)

    func openReader(
        id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void)

    /// Deletes the bytes; missing data is not an error.
    func remove(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void)

    /// Makes `id`'s data the bytes of `parts` (complete, immutable uploads of `lengths` bytes; an id may repeat)
    /// in order, durably, in a form that survives the removal of the parts: afterwards `openReader(id:)` reads
    /// the concatenation. Idempotent: a call interrupted by a crash can be made again.
    func concatenate(
        id: String, parts: [String], lengths: [Int64], on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void)

    /// A new upload is complete at creation (`Upload-Length: 0`): no writer will ever finish it. A store whose
    /// data needs a final step (the S3 store's multipart upload) takes it here. Defaults to nothing.
    func completeEmpty(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void)
}

extension UploadDataStore {
    public func completeEmpty(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        completion(nil)
    }

    /// For stores without `UploadDataCapabilities.concatenate`: the handler never offers concatenation on them
    /// (`Tus-Extension` is derived from the capability), so this only guards against a caller bug.
    public func concatenate(
        id: String, parts: [String], lengths: [Int64], on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void
    ) {
        completion(.io("\(type(of: self)) cannot concatenate"))
    }
}

/// Appends to one upload's data, on the loop that opened it. Writes are kept in order. `sync` may run while
/// writes are in flight (a checkpoint during a streaming PATCH) and covers the writes completed before it was
/// called; `truncate` and the final `sync` are issued only while no write is outstanding.
public protocol UploadDataWriter: AnyObject {
    /// Completion gets the end of the data after this write.
    func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void)
    /// Makes everything written durable (as the store's durability policy says) and reports where the good data
    /// ends. After a failed write it first cuts off whatever torn tail the failure may have left.
    func sync(completion: @escaping (Result<Int64, StoreError>) -> Void)
    /// The commit's sync: like `sync`, but no write follows, so a store that batches bytes (the S3 store's
    /// incomplete last part) may flush them now. Defaults to `sync`.
    func finish(completion: @escaping (Result<Int64, StoreError>) -> Void)
    /// Cuts the data back to `offset`, durably.
    func truncate(to offset: Int64, completion: @escaping (StoreError?) -> Void)
    func close()
}

extension UploadDataWriter {
    public func finish(completion: @escaping (Result<Int64, StoreError>) -> Void) {
        sync(completion: completion)
    }
}

/// A data writer backed by a local file that others may write into directly (see `DirectUploadWriter`). Bytes
/// written directly count exactly like completed `write`s: `sync` and the commit cover them.
public protocol DirectUploadDataWriter: UploadDataWriter {
    /// Nil unless every `write` so far has completed and none failed.
    func beginDirectWrite() -> DirectBodyTarget?
    /// Returns the end of the data after these bytes.
    func directlyWritten(count: Int) -> Int64
    func endDirectWrite(error: StoreError?)
}
