import Synchronization
import TusHTTP1
import TusHTTPServer
import TusLoop
import TusTestSupport
import XCTest

@testable import TusClient

/// Answers from a script: the first `failures` requests get 500, the rest 200 with the request body echoed.
/// Counts connections by remote address and can hold answers back.
final class ScriptedHandler: HTTPRequestHandler, @unchecked Sendable {
    let failures: Int
    let delayMilliseconds: UInt64
    private let state = Mutex<(requests: Int, peers: Set<String>)>((0, []))

    init(failures: Int = 0, delayMilliseconds: UInt64 = 0) {
        self.failures = failures
        self.delayMilliseconds = delayMilliseconds
    }

    var requests: Int { state.withLock { $0.requests } }
    var connections: Int { state.withLock { $0.peers.count } }

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        let number = state.withLock { state in
            state.requests += 1
            state.peers.insert(exchange.remoteAddress ?? "?")
            return state.requests
        }
        let status: HTTPStatus = number <= failures ? .internalServerError : .ok
        let answer = { exchange.respond(HTTPResponse(status: status, text: "attempt \(number)")) }
        if delayMilliseconds > 0 {
            _ = exchange.executor.schedule(afterMilliseconds: delayMilliseconds, answer)
        } else {
            answer()
        }
    }
}

final class HTTPClientPoolTests: XCTestCase {
    var server: HTTPServer!
    var driver: LoopDriver!

    func start(_ handler: ScriptedHandler) throws {
        var configuration = HTTPServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.loops = 1
        server = HTTPServer(configuration: configuration, handler: handler)
        try server.start()
        driver = try LoopDriver()
    }

    override func tearDown() {
        server?.shutdown()
        server?.wait()
        if let driver { XCTAssertEqual(driver.shutDown(), 0, "pool left handles open") }
    }

    func makePool(_ adjust: (inout HTTPClientPoolConfiguration) -> Void = { _ in }) -> HTTPClientPool {
        var configuration = HTTPClientPoolConfiguration(host: "127.0.0.1", port: server.port)
        configuration.retry.backoff = .constant(10)
        adjust(&configuration)
        return HTTPClientPool(loop: driver.loop, configuration: configuration)
    }

    func post(_ pool: HTTPClientPool, retrySafe: Bool = true) -> Result<HTTPClientResponse, HTTPClientPoolError> {
        driver.run { done in
            pool.send(HTTPClientRequestHead(method: .POST, path: "/hook"), body: Array("{}".utf8), retrySafe: retrySafe, done)
        }
    }

    func testSequentialRequestsReuseOneConnection() throws {
        let handler = ScriptedHandler()
        try start(handler)
        let pool = makePool()
        for _ in 0..<5 { XCTAssertEqual(try post(pool).get().statusCode, 200) }
        XCTAssertEqual(handler.connections, 1)
        XCTAssertEqual(pool.openConnections, 1)
        driver.run { done in
            pool.close()
            done(())
        } as Void
    }

    func testRetrySafeRequestsAreRetriedAfter5xx() throws {
        let handler = ScriptedHandler(failures: 2)
        try start(handler)
        let pool = makePool { $0.retry.retries = 3 }
        let response = try post(pool).get()
        XCTAssertEqual(response.statusCode, 200)
        XCTAssertEqual(String(decoding: response.body, as: UTF8.self), "attempt 3\n")
        XCTAssertEqual(handler.requests, 3)
        driver.run { done in
            pool.close()
            done(())
        } as Void
    }

    /// Counts the attempts it signed and stamps each with its number.
    final class CountingSigner: HTTPRequestSigner {
        let count = Atomic<Int>(0)
        func sign(_ head: inout HTTPClientRequestHead, payload: [UInt8]?) {
            let number = count.add(1, ordering: .relaxed).newValue
            head.headers.set("X-Attempt", String(number))
        }
    }

    func testEveryAttemptIsSignedAfresh() throws {
        let handler = ScriptedHandler(failures: 2)
        try start(handler)
        let signer = CountingSigner()
        let pool = makePool {
            $0.retry.retries = 3
            $0.signer = signer
        }
        XCTAssertEqual(try post(pool).get().statusCode, 200)
        XCTAssertEqual(signer.count.load(ordering: .relaxed), 3)
        XCTAssertEqual(handler.requests, 3)
        driver.run { done in
            pool.close()
            done(())
        } as Void
    }

    func testThePolicyDecidesWhatIsRetried() throws {
        let handler = ScriptedHandler(failures: 2)
        try start(handler)
        let pool = makePool { $0.retry = RetryPolicy(retries: 3, backoff: .constant(10), isRetryable: { _ in false }) }
        XCTAssertEqual(try post(pool).get().statusCode, 500)
        XCTAssertEqual(handler.requests, 1)
        driver.run { done in
            pool.close()
            done(())
        } as Void
    }

