/// How hard `FileUploadStore` works to keep acknowledged bytes across a crash.
///
/// Whatever the policy, an acknowledged record (`<id>.info`) is never torn: a change is written whole to
/// `<id>.info.tmp` and renamed over the old one (a creation writes the final name with `O_EXCL`, and a crash before
/// its 201 may leave a torn record that recovery quarantines), and recovery reconciles the record with the data
/// file at startup (see `FileUploadStore`).
public enum FsyncPolicy: String, Sendable, CaseIterable {
    /// Never fsync. Every completed store operation has handed its bytes to the kernel, so a crash of the
    /// *process* (kill -9, OOM kill, a trap) loses nothing that was acknowledged: the page cache still reaches
    /// the disk. Power loss or a kernel crash may lose acknowledged bytes and revert records to older versions.
    /// Fastest; fine for tests, caches and disposable uploads.
    case none
    /// The default. At each creation, length declaration, PATCH commit and rollback: `fdatasync` the data file,
    /// and whenever the record is written, `fdatasync` it (the temp file, before renaming it into place) and fsync
    /// the directory after the creation or rename (neither is otherwise durable; concurrent ones share an fsync,
    /// `DirectorySyncGroup`). So every response the client received (201 for a
    /// creation, 204 with `Upload-Offset` for a PATCH, 204 for termination) survives power loss. Bytes a HEAD
    /// saw during a still-running (non-checksummed) PATCH are not yet synced: after power loss they are kept only
    /// as far as the file system wrote them. So that the commit's fdatasync does not have to write a whole large
    /// PATCH after its last byte, writers start writeback every few MiB while the bytes arrive (`FileDataWriter`);
    /// that only moves disk writes earlier and promises nothing more.
    case commit
    /// `commit`, plus an `fdatasync` after every write before it is reported complete, so the progress a HEAD
    /// shows during a PATCH is durable too. One sync per body chunk: slow on anything but battery-backed disks.
    case always

    var syncsAtCommit: Bool { self != .none }
    var syncsEachWrite: Bool { self == .always }
}
