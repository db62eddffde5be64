import TusLoop
@testable import TusRedis
import TusTestSupport
import XCTest

/// Redis Cluster: slot arithmetic, and a real 3-master cluster (`RedisClusterSetup`) with a slot migrated under
/// the client's feet.
final class RedisClusterTests: XCTestCase {
    private func makeSetup(replicasPerMaster: Int = 0) throws -> RedisClusterSetup {
        do {
            return try RedisClusterSetup(replicasPerMaster: replicasPerMaster)
        } catch RedisServerProcess.StartError.notInstalled {
            throw XCTSkip("redis-server or redis-cli is not installed (scripts/bootstrap.sh installs them)")
        }
    }

    /// The values of the cluster specification (CRC16 of "123456789" is 0x31C3) and hash tags.
    func testSlotsFollowTheSpecification() {
        XCTAssertEqual(ClusterSlots.crc16(Array("123456789".utf8)), 0x31C3)
        XCTAssertEqual(ClusterSlots.slot(of: "foo"), 12182)
        XCTAssertEqual(ClusterSlots.slot(of: "{user1000}.following"), ClusterSlots.slot(of: "{user1000}.followers"))
        XCTAssertEqual(ClusterSlots.slot(of: "foo{}{bar}"), ClusterSlots.slot(of: "foo{}{bar}"))
        XCTAssertNotEqual(ClusterSlots.slot(of: "foo{}{bar}"), ClusterSlots.slot(of: "bar"), "empty tag: whole key")
        XCTAssertEqual(ClusterSlots.slot(of: "tus:{abc}:info"), ClusterSlots.slot(of: "abc"))
        XCTAssertEqual(
            ClusterSlots.slot(ofCommand: ["EVALSHA", "sha", "2", "tus:{abc}:info", "tus:{abc}:gone", "x"]),
            ClusterSlots.slot(of: "abc"))
        XCTAssertNil(ClusterSlots.slot(ofCommand: ["EVALSHA", "sha", "0"]))
        XCTAssertEqual(ClusterSlots.slot(ofCommand: ["GET", "foo"]), 12182)
        XCTAssertEqual(
            ClusterSlots.redirect("ASK 3999 127.0.0.1:6381"),
            ClusterSlots.Redirect(isMoved: false, slot: 3999, endpoint: RedisEndpoint(host: "127.0.0.1", port: 6381)))
        XCTAssertEqual(ClusterSlots.redirect("MOVED 1 [::1]:7000")?.endpoint, RedisEndpoint(host: "::1", port: 7000))
        XCTAssertNil(ClusterSlots.redirect("ERR MOVED"))
    }

    func testClusterURLs() throws {
        let configuration = try RedisConfiguration(url: "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2")
        XCTAssertEqual(
            configuration.cluster,
            [RedisEndpoint(host: "10.0.0.1", port: 7000), RedisEndpoint(host: "10.0.0.2", port: 6379)])
        XCTAssertEqual(configuration.password, "pw")
        XCTAssertNil(configuration.tls)
        XCTAssertEqual(configuration.description, "redis+cluster://:***@10.0.0.1:7000,10.0.0.2:6379")
        XCTAssertNotNil(try RedisConfiguration(url: "rediss+cluster://h:1").tls)
        XCTAssertThrowsError(try RedisConfiguration(url: "redis+cluster://h:1/2"))
        XCTAssertThrowsError(try RedisConfiguration(url: "redis+cluster://h:1,"))
    }

