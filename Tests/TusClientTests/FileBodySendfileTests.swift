import Foundation
import Glibc
import Synchronization
import TusCrypto
import TusHTTP1
import TusLoop
import TusTestSupport
import XCTest

@testable import TusClient

/// A server on 127.0.0.1 for one request with a Content-Length body: it reads the body in 64 KiB reads with a
/// pause after each (so the client's socket fills and its sendfile meets EAGAIN), keeps it, then answers 200.
final class SlowBodySink: @unchecked Sendable {
    let port: Int
    private let listening: Int32
    private final class Received: Sendable { let bytes = Mutex<[UInt8]>([]) }
    private let received = Received()
    private let thread: Thread

    var body: [UInt8] { received.bytes.withLock { $0 } }

    init(pauseMicroseconds: UInt32) {
        let (listening, port) = listeningLoopbackSocket()
        self.listening = listening
        self.port = port
        let received = self.received
        thread = Thread {
            let client = accept(listening, nil, nil)
            guard client >= 0 else { return }
            var small: Int32 = 32 * 1024
            setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            var data: [UInt8] = []
            var expected = -1
            var headEnd = -1
            while expected < 0 || data.count - headEnd < expected {
                let count = read(client, &buffer, buffer.count)
                guard count > 0 else { break }
                data += buffer[0..<count]
                if headEnd < 0, let end = data.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound {
                    headEnd = end
                    let head = String(decoding: data[0..<end], as: UTF8.self).lowercased()
                    let line = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") } ?? ""
                    expected = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
                }
                if headEnd >= 0 { usleep(pauseMicroseconds) }
            }
            received.bytes.withLock { $0 = headEnd >= 0 ? Array(data[headEnd...]) : [] }
            let answer = Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".utf8)
            _ = answer.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
            close(client)
        }
        thread.start()
    }

    func stop() {
        shutdown(listening, Int32(SHUT_RDWR))
        close(listening)
    }
}

/// File bodies over plain TCP go by sendfile(2) (`FileRegionBodyProducer`); the bytes that arrive must be the
/// file's, in order, whether the socket took them at once or was full (EAGAIN, then a small write waits for it).
final class FileBodySendfileTests: XCTestCase {
    var driver: LoopDriver!
    var path: String!

    override func setUpWithError() throws {
        driver = try LoopDriver()
        path = NSTemporaryDirectory() + "sendfile-body-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: path)
        XCTAssertEqual(driver.shutDown(), 0, "the loop had to close handles itself")
    }

    func content(_ count: Int) -> [UInt8] {
        let block = (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        var result: [UInt8] = []
        result.reserveCapacity(count)
        var index = 0
        while result.count < count {
            var copy = block[0..<min(block.count, count - result.count)]
            copy[copy.startIndex] = UInt8(truncatingIfNeeded: index)
            result += copy
            index += 1
        }
        return result
    }

    /// Sends `range` of the file to `sink`; returns the status and the bytes that went by sendfile.
    func put(
        _ sink: SlowBodySink, offset: Int64, length: Int64, digest: Bool = false
    ) throws -> (status: Int, fromFile: Int64, reported: Int) {
        final class Reported: @unchecked Sendable { var count = 0 }
        let reported = Reported()
        let outcome: Result<(Int, Int64), HTTPClientError> = driver.run { [driver, path] done in
            HTTPClientConnection.connect(loop: driver!.loop, host: "127.0.0.1", port: sink.port, tls: nil) { result in
                guard case .success(let connection) = result else {
                    if case .failure(let error) = result { done(.failure(error)) }
                    return
                }
                AsyncFile.open(loop: driver!.loop, path: path!, flags: .readOnly) { opened in
                    guard case .success(let file) = opened else { return done(.failure(.io(.cancelled))) }
                    let producer = FileBodyProducer(file: file, offset: offset, length: length)
                    producer.onRead = { reported.count += $0 }
                    if digest { producer.digest = StreamingDigest(.sha1) }
                    let head = HTTPClientRequestHead(method: .PUT, path: "/sink")
                    connection.send(head, body: .stream(length: length, producer)) { response in
                        file.close()
                        let fromFile = connection.bytesSentFromFiles
                        connection.close()
                        done(response.map { ($0.statusCode, fromFile) })
                    }
                }
            }
        }
        let (status, fromFile) = try outcome.get()
        return (status, fromFile, reported.count)
    }

    func testAFileRangeArrivesIntactThroughAFullSocket() throws {
        let data = content(6 << 20)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(data)))
        let sink = SlowBodySink(pauseMicroseconds: 200)
        defer { sink.stop() }
        let offset = 12_345
        let length = data.count - offset - 999
        let sent = try put(sink, offset: Int64(offset), length: Int64(length))
        XCTAssertEqual(sent.status, 200)
        XCTAssertEqual(sent.reported, length, "progress counts every byte once")
        let body = sink.body
        XCTAssertEqual(body.count, length)
        XCTAssertTrue(body == Array(data[offset..<(offset + length)]), "the body is the file's range, in order")
        XCTAssertGreaterThan(sent.fromFile, Int64(length / 2), "most of it went by sendfile")
        XCTAssertLessThan(sent.fromFile, Int64(length), "the full socket made the connection wait with a write")
    }

    func testADigestKeepsTheBytesInUserMemory() throws {
        let data = content(1 << 20)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(data)))
        let sink = SlowBodySink(pauseMicroseconds: 0)
        defer { sink.stop() }
        let sent = try put(sink, offset: 0, length: Int64(data.count), digest: true)
        XCTAssertEqual(sent.status, 200)
        XCTAssertEqual(sent.fromFile, 0, "a digest must see every byte: no sendfile")
        XCTAssertTrue(sink.body == data)
    }

    func testAFileShorterThanTheBodyFailsTheRequest() throws {
        let data = content(300_000)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(data)))
        let sink = SlowBodySink(pauseMicroseconds: 0)
        defer { sink.stop() }
        XCTAssertThrowsError(try put(sink, offset: 0, length: 400_000)) { error in
            guard case HTTPClientError.bodyProducer(let cause) = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(cause)".contains("ended early"), "\(cause)")
        }
    }
}
