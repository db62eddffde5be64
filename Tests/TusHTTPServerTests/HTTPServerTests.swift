import Synchronization
import TusCore
import TusHTTP1
import TusHTTPServer
import TusTestSupport
import XCTest

final class HTTPServerTests: XCTestCase {
    func testPipelinedRequestsAreAnsweredInOrder() throws {
        try withServer(EchoHandler()) { server in
            let client = try RawHTTPClient(port: server.port)
            var wire = ""
            for i in 1...4 {
                wire += "POST /r\(i) HTTP/1.1\r\nHost: x\r\nContent-Length: \(i)\r\n\r\n" + String(repeating: "a", count: i)
            }
            client.send(wire)
            for i in 1...4 {
                let response = try client.readResponse()
                XCTAssertEqual(response.status, 200)
                XCTAssertTrue(response.bodyText.hasPrefix("POST /r\(i) bytes=\(i) "), response.bodyText)
                // RFC 9110 §6.6.1: an origin server with a clock sends Date, as an IMF-fixdate.
                let date = try XCTUnwrap(response.header("Date"))
                XCTAssertTrue(date.hasSuffix(" GMT") && date.count == 29, date)
            }
        }
    }

    /// A bodiless request leaves the socket reading while its handler works (no pause and resume per request):
    /// a request pipelined behind it meanwhile is held until the first response is out, and answered in order.
    func testRequestPipelinedWhileABodilessOneIsHandledWaitsItsTurn() throws {
        try withServer(AnswerLater(milliseconds: 150)) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
            usleep(50_000)
            client.send("GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
            for path in ["/first", "/second"] {
                let response = try client.readResponse()
                XCTAssertEqual(response.status, 200)
                XCTAssertEqual(response.bodyText, path)
                XCTAssertNil(response.header("Connection"), "kept alive")
            }
        }
    }

