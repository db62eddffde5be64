public import TusCore
import TusLoop
public import TusProtocol
import Synchronization

/// Upload bytes as files: `<id>` in one directory, written through libuv's threadpool on the caller's loop.
///
/// Durability follows the `FsyncPolicy`: `sync` runs `fdatasync` (`.commit`, `.always`), and `.always` also
/// syncs after every write. Creation makes the new file's directory entry durable, unless the `FileStateStore`
/// of the same directory creates the file itself (`filesCreatedByRecords`, as `FileUploadStore` pairs them): then
/// it does so in the same threadpool job as the record, and one directory sync covers both.
public final class FileDataStore: TruncatingUploadDataStore, ConcatenatingUploadDataStore {
    public let directory: String
    public let fsyncPolicy: FsyncPolicy
    let filesCreatedByRecords: Bool
    let directorySync: DirectorySyncGroup
    /// Under `.commit`, a writer starts writeback of what it wrote each time this many bytes have landed since the
    /// last start (see `FileDataWriter`); 0 never starts it.
    let writebackInterval: Int64
    /// Each writeback job also waits until the range the previous job started is on disk, so the jobs keep pace
    /// with the disk (when it falls behind, the next job covers everything that landed meanwhile as one range)
    /// instead of piling up submitted I/O. It never holds a write back. Measured as good as not waiting.
    let waitsForEarlierWriteback: Bool
    private let writebacksStartedCount = Atomic<Int>(0)
    let log: @Sendable (String) -> Void
    /// Told when opening `<id>` finds it missing: deleted outside the server (`FileStateStore.dataFileVanished`).
    let onVanished: (@Sendable (String, any LoopExecutor) -> Void)?

    public init(
        directory: String, fsync: FsyncPolicy = .commit, filesCreatedByRecords: Bool = false,
        writebackInterval: Int64 = FileDataStore.defaultWritebackInterval, waitsForEarlierWriteback: Bool = true,
        log: @escaping @Sendable (String) -> Void = { _ in },
        onVanished: (@Sendable (String, any LoopExecutor) -> Void)? = nil
    ) throws {
        self.onVanished = onVanished
        self.directory = FileStateStore.normalized(directory)
        self.fsyncPolicy = fsync
        self.filesCreatedByRecords = filesCreatedByRecords
        directorySync = DirectorySyncGroup(path: self.directory)
        self.writebackInterval = writebackInterval
        self.waitsForEarlierWriteback = waitsForEarlierWriteback
        self.log = log
        guard FileDirectory.ensureExists(self.directory) else {
            throw StoreError.io("upload directory \(self.directory) cannot be created")
        }
    }

    /// 4 MiB: measured against 8, 16 and 32 MiB (bench/results/2026-11-29-writeback) on ext4 with the client on the
    /// same two cores. Smaller intervals start the disk sooner and leave the commit's fdatasync at most about two
    /// intervals to write; 4 MiB was best for one 512 MiB upload and as good as 8 MiB for 32 x 32 MiB, while 16 and
    /// 32 MiB gained little over no writeback. 128 jobs per 512 MiB cost nothing measurable in server CPU.
    public static let defaultWritebackInterval: Int64 = 4 << 20

    /// Writebacks started by this store's writers so far (tests, diagnostics).
    var writebacksStarted: Int { writebacksStartedCount.load(ordering: .relaxed) }

    func countWritebackStarted() {
        writebacksStartedCount.add(1, ordering: .relaxed)
    }

    func dataPath(_ id: String) -> String { FileDirectory.path(directory, id) }

    /// The empty file and its directory entry in one threadpool job: one loop crossing per creation instead of
    /// three. Nothing when the state store creates the file with the record (`filesCreatedByRecords`).
    public func create(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        if filesCreatedByRecords { return completion(nil) }
        precondition(UploadID.isValid(id), "the handler validates ids")
        let path = dataPath(id)
        let directorySync = directorySync
        let syncsDirectory = fsyncPolicy.syncsAtCommit
        executor.eventLoop.runBlocking({ () -> BlockingFileSystem.Failure? in
            if let failure = BlockingFileSystem.createEmptyFile(path) { return failure }
            return syncsDirectory ? directorySync.sync() : nil
        }, completion: { [self] failure in
            guard let failure else { return completion(nil) }
            completion(failure.error == .alreadyExists ? .alreadyExists : ioError("\(failure.operation) \(failure.path)", failure.error))
        })
    }

