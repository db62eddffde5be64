public import TusCore
import TusHTTP1
import Synchronization

/// Uploads in RAM: for tests and `--store memory`. Everything is lost at exit.
public typealias MemoryUploadStore = ComposedUploadStore<MemoryStateStore, MemoryDataStore>

extension ComposedUploadStore where State == MemoryStateStore, Data == MemoryDataStore {
    /// `capabilities` can only take away what the parts can do (tests of servers without termination).
    public convenience init(capabilities: UploadStoreCapabilities = .all) {
        self.init(state: MemoryStateStore(), data: MemoryDataStore(), disabled: UploadStoreCapabilities.all.subtracting(capabilities))
    }

    /// Test access to the stored bytes, including uncommitted ones.
    public func storedBytes(_ id: String) -> [UInt8]? { data.storedBytes(id) }

    /// Synchronous views for tests.
    public func lookup(_ id: String) -> UploadLookup { state.lookup(id) }
    public func listExpired(now: Int64) -> [String] { state.listExpired(now: now) }
}

/// Records in RAM. Synchronization boundary: one `Mutex`, because loops on several threads share it.
/// Completions run synchronously on the caller's thread, outside the mutex.
public final class MemoryStateStore: UploadStateStore {
    private let state: Mutex<UploadIndex>
    /// `.everyWrite`, or what a shared store does, for tests of the checkpoint path without one.
    public let progressPolicy: UploadProgressPolicy

    public init(rememberedGoneIDs: Int = 100_000, progressPolicy: UploadProgressPolicy = .everyWrite) {
        state = Mutex(UploadIndex(rememberedGoneIDs: rememberedGoneIDs))
        self.progressPolicy = progressPolicy
    }

    public func lookup(_ id: String) -> UploadLookup { state.withLock { $0.lookup(id) } }

    public func listExpired(now: Int64) -> [String] { state.withLock { $0.expired(now: now) } }

    public func lookup(
        _ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void
    ) {
        completion(.success(lookup(id)))
    }

    public func create(
        _ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        completion(
            state.withLock { state in
                if state.isTaken(info.id) { return .failure(.alreadyExists) }
                state.uploads[info.id] = info
                return .success(info)
            })
    }

    public func declareLength(
        id: String, length: Int64, completing: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        completion(
            update(id) { info in
                switch info.declaringLength(length, completing: completing) {
                case .failure(let error): return error
                case .success(let declared):
                    info = declared
                    return nil
                }
            })
    }

    public func beginWrite(
        id: String, at offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        completion(update(id) { info in info.offset == offset ? nil : .conflict })
    }

    public func recordProgress(
        id: String, offset: Int64, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void
    ) {
        let result = update(id) { info in
            info.offset = offset
            return nil
        }
        if case .failure(let error) = result { return completion(error) }
        completion(nil)
    }

    public func finishWrite(
        id: String, offset: Int64, expiry: ExpiryUpdate, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        completion(
            update(id) { info in
                info = info.finishingWrite(at: offset, expiry: expiry)
                return nil
            })
    }

    public func remove(
        id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        completion(
            state.withLock { state in
                guard state.uploads[id] != nil else { return .failure(state.missing(id)) }
                state.remove(id)
                return .success(())
            })
    }

    public func listExpired(
        now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        completion(.success(listExpired(now: now)))
    }

    public func completeFinal(
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        completion(
            update(id) { info in
                guard info.isFinal else { return .conflict }
                info.length = length
                info.offset = length
                info.expiresAt = nil
                return nil
            })
    }

    /// A scan: the memory store serves tests and demos.
    public func finals(
        referencing partialID: String, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        completion(.success(state.withLock { state in
            state.uploads.values.filter { $0.partialIDs.contains(partialID) }.map(\.id).sorted()
        }))
    }

    /// Applies `change` under the mutex; it returns an error to leave the record untouched.
    private func update(_ id: String, _ change: (inout UploadInfo) -> StoreError?) -> Result<UploadInfo, StoreError> {
        state.withLock { state in
            guard var info = state.uploads[id] else { return .failure(state.missing(id)) }
            if let error = change(&info) { return .failure(error) }
            state.uploads[id] = info
            return .success(info)
        }
    }
}

