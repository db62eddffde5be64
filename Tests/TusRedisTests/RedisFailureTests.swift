import TusLoop
import TusRedis
import TusTestSupport
import XCTest

/// The paths where Redis is not there: a connect that never completes, and a subscriber whose Redis goes silent.
final class RedisFailureTests: XCTestCase {
    /// A command waiting for a connection is still bound by its own deadline; when the connect attempt itself
    /// times out, what still waits fails with `.unavailable`; while backing off afterwards, commands fail at once.
    func testCommandsWaitingForAConnectionAreBoundByTheirDeadlineAndTheConnectTimeout() throws {
        let blackHole = BlackHoleListener()
        let log = Recorder<String>()
        var configuration = RedisConfiguration(host: "127.0.0.1", port: blackHole.port)
        configuration.commandTimeoutMilliseconds = 200
        configuration.connectTimeoutMilliseconds = 500
        configuration.reconnectInitialDelayMilliseconds = 1000
        let client = RedisClient(configuration: configuration, log: { log.append($0) })
        var outcomes: [(name: String, sentAt: UInt64, completedAt: UInt64, result: Result<RESPValue, RedisError>)] = []
        var startedAt: UInt64 = 0
        try withLoop { loop, finish in
            func send(_ name: String) {
                let sentAt = loop.nowMilliseconds - startedAt
                client.send(["GET", "k"], on: loop) { result in
                    outcomes.append((name, sentAt, loop.nowMilliseconds - startedAt, result))
                }
            }
            loop.schedule(afterMilliseconds: 0) {
                startedAt = loop.nowMilliseconds
                send("first")
                loop.schedule(afterMilliseconds: 350) { send("second") }
                loop.schedule(afterMilliseconds: 650) {
                    send("while backing off")
                    client.shutdown(on: loop) { finish() }
                }
            }
        }
        XCTAssertEqual(outcomes.map(\.name), ["first", "second", "while backing off"])
        guard outcomes.count == 3 else { return }
        XCTAssertEqual(outcomes[0].result.failure, .timedOut)
        XCTAssertGreaterThanOrEqual(outcomes[0].completedAt, 190)
        XCTAssertLessThanOrEqual(outcomes[0].completedAt, 200 + schedulingSlack)
        XCTAssertEqual(outcomes[1].result.failure, .unavailable)
        XCTAssertGreaterThanOrEqual(outcomes[1].completedAt, 490)
        XCTAssertLessThanOrEqual(outcomes[1].completedAt, 500 + schedulingSlack)
        XCTAssertEqual(outcomes[2].result.failure, .unavailable)
        XCTAssertEqual(outcomes[2].completedAt, outcomes[2].sentAt, "fails at once")
        XCTAssertEqual(log.all.count, 1)
        XCTAssertTrue(log.all.first?.contains("connect: ETIMEDOUT") ?? false, "\(log.all)")
    }

    /// Shutting a loop's client down while its connection attempt hangs: the waiting command fails with
    /// `.shutDown` at once, and the loop still ends with every handle closed (the attempt's socket is closed by
    /// its connect timeout).
    func testShutdownWhileConnectingLeavesNothingOpen() throws {
        let blackHole = BlackHoleListener()
        var configuration = RedisConfiguration(host: "127.0.0.1", port: blackHole.port)
        configuration.connectTimeoutMilliseconds = 300
        let client = RedisClient(configuration: configuration)
        var result: Result<RESPValue, RedisError>?
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.send(["GET", "k"], on: loop) { result = $0 }
                loop.schedule(afterMilliseconds: 50) {
                    client.shutdown(on: loop) {
                        XCTAssertEqual(result?.failure, .shutDown)
                        finish()
                    }
                }
            }
        }
        XCTAssertEqual(result?.failure, .shutDown)
    }

    /// A subscription carries no traffic of its own, so only the keep-alive PING notices a paused Redis; after
    /// SIGCONT the channels are subscribed again and messages arrive, without the subscriber doing anything.
    func testSubscriberNoticesASilentRedisAndSubscribesAgain() throws {
        let server = try RedisServerProcess()
        let log = Recorder<String>()
        var configuration = RedisConfiguration(host: "127.0.0.1", port: server.port)
        configuration.commandTimeoutMilliseconds = 300
        configuration.subscriberPingIntervalMilliseconds = 200
        let client = RedisClient(configuration: configuration, log: { log.append($0) })
        var messages: [String] = []
        var logDuringPause: [String] = []
        try withLoop(timeoutMilliseconds: 10_000) { loop, finish in
            func publishUntilDelivered() {
                client.send(["PUBLISH", "locks", "released"], on: loop) { _ in
                    if messages.isEmpty {
                        loop.schedule(afterMilliseconds: 50) { publishUntilDelivered() }
                    } else {
                        client.shutdown(on: loop) { finish() }
                    }
                }
            }
            loop.schedule(afterMilliseconds: 0) {
                client.subscribe(
                    channels: ["locks"], on: loop,
                    handler: { _, message in messages.append(String(decoding: message, as: UTF8.self)) }
                ) { result in
                    XCTAssertNotNil(try? result.get())
                    server.pause()
                    loop.schedule(afterMilliseconds: 1200) {
                        logDuringPause = log.all
                        server.resume()
                        publishUntilDelivered()
                    }
                }
            }
        }
        XCTAssertEqual(messages.first, "released")
        XCTAssertEqual(logDuringPause.count, 1, "\(logDuringPause)")
        XCTAssertTrue(logDuringPause.first?.contains("no reply within 300 ms") ?? false, "\(logDuringPause)")
        XCTAssertEqual(log.all.filter { $0.contains("reachable again") }.count, 1, "\(log.all)")
    }
}
