import FoundationEssentials
import TusCore
import TusProtocol
import TusLoop

/// Startup recovery: synchronous calls (`BlockingFileSystem`), because it runs once, before any loop serves a
/// request.
///
/// A step that fails (a full disk, an I/O error) does not hide an upload whose record could be read: it is served
/// as far as its state is known, and listed in `PendingRepair` so its files are brought in line before its next
/// change (issue 21). Only an unreadable record, or a missing data file that cannot be recreated, leaves an upload
/// out, and the next start tries again.
extension FileStateStore {
    /// What recovery found: the uploads to serve, those to repair first, and the record log's state.
    struct Recovered {
        var uploads: [String: UploadInfo] = [:]
        var repairs: [String: PendingRepair] = [:]
        /// Uploads whose record is a creation entry of a log segment (no `<id>.info`), and which segment.
        var logged: [String: Int] = [:]
        /// The log to keep appending to, when creations go to it or segments are left on disk.
        var log: RecordLog?
    }

    static func recover(
        directory: String, policy: FsyncPolicy, recordsInLog: Bool, log: @escaping @Sendable (String) -> Void
    ) throws -> Recovered {
        let fileManager = FileManager.default
        let names: [String]
        do {
            try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
            names = try fileManager.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw StoreError.io("upload directory \(directory): \(error)")
        }
        let present = Set(names)
        var recovery = Recovery(directory: directory, policy: policy, log: log)
        for name in names where name.hasSuffix(".info.tmp") || name.hasSuffix(".log.tmp") {
            // A record rewrite (or a log compaction) that crashed before its rename: the old one is still in place.
            recovery.removeFile(name, reason: "leftover temporary record")
        }
        var replayed = recovery.replayLog(names: names)
        var recovered = Recovered()
        for name in names where name.hasSuffix(".info") {
            let id = String(name.dropLast(".info".count))
            if replayed.removed.contains(id) {
                // A removal logged its entry and crashed before unlinking the record.
                recovery.removeFile(name, reason: "record of a removed upload")
                continue
            }
            // Every change after creation is written to `<id>.info`: newer than the log's creation entry.
            replayed.records[id] = nil
            let record: UploadRecord
            do {
                guard let readable = try recovery.readRecord(id: id) else {
                    recovery.quarantine(name)
                    continue
                }
                record = readable
            } catch {
                // Not quarantined: the record may be fine and the next start able to read it.
                log("FileUploadStore: skipping upload \(id) until a restart can read its record: \(error)")
                continue
            }
            recovery.serve(record, into: &recovered)
        }
        var fromLog: [(record: UploadRecord, segment: Int)] = []
        for (id, entry) in replayed.records.sorted(by: { $0.key < $1.key }) {
            // The data file is made before the entry and removed after the removal entry: without it, the upload
            // was deleted outside the server (as operators delete processed uploads), or its creation never
            // answered.
            if case .failure(let failure) = BlockingFileSystem.size(of: recovery.path(id)), failure.error == .notFound {
                log("FileUploadStore: upload \(id) has a log record but no data file; dropped")
                continue
            }
            recovery.serve(entry.record, into: &recovered)
            guard let served = recovered.uploads[id], !recovery.recordsWritten.contains(id) else { continue }
            fromLog.append((UploadRecord(served), entry.segment))
        }
        for name in names where UploadID.isValid(name) {
            let hasRecord =
                (present.contains(name + ".info") && !replayed.removed.contains(name))
                || present.contains(name + ".info.corrupt") || replayed.records[name] != nil
            if !hasRecord {
                // Left by a crash between the two unlinks of a removal, or mid-creation. Not deleted: the
                // directory might be shared, and a name that merely looks like an id is not proof it is ours.
                log("FileUploadStore: \(directory)/\(name) has no record; ignored")
            }
        }
        recovery.compactLog(replayed, live: fromLog, recordsInLog: recordsInLog, into: &recovered)
        if recovery.changedDirectory && policy.syncsAtCommit, let failure = recovery.syncDirectory() {
            // Not fatal: every change recovery made is one the next start would make again from what is durable
            // (removals, quarantines, re-created empty files, records rewritten from their data), and the next
            // record write of each upload syncs the directory itself.
            log("FileUploadStore: \(failure); recovery's changes to the directory may not be durable yet")
        }
        return recovered
    }