/// Bytes in RAM, behind one `Mutex`; completions run synchronously.
public final class MemoryDataStore: TruncatingUploadDataStore, ConcatenatingUploadDataStore {
    private let uploads = Mutex<[String: [UInt8]]>([:])

    public init() {}

    public func storedBytes(_ id: String) -> [UInt8]? { uploads.withLock { $0[id] } }

    public func create(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        completion(
            uploads.withLock { uploads in
                guard uploads[id] == nil else { return .alreadyExists }
                uploads[id] = []
                return nil
            })
    }

    public func openTruncatableWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any TruncatableUploadDataWriter, StoreError>) -> Void
    ) {
        let exists = uploads.withLock { uploads -> Bool in
            guard var bytes = uploads[id] else { return false }
            // Bytes past the recorded offset were never acknowledged: the new write replaces them.
            if Int64(bytes.count) > offset { bytes.removeSubrange(Int(offset)...) }
            uploads[id] = bytes
            return Int64(bytes.count) == offset
        }
        guard exists else { return completion(.failure(.notFound)) }
        completion(.success(Writer(store: self, id: id, length: length)))
    }

    public func openReader(
        id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void
    ) {
        let exists = uploads.withLock { $0[id] != nil }
        completion(exists ? .success(Reader(store: self, id: id)) : .failure(.notFound))
    }

    public func remove(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        uploads.withLock { _ = $0.removeValue(forKey: id) }
        completion(nil)
    }

    /// A copy: RAM has nothing to share bytes by reference across removals (tests and demos only).
    public func concatenate(
        id: String, parts: [String], lengths: [Int64], on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void
    ) {
        completion(
            uploads.withLock { uploads in
                guard uploads[id] != nil else { return .notFound }
                var joined: [UInt8] = []
                for (part, length) in zip(parts, lengths) {
                    guard let bytes = uploads[part], Int64(bytes.count) == length else { return .gone }
                    joined += bytes
                }
                uploads[id] = joined
                return nil
            })
    }

    private final class Writer: TruncatableUploadDataWriter {
        let store: MemoryDataStore
        let id: String
        let length: Int64?

        init(store: MemoryDataStore, id: String, length: Int64?) {
            self.store = store
            self.id = id
            self.length = length
        }

        func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void) {
            completion(
                store.uploads.withLock { uploads in
                    guard var bytes = uploads[id] else { return .failure(.notFound) }
                    let end = Int64(bytes.count) + Int64(fragment.count)
                    if let length, end > length { return .failure(.exceedsLength) }
                    bytes.append(contentsOf: fragment.bytes)
                    uploads[id] = bytes
                    return .success(end)
                })
        }

        func sync(completion: @escaping (Result<Int64, StoreError>) -> Void) {
            let count = store.uploads.withLock { $0[id]?.count }
            completion(count.map { .success(Int64($0)) } ?? .failure(.notFound))
        }

        func truncate(to offset: Int64, completion: @escaping (StoreError?) -> Void) {
            completion(
                store.uploads.withLock { uploads in
                    guard var bytes = uploads[id] else { return .notFound }
                    if Int64(bytes.count) > offset { bytes.removeSubrange(Int(offset)...) }
                    uploads[id] = bytes
                    return nil
                })
        }

        func close() {}
    }

    private final class Reader: UploadReader {
        let store: MemoryDataStore
        let id: String

        init(store: MemoryDataStore, id: String) {
            self.store = store
            self.id = id
        }

        func read(at offset: Int64, maxLength: Int, completion: @escaping (Result<BodyFragment, StoreError>) -> Void) {
            let result: Result<BodyFragment, StoreError> = store.uploads.withLock { uploads in
                guard let bytes = uploads[id] else { return .failure(.gone) }
                let start = Int(clamping: min(offset, Int64(bytes.count)))
                let end = min(bytes.count, start + maxLength)
                return .success(BodyFragment(copying: Array(bytes[start..<end])))
            }
            completion(result)
        }

        func close() {}
    }
}
