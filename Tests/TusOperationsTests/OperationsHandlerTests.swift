import TusHTTP1
import TusOperations
import TusProtocol
import TusTestSupport
import XCTest

/// Records the heads it gets and answers 204, or holds the exchange for the test to answer.
final class EchoHandler: HTTPRequestHandler, @unchecked Sendable {
    var heads: [RequestHead] = []
    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        heads.append(head)
        exchange.respond(HTTPResponse(status: .noContent))
    }
}

final class OperationsHandlerTests: XCTestCase {
    func testRequestIDIsAcceptedWhenSaneAndMadeOtherwise() {
        XCTAssertEqual(RequestID.accept("abc-123_x.y:z"), "abc-123_x.y:z")
        XCTAssertNil(RequestID.accept(""))
        XCTAssertNil(RequestID.accept("has space"))
        XCTAssertNil(RequestID.accept("line\nbreak"))
        XCTAssertNil(RequestID.accept("quote\""))
        XCTAssertNil(RequestID.accept(String(repeating: "a", count: 129)))
        XCTAssertNotNil(RequestID.accept(String(repeating: "a", count: 128)))
        XCTAssertEqual(RequestID.make().count, 32)
        XCTAssertNotEqual(RequestID.make(), RequestID.make())
    }

    /// A thread's ids: one random half (16 lowercase hex digits), then its counter in 16 hex digits, one up per id.
    func testMadeRequestIDsAreTheThreadsPrefixAndACountingSuffix() {
        let first = RequestID.make(), second = RequestID.make()
        XCTAssertEqual(first.prefix(16), second.prefix(16))
        let hexDigits = Set("0123456789abcdef")
        XCTAssertTrue(first.allSatisfy { hexDigits.contains($0) }, first)
        guard let a = UInt64(first.suffix(16), radix: 16), let b = UInt64(second.suffix(16), radix: 16) else {
            return XCTFail("not hex: \(first) \(second)")
        }
        XCTAssertEqual(b, a + 1)
    }

    func testEveryResponseCarriesTheRequestIDTheApplicationSaw() {
        let echo = EchoHandler()
        let client = TusTestClient(handler: OperationsHandler(next: echo, metrics: nil))
        let given = client.send(.HEAD, "/files/x", headers: ["X-Request-ID": "client-chosen-1"])
        XCTAssertEqual(given.header("X-Request-ID"), "client-chosen-1")
        XCTAssertEqual(echo.heads.last?.headers["X-Request-ID"], "client-chosen-1")

        let replaced = client.send(.HEAD, "/files/x", headers: ["X-Request-ID": "evil\" injected=1"])
        let made = replaced.header("X-Request-ID") ?? ""
        XCTAssertEqual(made.count, 32)
        XCTAssertEqual(echo.heads.last?.headers.values(for: "X-Request-ID"), [made], "one id, the same one")

        XCTAssertNotNil(client.send(.GET, "/healthz").header("X-Request-ID"))
    }

    /// The wrapper passes 1xx through untouched (no request id: that is the final response's), and the fake
    /// exchange, like a connection, keeps none after the final response.
    func testInformationalResponsesPassThroughInOrder() {
        final class Hinting: HTTPRequestHandler, @unchecked Sendable {
            func hint(_ location: String) -> HTTPResponse {
                HTTPResponse(status: .uploadResumptionSupported, headers: ["Location": location])
            }
            func handle(_ head: RequestHead, exchange: any HTTPExchange) {
                exchange.sendInformational(hint("/a"))
                exchange.sendInformational(HTTPResponse(status: HTTPStatus(code: 101)))
                exchange.sendInformational(hint("/b"))
                exchange.respond(HTTPResponse(status: .created))
                exchange.sendInformational(hint("/c"))
            }
        }
        let exchange = FakeExchange(head: RequestHead(method: .POST, target: "/files/", version: .http1_1))
        OperationsHandler(next: Hinting(), metrics: nil).handle(exchange.head, exchange: exchange)
        XCTAssertEqual(exchange.informationalResponses.map { $0.headers["Location"] }, ["/a", "/b"])
        XCTAssertNil(exchange.informationalResponses.first?.headers["X-Request-ID"])
        XCTAssertEqual(exchange.status, 201)
        XCTAssertNotNil(exchange.header("X-Request-ID"))
    }