    /// Brings an upload listed in `state.repairs` in line before a change to it runs; `retry` then runs that
    /// change again (the entry is gone), or `completion` gets the repair's error (507 for a full disk).
    ///
    /// Why before the next change rather than on a timer: until the upload changes, its files recover to what
    /// memory serves (the record on disk plus its data, reconciled again), so nothing is at risk; the first change
    /// is what would build on a stale record (a commit clearing a `pendingDiscardFrom` over bytes still waiting to
    /// be cut, say). A timer would only retry writes against a disk that is still full.
    /// Returns false (and does nothing) when the upload needs no repair.
    func repairingFirst<Success>(
        _ id: String, on executor: any LoopExecutor,
        failing completion: @escaping (Result<Success, StoreError>) -> Void, retry: @escaping () -> Void
    ) -> Bool {
        let pending = state.withLock { state -> (PendingRepair, UploadInfo)? in
            guard let repair = state.repairs[id], let info = state.index.uploads[id] else { return nil }
            return (repair, info)
        }
        guard let (repair, info) = pending else { return false }
        let basis: UploadRecord
        switch repair {
        case .recover(let record): basis = record
        case .matchMemory: basis = UploadRecord(info, pendingDiscardFrom: info.isFinal ? nil : info.offset)
        }
        let directory = directory
        let policy = fsyncPolicy
        let log = log
        executor.eventLoop.runBlocking({ () -> Result<UploadRecord, BlockingFileSystem.Failure> in
            var recovery = Recovery(directory: directory, policy: policy, log: log)
            do throws(BlockingFileSystem.Failure) {
                let (repaired, failure) = try recovery.reconcile(basis, rewritingRecord: true)
                if let failure { return .failure(failure) }
                if policy.syncsAtCommit, let failure = recovery.syncDirectory() { return .failure(failure) }
                return .success(repaired)
            } catch {
                return .failure(error)
            }
        }, completion: { [self] result in
            switch result {
            case .failure(let failure):
                let what = "repairing upload \(id): \(failure.operation) \(failure.path)"
                completion(.failure(ioError(what, failure.error)))
            case .success(let repaired):
                state.withLock { state in
                    state.repairs[id] = nil
                    // The rewritten record carries no discard mark, so the next `finishWrite` need not clear one.
                    state.discardPending.remove(id)
                    if state.index.uploads[id] != nil { state.index.uploads[id] = repaired.info }
                }
                releaseLogged(id, loop: executor.eventLoop)
                log("FileStateStore: upload \(id) repaired: record rewritten at offset \(repaired.offset)")
                retry()
            }
        })
        return true
    }
}

/// Why an upload's files may not say what memory serves, and what bringing them in line starts from.
enum PendingRepair: Sendable, Equatable {
    /// Recovery could not finish with this upload: reconcile this record (the one on disk) again, as a start would.
    case recover(UploadRecord)
    /// A record write failed while serving: the old or the new record may be on disk, and a commit's data file may
    /// hold bytes past the offset. Memory is the truth: cut the data to its offset and write its record.
    case matchMemory
}

/// One pass over the directory's files, on the starting thread or (repairs) in one threadpool job.
struct Recovery {
    let directory: String
    let policy: FsyncPolicy
    let log: @Sendable (String) -> Void
    var changedDirectory = false
    /// Uploads whose record this pass wrote as `<id>.info` (it is no longer the log's entry).
    var recordsWritten: Set<String> = []

    init(directory: String, policy: FsyncPolicy, log: @escaping @Sendable (String) -> Void) {
        self.directory = directory
        self.policy = policy
        self.log = log
    }

    func path(_ name: String) -> String { FileDirectory.path(directory, name) }

    mutating func removeFile(_ name: String, reason: String) {
        if let failure = BlockingFileSystem.unlink(path(name)) {
            log("FileUploadStore: cannot remove \(path(name)): \(failure.error)")
        } else {
            changedDirectory = true
            log("FileUploadStore: removed \(path(name)) (\(reason))")
        }
    }

    /// Renamed rather than deleted: a human may want to look at it, and it no longer ends in `.info`.
    mutating func quarantine(_ name: String) {
        let target = path(name) + ".corrupt"
        if let failure = BlockingFileSystem.rename(path(name), to: target) {
            log("FileUploadStore: unreadable record \(path(name)) (rename failed: \(failure.error))")
        } else {
            changedDirectory = true
            log("FileUploadStore: unreadable record moved to \(target)")
        }
    }

    /// nil for a record that reads but makes no sense (torn, wrong id, inconsistent numbers); throws when reading
    /// fails, which says nothing about the record.
    func readRecord(id: String) throws(BlockingFileSystem.Failure) -> UploadRecord? {
        guard UploadID.isValid(id) else { return nil }
        let bytes = try BlockingFileSystem.readFile(path(id + ".info")).get()
        guard let record = try? JSONDecoder().decode(UploadRecord.self, from: Data(bytes)),
            record.id == id, record.isConsistent
        else { return nil }
        return record
    }

