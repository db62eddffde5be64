import TusHTTP1
import TusLoop
import TusProtocol

/// One PATCH's appends to `<id>`, through one open `AsyncFile`, on the loop that opened it.
///
/// Writes go to disk one batch at a time: while a pwritev is running, new fragments queue, and the next batch
/// takes all of them in one call. One write at a time keeps the file a contiguous prefix at every moment, which
/// recovery relies on ("offset = data size"): with two pwrites in flight on the threadpool, the later one could
/// land first and a crash would leave a hole of zeros counted as data. Batching wins back the syscalls.
final class FileUploadWriter: UploadWriter {
    private typealias WriteCompletion = (Result<Int64, StoreError>) -> Void
    private struct PendingWrite {
        let fragment: BodyFragment
        let completion: WriteCompletion
    }

    private let store: FileUploadStore
    private let loop: EventLoop
    private let file: AsyncFile
    private let id: String
    private let start: Int64
    private let length: Int64?
    private let discardable: Bool

    /// End of the bytes handed to `write`, including queued ones.
    private var acceptedEnd: Int64
    /// End of the bytes known to be in the file.
    private var writtenEnd: Int64
    private var queued: [PendingWrite] = []
    /// The batch being written; holding it keeps its chunks alive until the pwritev finished.
    private var inFlight: [PendingWrite] = []
    /// While completions run, new writes only queue, so completions are delivered in write order.
    private var isDelivering = false
    /// After a failed write the file may hold a torn tail past `writtenEnd`; commit cuts it off.
    private var failure: StoreError?
    private var isFinished = false

    init(
        store: FileUploadStore, loop: EventLoop, file: AsyncFile, id: String, start: Int64, length: Int64?,
        discardable: Bool
    ) {
        self.store = store
        self.loop = loop
        self.file = file
        self.id = id
        self.start = start
        self.length = length
        self.discardable = discardable
        acceptedEnd = start
        writtenEnd = start
    }

