import Glibc

/// Three cluster-enabled masters on 127.0.0.1 (each its own `RedisServerProcess`), joined by
/// `redis-cli --cluster create ... --cluster-replicas 0`, ready when every node reports `cluster_state:ok`; with
/// `replicasPerMaster: 1`, six nodes (`--cluster-replicas 1`), ready once every replica's link is up too.
/// `migrate(slot:to:)` moves one slot the way `redis-cli --cluster reshard` does, step by step, so a test can
/// act between the steps (while the slot is MIGRATING/IMPORTING clients see `ASK`, afterwards `MOVED`).
public final class RedisClusterSetup {
    public let servers: [RedisServerProcess]

    public enum SetupError: Error, CustomStringConvertible {
        case notReady(String)
        public var description: String {
            switch self {
            case .notReady(let what): "cluster set-up not ready: \(what)"
            }
        }
    }

    public init(replicasPerMaster: Int = 0) throws {
        guard access("/usr/bin/redis-cli", X_OK) == 0 else { throw RedisServerProcess.StartError.notInstalled }
        let nodeCount = 3 * (1 + replicasPerMaster)
        servers = try (0..<nodeCount).map { _ in
            try RedisServerProcess(port: Self.nodePort(), extraArguments: [
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
            ])
        }
        let status = Self.run(
            ["/usr/bin/redis-cli", "--cluster", "create"] + servers.map { "127.0.0.1:\($0.port)" }
                + ["--cluster-replicas", String(replicasPerMaster), "--cluster-yes"])
        guard status == 0 else { throw SetupError.notReady("redis-cli --cluster create exited with \(status)") }
        for server in servers {
            guard RedisServerProcess.await("CLUSTER INFO\r\n", port: server.port, seconds: 15, until: {
                $0.contains("cluster_state:ok") && $0.contains("cluster_known_nodes:\(nodeCount)")
            }) else { throw SetupError.notReady("node \(server.port) does not see an ok cluster") }
            guard RedisServerProcess.await("INFO replication\r\n", port: server.port, seconds: 15, until: {
                $0.contains("role:master") || $0.contains("master_link_status:up")
            }) else { throw SetupError.notReady("replica \(server.port) not in sync") }
        }
    }

    deinit {
        stop()
    }

    public func stop() {
        for server in servers { server.stop() }
    }

    /// `redis+cluster://` naming only the first node: the rest is learnt from the slot map.
    public var url: String {
        "redis+cluster://127.0.0.1:\(servers[0].port)"
    }

    public func nodeID(_ server: RedisServerProcess) -> String? {
        guard let reply = RedisServerProcess.command("CLUSTER MYID\r\n", port: server.port) else { return nil }
        let lines = reply.split(separator: "\r\n")
        return lines.count >= 2 ? String(lines[1]) : nil
    }

    /// The master that serves `slot`, as the node itself says (`CLUSTER COUNTKEYSINSLOT` works only there, but
    /// `CLUSTER NODES` of any node names the ranges).
    public func owner(ofSlot slot: Int) -> RedisServerProcess? {
        guard let text = RedisServerProcess.command("CLUSTER NODES\r\n", port: servers[0].port) else {
            return nil
        }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 9, fields[2].contains("master") else { continue }
            let port = fields[1].split(separator: ":")[1].split(separator: "@")[0]
            for range in fields[8...] where !range.hasPrefix("[") {
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                guard let low = bounds.first else { continue }
                if (low...(bounds.last ?? low)).contains(slot) {
                    return servers.first { String($0.port) == port }
                }
            }
        }
        return nil
    }

    /// Step 1 of a migration: `target` IMPORTING, the owner MIGRATING. Keys stay where they are until `moveKeys`.
    public func beginMigration(slot: Int, from source: RedisServerProcess, to target: RedisServerProcess) -> Bool {
        guard let sourceID = nodeID(source), let targetID = nodeID(target) else { return false }
        let importing = RedisServerProcess.command(
            "CLUSTER SETSLOT \(slot) IMPORTING \(sourceID)\r\n", port: target.port)
        let migrating = RedisServerProcess.command(
            "CLUSTER SETSLOT \(slot) MIGRATING \(targetID)\r\n", port: source.port)
        return importing == "+OK\r\n" && migrating == "+OK\r\n"
    }

    /// Step 2: `MIGRATE` each of `keys` (they must be in the slot) from `source` to `target`.
    public func moveKeys(_ keys: [String], from source: RedisServerProcess, to target: RedisServerProcess) -> Bool {
        guard !keys.isEmpty else { return true }
        let command = "MIGRATE 127.0.0.1 \(target.port) \"\" 0 5000 KEYS " + keys.joined(separator: " ") + "\r\n"
        let reply = RedisServerProcess.command(command, port: source.port)
        return reply == "+OK\r\n" || reply == "+NOKEY\r\n"
    }

    /// Step 3: every node is told that `target` owns the slot now.
    public func finishMigration(slot: Int, to target: RedisServerProcess) -> Bool {
        guard let targetID = nodeID(target) else { return false }
        return servers.allSatisfy {
            RedisServerProcess.command("CLUSTER SETSLOT \(slot) NODE \(targetID)\r\n", port: $0.port) == "+OK\r\n"
        }
    }

    /// A free port whose cluster bus port (+10000) is free too: the kernel's ephemeral ports (`freePort`) are
    /// often above 55535, where the bus port does not exist and redis-server refuses to start.
    static func nodePort() -> Int {
        for _ in 0..<200 {
            let port = 20000 + Int.random(in: 0..<30000)
            if isFree(port) && isFree(port + 10000) { return port }
        }
        return 20000 + Int.random(in: 0..<30000)
    }

    private static func isFree(_ port: Int) -> Bool {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socketDescriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// Runs a program to its end, its output discarded; its exit status (-1 when it could not be started).
    static func run(_ arguments: [String]) -> Int32 {
        let (child, spawnStatus) = spawnWithoutOutput(arguments)
        guard spawnStatus == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        return (status >> 8) & 0xff
    }
}