    func testCancelDuringTheBackoffEndsTheRequestAtOnce() throws {
        let handler = ScriptedHandler(failures: 5)
        try start(handler)
        let pool = makePool { $0.retry = RetryPolicy(retries: 3, backoff: .constant(10_000)) }
        let started = ContinuousClock.now
        let result: Result<HTTPClientResponse, HTTPClientPoolError> = driver.run { done in
            let request = HTTPClientRequest(
                head: HTTPClientRequestHead(method: .POST, path: "/hook"), body: .bytes(Array("{}".utf8)),
                retrySafe: true)
            let handle = pool.send(request, done)
            _ = self.driver.loop.schedule(afterMilliseconds: 300) { handle.cancel() }
        }
        guard case .failure(.cancelled) = result else { return XCTFail("\(result)") }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "did not wait out the backoff")
        XCTAssertEqual(handler.requests, 1)
        driver.run { done in
            pool.close()
            done(())
        } as Void
    }

    /// Bytes already handed to a streaming consumer cannot be taken back, so such a request is not retried;
    /// the same failure with a collected body is.
    func testAResponseThatFailsAfterStreamingIsNotRetried() throws {
        let responder = TruncatingResponder()
        defer { responder.stop() }
        driver = try LoopDriver()
        var configuration = HTTPClientPoolConfiguration(host: "127.0.0.1", port: responder.port)
        configuration.retry = RetryPolicy(retries: 2, backoff: .constant(10))
        let pool = HTTPClientPool(loop: driver.loop, configuration: configuration)
        var streamed: [UInt8] = []
        let head = HTTPClientRequestHead(method: .GET, path: "/object")
        let result: Result<HTTPClientResponse, HTTPClientPoolError> = driver.run { done in
            let request = HTTPClientRequest(
                head: head, retrySafe: true,
                streamBody: { bytes, resume in
                    streamed += bytes
                    resume()
                })
            pool.send(request, done)
        }
        guard case .failure(.attempt(.closedBeforeResponse)) = result else { return XCTFail("\(result)") }
        XCTAssertEqual(streamed, Array(repeating: 65, count: 5))
        XCTAssertEqual(responder.connections, 1, "not retried")

        let collected: Result<HTTPClientResponse, HTTPClientPoolError> = driver.run { done in
            pool.send(HTTPClientRequest(head: head, retrySafe: true), done)
        }
        guard case .failure(.attempt(.closedBeforeResponse)) = collected else { return XCTFail("\(collected)") }
        XCTAssertEqual(responder.connections, 4, "a collected body is retried twice")
        driver.run { done in
            pool.close()
            done(())
        } as Void
    }

    func testOtherRequestsAreNot() throws {
        let handler = ScriptedHandler(failures: 2)
        try start(handler)
        let pool = makePool { $0.retry.retries = 3 }
        XCTAssertEqual(try post(pool, retrySafe: false).get().statusCode, 500)
        XCTAssertEqual(handler.requests, 1)
        driver.run { done in
            pool.close()
            done(())
        } as Void
    }

    func testRefusedConnectionsFailAfterTheRetries() throws {
        try start(ScriptedHandler())
        let port = server.port
        server.shutdown()
        server.wait()
        server = nil
        var configuration = HTTPClientPoolConfiguration(host: "127.0.0.1", port: port)
        configuration.retry = RetryPolicy(retries: 2, backoff: .constant(20))
        let pool = HTTPClientPool(loop: driver.loop, configuration: configuration)
        let started = ContinuousClock.now
        let result = post(pool)
        guard case .failure(.attempt(.connect)) = result else { return XCTFail("\(result)") }
        // libuv's timers run on its millisecond loop clock, cached at the start of each iteration: each may fire up
        // to 1 ms before the wall clock says its time is up.
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(38), "two backoffs")
        XCTAssertEqual(pool.openConnections, 0)
    }

    func testQueueIsBounded() throws {
        try start(ScriptedHandler(delayMilliseconds: 200))
        let pool = makePool {
            $0.maxConnectionsPerLoop = 1
            $0.maxQueuedPerLoop = 1
        }
        let outcomes: [String] = driver.run { done in
            var results: [String] = []
            for _ in 0..<3 {
                pool.send(HTTPClientRequestHead(method: .POST, path: "/"), retrySafe: false) { result in
                    switch result {
                    case .success(let response): results.append(String(response.statusCode))
                    case .failure(let error): results.append("\(error)")
                    }
                    if results.count == 3 { done(results) }
                }
            }
        }
        XCTAssertEqual(outcomes, ["too many queued requests", "200", "200"])
        driver.run { done in
            pool.close()
            done(())
        } as Void
    }

    func testRequestTimeout() throws {
        try start(ScriptedHandler(delayMilliseconds: 2000))
        let pool = makePool { $0.requestTimeoutMilliseconds = 100 }
        let result = post(pool, retrySafe: false)
        guard case .failure(.attempt(.timedOut)) = result else { return XCTFail("\(result)") }
    }
}
