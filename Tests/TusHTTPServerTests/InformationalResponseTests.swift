import Foundation
import Synchronization
import TusCrypto
import TusCore
import TusHTTP1
import TusHTTPServer
import TusTestSupport
import XCTest

/// `HTTPExchange.sendInformational` on the wire: 1xx heads before the final response on HTTP/1.1 (plain, spliced,
/// TLS) and as HEADERS frames without END_STREAM on HTTP/2 (h2c and TLS). Plain HTTP/1.1 is read byte for byte
/// with `RawHTTPClient`; TLS and HTTP/2 with Python's h11 and h2 (Tests/interop/informational_client.py), which
/// reject a 1xx that breaks the protocol (a body, END_STREAM, one after the final response).
final class InformationalResponseTests: XCTestCase {
    /// Several 104s, then 201; a 104 the handler sends after its final response never reaches the wire, which a
    /// second request on the same connection proves (its first head would be that stray 104).
    func testSeveral104sPrecedeTheFinalResponse() throws {
        let handler = HintingHandler(hintsBeforeBody: 3)
        try withServer(handler) { server in
            let client = try RawHTTPClient(port: server.port)
            for round in 1...2 {
                client.send("POST /files/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
                for index in 0..<3 {
                    let hint = try client.readResponse()
                    XCTAssertEqual(hint.status, 104, "round \(round)")
                    XCTAssertEqual(hint.header("Location"), "/files/u\(round)")
                    XCTAssertEqual(hint.header("Upload-Offset"), "\(index)", "in the order sent")
                    XCTAssertNil(hint.header("Content-Length"))
                    XCTAssertNil(hint.header("Connection"))
                }
                let final = try client.readResponse()
                XCTAssertEqual(final.status, 201, "round \(round)")
                XCTAssertEqual(final.bodyText, "bytes=5 sum=\(rollingSum(Array("hello".utf8)))\n")
            }
        }
    }

    /// A 104 does not replace `100 Continue` (the draft, -10 on: "the server MUST NOT omit the 100 (Continue)
    /// response because it has sent an interim response with the 104"): the 104s come first, then 100 once the
    /// handler reads the body, and only then does the client send it.
    func testHintsPrecedeContinueWhichStillComes() throws {
        try withServer(HintingHandler(hintsBeforeBody: 2)) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("POST /files/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            XCTAssertEqual(try client.readResponse().status, 104)
            XCTAssertEqual(try client.readResponse().status, 104)
            XCTAssertEqual(try client.readResponse().status, 100)
            client.send("hello")
            let final = try client.readResponse()
            XCTAssertEqual(final.status, 201)
            XCTAssertEqual(final.bodyText, "bytes=5 sum=\(rollingSum(Array("hello".utf8)))\n")
        }
    }

    /// A 104 and a final response sent in the same loop turn (a draft creation without content) share one socket
    /// write; a 104 whose final response comes in a later turn is written on its own at the end of its turn, so a
    /// client that waits for it before sending the body is not kept waiting.
    func testA104ShareTheWriteOfAFinalResponseOfTheSameTurnOnly() throws {
        try withServer(AnnouncingHandler()) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("POST /now HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            XCTAssertEqual(try client.readResponse().status, 104)
            XCTAssertEqual(try client.readResponse().status, 201)
            XCTAssertEqual(server.joinedInformationalWrites, 1, "104 and 201 in one write")

            client.send("POST /later HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            let hint = try client.readResponse()
            XCTAssertEqual(hint.status, 104, "the 104 arrives before the client sent any body byte")
            XCTAssertEqual(hint.header("Location"), "/files/later")
            client.send("hello")
            let final = try client.readResponse()
            XCTAssertEqual(final.status, 201)
            XCTAssertEqual(final.bodyText, "bytes=5 sum=\(rollingSum(Array("hello".utf8)))\n")
            XCTAssertEqual(server.joinedInformationalWrites, 1, "the second 104 went out alone")
        }
    }

    /// RFC 9110 §15.2: a server MUST NOT send a 1xx response to an HTTP/1.0 client.
    func testHTTP10ClientGetsOnlyTheFinalResponse() throws {
        try withServer(HintingHandler(hintsBeforeBody: 2, hintsDuringBody: true)) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("POST /files/ HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            let final = try client.readResponse()
            XCTAssertEqual(final.status, 201)
            XCTAssertEqual(final.bodyText, "bytes=5 sum=\(rollingSum(Array("hello".utf8)))\n")
            XCTAssertTrue(client.waitForClose())
        }
    }

    /// A 104 sent while the body is spliced socket → pipe → file goes out between the other 104s and the final
    /// response, and the file holds exactly the bytes sent: writing a head does not disturb the splice's reads.
    func testHintDuringASplicedBodyLeavesTheBodyIntact() throws {
        let directory = NSTemporaryDirectory() + "tus-informational-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let handler = HintingHandler(hintsBeforeBody: 2, hintsDuringBody: true, directory: directory)
        try withServer(handler, configure: { $0.spliceMinimumBytes = 64 << 10 }) { server in
            let body = patternBytes(count: 6 << 20)
            let client = try RawHTTPClient(port: server.port, timeoutSeconds: 30)
            client.send("PUT /files/spliced HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n")
            client.send(body)
            for index in 0..<2 {
                let hint = try client.readResponse()
                XCTAssertEqual(hint.status, 104)
                XCTAssertEqual(hint.header("Upload-Offset"), "\(index)")
            }
            let midBody = try client.readResponse()
            XCTAssertEqual(midBody.status, 104)
            let received = try XCTUnwrap(midBody.header("Upload-Offset").flatMap(Int.init))
            XCTAssertGreaterThan(received, 0)
            XCTAssertLessThan(received, body.count, "sent before the body ended")
            let final = try client.readResponse()
            XCTAssertEqual(final.status, 201)
            XCTAssertEqual(final.bodyText, "bytes=\(body.count) sum=\(rollingSum(body))\n")
            XCTAssertGreaterThan(server.splicedBodyBytes, Int64(body.count / 2), "the body took the splice path")
            XCTAssertEqual(handler.stats.withLock { $0.directWrites } > 0, true)
            let file = try XCTUnwrap(FileManager.default.contents(atPath: directory + "/body"))
            XCTAssertEqual(file.count, body.count)
            XCTAssertTrue(Array(file) == body, "the spliced file holds the body byte for byte")
        }
    }

    // MARK: TLS and HTTP/2, read by Python's h11 and h2

    func testHTTP11OverTLS() throws {
        let result = try runPythonClient(protocolName: "h1", tls: true)
        assertHints(result, scheme: "HTTP/1.1 over TLS")
    }

    func testHTTP2Cleartext() throws {
        let result = try runPythonClient(protocolName: "h2", tls: false)
        assertHints(result, scheme: "h2c")
    }

    func testHTTP2OverTLS() throws {
        let result = try runPythonClient(protocolName: "h2", tls: true)
        assertHints(result, scheme: "h2 over TLS")
    }

    /// Two 104s before the body, one when the first body bytes arrived (the client sends the second half only
    /// once it has seen it, so it is mid-body for sure), then 201 with the count and checksum of the whole body.
    private func assertHints(_ result: ClientResult, scheme: String) {
        XCTAssertEqual(result.heads.map(\.status), [104, 104, 104, 201], scheme)
        for (index, head) in result.heads.prefix(2).enumerated() {
            XCTAssertEqual(head.header("location"), "/files/u1", scheme)
            XCTAssertEqual(head.header("upload-offset"), "\(index)", scheme)
        }
        // The first fragment may be less than the first half (TCP segments, TLS records), never more.
        let offset = result.heads[2].header("upload-offset").flatMap(Int.init) ?? 0
        XCTAssertTrue(offset > 0 && offset <= ClientResult.firstHalf, "\(scheme): mid-body hint at \(offset)")
        let body = patternBytes(count: ClientResult.firstHalf + ClientResult.secondHalf)
        XCTAssertEqual(result.body, "bytes=\(body.count) sum=\(rollingSum(body))\n", scheme)
    }

    struct ClientResult: Decodable {
        static let firstHalf = 20_000
        static let secondHalf = 30_000
        struct Head: Decodable {
            var status: Int
            var headers: [[String]]
            func header(_ name: String) -> String? { headers.first { $0[0].lowercased() == name }?[1] }
        }
        var heads: [Head]
        var body: String
    }

    private func runPythonClient(protocolName: String, tls: Bool) throws -> ClientResult {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let python = ProcessInfo.processInfo.environment["TUS_PYTHON"] ?? root.path + "/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python with h11 and h2 at \(python) (scripts/bootstrap.sh makes .venv)")
        }
        // Python's default context verifies strictly: the shared CA and its "localhost" leaf.
        let certificates = tls ? try TestCertificates.generate() : nil
        defer { certificates?.remove() }
        let tlsContext = try certificates.map {
            try TLSContext.server(
                certificatePath: $0.serverCertificate, keyPath: $0.serverKey, mode: .tls12, offersHTTP2: true)
        }
        var output = Data()
        try withServer(
            HintingHandler(hintsBeforeBody: 2, hintsDuringBody: true),
            configure: { $0.http2.cleartextPriorKnowledge = true }, tls: tlsContext
        ) { server in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments =
                [
                    root.path + "/Tests/interop/informational_client.py", "--port", String(server.port),
                    "--protocol", protocolName, "--path", "/files/", "--first", String(ClientResult.firstHalf),
                    "--second", String(ClientResult.secondHalf), "--wait-informational", "3",
                ] + (certificates.map { ["--cafile", $0.caCertificate] } ?? [])
            let stdout = Pipe()
            let stderr = Pipe()
            process.standardOutput = stdout
            process.standardError = stderr
            try process.run()
            output = stdout.fileHandleForReading.readDataToEndOfFile()
            let errors = stderr.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw NSError(
                    domain: "informational_client.py", code: Int(process.terminationStatus),
                    userInfo: [NSLocalizedDescriptionKey: String(decoding: errors, as: UTF8.self)])
            }
        }
        return try JSONDecoder().decode(ClientResult.self, from: output)
    }
}