    /// Makes the data file and the record agree: cuts the data back to the offset the record allows and writes the
    /// reconciled record when the data is shorter than the record says or a discard mark must go (or always, with
    /// `rewritingRecord`). Returns the record to serve and, when a step failed, that step's failure: what is
    /// returned is then as far as the upload's state is known (the record's offset and no expiry when its data
    /// could not be measured), and the files still recover to it.
    /// Throws only when the upload cannot be served: its data file is missing and cannot be made.
    ///
    /// A final's record is the truth on its own: its data file stays empty (the bytes are its part links, made
    /// durable before the record said "complete"), so sizes say nothing about its offset.
    mutating func reconcile(
        _ record: UploadRecord, rewritingRecord: Bool
    ) throws(BlockingFileSystem.Failure) -> (UploadRecord, BlockingFileSystem.Failure?) {
        var reconciled = record
        reconciled.pendingDiscardFrom = nil
        if !record.isFinal {
            reconciled.offset = record.pendingDiscardFrom ?? record.offset
            let dataPath = path(record.id)
            let size: Int64
            switch BlockingFileSystem.size(of: dataPath) {
            case .success(let measured):
                size = measured
            case .failure(let failure) where failure.error == .notFound:
                if let failure = BlockingFileSystem.writeFile(dataPath, bytes: [], exclusive: true, sync: false) {
                    throw failure
                }
                changedDirectory = true
                log("FileUploadStore: \(dataPath) was missing; recreated empty")
                size = 0
            case .failure(let failure):
                // Served at the record's offset until the repair measures the data. With no record written by a
                // plain PATCH (`finishWrite`), that can be below what was acknowledged: accepted, since nothing is
                // lost. A PATCH at either offset first repairs (507/500 while the data stays unmeasurable), then
                // runs against the measured offset, so a client behind it gets 409 and a HEAD with the truth.
                // The expiry is dropped, though: the last PATCH of a complete upload need not have written its
                // record, so the record's expiry may belong to an upload that is complete, and expiring on a guess
                // would delete acknowledged data. The repair (or the next start) restores it from the record.
                reconciled.expiresAt = nil
                return (reconciled, failure)
            }
            reconciled.offset = min(size, record.pendingDiscardFrom ?? record.length ?? .max)
            // A repair cuts (and syncs) even when the size is right: the cut it follows up may be the one whose
            // fdatasync failed, and the record about to say "no discard pending" must not outlive it.
            if size > reconciled.offset || rewritingRecord {
                let sync = policy.syncsAtCommit
                if let failure = BlockingFileSystem.truncate(dataPath, to: reconciled.offset, sync: sync) {
                    return (reconciled, failure)
                }
                if size > reconciled.offset {
                    log("FileUploadStore: \(dataPath) truncated from \(size) to \(reconciled.offset) bytes")
                }
            }
            if reconciled.offset < record.offset {
                log(
                    "FileUploadStore: upload \(record.id) offset \(record.offset) -> \(reconciled.offset) from its data")
            }
        }
        // A complete upload never expires (`finishingWrite`), and its last PATCH need not have said so on disk. A draft
        // upload that holds all its bytes but still awaits its completing request is not complete: it keeps its
        // expiry, or a restart would let it live forever.
        if reconciled.offset == reconciled.length, reconciled.awaitsCompletion != true { reconciled.expiresAt = nil }
        // A record's offset is where it was last written (creation, a discardable write, an expiry change), not
        // where the upload is: a data file with more bytes is the normal case (`finishWrite`), and needs no
        // rewrite. Less data than the record says, or a discard mark to clear, is news.
        let isNews = reconciled.offset < record.offset || reconciled.pendingDiscardFrom != record.pendingDiscardFrom
        if isNews || rewritingRecord, let failure = writeRecord(reconciled) {
            return (reconciled, failure)
        }
        return (reconciled, nil)
    }

    /// The same tmp + rename dance as the loop path (`persist`), with the same blocking calls; one directory fsync
    /// covers every rewrite (`syncDirectory`).
    mutating func writeRecord(_ record: UploadRecord) -> BlockingFileSystem.Failure? {
        let temporaryPath = path(record.id + ".info.tmp")
        let sync = policy.syncsAtCommit
        if let failure = BlockingFileSystem.writeFile(temporaryPath, bytes: record.encodedJSON, sync: sync) {
            return failure
        }
        if let failure = BlockingFileSystem.rename(temporaryPath, to: path(record.id + ".info")) { return failure }
        changedDirectory = true
        recordsWritten.insert(record.id)
        return nil
    }

    func syncDirectory() -> BlockingFileSystem.Failure? {
        BlockingFileSystem.syncDirectory(directory)
    }
}
