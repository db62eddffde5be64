import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Logging
import TusProtocol
import TusStore

enum FsyncFlag: String, ExpressibleByArgument, CaseIterable {
    case none, commit, always
}

enum RecordsFlag: String, ExpressibleByArgument, CaseIterable {
    case files, log
}

/// Opens (and recovers) the upload directory before the server accepts anything.
func makeFileStore(
    directory: String, fsync: FsyncFlag, records: RecordsFlag, logger: Logger
) throws -> any UploadStore {
    let policy = FsyncPolicy(rawValue: fsync.rawValue) ?? .commit
    return try FileUploadStore(
        directory: directory, fsync: policy, recordsInLog: records == .log, watchesRemovals: true,
        log: { logger.warning("\($0)") })
}

/// `statvfs` of the upload directory, for `--min-free-space`: blocks available to unprivileged users (what an
/// upload can still use), not the root-reserved ones. A local `statvfs` takes microseconds, so calling it on the
/// loop thread once per POST costs nothing measurable.
func diskSpace(of directory: String) -> DiskSpace? {
    var stats = statvfs()
    guard statvfs(directory, &stats) == 0 else { return nil }
    let unit = Int64(stats.f_frsize)
    return DiskSpace(available: Int64(stats.f_bavail) * unit, total: Int64(stats.f_blocks) * unit)
}