    public func openTruncatableWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any TruncatableUploadDataWriter, StoreError>) -> Void
    ) {
        let loop = executor.eventLoop
        // Read and write: a checksummed body spliced into the file is hashed by reading it back (`isReadable`).
        AsyncFile.openCachedOnLoop(loop: loop, path: dataPath(id), flags: [.readWrite]) { [self] opened in
            switch opened {
            case .failure(let error) where error == .notFound:
                onVanished?(id, executor)
                completion(.failure(.notFound))
            case .failure(let error):
                completion(.failure(ioError("open \(dataPath(id))", error)))
            case .success(let file):
                completion(.success(FileDataWriter(store: self, file: file, id: id, start: offset, length: length)))
            }
        }
    }

    /// A concatenated final's own file stays empty, so only an empty file makes us look for part links: plain
    /// uploads with bytes pay nothing for concatenation.
    public func openReader(
        id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void
    ) {
        let loop = executor.eventLoop
        AsyncFile.open(loop: loop, path: dataPath(id), flags: [.readOnly]) { [self] opened in
            switch opened {
            case .failure(let error) where error == .notFound:
                onVanished?(id, executor)
                completion(.failure(.notFound))
            case .failure(let error):
                completion(.failure(ioError("open \(dataPath(id))", error)))
            case .success(let file):
                file.stat { [self] status in
                    guard case .success(let status) = status, status.size == 0 else {
                        return completion(.success(FileUploadReader(file: file)))
                    }
                    openParts(of: id, from: 0, opened: [], loop: loop) { parts in
                        guard !parts.isEmpty else { return completion(.success(FileUploadReader(file: file))) }
                        file.close()
                        completion(.success(ConcatenatedFileReader(parts: parts)))
                    }
                }
            }
        }
    }

    /// Removes `<id>` and, for a final, its part links (a prefix `.part-0`, `.part-1`, ... since they are made in
    /// order). No directory sync: bytes whose record is gone are only wasted space, even if a crash brings them
    /// back.
    public func remove(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        let loop = executor.eventLoop
        FileSystem.unlink(loop: loop, path: dataPath(id)) { [self] error in
            if let error, error != .notFound { return completion(ioError("unlink \(dataPath(id))", error)) }
            removeParts(of: id, from: 0, loop: loop, completion)
        }
    }

    // MARK: concatenation

    /// `<id>.part-<n>`: a hard link to the n-th partial's data file. Not an upload id (it has a dot), so recovery
    /// and the id checks never mistake it for an upload.
    func partPath(_ id: String, _ index: Int) -> String { dataPath(id) + ".part-\(index)" }

    /// Hard links, one per listed part, in order, then one directory sync: no byte is copied, and the final keeps
    /// the bytes when a partial is terminated or expires later (its name goes, the inode stays). ext4, which
    /// these machines run, has no reflinks, and `copy_file_range` there is an in-kernel copy that costs what
    /// `cp` costs (measured in bench/results/*-concat). A link that already exists is the one an interrupted
    /// earlier call made: ids are never reused and a complete upload never changes, so it names the same bytes.
    public func concatenate(
        id: String, parts: [String], lengths: [Int64], on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void
    ) {
        let loop = executor.eventLoop
        linkParts(id: id, parts: parts, lengths: lengths, from: 0, loop: loop) { [self] error in
            if let error { return completion(error) }
            FileDirectory.sync(directorySync, policy: fsyncPolicy, loop: loop) { [self] error in
                completion(error.map { ioError("fsync \(directory)", $0) })
            }
        }
    }

    private func linkParts(
        id: String, parts: [String], lengths: [Int64], from index: Int, loop: EventLoop,
        _ completion: @escaping (StoreError?) -> Void
    ) {
        guard index < parts.count else { return completion(nil) }
        let target = partPath(id, index)
        FileSystem.link(loop: loop, from: dataPath(parts[index]), to: target) { [self] error in
            if let error, error != .alreadyExists {
                // The partial's name went away (terminated or expired) before the final was assembled.
                return completion(error == .notFound ? .gone : ioError("link \(target)", error))
            }
            // Never serve wrong bytes: the link must hold exactly the partial's recorded length.
            FileSystem.stat(loop: loop, path: target) { [self] status in
                switch status {
                case .failure(let error): return completion(ioError("stat \(target)", error))
                case .success(let status) where status.size != lengths[index]:
                    return completion(.io("\(target) has \(status.size) bytes, the partial \(lengths[index])"))
                case .success:
                    linkParts(id: id, parts: parts, lengths: lengths, from: index + 1, loop: loop, completion)
                }
            }
        }
    }

    private func openParts(
        of id: String, from index: Int, opened: [(file: AsyncFile, size: Int64)], loop: EventLoop,
        _ completion: @escaping ([(file: AsyncFile, size: Int64)]) -> Void
    ) {
        AsyncFile.open(loop: loop, path: partPath(id, index), flags: [.readOnly]) { [self] result in
            guard case .success(let file) = result else { return completion(opened) }
            file.stat { [self] status in
                guard case .success(let status) = status else {
                    file.close()
                    return completion(opened)
                }
                openParts(of: id, from: index + 1, opened: opened + [(file, status.size)], loop: loop, completion)
            }
        }
    }

    private func removeParts(
        of id: String, from index: Int, loop: EventLoop, _ completion: @escaping (StoreError?) -> Void
    ) {
        FileSystem.unlink(loop: loop, path: partPath(id, index)) { [self] error in
            if error == .notFound { return completion(nil) }
            if let error { return completion(ioError("unlink \(partPath(id, index))", error)) }
            removeParts(of: id, from: index + 1, loop: loop, completion)
        }
    }

    func ioError(_ what: String, _ error: UVError) -> StoreError {
        let message = "\(what): \(error)"
        log("FileDataStore: " + message)
        return error.isOutOfSpace ? .insufficientStorage : .io(message)
    }
}

