import TusHTTP1
import XCTest

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

final class ResponseEncoderTests: XCTestCase {
    func testOKWithBody() {
        let response = HTTPResponse(status: .ok, headers: ["Tus-Resumable": "1.0.0"], body: Array("hi".utf8))
        XCTAssertEqual(
            text(ResponseEncoder.encode(response, version: .http1_1, keepAlive: true)),
            "HTTP/1.1 200 OK\r\nTus-Resumable: 1.0.0\r\nContent-Length: 2\r\n\r\nhi")
    }

    func testNoContentHasNoContentLengthNorBody() {
        let response = HTTPResponse(status: .noContent, headers: ["Upload-Offset": "5"], body: Array("x".utf8))
        XCTAssertEqual(
            text(ResponseEncoder.encode(response, version: .http1_1, keepAlive: true)),
            "HTTP/1.1 204 No Content\r\nUpload-Offset: 5\r\n\r\n")
        XCTAssertEqual(
            text(ResponseEncoder.encode(HTTPResponse(status: .notModified), version: .http1_1, keepAlive: true)),
            "HTTP/1.1 304 Not Modified\r\n\r\n")
    }

    func testHeadOmitsBody() {
        let response = HTTPResponse(status: .ok, body: Array("body".utf8))
        XCTAssertEqual(
            text(ResponseEncoder.encode(response, version: .http1_1, keepAlive: true, omitBody: true)),
            "HTTP/1.1 200 OK\r\n\r\n")
        XCTAssertEqual(
            text(
                ResponseEncoder.encode(response, version: .http1_1, keepAlive: true, bodyLength: 1234, omitBody: true)),
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    }

    func testStreamedBodyLength() {
        XCTAssertEqual(
            text(ResponseEncoder.encode(HTTPResponse(status: .ok), version: .http1_1, keepAlive: true, bodyLength: 10)),
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    }

    func testConnectionHeaders() {
        let response = HTTPResponse(status: .created, headers: ["Location": "/files/1"])
        XCTAssertEqual(
            text(ResponseEncoder.encode(response, version: .http1_1, keepAlive: false)),
            "HTTP/1.1 201 Created\r\nLocation: /files/1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(
            text(ResponseEncoder.encode(response, version: .http1_0, keepAlive: true)),
            "HTTP/1.1 201 Created\r\nLocation: /files/1\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertEqual(
            text(ResponseEncoder.encode(response, version: .http1_0, keepAlive: false)),
            "HTTP/1.1 201 Created\r\nLocation: /files/1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        let closing = HTTPResponse(status: .badRequest, closeConnection: true)
        XCTAssertTrue(
            text(ResponseEncoder.encode(closing, version: .http1_1, keepAlive: true)).contains("Connection: close\r\n"))
    }

    func testHandlerFramingHeadersAreReplaced() {
        let response = HTTPResponse(
            status: .ok,
            headers: ["content-length": "999", "Transfer-Encoding": "chunked", "CONNECTION": "upgrade", "X": "y"],
            body: Array("abc".utf8))
        XCTAssertEqual(
            text(ResponseEncoder.encode(response, version: .http1_1, keepAlive: true)),
            "HTTP/1.1 200 OK\r\nX: y\r\nContent-Length: 3\r\n\r\nabc")
    }

    func testHeaderInjectionIsNeutralized() {
        let response = HTTPResponse(
            status: .ok, headers: ["X-Echo": "a\r\nSet-Cookie: evil", "Bad Name": "v", "": "w"])
        XCTAssertEqual(
            text(ResponseEncoder.encode(response, version: .http1_1, keepAlive: true)),
            "HTTP/1.1 200 OK\r\nX-Echo: a  Set-Cookie: evil\r\nContent-Length: 0\r\n\r\n")
    }

    func testContinueAndCustomStatus() {
        XCTAssertEqual(text(ResponseEncoder.continueResponse), "HTTP/1.1 100 Continue\r\n\r\n")
        XCTAssertEqual(
            text(ResponseEncoder.encode(HTTPResponse(status: .checksumMismatch), version: .http1_1, keepAlive: true)),
            "HTTP/1.1 460 Checksum Mismatch\r\nContent-Length: 0\r\n\r\n")
    }

    /// A 1xx is a bare head: no Content-Length, no Connection (even when asked to close), no body, framing fields
    /// a handler set are dropped, and its fields are sanitized like a final response's.
    func testInformationalIsAHeadOnly() {
        let response = HTTPResponse(
            status: .uploadResumptionSupported,
            headers: ["Location": "/files/a\r\nX: y", "Upload-Limit": "max-size=10", "Content-Length": "5"],
            body: Array("ignored".utf8), closeConnection: true)
        XCTAssertEqual(
            text(ResponseEncoder.encodeInformational(response)),
            "HTTP/1.1 104 Upload Resumption Supported\r\nLocation: /files/a  X: y\r\nUpload-Limit: max-size=10\r\n\r\n")
        XCTAssertTrue(HTTPStatus(code: 103).isInterim)
        XCTAssertFalse(HTTPStatus(code: 101).isInterim, "a protocol switch is the connection's, never a handler's")
        XCTAssertFalse(HTTPStatus.ok.isInterim)
        XCTAssertFalse(HTTPStatus(code: 99).isInterim)
    }
}
