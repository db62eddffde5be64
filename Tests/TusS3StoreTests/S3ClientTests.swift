import Foundation
import Synchronization
import TusCrypto
import TusLoop
import TusS3Store
import TusTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A server on 127.0.0.1 that answers connection n with `responses[n]` (the last one again when they run out) and
/// closes it; keeps each request head it read.
final class ScriptedSocketServer: @unchecked Sendable {
    let port: Int
    private let listening: Int32
    private let heads = Mutex<[String]>([])

    var requests: [String] { heads.withLock { $0 } }

    init(responses: [String]) {
        let (listening, port) = listeningLoopbackSocket()
        self.listening = listening
        self.port = port
        let thread = Thread { [self] in
            while true {
                let client = accept(listening, nil, nil)
                guard client >= 0 else { return }
                var buffer = [UInt8](repeating: 0, count: 16384)
                let count = read(client, &buffer, buffer.count)
                let number = heads.withLock { heads in
                    heads.append(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self))
                    return heads.count
                }
                let response = Array(responses[min(number, responses.count) - 1].utf8)
                _ = response.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                close(client)
            }
        }
        thread.start()
    }

    func stop() {
        shutdown(listening, Int32(SHUT_RDWR))
        close(listening)
    }
}

/// `S3Client` on the shared pool: its requests are SigV4-signed on every attempt, and S3's retry rules hold.
final class S3ClientTests: XCTestCase {
    var driver: LoopDriver!

    override func setUpWithError() throws { driver = try LoopDriver() }

    override func tearDown() {
        XCTAssertEqual(driver.shutDown(), 0, "the loop had to close handles itself")
    }

    static func answer(_ status: String, _ body: String = "") -> String {
        "HTTP/1.1 \(status)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }

    static func error(_ code: String) -> String {
        "<?xml version=\"1.0\"?><Error><Code>\(code)</Code><Message>\(code) here</Message></Error>"
    }

    func send(_ server: ScriptedSocketServer, _ request: S3Request) throws -> Result<S3Response, S3Error> {
        let configuration = try S3Configuration(
            endpoint: "http://127.0.0.1:\(server.port)", bucket: "bkt", pathStyle: true,
            credentials: SigV4Credentials(accessKeyID: "AKID", secretAccessKey: "secret"),
            spillDirectory: NSTemporaryDirectory())
        let client = try S3Client(configuration: configuration)
        let result: Result<S3Response, S3Error> = driver.run { done in
            client.send(request, on: self.driver.loop, streamBody: nil, completion: done)
        }
        driver.run { done in
            client.shutdown(on: self.driver.loop)
            done(())
        } as Void
        return result
    }

    func testThrottlingIsRetriedAndEveryAttemptIsSigned() throws {
        let server = ScriptedSocketServer(responses: [
            Self.answer("503 Slow Down", Self.error("SlowDown")), Self.answer("500 Internal Server Error"),
            Self.answer("200 OK"),
        ])
        defer { server.stop() }
        let request = S3Request(method: .PUT, key: "a b", query: [("partNumber", "1")], body: .bytes([1, 2]))
        let result = try send(server, request)
        XCTAssertEqual(try result.get().status, 200)
        XCTAssertEqual(server.requests.count, 3)
        for head in server.requests {
            XCTAssertTrue(head.hasPrefix("PUT /bkt/a%20b?partNumber=1 HTTP/1.1\r\n"), head)
            XCTAssertTrue(head.contains("Authorization: AWS4-HMAC-SHA256 Credential=AKID/"), head)
            XCTAssertTrue(head.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="), head)
            XCTAssertTrue(head.contains(StreamingDigest.digest(.sha256, of: [1, 2]).lowercaseHex), "payload hash")
        }
    }

    func testClientErrorsAreNotRetried() throws {
        let server = ScriptedSocketServer(responses: [Self.answer("403 Forbidden", Self.error("AccessDenied"))])
        defer { server.stop() }
        let result = try send(server, S3Request(method: .GET, key: "k"))
        XCTAssertEqual(result.failure, .status(403, code: "AccessDenied", message: "AccessDenied here"))
        XCTAssertEqual(server.requests.count, 1)
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
