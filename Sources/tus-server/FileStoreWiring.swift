import ArgumentParser
import Logging
import TusProtocol
import TusStore

enum FsyncFlag: String, ExpressibleByArgument, CaseIterable {
    case none, commit, always
}

/// Opens (and recovers) the upload directory before the server accepts anything.
func makeFileStore(directory: String, fsync: FsyncFlag, logger: Logger) throws -> any UploadStore {
    let policy = FsyncPolicy(rawValue: fsync.rawValue) ?? .commit
    return try FileUploadStore(directory: directory, fsync: policy, log: { logger.warning("\($0)") })
}