    func testHealthAnswersWithoutTheApplication() {
        let echo = EchoHandler()
        let client = TusTestClient(handler: OperationsHandler(next: echo, metrics: nil))
        let health = client.send(.GET, "/healthz")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(client.send(.GET, "/readyz").status, 200, "no checks: ready")
        XCTAssertTrue(echo.heads.isEmpty)
        XCTAssertEqual(client.send(.GET, "/metrics").status, 204, "metrics off: the application's path")
    }

    func testReadinessFailsOnAnyCheckAndOnSilence() {
        let failing = ReadinessCheck(name: "state") { _, completion in completion("unavailable(redis down)") }
        let fine = ReadinessCheck(name: "upload-dir") { _, completion in completion(nil) }
        let silent = ReadinessCheck(name: "slow") { _, _ in }
        let client = TusTestClient(
            handler: OperationsHandler(next: EchoHandler(), metrics: nil, readinessChecks: [fine, failing]))
        let answer = client.send(.GET, "/readyz")
        XCTAssertEqual(answer.status, 503)
        let text = String(decoding: answer.response!.body, as: UTF8.self)
        XCTAssertTrue(text.contains("state: unavailable(redis down)"), text)
        XCTAssertTrue(text.contains("upload-dir: ok"), text)

        let stuck = TusTestClient(handler: OperationsHandler(next: EchoHandler(), metrics: nil, readinessChecks: [silent]))
        let waiting = stuck.send(.GET, "/readyz")
        XCTAssertFalse(waiting.hasResponded)
        stuck.executor.advance(byMilliseconds: 2000)
        XCTAssertEqual(waiting.status, 503)
        XCTAssertTrue(String(decoding: waiting.response!.body, as: UTF8.self).contains("slow: timed out"))
    }

