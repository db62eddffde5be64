import TusLoop
import TusRedis
import TusTestSupport
import XCTest

/// Redis Sentinel with real engines: 1 master + 1 replica + 3 sentinels (`RedisSentinelSetup`); the master is
/// killed with SIGKILL and the sentinels promote the replica.
final class RedisSentinelTests: XCTestCase {
    private func makeSetup() throws -> RedisSentinelSetup {
        do {
            return try RedisSentinelSetup()
        } catch RedisServerProcess.StartError.notInstalled {
            throw XCTSkip("redis-server or redis-sentinel is not installed (scripts/bootstrap.sh installs them)")
        }
    }

    /// The client finds the master through the sentinels, fails commands (never hangs) while it is gone, and is
    /// back on the promoted replica within seconds, moved there by `+switch-master`.
    func testFollowsTheMasterThroughAFailover() throws {
        let setup = try makeSetup()
        let (master, replica) = (setup.servers[0], setup.servers[1])
        let log = Recorder<String>()
        let client = RedisClient(configuration: try RedisConfiguration(url: setup.url), log: { log.append($0) })
        var before: Result<RESPValue, RedisError>?
        var failures: [RedisError] = []
        var recoveredAfter: UInt64?
        var roleAfter: String?
        try withLoop(timeoutMilliseconds: 40_000) { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.send(["SET", "k", "before"], on: loop) { result in
                    before = result
                    XCTAssertEqual(RedisServerProcess.command("GET k\r\n", port: master.port), "$6\r\nbefore\r\n")
                    let killedAt = loop.nowMilliseconds
                    master.kill9()
                    func probe() {
                        client.send(["SET", "k", "after"], on: loop) { result in
                            switch result {
                            case .failure(let error):
                                failures.append(error)
                                loop.schedule(afterMilliseconds: 100) { probe() }
                            case .success:
                                recoveredAfter = loop.nowMilliseconds - killedAt
                                client.send(["ROLE"], on: loop) { role in
                                    roleAfter = (try? role.get())?.array?.first?.string
                                    client.shutdown(on: loop, finish)
                                }
                            }
                        }
                    }
                    probe()
                }
            }
        }
        XCTAssertEqual(before, .success(.simpleString("OK")))
        XCTAssertFalse(failures.isEmpty, "commands failed while there was no master")
        XCTAssertTrue(failures.allSatisfy { [.unavailable, .connectionLost, .timedOut].contains($0) }, "\(failures)")
        XCTAssertLessThan(recoveredAfter ?? .max, 15_000, "back within seconds of the kill")
        XCTAssertEqual(roleAfter, "master")
        XCTAssertEqual(
            RedisServerProcess.command("GET k\r\n", port: replica.port), "$5\r\nafter\r\n", "on the promoted one")
        XCTAssertTrue(log.all.contains { $0.contains("switched master mymaster") }, "\(log.all)")
    }

    /// A server the sentinels name that is not the master (stale sentinels, a demoted master) is refused after
    /// `ROLE`: the command fails with `.unavailable` and is never executed on the replica.
    func testAServerThatIsNotTheMasterIsRefusedAfterROLE() throws {
        let master = try RedisServerProcess()
        let replica = try RedisServerProcess(extraArguments: ["--replicaof", "127.0.0.1", String(master.port)])
        let liar = FakeSentinel(reply: "*2\r\n$9\r\n127.0.0.1\r\n$\(String(replica.port).count)\r\n\(replica.port)\r\n")
        defer { liar.stop() }
        var configuration = try RedisConfiguration(url: "redis+sentinel://127.0.0.1:\(liar.port)/mymaster")
        configuration.reconnectInitialDelayMilliseconds = 5000
        let log = Recorder<String>()
        let client = RedisClient(configuration: configuration, log: { log.append($0) })
        var result: Result<RESPValue, RedisError>?
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.send(["GET", "k"], on: loop) { reply in
                    result = reply
                    client.shutdown(on: loop, finish)
                }
            }
        }
        XCTAssertEqual(result?.failure, .unavailable)
        XCTAssertTrue(log.all.first?.contains("is not the master (ROLE: slave)") ?? false, "\(log.all)")
        XCTAssertGreaterThanOrEqual(liar.questions, 1)
    }

    /// Writes refused by a replica (`READONLY`, also from inside a script) fail as a lost connection, not as an
    /// error reply that would reach clients as a 500, and the connection is replaced.
    func testReadOnlyRefusalsDropTheConnection() throws {
        let master = try RedisServerProcess()
        let replica = try RedisServerProcess(extraArguments: ["--replicaof", "127.0.0.1", String(master.port)])
        let log = Recorder<String>()
        let client = RedisClient(
            configuration: RedisConfiguration(host: "127.0.0.1", port: replica.port), log: { log.append($0) })
        let script = RedisScript(source: "return redis.call('SET', KEYS[1], 'x')")
        var results: [Result<RESPValue, RedisError>] = []
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.send(["SET", "k", "v"], on: loop) { reply in
                    results.append(reply)
                    loop.schedule(afterMilliseconds: 300) {
                        client.evaluate(script, keys: ["k"], arguments: [], on: loop) { reply in
                            results.append(reply)
                            client.shutdown(on: loop, finish)
                        }
                    }
                }
            }
        }
        XCTAssertEqual(results.map(\.failure), [.connectionLost, .connectionLost], "\(results)")
        XCTAssertTrue(log.all.first?.contains("READONLY") ?? false, "\(log.all)")
    }

    /// `WAIT`: 1 with the replica in sync; 0 after the replica timeout while the replica is paused; calls made
    /// while one `WAIT` is outstanding share the next.
    func testWaitForReplicasCountsThoseThatHaveTheWrites() throws {
        let setup = try makeSetup()
        var configuration = try RedisConfiguration(url: setup.url)
        configuration.replicaTimeoutMilliseconds = 300
        let client = RedisClient(configuration: configuration)
        var synced: Result<Int, RedisError>?
        var paused: [(Result<Int, RedisError>, UInt64)] = []
        try withLoop(timeoutMilliseconds: 20_000) { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.send(["SET", "a", "1"], on: loop) { _ in }
                client.waitForReplicas(1, on: loop) { result in
                    synced = result
                    setup.servers[1].pause()
                    let started = loop.nowMilliseconds
                    for index in 0..<5 {
                        client.send(["SET", "b", RedisArgument(index)], on: loop) { _ in }
                        client.waitForReplicas(1, on: loop) { result in
                            paused.append((result, loop.nowMilliseconds - started))
                            if paused.count == 5 {
                                setup.servers[1].resume()
                                client.shutdown(on: loop, finish)
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(synced, .success(1))
        XCTAssertEqual(paused.map { $0.0 }, Array(repeating: .success(0), count: 5))
        // One WAIT for the first call, one shared by the four made while it was outstanding: two timeouts.
        XCTAssertLessThan(paused.map(\.1).max() ?? .max, 2 * 300 + schedulingSlack)
    }
}

/// A TCP listener on 127.0.0.1 that answers the first request of each connection with the same RESP bytes: a
/// sentinel that names whatever the test wants, served from its own thread.
final class FakeSentinel: @unchecked Sendable {
    let port: Int
    private let listening: Int32
    private let reply: String
    private var thread: pthread_t?
    private let questionCount = Recorder<Int>()

    var questions: Int { questionCount.all.count }

    init(reply: String) {
        self.reply = reply
        let (listening, port) = listeningLoopbackSocket()
        self.listening = listening
        self.port = port
        let box = Unmanaged.passRetained(self).toOpaque()
        var created = pthread_t()
        pthread_create(&created, nil, { context in
            let sentinel = Unmanaged<FakeSentinel>.fromOpaque(context!).takeRetainedValue()
            sentinel.serve()
            return nil
        }, box)
        thread = created
    }

    private func serve() {
        while true {
            let connection = accept(listening, nil, nil)
            guard connection >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            // One answer per connection, then close: the client's `+switch-master` watch connects here too and
            // must not keep the only serving thread.
            if read(connection, &buffer, buffer.count) > 0 {
                questionCount.append(1)
                _ = reply.withCString { write(connection, $0, strlen($0)) }
            }
            close(connection)
        }
    }

    /// Ends the accept loop (its thread holds the listener until then) and joins it.
    func stop() {
        guard let thread else { return }
        shutdown(listening, Int32(SHUT_RDWR))
        pthread_join(thread, nil)
        self.thread = nil
        close(listening)
    }
}
