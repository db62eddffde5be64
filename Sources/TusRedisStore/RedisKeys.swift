import TusRedis

/// The Redis key layout of one cluster (docs/ARCHITECTURE.md, "Redis key layout").
///
/// Every key of one upload carries the upload id as a hash tag (`tus:{id}:info`), so on Redis Cluster they share
/// a slot and one Lua script may touch all of them. The expiry index and the pub/sub channels are cluster-wide
/// and are never touched from inside a script.
///
/// On Redis Cluster (`shardCount` > 1) the expiry index and the lock channels are split into `shardCount`
/// shards, each with a hash tag of its own (`tus:{expiring-3}`, `tus:{lock-3}:released`), so that they spread
/// over the masters instead of loading the one slot that would hold them all; an upload's shard is
/// `shard(of: id)`. With one Redis the names stay what they always were (`tus:expiring`).
public struct RedisKeys: Sendable, Equatable {
    /// Namespaces every key and channel, so several clusters can share one Redis (`--redis-prefix`).
    public let prefix: String

    /// 1 for a single Redis (or Sentinel); `clusterShardCount` on Redis Cluster.
    public let shardCount: Int
    public static let clusterShardCount = 16

    public init(prefix: String = "tus:", shardCount: Int = 1) {
        precondition(shardCount >= 1)
        self.prefix = prefix
        self.shardCount = shardCount
    }

    /// The shard of an upload's index entry and lock messages: by the same CRC16 as its slot, so it costs nothing
    /// to compute and spreads like the ids do.
    func shard(of id: String) -> Int {
        shardCount == 1 ? 0 : ClusterSlots.slot(of: id) % shardCount
    }

    /// Hash: `offset`, `length` (absent while deferred), `metadata` (absent when none), `created`, `expires`
    /// (absent = never); with `Upload-Concat` also `concat` (the header as received), `partial` (`1` for a
    /// partial) and `parts` (a final's partial ids, space-separated, in list order). A draft upload may carry
    /// `awaits` (`1` while it waits for the request that completes it), `reprdigest` and `wantdigest` (its
    /// creation's `Repr-Digest` / `Want-Repr-Digest`); absent otherwise, so older records read the same.
    func info(_ id: String) -> String { prefix + "{" + id + "}:info" }
    /// String with a TTL: `terminated` or `expired`. Answers 410 instead of 404 while it lives.
    func gone(_ id: String) -> String { prefix + "{" + id + "}:gone" }
    /// Set: the finals that list this (partial) upload, added when each final is created; dropped with the partial.
    func finals(_ id: String) -> String { prefix + "{" + id + "}:finals" }
    /// String with a lease (PX): the holder's token.
    func lock(_ id: String) -> String { prefix + "{" + id + "}:lock" }
    /// Sorted set: unfinished uploads by `expires` (unix seconds). Advisory: the sweep re-reads each record.
    func expiryIndex(shard: Int) -> String {
        shardCount == 1 ? prefix + "expiring" : prefix + "{expiring-\(shard)}"
    }
    /// Message: an upload id whose holder should let go (another request wants it).
    func releaseRequestChannel(shard: Int) -> String {
        shardCount == 1 ? prefix + "lock:release-requests" : prefix + "{lock-\(shard)}:release-requests"
    }
    /// Message: an upload id whose lock was just released (waiters try again).
    func releasedChannel(shard: Int) -> String {
        shardCount == 1 ? prefix + "lock:released" : prefix + "{lock-\(shard)}:released"
    }
}