    func testMetricsCountRequestsUploadsBytesAndErrors() throws {
        let metrics = MetricsRegistry(connectionsOpen: { 3 })
        let tus = TusHandler(store: MemoryUploadStore(), events: metrics)
        let client = TusTestClient(handler: OperationsHandler(next: tus, metrics: metrics))
        let path = try XCTUnwrap(client.create(length: 5))
        client.patch(path, offset: 0, body: [1, 2, 3, 4, 5])
        client.send(.HEAD, "/files/does-not-exist")
        client.send(.DELETE, path)

        let scrape = client.send(.GET, "/metrics")
        XCTAssertEqual(scrape.status, 200)
        XCTAssertEqual(scrape.header("Content-Type"), PrometheusText.contentType)
        let text = String(decoding: scrape.response!.body, as: UTF8.self)
        for line in [
            "tusd_requests_total{method=\"POST\"} 1", "tusd_requests_total{method=\"PATCH\"} 1",
            "tusd_requests_total{method=\"HEAD\"} 1", "tusd_requests_total{method=\"DELETE\"} 1",
            "tusd_bytes_received 5", "tusd_uploads_created 1", "tusd_uploads_finished 1", "tusd_uploads_terminated 1",
            "tusd_connections_open 3", "tusd_errors_total{status=\"404\",code=\"ERR_UPLOAD_NOT_FOUND\"} 1",
            "tus_request_duration_seconds_count{method=\"PATCH\"} 1", "tus_lock_wait_seconds_count 2",
            "tus_request_duration_seconds_bucket{method=\"PATCH\",le=\"+Inf\"} 1",
            "tusd_hook_invocations_total{hooktype=\"pre-create\"} 0",
        ] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in\n\(text)")
        }
    }

    func testMetricsCountRequestsAndUploadsPerProtocol() throws {
        let metrics = MetricsRegistry(connectionsOpen: { 1 })
        let tus = TusHandler(store: MemoryUploadStore(), events: metrics)
        let client = TusTestClient(handler: OperationsHandler(next: tus, metrics: metrics))
        let path = try XCTUnwrap(client.create(length: 5))
        client.patch(path, offset: 0, body: [1, 2, 3, 4, 5])
        let draft = client.send(
            .POST, "/files/", headers: ["Upload-Draft-Interop-Version": "9", "Upload-Complete": "?1"], body: [1, 2],
            includeDefaultHeaders: false)
        XCTAssertEqual(draft.status, 201)
        XCTAssertEqual(draft.informationalResponses.count, 1, "the 104 passes the operations layer")
        client.send(.HEAD, path, headers: ["Upload-Draft-Interop-Version": "9"], includeDefaultHeaders: false)

        let text = String(decoding: client.send(.GET, "/metrics").response!.body, as: UTF8.self)
        for line in [
            "tus_requests_by_protocol_total{protocol=\"tus\"} 2",
            "tus_requests_by_protocol_total{protocol=\"ietf-draft\"} 2",
            "tus_uploads_created_by_protocol_total{protocol=\"tus\"} 1",
            "tus_uploads_created_by_protocol_total{protocol=\"ietf-draft\"} 1",
            "tus_uploads_finished_by_protocol_total{protocol=\"ietf-draft\"} 1", "tusd_uploads_created 2",
        ] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in\n\(text)")
        }
    }

    func testDraftErrorsAreCountedUnderTheirProtocolNotAsTusErrors() throws {
        let metrics = MetricsRegistry(connectionsOpen: { 1 })
        let tus = TusHandler(store: MemoryUploadStore(), events: metrics)
        let client = TusTestClient(handler: OperationsHandler(next: tus, metrics: metrics))
        let draftHeaders: HTTPHeaders = ["Upload-Draft-Interop-Version": "9"]
        let missing = client.send(.HEAD, "/files/missing", headers: draftHeaders, includeDefaultHeaders: false)
        XCTAssertEqual(missing.status, 404)
        let created = client.send(
            .POST, "/files/", headers: ["Upload-Draft-Interop-Version": "9", "Upload-Complete": "?0"], body: [1, 2],
            includeDefaultHeaders: false)
        let location = try XCTUnwrap(created.header("Location"))
        let path = ConformanceRunner.path(of: location)
        let mismatch = client.send(
            .PATCH, path,
            headers: [
                "Upload-Draft-Interop-Version": "9", "Upload-Complete": "?0", "Upload-Offset": "1",
                "Content-Type": "application/partial-upload",
            ],
            body: [3], includeDefaultHeaders: false)
        XCTAssertEqual(mismatch.status, 409)
        client.send(.HEAD, "/files/missing")

        let text = String(decoding: client.send(.GET, "/metrics").response!.body, as: UTF8.self)
        for line in [
            "tus_errors_by_protocol_total{protocol=\"ietf-draft\",status=\"404\",code=\"not-found\"} 1",
            "tus_errors_by_protocol_total{protocol=\"ietf-draft\",status=\"409\",code=\"mismatching-upload-offset\"} 1",
            "tus_errors_by_protocol_total{protocol=\"tus\",status=\"404\",code=\"ERR_UPLOAD_NOT_FOUND\"} 1",
            "tusd_errors_total{status=\"404\",code=\"ERR_UPLOAD_NOT_FOUND\"} 1",
        ] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in\n\(text)")
        }
        XCTAssertFalse(text.contains("tusd_errors_total{status=\"409\""), "a draft error is no tus error:\n\(text)")
    }

    func testLabelValuesAreEscaped() {
        XCTAssertEqual(PrometheusText.escapeForTesting("a\"b\\c\nd"), "a\\\"b\\\\c\\nd")
    }
}
