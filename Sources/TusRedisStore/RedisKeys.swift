/// The Redis key layout of one cluster (docs/ARCHITECTURE.md, "Redis key layout").
///
/// Every key of one upload carries the upload id as a hash tag (`tus:{id}:info`), so on Redis Cluster they share
/// a slot and one Lua script may touch all of them. The expiry index and the pub/sub channels are cluster-wide
/// and are never touched from inside a script.
public struct RedisKeys: Sendable, Equatable {
    /// Namespaces every key and channel, so several clusters can share one Redis (`--redis-prefix`).
    public let prefix: String

    public init(prefix: String = "tus:") {
        self.prefix = prefix
    }

    /// Hash: `offset`, `length` (absent while deferred), `metadata` (absent when none), `created`, `expires`
    /// (absent = never); with `Upload-Concat` also `concat` (the header as received), `partial` (`1` for a
    /// partial) and `parts` (a final's partial ids, space-separated, in list order).
    func info(_ id: String) -> String { prefix + "{" + id + "}:info" }
    /// String with a TTL: `terminated` or `expired`. Answers 410 instead of 404 while it lives.
    func gone(_ id: String) -> String { prefix + "{" + id + "}:gone" }
    /// Set: the finals that list this (partial) upload, added when each final is created; dropped with the partial.
    func finals(_ id: String) -> String { prefix + "{" + id + "}:finals" }
    /// String with a lease (PX): the holder's token.
    func lock(_ id: String) -> String { prefix + "{" + id + "}:lock" }
    /// Sorted set: unfinished uploads by `expires` (unix seconds). Advisory: the sweep re-reads each record.
    var expiryIndex: String { prefix + "expiring" }
    /// Message: an upload id whose holder should let go (another request wants it).
    var releaseRequestChannel: String { prefix + "lock:release-requests" }
    /// Message: an upload id whose lock was just released (waiters try again).
    var releasedChannel: String { prefix + "lock:released" }
}
