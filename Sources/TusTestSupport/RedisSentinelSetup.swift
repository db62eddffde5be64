import Glibc

/// One master, one replica and three sentinels on 127.0.0.1 (each its own `RedisServerProcess`), ready when the
/// replica is in sync and every sentinel knows the replica and the two other sentinels, so that a `kill9()` of
/// the master fails over in a few seconds (1 s to notice, then an election and the promotion).
public final class RedisSentinelSetup {
    public let masterName = "mymaster"
    /// `servers[0]` starts as the master, `servers[1]` as its replica; after a failover the roles are swapped.
    public let servers: [RedisServerProcess]
    public let sentinels: [RedisServerProcess]

    public enum SetupError: Error, CustomStringConvertible {
        case notReady(String)
        public var description: String {
            switch self {
            case .notReady(let what): "sentinel set-up not ready: \(what)"
            }
        }
    }

    public init() throws {
        let master = try RedisServerProcess()
        let replica = try RedisServerProcess(extraArguments: ["--replicaof", "127.0.0.1", String(master.port)])
        servers = [master, replica]
        guard RedisServerProcess.await("INFO replication\r\n", port: replica.port, seconds: 10, until: {
            $0.contains("master_link_status:up")
        }) else { throw SetupError.notReady("replica not in sync") }
        sentinels = try (0..<3).map { _ in try RedisServerProcess.sentinel(monitoring: master.port) }
        for sentinel in sentinels {
            guard RedisServerProcess.await("SENTINEL ckquorum mymaster\r\n", port: sentinel.port, seconds: 15, until: {
                $0.hasPrefix("+OK 3 usable")
            }) else { throw SetupError.notReady("sentinel \(sentinel.port) does not see the two others") }
            guard RedisServerProcess.await("SENTINEL replicas mymaster\r\n", port: sentinel.port, seconds: 15, until: {
                $0.hasPrefix("*1\r\n")
            }) else { throw SetupError.notReady("sentinel \(sentinel.port) does not see the replica") }
        }
    }

    deinit {
        stop()
    }

    public func stop() {
        for process in sentinels + servers { process.stop() }
    }

    /// `redis+sentinel://` naming all three sentinels.
    public var url: String {
        "redis+sentinel://" + sentinels.map { "127.0.0.1:\($0.port)" }.joined(separator: ",") + "/" + masterName
    }

    /// The port the first sentinel names as the master, nil if it cannot be asked.
    public func masterPortAnnounced() -> Int? {
        guard let reply = RedisServerProcess.command(
            "SENTINEL get-master-addr-by-name \(masterName)\r\n", port: sentinels[0].port)
        else { return nil }
        let lines = reply.split(separator: "\r\n")
        return lines.count >= 5 ? Int(lines[4]) : nil
    }

    /// Waits until every sentinel names `port` as the master and that server answers `ROLE` as master.
    public func awaitMaster(port: Int, seconds: Double) -> Bool {
        for sentinel in sentinels {
            guard RedisServerProcess.await(
                "SENTINEL get-master-addr-by-name \(masterName)\r\n", port: sentinel.port, seconds: seconds,
                until: { $0.hasSuffix("$\(String(port).count)\r\n\(port)\r\n") })
            else { return false }
        }
        return RedisServerProcess.await("ROLE\r\n", port: port, seconds: seconds, until: { $0.contains("master") })
    }
}
