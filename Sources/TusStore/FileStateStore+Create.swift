import Synchronization
import TusLoop
import TusProtocol

/// Creation: what a new upload has to persist, and how few crossings and directory operations it can cost.
///
/// A new upload's first record goes straight to `<id>.info` with `O_EXCL` (nothing older exists to protect, so no
/// temporary file and no rename), after its data file `<id>` when `createsDataFiles`; then, per policy, the
/// record's fdatasync and one directory sync (grouped with concurrent ones) covering both entries. On failure
/// nothing it made is left: a record that exists but was not written whole is unlinked again. A crash before the
/// 201 can still leave a torn `<id>.info`; recovery quarantines it like any unreadable record, and its creation
/// was never acknowledged.
///
/// Under `--fsync none` creations are batched per loop: while a loop's batch is being created, that loop's further
/// creations queue up and its next batch takes them all, so N concurrent POSTs cost far fewer than N
/// loop -> worker -> loop crossings (the first one never waits: a loop with no batch in flight submits at once).
/// The batches of all loops go to one threadpool job at a time (`CreationJob`), which answers each creation on its
/// loop as soon as its files exist (`EventLoop.execute`), not when the batch ends. Why: the kernel serialises
/// creations in one directory anyway (the directory's lock is held across inode allocation, which after mass
/// deletions scans the recently freed inodes: about a millisecond each on ext4 without a journal), so a second job
/// (one per loop, as before) only spun on that lock, and a batch of hundreds answered at its end kept every one of
/// those uploads from sending its body until the last was made: at 1,024 uploads at once the network and the disk
/// idled through the creation phase (bench/results/2026-12-07-many).
/// Under `commit` each creation keeps a job of its own, so that their fdatasyncs run in parallel on the
/// threadpool (and the file system merges their journal commits) instead of one after another in one job.
///
/// With the record log (`RecordLog`, `--records log`) a creation makes only its data file, and a batch's records go
/// to the log in one append.
extension FileStateStore {
    struct Creation {
        let recordPath: String
        let dataPath: String?
        let bytes: [UInt8]
        /// Its error, or nil and the record log's segment that holds its record (nil: `<id>.info`).
        let completion: (StoreError?, Int?) -> Void
    }

    func createRecord(_ record: UploadRecord, loop: EventLoop, completion: @escaping (StoreError?, Int?) -> Void) {
        let creation = Creation(
            recordPath: recordPath(record.id), dataPath: createsDataFiles ? FileDirectory.path(directory, record.id) : nil,
            bytes: record.encodedJSON, completion: completion)
        guard !fsyncPolicy.syncsAtCommit else { return run([creation], loop: loop, queue: nil) }
        let queue = creationQueue(for: loop)
        queue.waiting.append(creation)
        if !queue.isRunning { submit(queue, loop: loop) }
    }

    private func creationQueue(for loop: EventLoop) -> CreationQueue {
        creationQueues.withLock { queues in
            let key = ObjectIdentifier(loop)
            // A queue left by a loop that is gone (and whose address a new loop reuses) starts over.
            if let queue = queues[key], queue.loop === loop { return queue }
            let queue = CreationQueue(loop: loop)
            queues[key] = queue
            return queue
        }
    }

    private func submit(_ queue: CreationQueue, loop: EventLoop) {
        let batch = queue.waiting
        queue.waiting = []
        queue.isRunning = true
        queue.batches += 1
        run(batch, loop: loop, queue: queue)
    }

