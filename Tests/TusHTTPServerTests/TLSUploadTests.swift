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
/// page-faulting every page), which shows here as a chunk bigger than `readChunkSize`.
final class TLSUploadTests: XCTestCase {
    private static let certificates: Result<TestCertificates, any Error> = Result { try TestCertificates.generate() }

    override class func tearDown() {
        if case .success(let certificates) = certificates { certificates.remove() }
    }

    final class ChunkRecorder: HTTPRequestHandler, HTTPBodySink, @unchecked Sendable {
        let capacities = Mutex<[Int]>([])
        let checksum = Mutex<UInt64>(0)
        private var exchange: (any HTTPExchange)?
        private var count = 0

        func handle(_ head: RequestHead, exchange: any HTTPExchange) {
            self.exchange = exchange
            exchange.readBody(into: self)
        }

        func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
            capacities.withLock { $0.append(fragment.chunk.capacity) }
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
        let limit = HTTPServerConfiguration().readChunkSize
        XCTAssertTrue(capacities.allSatisfy { $0 <= limit }, "chunks larger than \(limit): \(Set(capacities))")
    }
}
