import Foundation
import Synchronization
import TusCrypto
import TusCore
import TusHTTP1
import TusHTTPServer
import XCTest

/// A TLS upload through the real server (curl as the client): every byte arrives in order, and body fragments come
/// from chunks of the body chunk size. One 256 KiB read of ciphertext decrypts into more than one chunk; the next
/// chunk used to be a fresh, larger allocation holding a copy of everything decrypted since the read began (and
/// page-faulting every page), which shows here as a chunk bigger than `secureReadChunkSize`.
///
/// Decrypted reads are coalesced into fragments of up to half a chunk before they go to the sink (fewer threadpool
/// hand-offs per byte); bytes held so must still reach the sink when the client pauses mid-body.
final class TLSUploadTests: XCTestCase {
    private static let certificates: Result<TestCertificates, any Error> = Result { try TestCertificates.generate() }

    override class func tearDown() {
        if case .success(let certificates) = certificates { certificates.remove() }
    }

    final class ChunkRecorder: HTTPRequestHandler, HTTPBodySink, @unchecked Sendable {
        let capacities = Mutex<[Int]>([])
        let sizes = Mutex<[Int]>([])
        let received = Atomic<Int>(0)
        let checksum = Mutex<UInt64>(0)
        private var exchange: (any HTTPExchange)?
        private var count = 0

        func handle(_ head: RequestHead, exchange: any HTTPExchange) {
            self.exchange = exchange
            exchange.readBody(into: self)
        }

        func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
            capacities.withLock { $0.append(fragment.chunk.capacity) }
            sizes.withLock { $0.append(fragment.count) }
            received.add(fragment.count, ordering: .relaxed)
            checksum.withLock { sum in for byte in fragment.bytes { sum = sum &* 31 &+ UInt64(byte) } }
            count += fragment.count
            done()
        }

        func bodyEnd(trailers: HTTPHeaders) {
            exchange?.respond(HTTPResponse(status: .ok, text: "bytes=\(count)"))
        }

        func bodyAborted(_ reason: BodyAbortReason) {}
    }

    func testATLSUploadArrivesWholeInChunksOfTheBodyChunkSize() throws {
        let files = try Self.certificates.get()
        let tls = try TLSContext.server(certificatePath: files.serverCertificate, keyPath: files.serverKey, mode: .tls12)
        let body = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: ($0 &* 31) ^ ($0 >> 13)) }
        let path = files.directory + "/body.bin"
        FileManager.default.createFile(atPath: path, contents: Data(body))
        var expected: UInt64 = 0
        for byte in body { expected = expected &* 31 &+ UInt64(byte) }
        let recorder = ChunkRecorder()
        try withServer(recorder, tls: tls) { server in
            let curl = Process()
            curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            curl.arguments = [
                "-sS", "--http1.1", "--cacert", files.caCertificate, "-X", "PUT", "-H", "Expect:", "--data-binary",
                "@" + path, "https://localhost:\(server.port)/upload",
            ]
            let output = Pipe()
            curl.standardOutput = output
            try curl.run()
            let answer = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            curl.waitUntilExit()
            XCTAssertEqual(answer.trimmingCharacters(in: .whitespacesAndNewlines), "bytes=\(body.count)")
        }
        XCTAssertEqual(recorder.checksum.withLock { $0 }, expected)
        let capacities = recorder.capacities.withLock { $0 }
        XCTAssertFalse(capacities.isEmpty)
        let limit = HTTPServerConfiguration().secureReadChunkSize
        XCTAssertTrue(capacities.allSatisfy { $0 <= limit }, "chunks larger than \(limit): \(Set(capacities))")
        // One read yields at most a ciphertext buffer's worth (256 KiB); coalesced fragments are half a chunk.
        let sizes = recorder.sizes.withLock { $0 }.sorted()
        XCTAssertGreaterThan(sizes[sizes.count / 2], 256 * 1024, "fragments not coalesced: \(sizes)")
    }

    /// A client sends part of a TLS body and waits: the part is held for coalescing only briefly, so the sink has
    /// every byte of it (and could store it) while the body is still open; then the rest arrives, and the whole
    /// body is exact.
    func testBytesHeldForCoalescingReachTheSinkWhenTheClientPauses() throws {
        let files = try Self.certificates.get()
        let tls = try TLSContext.server(certificatePath: files.serverCertificate, keyPath: files.serverKey, mode: .tls12)
        let first = 300 * 1024
        let total = 700 * 1024
        let recorder = ChunkRecorder()
        try withServer(recorder, tls: tls) { server in
            let client = Process()
            client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            client.arguments = [
                "python3", "-c", Self.pausingClient, "\(server.port)", files.caCertificate, "\(first)", "\(total)",
            ]
            let input = Pipe()
            let output = Pipe()
            client.standardInput = input
            client.standardOutput = output
            try client.run()
            defer { if client.isRunning { client.terminate() } }
            let deadline = Date().addingTimeInterval(5)
            while recorder.received.load(ordering: .relaxed) < first && Date() < deadline { usleep(20_000) }
            XCTAssertEqual(recorder.received.load(ordering: .relaxed), first, "the first part while the body is open")
            input.fileHandleForWriting.write(Data("go\n".utf8))
            let answer = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            client.waitUntilExit()
            XCTAssertTrue(answer.contains("bytes=\(total)"), answer)
        }
        XCTAssertEqual(recorder.checksum.withLock { $0 }, rollingSum(Self.pausingBody(total)))
    }

    static func pausingBody(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 7) ^ ($0 >> 9)) }
    }

    /// argv: port, CA file, bytes before the pause, total bytes; sends the rest after a line on stdin.
    static let pausingClient = """
        import socket, ssl, sys
        port, ca, first, total = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        body = bytes(((i * 7) ^ (i >> 9)) & 0xff for i in range(total))
        context = ssl.create_default_context(cafile=ca)
        s = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        s.sendall(b"PUT /upload HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: %d\\r\\n\\r\\n" % total + body[:first])
        sys.stdin.readline()
        s.sendall(body[first:])
        answer = b""
        while b"bytes=%d" % total not in answer:
            data = s.recv(65536)
            if not data: break
            answer += data
        sys.stdout.write(answer.decode())
        """
}