    /// `batch` on the threadpool: under `commit` (no `queue`) in a job of its own, answered when it ends; otherwise
    /// through the store's creation job, each creation answered as it is made, then the loop's next batch.
    private func run(_ batch: [Creation], loop: EventLoop, queue: CreationQueue?) {
        let files = batch.map { (recordPath: $0.recordPath, dataPath: $0.dataPath, bytes: $0.bytes) }
        let work = creationWork(syncs: fsyncPolicy.syncsAtCommit)
        guard let queue else {
            return loop.runBlocking({ work(files) }, completion: { [self] results in
                for (creation, result) in zip(batch, results) { answer(creation, result) }
            })
        }
        let submits = creationJob.state.withLock { job in
            job.waiting.append(CreationJob.Batch(creations: batch, files: files, loop: loop, queue: queue))
            guard !job.isRunning else { return false }
            job.isRunning = true
            job.jobs += 1
            return true
        }
        guard submits else {
            // The job is another loop's request (or an earlier one of this loop's): nothing of this loop's own would
            // keep it running until the answers come, so a loop told to stop meanwhile would drop them (uploads
            // made, never answered, and their ids held in `creating`). An idle timer holds it until the batch is done.
            queue.keepsLoopRunning = loop.schedule(afterMilliseconds: 24 * 3_600_000) {}
            return
        }
        let creationJob = creationJob
        loop.offload({ [self] in drain(creationJob, work: work) }, completion: {})
    }

    /// The creation job's loop on the threadpool: each waiting batch in turn, one creation at a time (the record
    /// log's batch in one append), each answered on its loop as soon as it is made; after a batch's last answer its
    /// loop submits its next batch. The job ends, under the lock, only with nothing waiting, so a batch handed over
    /// meanwhile is never left without a job.
    private func drain(_ creationJob: CreationJob, work: @escaping CreationWork) {
        while let batch = creationJob.state.withLock({ job -> CreationJob.Batch? in
            guard !job.waiting.isEmpty else {
                job.isRunning = false
                return nil
            }
            return job.waiting.removeFirst()
        }) {
            let groups = logsCreations ? [batch.files.indices] : batch.files.indices.map { $0..<($0 + 1) }
            for group in groups {
                let results = work(Array(batch.files[group]))
                let answered = CreationJob.Answers(creations: Array(batch.creations[group]), results: results)
                batch.loop.execute { [self] in
                    for (creation, result) in zip(answered.creations, answered.results) { answer(creation, result) }
                }
            }
            batch.loop.execute { [self] in
                batch.queue.keepsLoopRunning?.stop()
                batch.queue.keepsLoopRunning = nil
                batch.queue.isRunning = false
                if !batch.queue.waiting.isEmpty { submit(batch.queue, loop: batch.loop) }
            }
        }
    }

    typealias CreationWork = @Sendable ([(recordPath: String, dataPath: String?, bytes: [UInt8])])
        -> [Result<Int?, BlockingFileSystem.Failure>]

    /// The blocking part of creations: their files (or log entries), then, when `syncs`, the directory sync that
    /// makes their entries durable; on that sync's failure every one of them is taken back.
    private func creationWork(syncs: Bool) -> CreationWork {
        let directorySync = directorySync
        let recordLog = logsCreations ? recordLog : nil
        return { files in
            var results: [Result<Int?, BlockingFileSystem.Failure>]
            if let recordLog {
                results = Self.createLogged(files.map { ($0.dataPath ?? "", $0.bytes) }, in: recordLog, syncs: syncs)
            } else {
                results = files.map { file in
                    let failure = Self.createFiles(
                        recordPath: file.recordPath, dataPath: file.dataPath, bytes: file.bytes, syncs: syncs)
                    return failure.map { .failure($0) } ?? .success(nil)
                }
            }
            let created = results.contains { if case .success = $0 { true } else { false } }
            guard syncs, created, let failure = directorySync.sync() else {
                return results
            }
            for (index, file) in files.enumerated() {
                guard case .success(let segment) = results[index] else { continue }
                if let segment, let recordLog, let dataPath = file.dataPath {
                    // Its entry stays in the log; without the data file recovery drops it.
                    _ = BlockingFileSystem.unlink(dataPath)
                    recordLog.releaseDeletingDead(segment)
                } else {
                    Self.removeFiles(recordPath: file.recordPath, dataPath: file.dataPath)
                }
                results[index] = .failure(failure)
            }
            return results
        }
    }

    /// On the creation's loop.
    private func answer(_ creation: Creation, _ result: Result<Int?, BlockingFileSystem.Failure>) {
        switch result {
        case .success(let segment):
            creation.completion(nil, segment)
        case .failure(let failure) where failure.error == .alreadyExists:
            creation.completion(.alreadyExists, nil)
        case .failure(let failure):
            creation.completion(ioError("\(failure.operation) \(failure.path)", failure.error), nil)
        }
    }

