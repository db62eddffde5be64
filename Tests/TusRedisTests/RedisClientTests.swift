import TusLoop
import TusRedis
import TusTestSupport
import XCTest

/// Against a real redis-server started per test (RedisServerProcess: own port, own directory, stopped by PID).
/// Every test runs its loop through `withLoop`, which fails on a hang and asserts that no handle was left open.
final class RedisClientTests: XCTestCase {
    private func configuration(_ server: RedisServerProcess, commandTimeout: UInt64 = 1000) -> RedisConfiguration {
        var configuration = RedisConfiguration(host: "127.0.0.1", port: server.port)
        configuration.commandTimeoutMilliseconds = commandTimeout
        return configuration
    }

    func testSetGetIncrDelRoundTrips() throws {
        let server = try RedisServerProcess()
        let client = RedisClient(configuration: configuration(server))
        var results: [Result<RESPValue, RedisError>] = []
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                let commands: [[RedisArgument]] = [
                    ["SET", "k", "v"], ["GET", "k"], ["INCR", "n"], ["INCR", "n"], ["INCRBY", "n", 40],
                    ["DEL", "k", "n"],
                    ["GET", "k"], ["NOSUCHCOMMAND"], ["HSET", "h", "f", "1"], ["HGETALL", "h"],
                ]
                client.sendSequence(commands, on: loop) { collected in
                    results = collected
                    client.shutdown(on: loop) { finish() }
                }
            }
        }
        XCTAssertEqual(results.count, 10)
        guard results.count == 10 else { return }
        XCTAssertEqual(results[0], .success(.simpleString("OK")))
        XCTAssertEqual(results[1], .success(.bulkString(Array("v".utf8))))
        XCTAssertEqual(results[2], .success(.integer(1)))
        XCTAssertEqual(results[3], .success(.integer(2)))
        XCTAssertEqual(results[4], .success(.integer(42)))
        XCTAssertEqual(results[5], .success(.integer(2)))
        XCTAssertEqual(results[6], .success(.null))
        guard case .failure(.server(let message)) = results[7] else { return XCTFail("\(results[7])") }
        XCTAssertTrue(message.hasPrefix("ERR unknown command"), message)
        XCTAssertEqual(results[8], .success(.integer(1)))
        XCTAssertEqual(results[9], .success(.array([.bulkString(Array("f".utf8)), .bulkString(Array("1".utf8))])))
    }

    /// Commands sent without waiting share the connection and come back in the order sent.
    func testPipelinedCommandsCompleteInOrder() throws {
        let server = try RedisServerProcess()
        // The test is about order, not deadlines: 20,000 commands in one burst may take longer than the default
        // 1 s under a sanitizer on a busy machine, and a deadline would then fail them all.
        let client = RedisClient(configuration: configuration(server, commandTimeout: 30_000))
        let total = 20_000
        var replies: [RESPValue] = []
        var listReply: Result<RESPValue, RedisError>?
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                for index in 0..<total {
                    client.send(["INCR", "counter"], on: loop) { result in
                        replies.append((try? result.get()) ?? .error("\(result)"))
                    }
                    if index % 1000 == 0 { client.send(["RPUSH", "order", RedisArgument(index)], on: loop) { _ in } }
                }
                client.send(["LRANGE", "order", 0, -1], on: loop) { result in
                    listReply = result
                    client.shutdown(on: loop) { finish() }
                }
            }
        }
        XCTAssertEqual(replies, (1...total).map { RESPValue.integer(Int64($0)) })
        XCTAssertEqual(
            listReply,
            .success(.array(stride(from: 0, to: total, by: 1000).map { .bulkString(Array(String($0).utf8)) })))
    }

    /// One client shared by several loop threads: each loop gets its own connection (its own `CLIENT ID`, the
    /// same for every command from that loop), and commands from all loops land.
    func testEachLoopHasItsOwnConnectionOnASharedClient() throws {
        let server = try RedisServerProcess()
        let client = RedisClient(configuration: configuration(server))
        let loops = try (0..<4).map { _ in try EventLoop() }
        let clientIDs = Recorder<[Int64]>()
        for (index, loop) in loops.enumerated() {
            loop.execute {
                var ids: [Int64] = []
                for _ in 0..<500 {
                    client.send(["INCR", "shared"], on: loop) { _ in }
                }
                for _ in 0..<3 {
                    client.send(["CLIENT", "ID"], on: loop) { result in
                        ids.append((try? result.get().integer) ?? -1)
                        guard ids.count == 3 else { return }
                        clientIDs.append(ids)
                        client.shutdown(on: loop) { loop.stop() }
                    }
                }
            }
            loop.runOnNewThread(name: "redis-\(index)")
        }
        for loop in loops {
            loop.join()
            XCTAssertEqual(loop.handlesClosedAtShutdown, 0)
        }
        let perLoop = clientIDs.all
        XCTAssertEqual(perLoop.count, 4)
        XCTAssertTrue(perLoop.allSatisfy { Set($0).count == 1 && $0[0] > 0 }, "\(perLoop)")
        XCTAssertEqual(Set(perLoop.map { $0[0] }).count, 4, "\(perLoop)")
        XCTAssertEqual(RedisServerProcess.command("GET shared\r\n", port: server.port), "$4\r\n2000\r\n")
    }

    func testBulkStringsAreBinarySafe() throws {
        let server = try RedisServerProcess()
        let client = RedisClient(configuration: configuration(server))
        let everyByte = (0..<512).map { UInt8(truncatingIfNeeded: $0) }
        let large = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let binaryKey: [UInt8] = [0xff, 0, 13, 10, 36, 42]
        var results: [Result<RESPValue, RedisError>] = []
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                let commands: [[RedisArgument]] = [
                    ["SET", .bytes(binaryKey), .bytes(everyByte)], ["GET", .bytes(binaryKey)],
                    ["SET", "large", .bytes(large)], ["GET", "large"], ["SET", "empty", .bytes([])], ["GET", "empty"],
                ]
                client.sendSequence(commands, on: loop) { collected in
                    results = collected
                    client.shutdown(on: loop) { finish() }
                }
            }
        }
        XCTAssertEqual(results.count, 6)
        guard results.count == 6 else { return }
        XCTAssertEqual(results[1], .success(.bulkString(everyByte)))
        XCTAssertEqual(try results[3].get().bytes?.count, large.count)
        XCTAssertTrue(try results[3].get() == .bulkString(large))
        XCTAssertEqual(results[5], .success(.bulkString([])))
    }

    /// The first call finds no script (SCRIPT FLUSH) and falls back to EVAL; the next runs by SHA1, which proves
    /// our SHA1 equals the one Redis computes.
    func testScriptsRunByShaAndFallBackToEvalOnNoScript() throws {
        let server = try RedisServerProcess()
        let client = RedisClient(configuration: configuration(server))
        let script = RedisScript(source: "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1] .. ':n')}")
        let failing = RedisScript(source: "return redis.error_reply('LOCKED held by someone else')")
        var results: [Result<RESPValue, RedisError>] = []
        var stats = ""
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.sendSequence([["SCRIPT", "FLUSH"], ["CONFIG", "RESETSTAT"]], on: loop) { _ in
                    client.evaluate(script, keys: ["upload{1}"], arguments: [.bytes([0, 1])], on: loop) { first in
                        results.append(first)
                        client.evaluate(script, keys: ["upload{1}"], arguments: ["x"], on: loop) { second in
                            results.append(second)
                            client.evaluate(failing, keys: [], arguments: [], on: loop) { third in
                                results.append(third)
                                client.sendSequence(
                                    [["SCRIPT", "LOAD", .string(script.source)], ["INFO", "commandstats"]], on: loop
                                ) {
                                    collected in
                                    results.append(collected[0])
                                    stats = (try? collected[1].get().string) ?? ""
                                    client.shutdown(on: loop) { finish() }
                                }
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(results.count, 4)
        guard results.count == 4 else { return }
        XCTAssertEqual(
            results[0], .success(.array([.bulkString(Array("upload{1}".utf8)), .bulkString([0, 1]), .integer(1)])))
        XCTAssertEqual(
            results[1],
            .success(.array([.bulkString(Array("upload{1}".utf8)), .bulkString(Array("x".utf8)), .integer(2)])))
        XCTAssertEqual(results[2], .failure(.server("LOCKED held by someone else")))
        XCTAssertEqual(results[3], .success(.bulkString(Array(script.sha1.utf8))))
        // Two EVALs (one per script, each after a NOSCRIPT), the second call of the first script by SHA only.
        XCTAssertTrue(stats.contains("cmdstat_eval:calls=2,"), stats)
        XCTAssertTrue(stats.contains("cmdstat_evalsha:calls=3,"), stats)
    }

    func testPubSubDeliversAcrossLoopsAndSubscribingAgainAddsChannels() throws {
        let server = try RedisServerProcess()
        let client = RedisClient(configuration: configuration(server))
        let subscriberLoop = try EventLoop()
        let received = Recorder<Message>()
        let confirmations = Recorder<String>()
        subscriberLoop.execute {
            client.subscribe(
                channels: ["tus:a", "tus:b"], on: subscriberLoop,
                handler: { channel, message in received.append(Message(channel: channel, bytes: message)) },
                completion: { result in confirmations.append("first: \(result)") })
        }
        subscriberLoop.runOnNewThread(name: "redis-sub")
        var publishReplies: [Result<RESPValue, RedisError>] = []
        try withLoop { loop, finish in
            func whenTrue(_ condition: @escaping () -> Bool, _ then: @escaping () -> Void) {
                if condition() { return then() }
                loop.schedule(afterMilliseconds: 5) { whenTrue(condition, then) }
            }
            whenTrue({ !confirmations.all.isEmpty }) {
                client.sendSequence(
                    [
                        ["PUBLISH", "tus:a", .bytes([0, 13, 10, 255])], ["PUBLISH", "tus:b", "second"],
                        ["PUBLISH", "tus:c", "early"],
                    ],
                    on: loop
                ) { replies in
                    publishReplies += replies
                    whenTrue({ received.all.count == 2 }) {
                        subscriberLoop.execute {
                            client.subscribe(
                                channels: ["tus:c", "tus:a"], on: subscriberLoop,
                                handler: { channel, message in
                                    received.append(Message(channel: "second handler " + channel, bytes: message))
                                },
                                completion: { result in confirmations.append("second: \(result)") })
                        }
                        whenTrue({ confirmations.all.count == 2 }) {
                            client.sendSequence(
                                [["PUBLISH", "tus:c", "third"], ["PUBLISH", "tus:a", "fourth"]], on: loop
                            ) {
                                replies in
                                publishReplies += replies
                                whenTrue({ received.all.count == 5 }) {
                                    client.shutdown(on: loop) { finish() }
                                }
                            }
                        }
                    }
                }
            }
        }
        subscriberLoop.execute { client.shutdown(on: subscriberLoop) { subscriberLoop.stop() } }
        subscriberLoop.join()
        XCTAssertEqual(subscriberLoop.handlesClosedAtShutdown, 0)
        XCTAssertEqual(confirmations.all, ["first: success()", "second: success()"])
        XCTAssertEqual(
            publishReplies.map { try? $0.get() }, [.integer(1), .integer(1), .integer(0), .integer(1), .integer(1)])
        XCTAssertEqual(
            received.all,
            [
                Message(channel: "tus:a", bytes: [0, 13, 10, 255]),
                Message(channel: "tus:b", bytes: Array("second".utf8)),
                Message(channel: "second handler tus:c", bytes: Array("third".utf8)),
                Message(channel: "tus:a", bytes: Array("fourth".utf8)),
                Message(channel: "second handler tus:a", bytes: Array("fourth".utf8)),
            ])
    }

    func testAuthWithPasswordAndWithUserName() throws {
        let server = try RedisServerProcess(extraArguments: ["--requirepass", "s3cret"])
        let good = RedisClient(configuration: try RedisConfiguration(url: "redis://:s3cret@127.0.0.1:\(server.port)"))
        let withUser = RedisClient(
            configuration: try RedisConfiguration(url: "redis://default:s3cret@127.0.0.1:\(server.port)/1"))
        let wrongLog = Recorder<String>()
        let wrong = RedisClient(
            configuration: try RedisConfiguration(url: "redis://:nope@127.0.0.1:\(server.port)"),
            log: { wrongLog.append($0) })
        let anonymous = RedisClient(configuration: configuration(server))
        var results: [String: Result<RESPValue, RedisError>] = [:]
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                good.send(["SET", "k", "v"], on: loop) { results["good"] = $0 }
                withUser.send(["SET", "k", "in db 1"], on: loop) { results["withUser"] = $0 }
                wrong.send(["GET", "k"], on: loop) { results["wrong"] = $0 }
                anonymous.send(["GET", "k"], on: loop) { results["anonymous"] = $0 }
                loop.schedule(afterMilliseconds: 300) {
                    good.shutdown(on: loop) {
                        withUser.shutdown(on: loop) {
                            wrong.shutdown(on: loop) { anonymous.shutdown(on: loop) { finish() } }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(results["good"], .success(.simpleString("OK")))
        XCTAssertEqual(results["withUser"], .success(.simpleString("OK")))
        XCTAssertEqual(results["wrong"], .failure(.unavailable))
        XCTAssertTrue(wrongLog.all.first?.contains("WRONGPASS") ?? false, "\(wrongLog.all)")
        XCTAssertFalse(wrongLog.all.joined().contains("nope"), "the password must not be logged")
        guard case .failure(.server(let message)) = results["anonymous"] else {
            return XCTFail("\(String(describing: results["anonymous"]))")
        }
        XCTAssertTrue(message.hasPrefix("NOAUTH"), message)
    }

    func testSelectedDatabaseIsUsedAfterConnecting() throws {
        let server = try RedisServerProcess()
        let database3 = RedisClient(configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(server.port)/3"))
        let database0 = RedisClient(configuration: configuration(server))
        var results: [Result<RESPValue, RedisError>] = []
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                database3.sendSequence([["SET", "k", "three"], ["GET", "k"]], on: loop) { first in
                    results += first
                    database0.sendSequence([["GET", "k"], ["SELECT", 3], ["GET", "k"]], on: loop) { second in
                        results += second
                        database3.shutdown(on: loop) { database0.shutdown(on: loop) { finish() } }
                    }
                }
            }
        }
        let three = RESPValue.bulkString(Array("three".utf8))
        XCTAssertEqual(
            results,
            [
                .success(.simpleString("OK")), .success(three), .success(.null), .success(.simpleString("OK")),
                .success(three),
            ])
    }

    /// SIGSTOP: Redis accepts connections (the kernel's backlog) and never answers. Every command must fail
    /// within about the command timeout, none may hang, the outage is logged once, and after SIGCONT commands
    /// succeed again without the caller doing anything.
    func testPausedRedisGivesTimelyFailuresAndTheClientRecoversAfterResume() throws {
        let server = try RedisServerProcess()
        let log = Recorder<String>()
        let commandTimeout: UInt64 = 1000
        let client = RedisClient(
            configuration: configuration(server, commandTimeout: commandTimeout), log: { log.append($0) })
        struct Probe {
            var sentAt: UInt64
            var completedAt: UInt64
            var result: Result<RESPValue, RedisError>
        }
        var probes: [Probe] = []
        var warmUp: Result<RESPValue, RedisError>?
        var resumedAt: UInt64 = 0
        var recoveredAt: UInt64 = 0
        var pausedAt: UInt64 = 0
        try withLoop(timeoutMilliseconds: 15_000) { loop, finish in
            func probe() {
                let sentAt = loop.nowMilliseconds
                client.send(["INCR", "probe"], on: loop) { result in
                    probes.append(Probe(sentAt: sentAt, completedAt: loop.nowMilliseconds, result: result))
                }
            }
            func probeEvery100ms(until end: UInt64) {
                guard loop.nowMilliseconds < end else { return }
                probe()
                loop.schedule(afterMilliseconds: 100) { probeEvery100ms(until: end) }
            }
            func pollUntilRecovered() {
                client.send(["PING"], on: loop) { result in
                    if case .success = result {
                        recoveredAt = loop.nowMilliseconds
                        // Let the probes still waiting complete, then end.
                        loop.schedule(afterMilliseconds: commandTimeout + 200) {
                            client.shutdown(on: loop) { finish() }
                        }
                    } else {
                        loop.schedule(afterMilliseconds: 50) { pollUntilRecovered() }
                    }
                }
            }
            loop.schedule(afterMilliseconds: 0) {
                client.send(["SET", "warm", "up"], on: loop) { result in
                    warmUp = result
                    server.pause()
                    pausedAt = loop.nowMilliseconds
                    probeEvery100ms(until: pausedAt + 2900)
                    loop.schedule(afterMilliseconds: 3000) {
                        server.resume()
                        resumedAt = loop.nowMilliseconds
                        pollUntilRecovered()
                    }
                }
            }
        }
        print(
            "paused-redis probes (sent after pause ms, took ms, result):",
            probes.map { ($0.sentAt - pausedAt, $0.completedAt - $0.sentAt, "\($0.result)") },
            "resumed after", resumedAt - pausedAt, "recovered", recoveredAt - resumedAt, "ms after resume")
        XCTAssertEqual(warmUp, .success(.simpleString("OK")))
        XCTAssertGreaterThanOrEqual(probes.count, 10)
        let duringPause = probes.filter { $0.sentAt < resumedAt }
        for probe in duringPause where probe.completedAt < resumedAt {
            if case .success(let value) = probe.result { XCTFail("a paused Redis answered: \(value)") }
            XCTAssertLessThanOrEqual(
                probe.completedAt - probe.sentAt, commandTimeout + schedulingSlack, "\(probe.result)")
        }
        let first = probes.first { $0.sentAt == pausedAt }
        XCTAssertEqual(first?.result.failure, .timedOut)
        if let first {
            XCTAssertGreaterThanOrEqual(first.completedAt - first.sentAt, commandTimeout - 50)
            XCTAssertLessThanOrEqual(first.completedAt - first.sentAt, commandTimeout + schedulingSlack)
        }
        XCTAssertTrue(duringPause.contains { $0.result.failure == .timedOut })
        XCTAssertTrue(probes.allSatisfy { $0.completedAt > 0 }, "every probe completed")
        XCTAssertGreaterThanOrEqual(recoveredAt, resumedAt)
        XCTAssertLessThanOrEqual(recoveredAt - resumedAt, 3000 + schedulingSlack, "recovery after SIGCONT")
        XCTAssertEqual(log.all.filter { $0.contains("unreachable") }.count, 1, "\(log.all)")
        XCTAssertEqual(log.all.filter { $0.contains("reachable again") }.count, 1, "\(log.all)")
    }

    func testConnectionRefusedFailsFastWithUnavailable() throws {
        let port = RedisServerProcess.freePort()
        let log = Recorder<String>()
        var configuration = RedisConfiguration(host: "127.0.0.1", port: port)
        configuration.reconnectInitialDelayMilliseconds = 500
        let client = RedisClient(configuration: configuration, log: { log.append($0) })
        var first: (Result<RESPValue, RedisError>, UInt64)?
        var later: [Result<RESPValue, RedisError>] = []
        var laterCompletedSynchronously = true
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                let startedAt = loop.nowMilliseconds
                client.send(["GET", "k"], on: loop) { result in
                    first = (result, loop.nowMilliseconds - startedAt)
                    for _ in 0..<100 {
                        var completed = false
                        client.send(["GET", "k"], on: loop) { result in
                            later.append(result)
                            completed = true
                        }
                        laterCompletedSynchronously = laterCompletedSynchronously && completed
                    }
                    client.shutdown(on: loop) { finish() }
                }
            }
        }
        XCTAssertEqual(first?.0, .failure(.unavailable))
        XCTAssertLessThan(first?.1 ?? .max, 100 + schedulingSlack)
        XCTAssertEqual(later, Array(repeating: .failure(.unavailable), count: 100))
        XCTAssertTrue(laterCompletedSynchronously, "while backing off nothing is queued")
        XCTAssertEqual(log.all.count, 1, "\(log.all)")
        XCTAssertTrue(log.all.first?.contains("unreachable (connect: ECONNREFUSED") ?? false, "\(log.all)")
    }

    func testRestartedRedisOnTheSamePortIsReconnectedAndSubscriptionsRenewed() throws {
        let server = try RedisServerProcess()
        let log = Recorder<String>()
        let client = RedisClient(configuration: configuration(server), log: { log.append($0) })
        var beforeRestart: Result<RESPValue, RedisError>?
        var duringRestart: Result<RESPValue, RedisError>?
        var afterRestart: Result<RESPValue, RedisError>?
        var messages: [String] = []
        var reconnectMilliseconds: UInt64 = 0
        try withLoop { loop, finish in
            func publishUntilDelivered() {
                client.send(["PUBLISH", "events", "after restart"], on: loop) { result in
                    if messages.isEmpty {
                        loop.schedule(afterMilliseconds: 50) { publishUntilDelivered() }
                    } else {
                        client.shutdown(on: loop) { finish() }
                    }
                }
            }
            func getUntilSuccess(startedAt: UInt64) {
                client.send(["GET", "k"], on: loop) { result in
                    if case .success = result {
                        afterRestart = result
                        reconnectMilliseconds = loop.nowMilliseconds - startedAt
                        publishUntilDelivered()
                    } else {
                        loop.schedule(afterMilliseconds: 50) { getUntilSuccess(startedAt: startedAt) }
                    }
                }
            }
            loop.schedule(afterMilliseconds: 0) {
                client.subscribe(
                    channels: ["events"], on: loop,
                    handler: { _, message in messages.append(String(decoding: message, as: UTF8.self)) }
                ) { _ in
                    client.send(["SET", "k", "before"], on: loop) { result in
                        beforeRestart = result
                        server.stop()
                        client.send(["GET", "k"], on: loop) { result in
                            duringRestart = result
                            do {
                                try server.start()
                            } catch {
                                XCTFail("\(error)")
                            }
                            getUntilSuccess(startedAt: loop.nowMilliseconds)
                        }
                    }
                }
            }
        }
        XCTAssertEqual(beforeRestart, .success(.simpleString("OK")))
        XCTAssertTrue(
            [.connectionLost, .unavailable].contains(duringRestart?.failure), "\(String(describing: duringRestart))")
        XCTAssertEqual(afterRestart, .success(.null), "a fresh Redis without persistence")
        XCTAssertLessThan(reconnectMilliseconds, 2000 + schedulingSlack)
        XCTAssertEqual(messages, ["after restart"])
        XCTAssertEqual(log.all.filter { $0.contains("unreachable") }.count, 1, "\(log.all)")
        XCTAssertEqual(log.all.filter { $0.contains("reachable again") }.count, 1, "\(log.all)")
    }

    func testShutdownFailsWaitingAndLaterCommandsAndClosesEverything() throws {
        let server = try RedisServerProcess()
        let client = RedisClient(configuration: configuration(server))
        var inFlight: Result<RESPValue, RedisError>?
        var afterShutdown: Result<RESPValue, RedisError>?
        var subscribeAfterShutdown: Result<Void, RedisError>?
        var untouchedLoopShutDown = false
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.subscribe(channels: ["x"], on: loop, handler: { _, _ in })
                client.send(["SET", "a", "b"], on: loop) { result in
                    client.send(["BLPOP", "never", 0], on: loop) { inFlight = $0 }
                    loop.schedule(afterMilliseconds: 50) {
                        client.shutdown(on: loop) {
                            client.send(["GET", "a"], on: loop) { afterShutdown = $0 }
                            client.subscribe(channels: ["y"], on: loop, handler: { _, _ in }) {
                                subscribeAfterShutdown = $0
                            }
                            finish()
                        }
                    }
                }
            }
        }
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.shutdown(on: loop) {
                    untouchedLoopShutDown = true
                    finish()
                }
            }
        }
        XCTAssertEqual(inFlight, .failure(.shutDown))
        XCTAssertEqual(afterShutdown, .failure(.shutDown))
        XCTAssertEqual(subscribeAfterShutdown?.failure, .shutDown)
        XCTAssertTrue(untouchedLoopShutDown)
    }
}

/// How late a loop may run its timers on a shared machine (`swift test --parallel` next to other builds): a
/// starved loop fires late, never early, so time bounds in these tests are "expected + slack" and lower bounds
/// stay exact. A hang still fails: the bounds are seconds, the watchdog ends the loop.
let schedulingSlack: UInt64 = 1000

struct Message: Equatable, Sendable {
    var channel: String
    var bytes: [UInt8]
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { error } else { nil }
    }
}

extension RedisClient {
    /// Sends `commands` one after another, each after the previous reply, and hands back every result.
    func sendSequence(
        _ commands: [[RedisArgument]], on loop: EventLoop,
        _ completion: @escaping ([Result<RESPValue, RedisError>]) -> Void
    ) {
        var results: [Result<RESPValue, RedisError>] = []
        func sendNext() {
            guard results.count < commands.count else { return completion(results) }
            send(commands[results.count], on: loop) { result in
                results.append(result)
                sendNext()
            }
        }
        sendNext()
    }
}
