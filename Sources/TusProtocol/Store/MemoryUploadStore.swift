import TusHTTP1
import Synchronization

/// Uploads in RAM: for tests and `--store memory`. Everything is lost at exit.
///
/// Synchronization boundary: all state sits behind one `Mutex`, because loops on several threads share the
/// store. Completions run synchronously on the caller's thread, outside the mutex.
public final class MemoryUploadStore: UploadStore {
    private struct Entry {
        var info: UploadInfo
        var data: [UInt8]
    }

    private struct State {
        var uploads: [String: Entry] = [:]
        var gone: Set<String> = []
    }

    private let state = Mutex(State())
    public let capabilities: UploadStoreCapabilities

    public init(capabilities: UploadStoreCapabilities = .all) {
        self.capabilities = capabilities
    }

    public func lookup(_ id: String) -> UploadLookup {
        state.withLock { state in
            if let entry = state.uploads[id] { return .found(entry.info) }
            return state.gone.contains(id) ? .gone : .notFound
        }
    }

    /// Test access to the stored bytes, including uncommitted ones.
    public func storedBytes(_ id: String) -> [UInt8]? {
        state.withLock { $0.uploads[id]?.data }
    }

    public func create(_ info: UploadInfo, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        let result: Result<UploadInfo, StoreError> = state.withLock { state in
            if state.uploads[info.id] != nil || state.gone.contains(info.id) { return .failure(.alreadyExists) }
            var info = info
            info.offset = 0
            state.uploads[info.id] = Entry(info: info, data: [])
            return .success(info)
        }
        completion(result)
    }

    public func declareLength(
        id: String, length: Int64, completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        let result: Result<UploadInfo, StoreError> = state.withLock { state in
            guard var entry = state.uploads[id] else { return .failure(state.gone.contains(id) ? .gone : .notFound) }
            guard entry.info.length == nil else { return .failure(.lengthAlreadySet) }
            guard length >= entry.info.offset else { return .failure(.exceedsLength) }
            entry.info.length = length
            state.uploads[id] = entry
            return .success(entry.info)
        }
        completion(result)
    }

    public func openWriter(
        id: String, startingAt offset: Int64, discardable: Bool,
        completion: @escaping (Result<any UploadWriter, StoreError>) -> Void
    ) {
        let result: Result<any UploadWriter, StoreError> = state.withLock { state in
            guard let entry = state.uploads[id] else { return .failure(state.gone.contains(id) ? .gone : .notFound) }
            guard entry.info.offset == offset, Int64(entry.data.count) == offset else { return .failure(.io("offset moved")) }
            return .success(Writer(store: self, id: id, start: offset, discardable: discardable))
        }
        completion(result)
    }

    public func remove(id: String, reason: UploadRemovalReason, completion: @escaping (Result<Void, StoreError>) -> Void) {
        let result: Result<Void, StoreError> = state.withLock { state in
            guard state.uploads.removeValue(forKey: id) != nil else {
                return .failure(state.gone.contains(id) ? .gone : .notFound)
            }
            state.gone.insert(id)
            return .success(())
        }
        completion(result)
    }

    public func openReader(id: String, completion: @escaping (Result<any UploadReader, StoreError>) -> Void) {
        let exists = state.withLock { $0.uploads[id] != nil }
        completion(exists ? .success(Reader(store: self, id: id)) : .failure(.notFound))
    }

    public func listExpired(now: Int64) -> [String] {
        state.withLock { state in
            state.uploads.values.compactMap { entry in
                guard !entry.info.isComplete, let expiresAt = entry.info.expiresAt, expiresAt <= now else { return nil }
                return entry.info.id
            }.sorted()
        }
    }

    // MARK: Writer and reader

    private final class Writer: UploadWriter {
        let store: MemoryUploadStore
        let id: String
        let start: Int64
        let discardable: Bool
        private var finished = false

        init(store: MemoryUploadStore, id: String, start: Int64, discardable: Bool) {
            self.store = store
            self.id = id
            self.start = start
            self.discardable = discardable
        }

        func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void) {
            precondition(!finished, "write after commit/rollback")
            let result: Result<Int64, StoreError> = store.state.withLock { state in
                guard var entry = state.uploads[id] else { return .failure(.notFound) }
                let newCount = Int64(entry.data.count) + Int64(fragment.count)
                if let length = entry.info.length, newCount > length { return .failure(.exceedsLength) }
                entry.data.append(contentsOf: fragment.bytes)
                if !discardable { entry.info.offset = newCount }
                state.uploads[id] = entry
                return .success(newCount)
            }
            completion(result)
        }

        func commit(expiresAt: Int64?, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
            precondition(!finished, "commit twice")
            finished = true
            let result: Result<UploadInfo, StoreError> = store.state.withLock { state in
                guard var entry = state.uploads[id] else { return .failure(.notFound) }
                entry.info.offset = Int64(entry.data.count)
                entry.info.expiresAt = entry.info.isComplete ? nil : expiresAt
                state.uploads[id] = entry
                return .success(entry.info)
            }
            completion(result)
        }

        func rollback(completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
            precondition(!finished, "rollback after finish")
            finished = true
            let result: Result<UploadInfo, StoreError> = store.state.withLock { state in
                guard var entry = state.uploads[id] else { return .failure(.notFound) }
                entry.data.removeSubrange(Int(start)...)
                entry.info.offset = start
                state.uploads[id] = entry
                return .success(entry.info)
            }
            completion(result)
        }
    }

    private final class Reader: UploadReader {
        let store: MemoryUploadStore
        let id: String

        init(store: MemoryUploadStore, id: String) {
            self.store = store
            self.id = id
        }

        func read(at offset: Int64, maxLength: Int, completion: @escaping (Result<BodyFragment, StoreError>) -> Void) {
            let result: Result<BodyFragment, StoreError> = store.state.withLock { state in
                guard let entry = state.uploads[id] else { return .failure(.gone) }
                let start = Int(clamping: min(offset, Int64(entry.data.count)))
                let end = min(entry.data.count, start + maxLength)
                return .success(BodyFragment(copying: Array(entry.data[start..<end])))
            }
            completion(result)
        }

        func close() {}
    }
}