/// One PATCH's appends to `<id>`, through one open `AsyncFile`, on the loop that opened it.
///
/// Writes go to disk one batch at a time: while a pwritev is running, new fragments queue, and the next batch
/// takes all of them in one call. One write at a time keeps the file a contiguous prefix at every moment, which
/// recovery relies on ("offset = data size"): with two pwrites in flight on the threadpool, the later one could
/// land first and a crash would leave a hole of zeros counted as data. Batching wins back the syscalls.
///
/// Direct writes (a spliced body, `DirectUploadDataWriter`): offered only when no pwritev is queued or in flight, so
/// the spliced bytes continue the contiguous prefix; while they run, `write` is not called. Each reported range moves
/// `acceptedEnd` and `writtenEnd` as a completed batch would, so `sync` and the commit's fdatasync cover them.
///
/// Under `.commit` the writer also starts writeback as bytes land (issue 13): the kernel otherwise keeps a
/// PATCH's bytes dirty until the commit's fdatasync has to write them all at once, so a large upload costs
/// receive time plus write time. Every `store.writebackInterval` bytes, after a batch completed, one job on the
/// threadpool starts writeback of the new range and waits for the range started before it (the streaming-writer
/// pattern "kick range k, wait for range k-1"; PostgreSQL's `*_flush_after` settings issue the kick alone), so the
/// disk writes while the socket is read and the final fdatasync finds only the last interval or two dirty.
/// Writeback is a hint beside the data path: it never holds a write or its completion back, and at most one job
/// per writer runs at a time. A `sync` or `truncate` first waits for that job, and no job starts until it is done,
/// because a job's wait may be where the kernel reports (and consumes) a write error that fdatasync would otherwise
/// have returned; such an error fails every later `sync` of this writer. Direct (spliced) ranges count towards
/// the interval like batches.
final class FileDataWriter: DirectUploadDataWriter, TruncatableUploadDataWriter {
    private typealias WriteCompletion = (Result<Int64, StoreError>) -> Void
    private struct PendingWrite {
        let fragment: BodyFragment
        let completion: WriteCompletion
    }

    private let store: FileDataStore
    private let file: AsyncFile
    private let id: String
    private let length: Int64?

    /// End of the bytes handed to `write`, including queued ones.
    private var acceptedEnd: Int64
    /// End of the bytes known to be in the file.
    private var writtenEnd: Int64
    /// End of the bytes known to be durable (as far as the policy asks).
    private var syncedEnd: Int64
    private var queued: [PendingWrite] = []
    /// The batch being written; holding it keeps its chunks alive until the pwritev finished.
    private var inFlight: [PendingWrite] = []
    /// While completions run, new writes only queue, so completions are delivered in write order.
    private var isDelivering = false
    /// After a failed write the file may hold a torn tail past `writtenEnd`; the final sync cuts it off.
    private var failure: StoreError?
    private var isClosed = false