/// Sends `hintsBeforeBody` 104s (each with `Location` and its index as `Upload-Offset`), reads the body, sends one
/// more 104 carrying the byte count when the first body bytes arrived (`hintsDuringBody`), answers 201 with the
/// byte count and checksum, then tries one more 104, which must go nowhere. With `directory`, the sink takes the
/// body straight into `directory/body` (splice) and hints on the first directly written bytes instead.
final class HintingHandler: HTTPRequestHandler {
    struct Stats: Sendable { var directWrites = 0 }
    let stats = Mutex(Stats())
    let hintsBeforeBody: Int
    let hintsDuringBody: Bool
    let directory: String?
    private let requests = Atomic<Int>(0)

    init(hintsBeforeBody: Int, hintsDuringBody: Bool = false, directory: String? = nil) {
        self.hintsBeforeBody = hintsBeforeBody
        self.hintsDuringBody = hintsDuringBody
        self.directory = directory
    }

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        let number = requests.add(1, ordering: .relaxed).newValue
        for index in 0..<hintsBeforeBody {
            exchange.sendInformational(
                HTTPResponse(
                    status: .uploadResumptionSupported,
                    headers: ["Location": "/files/u\(number)", "Upload-Offset": "\(index)"]))
        }
        if let directory {
            let descriptor = open(directory + "/body", O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0o600)
            precondition(descriptor >= 0, "cannot create the body file")
            exchange.readBody(into: HintingDirectSink(exchange: exchange, handler: self, descriptor: descriptor))
        } else {
            exchange.readBody(into: HintingSink(exchange: exchange, handler: self))
        }
    }
}

