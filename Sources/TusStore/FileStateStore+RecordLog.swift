import FoundationEssentials
import TusLoop
import TusProtocol

/// Recovery's side of the record log (`RecordLog`): replay the segments, then compact them into one.
extension Recovery {
    struct ReplayedLog {
        /// The last creation entry of each upload whose last entry is not a removal, and its segment.
        var records: [String: (record: UploadRecord, segment: Int)] = [:]
        /// Uploads whose last entry is a removal.
        var removed: Set<String> = []
        var segments: [Int] = []
        /// Segments that could not be read: kept, and never compacted away (the next start tries again).
        var unreadable: Set<Int> = []
    }

    private struct RemovalEntry: Decodable {
        let removed: String
    }

    /// Every segment in number order, each entry in file order: later entries win.
    mutating func replayLog(names: [String]) -> ReplayedLog {
        var replayed = ReplayedLog()
        replayed.segments = names.compactMap(RecordLog.segmentNumber(ofName:)).sorted()
        let decoder = JSONDecoder()
        for segment in replayed.segments {
            let name = RecordLog.segmentName(segment)
            let bytes: [UInt8]
            switch BlockingFileSystem.readFile(path(name)) {
            case .success(let read): bytes = read
            case .failure(let failure):
                log("FileUploadStore: cannot read \(path(name)) (\(failure.error)); its uploads wait for a restart")
                replayed.unreadable.insert(segment)
                continue
            }
            var skipped = 0
            for line in bytes.split(separator: UInt8(ascii: "\n")) {
                let data = Data(line)
                if let removal = try? decoder.decode(RemovalEntry.self, from: data) {
                    replayed.records[removal.removed] = nil
                    replayed.removed.insert(removal.removed)
                } else if let record = try? decoder.decode(UploadRecord.self, from: data), record.isConsistent {
                    replayed.records[record.id] = (record, segment)
                    replayed.removed.remove(record.id)
                } else {
                    skipped += 1
                }
            }
            if skipped > 0 {
                // A torn append (a crash or a full disk before its creation answered): the entries after it are
                // whole, since each begins on a line of its own.
                log("FileUploadStore: \(path(name)): skipped \(skipped) unreadable entries")
            }
        }
        return replayed
    }

    /// Serves `record` reconciled with its data file, or lists it for repair when a step failed.
    mutating func serve(_ record: UploadRecord, into recovered: inout FileStateStore.Recovered) {
        let id = record.id
        do {
            let (served, failure) = try reconcile(record, rewritingRecord: false)
            recovered.uploads[id] = served.info
            if let failure {
                recovered.repairs[id] = .recover(record)
                log(
                    "FileUploadStore: upload \(id) served at offset \(served.offset), its files repaired before "
                        + "its next change: \(failure)")
            }
        } catch {
            log("FileUploadStore: skipping upload \(id): \(error)")
        }
    }