    func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void) {
        precondition(!isFinished, "write after commit/rollback")
        if let failure { return completion(.failure(failure)) }
        let end = acceptedEnd + Int64(fragment.count)
        if let length, end > length { return completion(.failure(.exceedsLength)) }
        acceptedEnd = end
        queued.append(PendingWrite(fragment: fragment, completion: completion))
        if inFlight.isEmpty && !isDelivering { writeQueuedBatch() }
    }

    private func writeQueuedBatch() {
        guard inFlight.isEmpty, !queued.isEmpty else { return }
        swap(&inFlight, &queued)
        let batchEnd = writtenEnd + inFlight.reduce(0) { $0 + Int64($1.fragment.count) }
        // `inFlight` owns the chunks until completion, and the completion closure owns `self`.
        file.write(inFlight.map(\.fragment.bytes), at: writtenEnd, owner: nil) { [self] result in
            switch result {
            case .failure(let error):
                failAll(store.ioError("write \(store.dataPath(id))", error))
            case .success where store.fsyncPolicy.syncsEachWrite:
                file.datasync { [self] error in
                    if let error {
                        failAll(store.ioError("fdatasync \(store.dataPath(id))", error))
                    } else {
                        batchWritten(upTo: batchEnd)
                    }
                }
            case .success:
                batchWritten(upTo: batchEnd)
            }
        }
    }

    private func batchWritten(upTo batchEnd: Int64) {
        writtenEnd = batchEnd
        if !discardable {
            // A HEAD running concurrently on another loop sees the progress now.
            store.state.withLock { $0.uploads[id]?.offset = batchEnd }
        }
        let batch = inFlight
        inFlight.removeAll(keepingCapacity: true)
        isDelivering = true
        var end = batchEnd - batch.reduce(0) { $0 + Int64($1.fragment.count) }
        for write in batch {
            end += Int64(write.fragment.count)
            write.completion(.success(end))
        }
        isDelivering = false
        writeQueuedBatch()
    }

    private func failAll(_ error: StoreError) {
        failure = error
        let failed = inFlight + queued
        inFlight = []
        queued = []
        acceptedEnd = writtenEnd
        for write in failed { write.completion(.failure(error)) }
    }

    /// fdatasync (policy), then the record with the new offset and no `pendingDiscardFrom`, then memory.
    func commit(expiresAt: Int64?, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        finish()
        let persistRecord: () -> Void = { [self] in
            guard var info = store.state.withLock({ $0.uploads[id] }) else {
                file.close()
                return completion(.failure(.notFound))
            }
            info.offset = writtenEnd
            info.expiresAt = info.isComplete ? nil : expiresAt
            let committed = info
            store.persist(UploadRecord(committed), loop: loop) { [self] error in
                file.close()
                if let error { return completion(.failure(error)) }
                store.state.withLock { state in
                    state.uploads[id]?.offset = committed.offset
                    state.uploads[id]?.expiresAt = committed.expiresAt
                }
                completion(.success(committed))
            }
        }
        let syncData: () -> Void = { [self] in
            guard store.fsyncPolicy.syncsAtCommit, writtenEnd != start || failure != nil else { return persistRecord() }
            file.datasync { [self] error in
                if let error {
                    file.close()
                    return completion(.failure(store.ioError("fdatasync \(store.dataPath(id))", error)))
                }
                persistRecord()
            }
        }
        guard failure != nil else { return syncData() }
        file.truncate(to: writtenEnd) { [self] error in
            if let error {
                file.close()
                return completion(.failure(store.ioError("ftruncate \(store.dataPath(id))", error)))
            }
            syncData()
        }
    }

    /// Truncation first and durable (policy) before the record says `offset == start`: the other order could
    /// leave a record without `pendingDiscardFrom` next to a longer file, and recovery would keep the bytes.
    func rollback(completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        finish()
        let fail: (String, UVError) -> Void = { [self] what, error in
            file.close()
            completion(.failure(store.ioError("\(what) \(store.dataPath(id))", error)))
        }
        file.truncate(to: start) { [self] error in
            if let error { return fail("ftruncate", error) }
            let persistRecord: (UVError?) -> Void = { [self] error in
                if let error { return fail("fdatasync", error) }
                guard var info = store.state.withLock({ $0.uploads[id] }) else {
                    file.close()
                    return completion(.failure(.notFound))
                }
                info.offset = start
                let rolledBack = info
                store.persist(UploadRecord(rolledBack), loop: loop) { [self] error in
                    file.close()
                    if let error { return completion(.failure(error)) }
                    store.state.withLock { $0.uploads[id]?.offset = rolledBack.offset }
                    completion(.success(rolledBack))
                }
            }
            if store.fsyncPolicy.syncsAtCommit { file.datasync(persistRecord) } else { persistRecord(nil) }
        }
    }

    private func finish() {
        precondition(!isFinished, "commit/rollback called twice")
        precondition(inFlight.isEmpty && queued.isEmpty, "commit/rollback before every write completed")
        isFinished = true
    }
}

/// Reads `<id>` for downloads, each read into a fresh chunk that the returned fragment owns.
final class FileUploadReader: UploadReader {
    private let file: AsyncFile

    init(file: AsyncFile) {
        self.file = file
    }

    func read(at offset: Int64, maxLength: Int, completion: @escaping (Result<BodyFragment, StoreError>) -> Void) {
        let chunk = ByteChunk(capacity: max(1, maxLength))
        let buffer = UnsafeMutableRawBufferPointer(start: chunk.base, count: max(0, maxLength))
        file.read(into: buffer, at: offset, owner: chunk) { result in
            switch result {
            case .success(let count): completion(.success(BodyFragment(chunk: chunk, range: 0..<count)))
            case .failure(let error): completion(.failure(.io("read: \(error)")))
            }
        }
    }

    func close() {
        file.close()
    }
}
