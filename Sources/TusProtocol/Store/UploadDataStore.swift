public import TusCore
import TusHTTP1

/// Upload bytes: one append-only stream per upload id, replaceable (local files by default). Records are an
/// `UploadStateStore`'s business; the data store never decides what the offset is.
///
/// Every call names its executor; completions run on it. Bytes past the recorded offset may exist (a write that
/// was not recorded before a crash): a writer opened at the recorded offset overwrites them.
///
/// This is the core every data store has. What only some can do is a separate protocol with no default
/// implementation (`ReadableUploadDataStore`, `TruncatingUploadDataStore`, `ConcatenatingUploadDataStore`), as in
/// tusd's composer: a store offers an ability by conforming, so it cannot claim one it has no code for, and
/// `ComposedUploadStore` derives its capabilities, and so `Tus-Extension`, from the conformances.
public protocol UploadDataStore: AnyObject, Sendable {
    /// Creates empty data for a new id, exclusively (`alreadyExists`), durably.
    func create(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void)

    /// Opens the data for appending at `offset`. `length` (when known) bounds the writes.
    func openWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any UploadDataWriter, StoreError>) -> Void)

    /// Deletes the bytes; missing data is not an error.
    func remove(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void)

    /// A new upload is complete at creation (`Upload-Length: 0`): no writer will ever finish it. A store whose
    /// data needs a final step (the S3 store's multipart upload) takes it here. Defaults to nothing.
    func completeEmpty(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void)
}

extension UploadDataStore {
    public func completeEmpty(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        completion(nil)
    }
}

/// Ability: the bytes can be read back (`GET` downloads).
public protocol ReadableUploadDataStore: UploadDataStore {
    /// Fails with `.notFound` when there is nothing to read (yet).
    func openReader(
        id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void)
}

/// Ability: written bytes can be thrown away again, also across a crash (`checksum`, `checksum-trailer`).
public protocol TruncatingUploadDataStore: UploadDataStore {
    /// `openWriter` for a PATCH whose bytes may be discarded: the writer can `truncate`.
    func openTruncatableWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any TruncatableUploadDataWriter, StoreError>) -> Void)
}

extension TruncatingUploadDataStore {
    /// Every writer of a truncating store can truncate; the plain one is the same writer.
    public func openWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any UploadDataWriter, StoreError>) -> Void
    ) {
        openTruncatableWriter(id: id, at: offset, length: length, on: executor) { completion($0.map { $0 }) }
    }
}

/// Ability: a final upload's bytes can be made of its partials' (`concatenation`, `concatenation-unfinished`).
public protocol ConcatenatingUploadDataStore: ReadableUploadDataStore {
    /// Makes `id`'s data the bytes of `parts` (complete, immutable uploads of `lengths` bytes; an id may repeat)
    /// in order, durably, in a form that survives the removal of the parts: afterwards `openReader(id:)` reads
    /// the concatenation. Idempotent: a call interrupted by a crash, at any step, can be made again and either
    /// finishes the work or starts it over. A part whose data is missing fails with `.gone`.
    func concatenate(
        id: String, parts: [String], lengths: [Int64], on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void)
}

/// Appends to one upload's data, on the loop that opened it. Writes are kept in order. `sync` may run while
/// writes are in flight (a checkpoint during a streaming PATCH) and covers the writes completed before it was
/// called; `truncate` (`TruncatableUploadDataWriter`) and the final `sync` are issued only while no write is
/// outstanding.
public protocol UploadDataWriter: AnyObject {
    /// Completion gets the end of the data after this write.
    func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void)
    /// Makes everything written durable (as the store's durability policy says) and reports where the good data
    /// ends. After a failed write it first cuts off whatever torn tail the failure may have left.
    func sync(completion: @escaping (Result<Int64, StoreError>) -> Void)
    /// The commit's sync: like `sync`, but no write follows, so a store that batches bytes (the S3 store's
    /// incomplete last part) may flush them now. Defaults to `sync`.
    func finish(completion: @escaping (Result<Int64, StoreError>) -> Void)
    func close()
}

/// A writer whose bytes can be discarded (see `TruncatingUploadDataStore`).
public protocol TruncatableUploadDataWriter: UploadDataWriter {
    /// Cuts the data back to `offset`, durably.
    func truncate(to offset: Int64, completion: @escaping (StoreError?) -> Void)
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