    /// Keys spread over every slot land on the master of their slot (read back with a raw GET there, which a
    /// wrong node would answer with MOVED), from a client that was told about one node only; scripts on
    /// hash-tagged keys run where their slot is.
    func testCommandsGoToTheMasterOfTheirSlot() throws {
        let setup = try makeSetup()
        defer { setup.stop() }  // closures the client keeps may outlive the test
        let client = RedisClient(configuration: try RedisConfiguration(url: setup.url))
        let keys = (0..<60).map { "key-\($0)" }
        var replies: [Result<RESPValue, RedisError>] = []
        var script: Result<RESPValue, RedisError>?
        try withLoop(timeoutMilliseconds: 20_000) { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                // Replies come back per master, in no order across masters: shut down after the last of them, not
                // after the script's (a SET still in flight on another master would fail with "shut down").
                var outstanding = keys.count + 1
                func answered() {
                    outstanding -= 1
                    if outstanding == 0 { client.shutdown(on: loop, finish) }
                }
                for key in keys {
                    client.send(["SET", RedisArgument(key), RedisArgument("v-" + key)], on: loop) {
                        replies.append($0)
                        answered()
                    }
                }
                let sum = RedisScript(source: "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])")
                client.evaluate(sum, keys: ["s:{tag}:a", "s:{tag}:b"], arguments: ["1"], on: loop) { result in
                    script = result
                    answered()
                }
            }
        }
        XCTAssertEqual(replies.count, keys.count)
        XCTAssertTrue(replies.allSatisfy { $0 == .success(.simpleString("OK")) }, "\(replies)")
        XCTAssertEqual(script, .success(.integer(1)))
        var owners = Set<Int>()
        for key in keys {
            let owner = try XCTUnwrap(setup.owner(ofSlot: ClusterSlots.slot(of: key)))
            owners.insert(owner.port)
            XCTAssertEqual(
                RedisServerProcess.command("GET \(key)\r\n", port: owner.port),
                "$\(key.count + 2)\r\nv-\(key)\r\n")
        }
        XCTAssertEqual(owners.count, 3, "60 keys reach all three masters")
    }

    /// A slot migrated step by step while the client uses it: nothing fails. While it migrates, a key already
    /// moved is reached through ASK and a key not yet moved at the old owner; afterwards MOVED updates the map.
    func testASlotMigratingUnderTheClientFailsNothing() throws {
        let setup = try makeSetup()
        defer { setup.stop() }  // closures the client keeps may outlive the test
        let client = RedisClient(configuration: try RedisConfiguration(url: setup.url))
        let tag = "{upload-1}"
        let slot = ClusterSlots.slot(of: tag)
        let source = try XCTUnwrap(setup.owner(ofSlot: slot))
        let target = try XCTUnwrap(setup.servers.first { $0.port != source.port })
        var results: [String: Result<RESPValue, RedisError>] = [:]
        let counter = RedisScript(source: "return redis.call('INCR', KEYS[1])")
        let (a, b) = (RedisArgument("a:\(tag)"), RedisArgument("b:\(tag)"))
        try withLoop(timeoutMilliseconds: 20_000) { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.send(["SET", a, "1"], on: loop) { _ in
                    client.send(["SET", b, "1"], on: loop) { _ in
                        XCTAssertTrue(setup.beginMigration(slot: slot, from: source, to: target))
                        XCTAssertTrue(setup.moveKeys(["a:\(tag)"], from: source, to: target))
                        client.send(["INCR", a], on: loop) { results["moved key (ASK)"] = $0 }
                        client.send(["INCR", b], on: loop) { results["unmoved key"] = $0 }
                        client.evaluate(counter, keys: [a], arguments: [], on: loop) {
                            results["script on moved key (ASK)"] = $0
                            XCTAssertTrue(setup.moveKeys(["b:\(tag)"], from: source, to: target))
                            XCTAssertTrue(setup.finishMigration(slot: slot, to: target))
                            client.send(["INCR", b], on: loop) { results["after (MOVED)"] = $0 }
                            client.send(["GET", a], on: loop) { result in
                                results["again"] = result
                                client.shutdown(on: loop, finish)
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(results["moved key (ASK)"], .success(.integer(2)))
        XCTAssertEqual(results["unmoved key"], .success(.integer(2)))
        XCTAssertEqual(results["script on moved key (ASK)"], .success(.integer(3)))
        XCTAssertEqual(results["after (MOVED)"], .success(.integer(3)))
        XCTAssertEqual(results["again"], .success(.bulkString(Array("3".utf8))))
        XCTAssertEqual(RedisServerProcess.command("GET b:\(tag)\r\n", port: target.port), "$1\r\n3\r\n")
    }

    /// Sharded pub/sub: channels in slots of different masters each reach their subscriber through `SPUBLISH`,
    /// and a channel whose slot moves is subscribed again at the new owner.
    func testShardedSubscriptionsFollowTheirSlot() throws {
        let setup = try makeSetup()
        defer { setup.stop() }  // closures the client keeps may outlive the test
        let client = RedisClient(configuration: try RedisConfiguration(url: setup.url))
        let channels = (0..<6).map { "ch:{\($0)}" }
        var heard: [String] = []
        var subscribed: Result<Void, RedisError>?
        let moving = channels[0]
        let slot = ClusterSlots.slot(of: moving)
        let source = try XCTUnwrap(setup.owner(ofSlot: slot))
        let target = try XCTUnwrap(setup.servers.first { $0.port != source.port })
        try withLoop(timeoutMilliseconds: 20_000) { loop, finish in
            var isFinished = false
            var deadline: TusLoop.Timer?
            let end = {
                guard !isFinished else { return }
                isFinished = true
                deadline?.stop()
                client.shutdown(on: loop, finish)
            }
            deadline = loop.schedule(afterMilliseconds: 10_000) { end() }  // fails below rather than hanging
            loop.schedule(afterMilliseconds: 0) {
                client.subscribe(channels: channels, on: loop, handler: { channel, message in
                    heard.append(channel + "=" + String(decoding: message, as: UTF8.self))
                    if heard.count == channels.count {
                        XCTAssertTrue(setup.beginMigration(slot: slot, from: source, to: target))
                        XCTAssertTrue(setup.finishMigration(slot: slot, to: target))
                        func publishAgain(_ attempt: Int) {
                            client.publish(moving, "after", on: loop) { reply in
                                if (try? reply.get())?.integer == 1 { return }
                                if attempt == 40 { return end() }
                                loop.schedule(afterMilliseconds: 50) { publishAgain(attempt + 1) }
                            }
                        }
                        publishAgain(0)
                    }
                    if heard.last == moving + "=after" { end() }
                }) { result in
                    subscribed = result
                    for channel in channels { client.publish(channel, "hello", on: loop) }
                }
            }
        }
        XCTAssertEqual(subscribed.map { (try? $0.get()) != nil }, true, "\(String(describing: subscribed))")
        XCTAssertEqual(Set(heard.prefix(channels.count)), Set(channels.map { $0 + "=hello" }))
        XCTAssertEqual(heard.last, moving + "=after", "\(heard)")
    }

    /// Scripts on keys of every master, each confirmed by a `WAIT` at the master that ran it: with one replica
    /// per master each confirmation counts 1; on the masters-only cluster each counts 0 (after the replica
    /// timeout), so the count really comes from the script's own master.
    func testScriptsAreConfirmedByTheReplicasOfTheirMaster() throws {
        for replicas in [1, 0] {
            let setup = try makeSetup(replicasPerMaster: replicas)
            defer { setup.stop() }
            var configuration = try RedisConfiguration(url: setup.url)
            configuration.replicaTimeoutMilliseconds = 200
            let client = RedisClient(configuration: configuration)
            let script = RedisScript(source: "return redis.call('INCR', KEYS[1])")
            let keys = (0..<12).map { "c:{k\($0)}:n" }
            var confirmed: [Result<Int, RedisError>?] = []
            try withLoop(timeoutMilliseconds: 20_000) { loop, finish in
                loop.schedule(afterMilliseconds: 0) {
                    for key in keys {
                        client.evaluate(script, keys: [RedisArgument(key)], arguments: [], on: loop, confirmedBy: 1) {
                            result, count in
                            XCTAssertEqual(result, .success(.integer(1)))
                            confirmed.append(count)
                            if confirmed.count == keys.count { client.shutdown(on: loop, finish) }
                        }
                    }
                }
            }
            let owners = Set(keys.compactMap { setup.owner(ofSlot: ClusterSlots.slot(of: $0))?.port })
            XCTAssertEqual(owners.count, 3, "the keys cover every master")
            XCTAssertEqual(confirmed, Array(repeating: .success(replicas), count: keys.count), "replicas: \(replicas)")
        }
    }

    /// A confirmation asked for writes that went out on a socket since replaced fails instead of counting the
    /// new socket's (empty) writes.
    func testAConfirmationForAReplacedSocketFails() throws {
        let server: RedisServerProcess
        do {
            server = try RedisServerProcess()
        } catch RedisServerProcess.StartError.notInstalled {
            throw XCTSkip("redis-server is not installed")
        }
        defer { server.stop() }
        let configuration = RedisConfiguration(host: "127.0.0.1", port: server.port)
        var results: [Result<Int, RedisError>] = []
        try withLoop { loop, finish in
            let connection = RedisConnection(
                loop: loop, role: .commands, configuration: configuration, tls: nil,
                outageLog: OutageLog(endpoint: "test", log: { _ in }))
            loop.schedule(afterMilliseconds: 0) {
                connection.send(["SET", "a", "1"]) { _ in
                    let written = connection.currentGeneration
                    connection.waitForReplicas(0, timeoutMilliseconds: 100, writtenIn: written) { first in
                        results.append(first)
                        connection.waitForReplicas(0, timeoutMilliseconds: 100, writtenIn: written - 1) { stale in
                            results.append(stale)
                            connection.shutdown(finish)
                        }
                    }
                }
            }
        }
        XCTAssertEqual(results, [.success(0), .failure(.connectionLost)])
    }
}
