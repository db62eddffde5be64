public import TusProtocol

/// The embedded default: records and data as files in one directory (`<id>.info` + `<id>`), restart-safe.
public typealias FileUploadStore = ComposedUploadStore<FileStateStore, FileDataStore>

extension ComposedUploadStore where State == FileStateStore, Data == FileDataStore {
    /// Opens (creating it if needed) and recovers `directory`; synchronous, so call it before serving.
    /// See `FileStateStore` for recovery and `FsyncPolicy` for durability; `recordsInLog`: new uploads' records go
    /// to `records.<n>.log` instead of `<id>.info` files (`RecordLog`).
    public convenience init(
        directory: String, fsync: FsyncPolicy = .commit, rememberedGoneIDs: Int = 100_000, recordsInLog: Bool = false,
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        let state = try FileStateStore(
            directory: directory, fsync: fsync, rememberedGoneIDs: rememberedGoneIDs, createsDataFiles: true,
            recordsInLog: recordsInLog, log: log)
        let data = try FileDataStore(directory: directory, fsync: fsync, filesCreatedByRecords: true, log: log)
        self.init(state: state, data: data)
    }

    public var directory: String { state.directory }

    /// Synchronous views of the in-memory index (tests, diagnostics).
    public func lookup(_ id: String) -> UploadLookup { state.lookup(id) }
    public func listExpired(now: Int64) -> [String] { state.listExpired(now: now) }
}