    /// Each data file, then the batch's records in one append to the log (synced when `syncs`; the directory sync
    /// that makes the data files' entries durable follows in `run`). Whatever fails takes its data file back: a
    /// log entry without its data file is dropped by recovery.
    private static func createLogged(
        _ files: [(dataPath: String, bytes: [UInt8])], in recordLog: RecordLog, syncs: Bool
    ) -> [Result<Int?, BlockingFileSystem.Failure>] {
        var results = [Result<Int?, BlockingFileSystem.Failure>](repeating: .success(nil), count: files.count)
        var made: [Int] = []
        for (index, file) in files.enumerated() {
            if let failure = BlockingFileSystem.createEmptyFile(file.dataPath) {
                results[index] = .failure(failure)
            } else {
                made.append(index)
            }
        }
        guard !made.isEmpty else { return results }
        var appended = recordLog.append(made.map { files[$0].bytes }, counted: true)
        if syncs, case .success(let segment) = appended, let failure = recordLog.sync(segment) {
            for _ in made { recordLog.releaseDeletingDead(segment) }
            appended = .failure(failure)
        }
        for index in made {
            switch appended {
            case .success(let segment): results[index] = .success(segment)
            case .failure(let failure):
                _ = BlockingFileSystem.unlink(files[index].dataPath)
                results[index] = .failure(failure)
            }
        }
        return results
    }

    /// Data file, then record (fdatasynced when `syncs`); on failure, whatever it made is unlinked again.
    private static func createFiles(
        recordPath: String, dataPath: String?, bytes: [UInt8], syncs: Bool
    ) -> BlockingFileSystem.Failure? {
        if let dataPath, let failure = BlockingFileSystem.createEmptyFile(dataPath) {
            return failure
        }
        guard let failure = BlockingFileSystem.writeFile(recordPath, bytes: bytes, exclusive: true, sync: syncs) else {
            return nil
        }
        // An existing record is another upload's; a record we opened is ours to take back.
        removeFiles(recordPath: failure.operation == "open" ? nil : recordPath, dataPath: dataPath)
        return failure
    }

    private static func removeFiles(recordPath: String?, dataPath: String?) {
        if let recordPath { _ = BlockingFileSystem.unlink(recordPath) }
        if let dataPath { _ = BlockingFileSystem.unlink(dataPath) }
    }
}

/// One loop's creations under `--fsync none`: touched only on that loop's thread (the store's mutex guards only
/// the map that finds it).
final class CreationQueue: @unchecked Sendable {
    weak var loop: EventLoop?
    var waiting: [FileStateStore.Creation] = []
    var isRunning = false
    /// Threadpool jobs submitted (tests, diagnostics).
    var batches = 0
    /// While the batch waits in a creation job this loop did not submit (see `FileStateStore.run`).
    var keepsLoopRunning: Timer?

    init(loop: EventLoop) {
        self.loop = loop
    }
}

/// The store's one creation job under `--fsync none` and the loops' batches waiting for it: shared by the loops
/// (which hand batches over) and the job (which takes them), under `state`'s lock.
final class CreationJob: Sendable {
    /// A loop's batch. Its creations' completions and its queue are touched only on `loop`'s thread.
    struct Batch: @unchecked Sendable {
        let creations: [FileStateStore.Creation]
        let files: [(recordPath: String, dataPath: String?, bytes: [UInt8])]
        let loop: EventLoop
        let queue: CreationQueue
    }

    /// Made creations and their results, carried to their loop.
    struct Answers: @unchecked Sendable {
        let creations: [FileStateStore.Creation]
        let results: [Result<Int?, BlockingFileSystem.Failure>]
    }

    struct State {
        var waiting: [Batch] = []
        var isRunning = false
        /// Threadpool jobs submitted (tests, diagnostics).
        var jobs = 0
    }

    let state = Mutex(State())
}
