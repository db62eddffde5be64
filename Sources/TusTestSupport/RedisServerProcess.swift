import Glibc

/// A private `redis-server` for one test: its own free port on 127.0.0.1, its own directory, no persistence,
/// stopped by PID (never by name, other tests and developers run their own). Pause it with `pause()` to play a
/// Redis that accepts connections but never answers (SIGSTOP), as a stalled or overloaded server does.
public final class RedisServerProcess {
    public let port: Int
    public let directory: String
    public private(set) var pid: Int32 = 0
    private let extraArguments: [String]
    /// Sentinel mode (`redis-server sentinel.conf --sentinel`): the lines of its configuration file, which the
    /// sentinel rewrites as it learns the topology (so a restart keeps what it learned).
    private let sentinelConfiguration: [String]?
    private var isPaused = false

    public enum StartError: Error, CustomStringConvertible {
        case notInstalled
        case spawnFailed(Int32)
        case notReady(port: Int)

        public var description: String {
            switch self {
            case .notInstalled: "redis-server is not installed (scripts/bootstrap.sh installs it)"
            case .spawnFailed(let errno): "posix_spawn redis-server failed: errno \(errno)"
            case .notReady(let port): "redis-server did not answer PING on port \(port)"
            }
        }
    }

    /// The path of `redis-server`, nil if it is not installed (tests then skip).
    public static var executable: String? {
        for directory in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
            let path = directory + "/redis-server"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    /// Starts redis-server (on `port`, or a free one) and waits until it answers PING. `extraArguments` are
    /// appended to the command line, e.g. `["--requirepass", "secret"]`.
    public convenience init(port: Int? = nil, extraArguments: [String] = []) throws {
        try self.init(port: port, extraArguments: extraArguments, sentinelConfiguration: nil)
    }

    /// A sentinel (Debian's `redis-sentinel` package, which is redis-server in sentinel mode) watching the master
    /// on 127.0.0.1:`masterPort` as `name`, with a quorum of `quorum` and the given failure detection and
    /// failover timeouts (the defaults, 30 s and 3 min, are far too slow for tests).
    public static func sentinel(
        monitoring masterPort: Int, name: String = "mymaster", quorum: Int = 2, downAfterMilliseconds: Int = 1000,
        failoverTimeoutMilliseconds: Int = 3000
    ) throws -> RedisServerProcess {
        guard access("/usr/bin/redis-sentinel", X_OK) == 0 else { throw StartError.notInstalled }
        return try RedisServerProcess(
            port: nil, extraArguments: [],
            sentinelConfiguration: [
                "sentinel monitor \(name) 127.0.0.1 \(masterPort) \(quorum)",
                "sentinel down-after-milliseconds \(name) \(downAfterMilliseconds)",
                "sentinel failover-timeout \(name) \(failoverTimeoutMilliseconds)",
                "sentinel parallel-syncs \(name) 1",
            ])
    }

    private init(port: Int?, extraArguments: [String], sentinelConfiguration: [String]?) throws {
        guard Self.executable != nil else { throw StartError.notInstalled }
        self.port = port ?? Self.freePort()
        self.extraArguments = extraArguments
        self.sentinelConfiguration = sentinelConfiguration
        var template = Array("/tmp/tus-redis-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw StartError.spawnFailed(errno) }
        directory = String(cString: created)
        if let sentinelConfiguration {
            let text = sentinelConfiguration.joined(separator: "\n") + "\n"
            guard let file = fopen(directory + "/sentinel.conf", "w") else { throw StartError.spawnFailed(errno) }
            fputs(text, file)
            fclose(file)
        }
        try start()
    }

    deinit {
        stop()
        unlink(directory + "/redis.log")
        unlink(directory + "/sentinel.conf")
        unlink(directory + "/nodes.conf")  // a cluster node's (RedisClusterSetup)
        rmdir(directory)
    }

    /// Starts the server again on the same port after `stop()` (a restarted Redis, as after a deploy).
    public func start() throws {
        guard pid == 0, let executable = Self.executable else { return }
        let common = [
            "--port", String(port), "--bind", "127.0.0.1", "--dir", directory, "--daemonize", "no",
            "--logfile", directory + "/redis.log",
        ]
        let arguments =
            sentinelConfiguration == nil
            ? [executable] + common + ["--save", "", "--appendonly", "no"] + extraArguments
            : [executable, directory + "/sentinel.conf", "--sentinel"] + common
        let (child, status) = spawnWithoutOutput(arguments)
        guard status == 0 else { throw StartError.spawnFailed(status) }
        pid = child
        isPaused = false
        for _ in 0..<250 {
            if answersPing() { return }
            usleep(20_000)
        }
        stop()
        throw StartError.notReady(port: port)
    }

    /// SIGSTOP: the kernel still accepts connections into the backlog, nothing answers.
    public func pause() {
        guard pid != 0 else { return }
        kill(pid, SIGSTOP)
        isPaused = true
    }

    /// SIGCONT after `pause()`.
    public func resume() {
        guard pid != 0 else { return }
        kill(pid, SIGCONT)
        isPaused = false
    }

    /// SIGKILL: a crash (no shutdown, no goodbye to replicas or clients); reaps the child.
    public func kill9() {
        guard pid != 0 else { return }
        kill(pid, SIGKILL)
        var exitStatus: Int32 = 0
        waitpid(pid, &exitStatus, 0)
        pid = 0
        isPaused = false
    }

    /// SIGTERM (after SIGCONT, since a stopped process cannot exit), then SIGKILL if it takes more than 3 s;
    /// reaps the child. Idempotent.
    public func stop() {
        guard pid != 0 else { return }
        kill(pid, SIGCONT)
        kill(pid, SIGTERM)
        var exitStatus: Int32 = 0
        var reaped = false
        for _ in 0..<300 {
            if waitpid(pid, &exitStatus, WNOHANG) == pid {
                reaped = true
                break
            }
            usleep(10_000)
        }
        if !reaped {
            kill(pid, SIGKILL)
            waitpid(pid, &exitStatus, 0)
        }
        pid = 0
        isPaused = false
    }

    /// Binds a socket to port 0 on 127.0.0.1 and returns what the kernel picked (Redis has no "port 0" itself).
    /// Another process could take it before redis-server binds it; with ephemeral ports that is rare enough.
    public static func freePort() -> Int {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socketDescriptor) }
        var address = loopbackAddress(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(socketDescriptor, $0, length)
                _ = getsockname(socketDescriptor, $0, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A blocking PING with a 1 s receive timeout; "-NOAUTH" also means "up" (a server with `--requirepass`).
    public func answersPing() -> Bool {
        guard let reply = Self.command("PING\r\n", port: port) else { return false }
        return reply.hasPrefix("+PONG") || reply.hasPrefix("-NOAUTH")
    }

    /// `command` until `condition` holds for its reply (every 50 ms, up to `seconds`): for the set-up of
    /// replication and sentinels, which settle asynchronously.
    public static func await(
        _ text: String, port: Int, seconds: Double, until condition: (String) -> Bool
    ) -> Bool {
        let attempts = Int(seconds * 20)
        for _ in 0..<max(1, attempts) {
            if let reply = command(text, port: port), condition(reply) { return true }
            usleep(50_000)
        }
        return false
    }

    /// Sends raw RESP (inline commands work too) to `port` and returns what arrived within 1 s, for test setup
    /// that must not depend on the client under test.
    public static func command(_ text: String, port: Int) -> String? {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketDescriptor >= 0 else { return nil }
        defer { close(socketDescriptor) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(socketDescriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socketDescriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = loopbackAddress(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return nil }
        let bytes = Array(text.utf8)
        guard write(socketDescriptor, bytes, bytes.count) == bytes.count else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(socketDescriptor, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    private static func loopbackAddress(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}

/// Starts `arguments[0]` (a path) with stdin, stdout and stderr on /dev/null: the child's pid and posix_spawn's
/// result (0, or an error number). Shared by the Redis processes and the one-shot `redis-cli` runs of the cluster
/// set-up.
func spawnWithoutOutput(_ arguments: [String]) -> (pid: pid_t, status: Int32) {
    var fileActions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fileActions)
    defer { posix_spawn_file_actions_destroy(&fileActions) }
    posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fileActions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&fileActions, 2, "/dev/null", O_WRONLY, 0)
    var cArguments = arguments.map { strdup($0) }
    cArguments.append(nil)
    defer { cArguments.forEach { free($0) } }
    var child: pid_t = 0
    let status = posix_spawn(&child, arguments[0], &fileActions, nil, cArguments, environ)
    return (child, status)
}
