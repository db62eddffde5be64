public import TusProtocol

/// The embedded default: records and data as files in one directory (`<id>.info` + `<id>`), restart-safe.
public typealias FileUploadStore = ComposedUploadStore<FileStateStore, FileDataStore>

extension ComposedUploadStore where State == FileStateStore, Data == FileDataStore {
    /// Opens (creating it if needed) and recovers `directory`; synchronous, so call it before serving.
    /// See `FileStateStore` for recovery and `FsyncPolicy` for durability; `recordsInLog`: new uploads' records go
    /// to `records.<n>.log` instead of `<id>.info` files (`RecordLog`); `watchesRemovals`: uploads whose data file is
    /// deleted outside the server answer 404 at once, HEAD included (`FileStateStore.watchRemovals`, one inotify
    /// instance and thread per store, so off by default for the many stores tests open); either way the next open of a
    /// missing data file forgets the upload.
    public convenience init(
        directory: String, fsync: FsyncPolicy = .commit, rememberedGoneIDs: Int = 100_000, recordsInLog: Bool = false,
        watchesRemovals: Bool = false, log: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        let state = try FileStateStore(
            directory: directory, fsync: fsync, rememberedGoneIDs: rememberedGoneIDs, createsDataFiles: true,
            recordsInLog: recordsInLog, log: log)
        let data = try FileDataStore(
            directory: directory, fsync: fsync, filesCreatedByRecords: true, log: log,
            onVanished: { [weak state] id, executor in state?.dataFileVanished(id, on: executor) })
        if watchesRemovals { state.watchRemovals() }
        self.init(state: state, data: data)
    }

    public var directory: String { state.directory }

    /// Synchronous views of the in-memory index (tests, diagnostics).
    public func lookup(_ id: String) -> UploadLookup { state.lookup(id) }
    public func listExpired(now: Int64) -> [String] { state.listExpired(now: now) }
}
