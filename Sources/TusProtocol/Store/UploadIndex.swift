/// Records held in memory with the ids recently removed: what the memory and file state stores answer HEAD and the
/// expiry sweep from, without I/O. A value type; the stores keep it behind their own mutex.
public struct UploadIndex: Sendable {
    public var uploads: [String: UploadInfo]
    public private(set) var gone: RecentlyGoneIDs

    /// - rememberedGoneIDs: how many terminated/expired ids keep answering `.gone` (see `RecentlyGoneIDs`).
    public init(uploads: [String: UploadInfo] = [:], rememberedGoneIDs: Int = 100_000) {
        self.uploads = uploads
        gone = RecentlyGoneIDs(capacity: rememberedGoneIDs)
    }

    public func lookup(_ id: String) -> UploadLookup {
        if let info = uploads[id] { return .found(info) }
        return gone.contains(id) ? .gone : .notFound
    }

    /// Why `id` has no record.
    public func missing(_ id: String) -> StoreError { gone.contains(id) ? .gone : .notFound }

    /// An id a new upload may not take: live, or remembered as gone.
    public func isTaken(_ id: String) -> Bool { uploads[id] != nil || gone.contains(id) }

    /// Unfinished uploads whose expiry is at or before `now`, sorted.
    public func expired(now: Int64) -> [String] {
        uploads.values.compactMap { info in
            guard !info.isComplete, let expiresAt = info.expiresAt, expiresAt <= now else { return nil }
            return info.id
        }.sorted()
    }

    /// Forgets the record and remembers the id as gone.
    public mutating func remove(_ id: String) {
        uploads[id] = nil
        gone.insert(id)
    }
}