    /// Leaves at most one segment: the live records (as served) written to a new one, then the old ones deleted,
    /// oldest first (a crash in between leaves a suffix, which replays the same). With creations going to
    /// `<id>.info` files again (`recordsInLog` off), each live record is written as its `<id>.info` instead and
    /// the segments go once all are written. Nothing is deleted when a segment could not be read or a write
    /// failed: the log then stays as it is, with each segment's live entries counted, and is appended to after it.
    mutating func compactLog(
        _ replayed: ReplayedLog, live: [(record: UploadRecord, segment: Int)], recordsInLog: Bool,
        into recovered: inout FileStateStore.Recovered
    ) {
        let next = (replayed.segments.last ?? 0) + 1
        guard !replayed.segments.isEmpty else {
            if recordsInLog { recovered.log = RecordLog(directory: directory, current: next, live: [:]) }
            return
        }
        var compacted: Int?
        var written = replayed.unreadable.isEmpty
        if written && recordsInLog && !live.isEmpty {
            var bytes: [UInt8] = []
            for entry in live {
                bytes.append(UInt8(ascii: "\n"))
                bytes += entry.record.encodedJSON
            }
            let temporaryPath = path(RecordLog.segmentName(next) + ".tmp")
            if let failure = BlockingFileSystem.writeFile(temporaryPath, bytes: bytes, sync: policy.syncsAtCommit)
                ?? BlockingFileSystem.rename(temporaryPath, to: path(RecordLog.segmentName(next)))
            {
                log("FileUploadStore: cannot compact the record log (\(failure)); kept as it is")
                written = false
            } else {
                changedDirectory = true
                compacted = next
            }
        } else if written && !recordsInLog {
            for entry in live {
                if let failure = writeRecord(entry.record) {
                    log("FileUploadStore: cannot move the record log to .info files (\(failure)); kept")
                    written = false
                    break
                }
            }
        }
        // Before any segment goes: the compacted segment's (or the new records') directory entries must outlive
        // the segments they replace.
        if written && policy.syncsAtCommit, let failure = syncDirectory() {
            log("FileUploadStore: cannot sync \(directory) (\(failure)); the record log is kept as it is")
            written = false
        }
        var remaining = replayed.segments
        if written {
            while let oldest = remaining.first {
                if let failure = BlockingFileSystem.unlink(path(RecordLog.segmentName(oldest))) {
                    log("FileUploadStore: cannot remove an old record log segment (\(failure))")
                    break
                }
                changedDirectory = true
                remaining.removeFirst()
            }
        }
        // What stays: the compacted segment with every live entry (older ones that could not be deleted hold
        // nothing live, so the first release deletes them), or the segments as they were, each with its live
        // entries counted (an unreadable one pinned).
        var counts: [Int: Int] = [:]
        for segment in remaining { counts[segment] = replayed.unreadable.contains(segment) ? 1 : 0 }
        for entry in live {
            let segment = compacted ?? entry.segment
            guard counts[segment] != nil || segment == compacted, !recordsWritten.contains(entry.record.id) else {
                continue
            }
            counts[segment, default: 0] += 1
            recovered.logged[entry.record.id] = segment
        }
        if recordsInLog || !counts.isEmpty {
            let current = compacted ?? max((counts.keys.max() ?? 0) + 1, next)
            recovered.log = RecordLog(directory: directory, current: current, live: counts)
        }
    }
}

/// The serving side of the record log: removals and the segments that fall out of use.
extension FileStateStore {
    /// A removal entry first (synced per policy), then `<id>.info` if there is one, then the directory sync as for
    /// any removal: after a crash anywhere past the entry the upload stays removed, before it, it stays whole.
    func removeLogged(
        _ id: String, from recordLog: RecordLog, loop: EventLoop, removed: @escaping () -> Void,
        completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        let recordPath = recordPath(id)
        let syncs = fsyncPolicy.syncsAtCommit
        let directorySync = directorySync
        loop.runBlocking({ () -> BlockingFileSystem.Failure? in
            let segment: Int
            switch recordLog.append(RecordLog.removalEntry(id), counted: false) {
            case .failure(let failure): return failure
            case .success(let appended): segment = appended
            }
            if syncs, let failure = recordLog.sync(segment) { return failure }
            if let failure = BlockingFileSystem.unlink(recordPath) { return failure }
            return syncs ? directorySync.sync() : nil
        }, completion: { [self] failure in
            if let failure {
                return completion(.failure(ioError("\(failure.operation) \(failure.path)", failure.error)))
            }
            removed()
            completion(.success(()))
        })
    }

    /// `id`'s creation entry, if it was its record, no longer is.
    func releaseLogged(_ id: String, loop: EventLoop) {
        guard let segment = state.withLock({ $0.logged.removeValue(forKey: id) }) else { return }
        releaseLogged(segment, loop: loop)
    }

    /// Deletes the segments that hold nothing live any more. Not synced: a segment that comes back after a power
    /// loss holds only records that a later `<id>.info` or removal entry overrides, or whose data file is gone.
    func releaseLogged(_ segment: Int, loop: EventLoop) {
        guard let recordLog else { return }
        for path in recordLog.release(segment) {
            FileSystem.unlink(loop: loop, path: path) { [self] error in
                if let error, error != .notFound { log("FileStateStore: cannot remove \(path): \(error)") }
            }
        }
    }
}