/// `/now`: a 104 then 201 at once (no body). Anything else: a 104 with `Location`, then the body, then 201.
final class AnnouncingHandler: HTTPRequestHandler {
    private let hints = HintingHandler(hintsBeforeBody: 0)

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        exchange.sendInformational(
            HTTPResponse(status: .uploadResumptionSupported, headers: ["Location": "/files" + head.target]))
        guard head.target != "/now" else { return exchange.respond(HTTPResponse(status: .created)) }
        exchange.readBody(into: HintingSink(exchange: exchange, handler: hints))
    }
}

class HintingSink: HTTPBodySink {
    let exchange: any HTTPExchange
    let handler: HintingHandler
    var count = 0
    var checksum: UInt64 = 0
    private var hinted = false

    init(exchange: any HTTPExchange, handler: HintingHandler) {
        self.exchange = exchange
        self.handler = handler
    }

    func received(_ bytes: UnsafeRawBufferPointer) {
        count += bytes.count
        for byte in bytes { checksum = checksum &* 31 &+ UInt64(byte) }
    }

    func hintOnce() {
        guard handler.hintsDuringBody, !hinted else { return }
        hinted = true
        exchange.sendInformational(
            HTTPResponse(status: .uploadResumptionSupported, headers: ["Upload-Offset": "\(count)"]))
    }

    func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
        received(fragment.bytes)
        hintOnce()
        done()
    }

    func bodyEnd(trailers: HTTPHeaders) {
        exchange.respond(HTTPResponse(status: .created, text: "bytes=\(count) sum=\(checksum)"))
        exchange.sendInformational(HTTPResponse(status: .uploadResumptionSupported, headers: ["Location": "/late"]))
    }

    func bodyAborted(_ reason: BodyAbortReason) {}
}

/// Fragments (the bytes read with the head) are written with pwrite; the rest arrives by splice. The checksum is
/// computed from the file at the end, which is what the test compares.
final class HintingDirectSink: HintingSink, HTTPDirectBodySink {
    let descriptor: Int32

    init(exchange: any HTTPExchange, handler: HintingHandler, descriptor: Int32) {
        self.descriptor = descriptor
        super.init(exchange: exchange, handler: handler)
    }

    deinit { close(descriptor) }

    /// No hint here: the one mid-body hint is for the spliced part.
    override func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
        let written = pwrite(descriptor, fragment.bytes.baseAddress, fragment.count, off_t(count))
        precondition(written == fragment.count, "pwrite failed")
        count += fragment.count
        done()
    }

    override func bodyEnd(trailers: HTTPHeaders) {
        // Recount from the file: the spliced bytes never passed through this sink.
        count = 0
        checksum = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(count)) }
            guard n > 0 else { break }
            buffer.withUnsafeBytes { received(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        super.bodyEnd(trailers: trailers)
    }

    func beginDirectBody(minimumCount: Int64) -> DirectBodyTarget? {
        DirectBodyTarget(descriptor: descriptor, offset: Int64(count), maxCount: .max)
    }

    func bodyWrittenDirectly(count written: Int) {
        handler.stats.withLock { $0.directWrites += 1 }
        count += written
        hintOnce()
    }

    func endDirectBody(writeErrorNumber: Int32?) {
        precondition(writeErrorNumber == nil, "splice write failed")
    }
}