    /// A client that half-closes after its request (the end of its stream arrives while the handler works, now
    /// that reading goes on) still gets the whole response, then the connection closes.
    func testHalfClosedClientStillGetsItsResponse() throws {
        try withServer(AnswerLater(milliseconds: 150)) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("GET /only HTTP/1.1\r\nHost: x\r\n\r\n")
            client.closeWrite()
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.bodyText, "/only")
            XCTAssertEqual(response.header("Connection"), "close")
            XCTAssertTrue(client.waitForClose())
        }
    }

    /// A client that resets its connection while a bodiless request is handled (the reset is read now that reading
    /// goes on) still holds its connection slot until the handler answers, as when the reset went unread: otherwise
    /// connect, request, reset, repeat starts handlers without bound, past `maxConnections`.
    func testResetDuringABodilessRequestKeepsItsSlotUntilTheHandlerAnswers() throws {
        let handler = CountingAnswerLater(milliseconds: 800)
        try withServer(handler, configure: { $0.maxConnections = 2 }) { server in
            for _ in 0..<6 {
                let client = try RawHTTPClient(port: server.port)
                client.send("GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
                usleep(60_000)  // the head is read and handed to the handler
                client.resetOnClose()  // RST when `client` goes at the end of this iteration
            }
            usleep(100_000)
            XCTAssertLessThanOrEqual(handler.mostInFlight.load(ordering: .relaxed), 2, "handlers beyond maxConnections")
            usleep(900_000)
            // Once the handlers answered (to reset sockets), their slots are free again.
            let client = try RawHTTPClient(port: server.port)
            client.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(try client.readResponse().bodyText, "/after")
        }
    }

    func testChunkedBodyWithTrailersReachesTheHandler() throws {
        try withServer(EchoHandler()) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send(
                "PATCH /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Upload-Checksum\r\n\r\n"
                    + "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nUpload-Checksum: sha1 abc=\r\n\r\n")
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(
                response.bodyText,
                "PATCH /u bytes=11 sum=\(rollingSum(Array("hello world".utf8))) trailers=Upload-Checksum=sha1 abc=\n")
        }
    }

    func testExpectContinueIsSentOnlyWhenTheHandlerReadsTheBody() throws {
        try withServer(EchoHandler(rejectOver: 100)) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            let interim = try client.readResponse()
            XCTAssertEqual(interim.status, 100)
            client.send("hello")
            let final = try client.readResponse()
            XCTAssertEqual(final.status, 200)
            XCTAssertTrue(final.bodyText.contains("bytes=5"))

            // Rejected head: the final status comes without 100 and without the body being read.
            let second = try RawHTTPClient(port: server.port)
            second.send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
            let rejected = try second.readResponse()
            XCTAssertEqual(rejected.status, 413)
            XCTAssertEqual(rejected.header("Connection")?.lowercased(), "close")
            XCTAssertTrue(second.waitForClose())
        }
    }

    func testMalformedInputIsAnsweredAndTheServerKeepsServing() throws {
        try withServer(EchoHandler()) { server in
            let cases: [(String, [UInt8], Int)] = [
                ("junk", Array("\u{16}\u{03}\u{01}\u{02}\u{00}garbage\r\n\r\n".utf8), 400),
                ("CL+TE", Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".utf8), 400),
                ("huge header", Array(("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 256 * 1024) + "\r\n\r\n").utf8), 431),
                ("unknown method", Array("BREW / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), 501),
                ("bad version", Array("GET / HTTP/2.0\r\nHost: x\r\n\r\n".utf8), 505),
                ("bad chunk", Array("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8), 400),
            ]
            for (name, bytes, status) in cases {
                let client = try RawHTTPClient(port: server.port)
                client.send(bytes)
                let response = try client.readResponse()
                XCTAssertEqual(response.status, status, name)
                XCTAssertTrue(client.waitForClose(), "\(name): connection should be closed after a framing error")
            }
            let healthy = try RawHTTPClient(port: server.port)
            healthy.send("GET /still-alive HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(try healthy.readResponse().status, 200)
        }
    }

    func testLargeBodyWithSlowConsumerIsBoundedByBackpressure() throws {
        let handler = EchoHandler(writeDelayMilliseconds: 2)
        try withServer(handler, configure: { $0.readChunkSize = 64 * 1024 }) { server in
            let client = try RawHTTPClient(port: server.port, timeoutSeconds: 30)
            let size = 8 * 1024 * 1024
            var body = [UInt8](repeating: 0, count: size)
            for i in 0..<size { body[i] = UInt8(truncatingIfNeeded: i &* 7) }
            client.send(Array("PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: \(size)\r\n\r\n".utf8))
            client.send(body)
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.bodyText, "PUT /big bytes=\(size) sum=\(rollingSum(body)) trailers=\n")
            let stats = handler.stats.withLock { $0 }
            XCTAssertLessThanOrEqual(stats.maxOutstanding, server.configuration.maxOutstandingFragments + 1)
            XCTAssertEqual(stats.bodyBytes, size)
        }
    }

    /// Regression: a chunked body of one-byte chunks used to turn one read into thousands of fragments, all
    /// handed to the sink at once (backpressure only stopped the socket, not the framing).
    func testTinyChunksDoNotBypassBackpressure() throws {
        let handler = EchoHandler(writeDelayMilliseconds: 1)
        try withServer(handler) { server in
            let client = try RawHTTPClient(port: server.port, timeoutSeconds: 30)
            let count = 4_000
            var wire = Array("PATCH /tiny HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            var body: [UInt8] = []
            for i in 0..<count {
                let byte = UInt8(truncatingIfNeeded: i)
                body.append(byte)
                wire += Array("1\r\n".utf8) + [byte] + Array("\r\n".utf8)
            }
            wire += Array("0\r\n\r\n".utf8)
            client.send(wire)
            let response = try client.readResponse()
            XCTAssertEqual(response.bodyText, "PATCH /tiny bytes=\(count) sum=\(rollingSum(body)) trailers=\n")
            let stats = handler.stats.withLock { $0 }
            XCTAssertLessThanOrEqual(stats.maxOutstanding, server.configuration.maxOutstandingFragments + 1)
        }
    }

    /// Regression: a body that breaks its chunked framing after the handler already answered (413 past the
    /// upload's length) used to get a second, parser-made response on the wire.
    func testFramingErrorAfterTheHandlerAnsweredSendsNoSecondResponse() throws {
        final class RejectAfterFirstFragment: HTTPRequestHandler {
            func handle(_ head: RequestHead, exchange: any HTTPExchange) {
                exchange.readBody(into: Sink(exchange))
            }
        }
        final class Sink: HTTPBodySink {
            let exchange: any HTTPExchange
            init(_ exchange: any HTTPExchange) { self.exchange = exchange }
            func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
                exchange.respond(HTTPResponse(status: .payloadTooLarge, text: "too much", closeConnection: true))
                done()
            }
            func bodyEnd(trailers: HTTPHeaders) { exchange.respond(HTTPResponse(status: .ok)) }
            func bodyAborted(_ reason: BodyAbortReason) {}
        }
        try withServer(RejectAfterFirstFragment()) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nZZ\r\n")
            let first = try client.readResponse()
            XCTAssertEqual(first.status, 413)
            XCTAssertTrue(client.waitForClose(), "exactly one response, then the connection closes")
        }
    }

    /// `stopBody`: the sink hears nothing more, what still arrives is read and dropped, and the late response (a
    /// handler that cleaned up first, as a hook's `StopUpload` does) goes out and closes the connection.
    func testStoppedBodyIsDroppedUntilTheLateResponse() throws {
        final class Count: Sendable {
            let value = Mutex(0)
        }
        final class StopThenAnswerLater: HTTPRequestHandler {
            let heardAfterStop = Count()
            func handle(_ head: RequestHead, exchange: any HTTPExchange) {
                exchange.readBody(into: Sink(exchange, heardAfterStop))
            }
        }
        final class Sink: HTTPBodySink {
            let exchange: any HTTPExchange
            let heardAfterStop: Count
            var stopped = false
            init(_ exchange: any HTTPExchange, _ heardAfterStop: Count) {
                self.exchange = exchange
                self.heardAfterStop = heardAfterStop
            }
            func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
                done()
                guard !stopped else { return heardAfterStop.value.withLock { $0 += 1 } }
                stopped = true
                exchange.stopBody()
                let exchange = exchange
                _ = exchange.executor.schedule(afterMilliseconds: 300) {
                    exchange.respond(HTTPResponse(status: .badRequest, text: "stopped", closeConnection: true))
                }
            }
            func bodyEnd(trailers: HTTPHeaders) { if stopped { heardAfterStop.value.withLock { $0 += 1 } } }
            func bodyAborted(_ reason: BodyAbortReason) { if stopped { heardAfterStop.value.withLock { $0 += 1 } } }
        }
        let handler = StopThenAnswerLater()
        try withServer(handler, configure: { $0.spliceBodies = false }) { server in
            let client = try RawHTTPClient(port: server.port)
            let length = 4 << 20
            client.send("PATCH /u HTTP/1.1\r\nHost: x\r\nContent-Length: \(length)\r\n\r\nfirst")
            usleep(50_000)
            // Sent while the handler has not answered yet: read and dropped, not delivered (and not stuck).
            client.send([UInt8](repeating: 0x61, count: 256 << 10))
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 400)
            XCTAssertTrue(client.waitForClose(), "the response closes the connection")
            XCTAssertEqual(handler.heardAfterStop.value.withLock { $0 }, 0, "nothing reached the sink after stopBody")
        }
    }

    func testClientDisappearingMidBodyIsReportedToTheSink() throws {
        let handler = EchoHandler()
        try withServer(handler) { server in
            do {
                let client = try RawHTTPClient(port: server.port)
                client.send("PATCH /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-some")
                usleep(100_000)
            }
            for _ in 0..<50 where handler.stats.withLock({ $0.aborted.isEmpty }) { usleep(20_000) }
            XCTAssertEqual(handler.stats.withLock { $0.aborted }, [.clientClosed])
            XCTAssertEqual(handler.stats.withLock { $0.bodyBytes }, 9)
        }
    }

    func testStalledBodyTimesOutAndTheSinkIsTold() throws {
        let handler = EchoHandler()
        try withServer(handler, configure: { $0.bodyTimeoutMilliseconds = 300 }) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("PATCH /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            XCTAssertTrue(client.waitForClose())
            for _ in 0..<50 where handler.stats.withLock({ $0.aborted.isEmpty }) { usleep(20_000) }
            XCTAssertEqual(handler.stats.withLock { $0.aborted }, [.timeout])
        }
    }

    /// End-to-end proof of two decisions `HTTPConnectionStateMachineTests` check on a manual clock: a head that
    /// never completes is answered 408 and closed; an idle keep-alive connection is closed without a response.
    func testSlowHeadGets408AndIdleConnectionIsClosed() throws {
        try withServer(EchoHandler(), configure: {
            $0.headTimeoutMilliseconds = 300
            $0.idleTimeoutMilliseconds = 300
        }) { server in
            let slow = try RawHTTPClient(port: server.port)
            slow.send("GET / HTTP/1.1\r\nHost: x\r\n")
            let response = try slow.readResponse()
            XCTAssertEqual(response.status, 408)
            XCTAssertTrue(slow.waitForClose())

            let idle = try RawHTTPClient(port: server.port)
            idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(try idle.readResponse().status, 200)
            XCTAssertTrue(idle.waitForClose(), "closed after the idle timeout, with no second response")
        }
    }

    func testHeadResponseHasNoBodyAndHTTP10Closes() throws {
        final class Fixed: HTTPRequestHandler {
            func handle(_ head: RequestHead, exchange: any HTTPExchange) {
                exchange.respond(HTTPResponse(status: .ok, text: "body"))
            }
        }
        try withServer(Fixed()) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            let head = try client.readResponse(forHead: true)
            XCTAssertEqual(head.status, 200)
            let get = try client.readResponse()
            XCTAssertEqual(get.bodyText, "body\n", "a HEAD body would have been read as the next response")

            let old = try RawHTTPClient(port: server.port)
            old.send("GET / HTTP/1.0\r\n\r\n")
            XCTAssertEqual(try old.readResponse().status, 200)
            XCTAssertTrue(old.waitForClose())
        }
    }

    func testMaxConnectionsAnswers503() throws {
        try withServer(EchoHandler(), configure: { $0.maxConnections = 2 }) { server in
            let a = try RawHTTPClient(port: server.port)
            let b = try RawHTTPClient(port: server.port)
            a.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            b.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(try a.readResponse().status, 200)
            XCTAssertEqual(try b.readResponse().status, 200)
            let c = try RawHTTPClient(port: server.port)
            XCTAssertEqual(try c.readResponse().status, 503)
        }
    }

    func testShutdownLetsAnInFlightRequestFinish() throws {
        let handler = EchoHandler()
        var configuration = HTTPServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.shutdownTimeoutMilliseconds = 5000
        let server = HTTPServer(configuration: configuration, handler: handler)
        try server.start()
        let client = try RawHTTPClient(port: server.port)
        client.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        usleep(100_000)
        server.shutdown()
        client.send("67890")
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("Connection")?.lowercased(), "close")
        server.wait()
    }
}

/// Answers each request with its path after a delay on the loop, without reading a body.
private final class AnswerLater: HTTPRequestHandler {
    let milliseconds: UInt64
    init(milliseconds: UInt64) { self.milliseconds = milliseconds }

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        let path = String(head.path)
        _ = exchange.executor.schedule(afterMilliseconds: milliseconds) {
            exchange.respond(HTTPResponse(status: .ok, body: Array(path.utf8)))
        }
    }
}

/// `AnswerLater` that also counts the requests being handled at once (the handler runs on the loop thread).
private final class CountingAnswerLater: HTTPRequestHandler {
    let milliseconds: UInt64
    let inFlight = Atomic<Int>(0)
    let mostInFlight = Atomic<Int>(0)
    init(milliseconds: UInt64) { self.milliseconds = milliseconds }

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        let path = String(head.path)
        let now = inFlight.add(1, ordering: .relaxed).newValue
        mostInFlight.max(now, ordering: .relaxed)
        _ = exchange.executor.schedule(afterMilliseconds: milliseconds) { [self] in
            inFlight.subtract(1, ordering: .relaxed)
            exchange.respond(HTTPResponse(status: .ok, body: Array(path.utf8)))
        }
    }
}
