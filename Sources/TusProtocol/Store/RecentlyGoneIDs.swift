/// Ids of terminated or expired uploads, so `lookup` can answer 410 Gone instead of 404.
///
/// Bounded (first in, first out) because the store may run for months: at the default 100,000 ids of up to 128
/// bytes, a few tens of MB at worst, typically ~5 MB for 32-character ids. Forgetting is harmless: an old id then
/// answers 404, which the spec allows. Not persisted: after a restart every removed id answers 404.
public struct RecentlyGoneIDs: Sendable {
    public let capacity: Int
    private var members: Set<String> = []
    /// Insertion order, as a ring once full.
    private var order: [String] = []
    private var oldestIndex = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    public var count: Int { members.count }

    public func contains(_ id: String) -> Bool { members.contains(id) }

    public mutating func insert(_ id: String) {
        guard members.insert(id).inserted else { return }
        if order.count < capacity {
            order.append(id)
        } else {
            members.remove(order[oldestIndex])
            order[oldestIndex] = id
            oldestIndex = (oldestIndex + 1) % capacity
        }
    }
}