    /// Bytes before this offset have had their writeback started.
    private var writebackStart: Int64
    /// The range the last writeback job started, which the next job waits for.
    private var lastWritebackRange: Range<Int64>?
    private var isWritebackRunning = false
    /// What runs once the writeback job in flight has finished (a `sync` or `truncate` waiting for it).
    private var afterWriteback: [() -> Void] = []
    /// A write-back error the kernel may have reported to us instead of to the next fdatasync.
    private var writebackFailure: UVError?
    private var isWritebackSupported = true
    /// No writeback starts while a `sync` or `truncate` runs: its wait could take the error the fdatasync needs.
    private var syncsRunning = 0

    init(store: FileDataStore, file: AsyncFile, id: String, start: Int64, length: Int64?) {
        self.store = store
        self.file = file
        self.id = id
        self.length = length
        acceptedEnd = start
        writtenEnd = start
        syncedEnd = start
        writebackStart = start
    }

    func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void) {
        precondition(!isClosed, "write after close")
        precondition(!isWritingDirectly, "write while bytes are written directly")
        if let failure { return completion(.failure(failure)) }
        let end = acceptedEnd + Int64(fragment.count)
        if let length, end > length { return completion(.failure(.exceedsLength)) }
        acceptedEnd = end
        queued.append(PendingWrite(fragment: fragment, completion: completion))
        if inFlight.isEmpty && !isDelivering { writeQueuedBatch() }
    }

    private var isWritingDirectly = false

    func beginDirectWrite() -> DirectBodyTarget? {
        // `.always` syncs after each write; direct ranges would bypass that, so that policy keeps to pwritev. Asked
        // from inside the last completion of a batch (`isDelivering`) is fine: that batch is in the file already.
        guard !isClosed, failure == nil, !isWritingDirectly, queued.isEmpty, inFlight.isEmpty,
            !store.fsyncPolicy.syncsEachWrite,
            acceptedEnd == writtenEnd
        else { return nil }
        isWritingDirectly = true
        return DirectBodyTarget(
            descriptor: file.descriptor, offset: writtenEnd, maxCount: length.map { $0 - writtenEnd } ?? .max,
            isReadable: true)
    }

    func directlyWritten(count: Int) -> Int64 {
        precondition(isWritingDirectly, "direct bytes without beginDirectWrite")
        writtenEnd += Int64(count)
        acceptedEnd = writtenEnd
        startWritebackIfDue()
        return writtenEnd
    }

    /// A failed direct write may have left a torn tail past `writtenEnd`: `failure` makes the final sync cut it.
    func endDirectWrite(error: StoreError?) {
        guard isWritingDirectly else { return }
        isWritingDirectly = false
        if let error, failure == nil {
            store.log("FileDataStore: direct write to \(store.dataPath(id)) failed: \(error)")
            failure = error
        }
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
                        syncedEnd = batchEnd
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
        startWritebackIfDue()
    }

    /// After the next pwritev was submitted, so the data path keeps its place in the threadpool's queue.
    private func startWritebackIfDue() {
        guard store.fsyncPolicy == .commit, store.writebackInterval > 0, isWritebackSupported, !isClosed,
            !isWritebackRunning, syncsRunning == 0, writebackFailure == nil,
            writtenEnd - writebackStart >= store.writebackInterval
        else { return }
        let range = writebackStart..<writtenEnd
        let earlier = store.waitsForEarlierWriteback ? lastWritebackRange : nil
        writebackStart = writtenEnd
        lastWritebackRange = range
        isWritebackRunning = true
        store.countWritebackStarted()
        file.startWriteback(of: range, waitingFor: earlier) { [self] error in
            isWritebackRunning = false
            if error == .notSupported {
                isWritebackSupported = false
            } else if let error, writebackFailure == nil {
                writebackFailure = error
                store.log("FileDataStore: sync_file_range \(store.dataPath(id)): \(error)")
            }
            let waiting = afterWriteback
            afterWriteback = []
            for resume in waiting { resume() }
            startWritebackIfDue()
        }
    }

    private func whenWritebackIdle(_ body: @escaping () -> Void) {
        if isWritebackRunning { afterWriteback.append(body) } else { body() }
    }

    private func failAll(_ error: StoreError) {
        failure = error
        let failed = inFlight + queued
        inFlight = []
        queued = []
        acceptedEnd = writtenEnd
        for write in failed { write.completion(.failure(error)) }
    }

    /// Cuts a torn tail (after a failed write, once nothing is in flight), then fdatasync (policy) unless nothing
    /// was written since the last sync. Covers the writes completed before the call.
    func sync(completion callerCompletion: @escaping (Result<Int64, StoreError>) -> Void) {
        let end = writtenEnd
        syncsRunning += 1
        let completion: (Result<Int64, StoreError>) -> Void = { [self] result in
            syncsRunning -= 1
            callerCompletion(result)
            startWritebackIfDue()
        }
        let datasync: () -> Void = { [self] in
            if let writebackFailure {
                return completion(.failure(store.ioError("sync_file_range \(store.dataPath(id))", writebackFailure)))
            }
            guard store.fsyncPolicy.syncsAtCommit, end != syncedEnd || failure != nil else {
                return completion(.success(end))
            }
            file.datasync { [self] error in
                if let error { return completion(.failure(store.ioError("fdatasync \(store.dataPath(id))", error))) }
                syncedEnd = max(syncedEnd, end)
                // What fdatasync made durable needs no writeback kick afterwards.
                writebackStart = max(writebackStart, end)
                completion(.success(end))
            }
        }
        whenWritebackIdle { [self] in
            guard failure != nil, inFlight.isEmpty, queued.isEmpty else { return datasync() }
            file.truncate(to: end) { [self] error in
                if let error { return completion(.failure(store.ioError("ftruncate \(store.dataPath(id))", error))) }
                datasync()
            }
        }
    }

    /// Truncation made durable (policy) before the caller records the offset: the other order could leave a
    /// record at `offset` next to a longer file whose extra bytes recovery would count.
    func truncate(to offset: Int64, completion callerCompletion: @escaping (StoreError?) -> Void) {
        precondition(inFlight.isEmpty && queued.isEmpty, "truncate while writes are outstanding")
        syncsRunning += 1
        let completion: (StoreError?) -> Void = { [self] error in
            syncsRunning -= 1
            callerCompletion(error)
        }
        whenWritebackIdle { [self] in
            file.truncate(to: offset) { [self] error in
                if let error { return completion(store.ioError("ftruncate \(store.dataPath(id))", error)) }
                writtenEnd = offset
                acceptedEnd = offset
                writebackStart = min(writebackStart, offset)
                lastWritebackRange = nil
                guard store.fsyncPolicy.syncsAtCommit else { return completion(nil) }
                file.datasync { [self] error in
                    syncedEnd = offset
                    if let writebackFailure {
                        return completion(store.ioError("sync_file_range \(store.dataPath(id))", writebackFailure))
                    }
                    completion(error.map { store.ioError("fdatasync \(store.dataPath(id))", $0) })
                }
            }
        }
    }

    func close() {
        guard !isClosed else { return }
        precondition(inFlight.isEmpty && queued.isEmpty, "close while writes are outstanding")
        isClosed = true
        file.close()
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

/// Reads a concatenated final across its part links: a read never crosses a part boundary (a short read is
/// allowed), so each is one `pread` of one part, into a fresh chunk as for plain uploads.
final class ConcatenatedFileReader: UploadReader {
    private let parts: [(file: AsyncFile, size: Int64)]
    /// Where each part starts in the final.
    private let starts: [Int64]

    init(parts: [(file: AsyncFile, size: Int64)]) {
        self.parts = parts
        var starts: [Int64] = []
        var position: Int64 = 0
        for part in parts {
            starts.append(position)
            position += part.size
        }
        self.starts = starts
    }

    func read(at offset: Int64, maxLength: Int, completion: @escaping (Result<BodyFragment, StoreError>) -> Void) {
        // The last part starting at or before `offset` that is not empty there.
        guard let index = parts.indices.last(where: { starts[$0] <= offset && offset < starts[$0] + parts[$0].size })
        else { return completion(.success(BodyFragment(copying: []))) }
        let within = offset - starts[index]
        let count = Int(min(Int64(max(0, maxLength)), parts[index].size - within))
        FileUploadReader(file: parts[index].file).read(at: within, maxLength: count, completion: completion)
    }

    func close() {
        for part in parts where !part.file.isClosed { part.file.close() }
    }
}
