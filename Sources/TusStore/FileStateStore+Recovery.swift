import FoundationEssentials
import Glibc
import TusProtocol
import TusLoop

/// Startup recovery: synchronous POSIX calls, because it runs once, before any loop serves a request.
extension FileStateStore {
    static func recover(
        directory: String, policy: FsyncPolicy, log: @escaping @Sendable (String) -> Void
    ) throws -> [String: UploadInfo] {
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
        for name in names where name.hasSuffix(".info.tmp") {
            // A record rewrite that crashed before its rename: the old record is still in place.
            recovery.removeFile(name, reason: "leftover temporary record")
        }
        var uploads: [String: UploadInfo] = [:]
        for name in names where name.hasSuffix(".info") {
            let id = String(name.dropLast(".info".count))
            guard let record = recovery.readRecord(id: id) else {
                recovery.quarantine(name)
                continue
            }
            do {
                uploads[id] = try recovery.reconcile(record).info
            } catch {
                log("FileUploadStore: skipping upload \(id): \(error)")
            }
        }
        for name in names where UploadID.isValid(name) {
            if !present.contains(name + ".info") && !present.contains(name + ".info.corrupt") {
                // Left by a crash between the two unlinks of a removal, or mid-creation. Not deleted: the
                // directory might be shared, and a name that merely looks like an id is not proof it is ours.
                log("FileUploadStore: \(directory)/\(name) has no record; ignored")
            }
        }
        if recovery.changedDirectory && policy.syncsAtCommit {
            try recovery.syncDirectory()
        }
        return uploads
    }
}

private struct Recovery {
    let directory: String
    let policy: FsyncPolicy
    let log: @Sendable (String) -> Void
    var changedDirectory = false

    init(directory: String, policy: FsyncPolicy, log: @escaping @Sendable (String) -> Void) {
        self.directory = directory
        self.policy = policy
        self.log = log
    }

    func path(_ name: String) -> String { directory + "/" + name }

    mutating func removeFile(_ name: String, reason: String) {
        if Glibc.unlink(path(name)) == 0 {
            changedDirectory = true
            log("FileUploadStore: removed \(path(name)) (\(reason))")
        } else {
            log("FileUploadStore: cannot remove \(path(name)): \(String(cString: strerror(errno)))")
        }
    }

    /// Renamed rather than deleted: a human may want to look at it, and it no longer ends in `.info`.
    mutating func quarantine(_ name: String) {
        let target = path(name) + ".corrupt"
        if Glibc.rename(path(name), target) == 0 {
            changedDirectory = true
            log("FileUploadStore: unreadable record moved to \(target)")
        } else {
            log("FileUploadStore: unreadable record \(path(name)) (rename failed: \(String(cString: strerror(errno))))")
        }
    }

    func readRecord(id: String) -> UploadRecord? {
        guard UploadID.isValid(id),
            let data = FileManager.default.contents(atPath: path(id + ".info")),
            let record = try? JSONDecoder().decode(UploadRecord.self, from: data),
            record.id == id, record.isConsistent
        else { return nil }
        return record
    }

    /// Makes the data file and the record agree, rewriting whichever has to change; returns the result.
    /// A final's record is the truth on its own: its data file stays empty (the bytes are its part links, made
    /// durable before the record said "complete"), so sizes say nothing about its offset.
    mutating func reconcile(_ record: UploadRecord) throws -> UploadRecord {
        if record.isFinal { return record }
        let dataPath = path(record.id)
        var descriptor = Glibc.open(dataPath, O_RDWR | O_CLOEXEC)
        if descriptor < 0 && errno == ENOENT {
            descriptor = Glibc.open(dataPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if descriptor >= 0 {
                changedDirectory = true
                log("FileUploadStore: \(dataPath) was missing; recreated empty")
            }
        }
        guard descriptor >= 0 else { throw posixError("open \(dataPath)") }
        defer { Glibc.close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw posixError("fstat \(dataPath)") }
        let size = Int64(status.st_size)

        var reconciled = record
        if let discardFrom = record.pendingDiscardFrom {
            reconciled.offset = min(size, discardFrom)
            reconciled.pendingDiscardFrom = nil
        } else {
            reconciled.offset = min(size, record.length ?? .max)
        }
        // A complete upload never expires (`finishingWrite`), and its last PATCH need not have said so on disk.
        if reconciled.offset == reconciled.length { reconciled.expiresAt = nil }
        if size > reconciled.offset {
            guard ftruncate(descriptor, off_t(reconciled.offset)) == 0 else {
                throw posixError("ftruncate \(dataPath)")
            }
            if policy.syncsAtCommit && fdatasync(descriptor) != 0 { throw posixError("fdatasync \(dataPath)") }
            log("FileUploadStore: \(dataPath) truncated from \(size) to \(reconciled.offset) bytes")
        }
        // A record's offset is where it was last written (creation, a discardable write, an expiry change), not
        // where the upload is: a data file with more bytes is the normal case (`finishWrite`), and needs no
        // rewrite. Less data than the record says, or a discard mark to clear, is news.
        if reconciled.offset < record.offset {
            log("FileUploadStore: upload \(record.id) offset \(record.offset) -> \(reconciled.offset) from its data")
        }
        if reconciled.offset < record.offset || reconciled.pendingDiscardFrom != record.pendingDiscardFrom {
            try writeRecord(reconciled)
        }
        return reconciled
    }

    /// The same tmp + rename dance as the loop path (`persist`), with the same blocking calls, run here on the
    /// starting thread; one directory fsync covers every rewrite (`syncDirectory`).
    mutating func writeRecord(_ record: UploadRecord) throws {
        let temporaryPath = path(record.id + ".info.tmp")
        if let failure = BlockingFileSystem.writeFile(temporaryPath, bytes: record.encodedJSON, sync: policy.syncsAtCommit) {
            throw storeError(failure)
        }
        if let failure = BlockingFileSystem.rename(temporaryPath, to: path(record.id + ".info")) {
            throw storeError(failure)
        }
        changedDirectory = true
    }

    func syncDirectory() throws {
        if let failure = BlockingFileSystem.syncDirectory(directory) { throw storeError(failure) }
    }

    private func storeError(_ failure: BlockingFileSystem.Failure) -> StoreError {
        .io("\(failure.operation) \(failure.path): \(failure.error)")
    }

    private func posixError(_ what: String) -> StoreError {
        .io("\(what): \(String(cString: strerror(errno)))")
    }
}
