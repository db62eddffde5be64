import Foundation
import TusCrypto
import TusCore
import TusHTTP1
import TusHTTPServer
import TusProtocol
@testable import TusStore
import TusTestSupport
import XCTest

/// Large PATCH bodies take the splice path (socket → pipe → file) on the file store, checksummed ones too (hashed
/// from the file, rolled back on a mismatch), and a client dying mid-body leaves an offset equal to the bytes in the
/// file, from which a resume completes.
///
/// A PATCH whose client died is over only when its lock is released: until then the pipes may still hold bytes the
/// threadpool has not written, so HEAD (which never waits for the lock) can report an offset equal to the file's size
/// that grows once they land. Checks of "what the dead PATCH kept" therefore wait for the lock (`locker`), not for
/// HEAD and the file to agree once.
final class SplicedPatchTests: XCTestCase {
    private var directory = ""
    /// The store of the running `withServer`, for its writeback counter.
    private var store: FileUploadStore?
    /// The locker of the running `withServer`: an upload is out of its PATCH's hands once it is not held.
    private var locker: MemoryLocker?

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "tus-splice-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func withServer(
        splice: Bool = true, configure: (inout HTTPServerConfiguration) -> Void = { _ in },
        _ body: (HTTPServer, Int) throws -> Void
    ) throws {
        var configuration = HTTPServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.loops = 1
        configuration.spliceBodies = splice
        configure(&configuration)
        let store = try FileUploadStore(directory: directory, fsync: .commit)
        self.store = store
        let locker = MemoryLocker()
        self.locker = locker
        let server = HTTPServer(configuration: configuration, handler: TusHandler(store: store, locker: locker))
        try server.start()
        defer {
            server.shutdown()
            server.wait()
        }
        try body(server, server.port)
    }

    private func create(port: Int, length: Int) throws -> String {
        let client = try RawHTTPClient(port: port)
        client.send(
            "POST /files/ HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\nUpload-Length: \(length)\r\n"
                + "Content-Length: 0\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 201)
        let location = try XCTUnwrap(response.header("Location"))
        return String(location[try XCTUnwrap(location.range(of: "/files/")).lowerBound...])
    }

    private func patchHead(_ path: String, offset: Int, count: Int, extra: String = "") -> String {
        "PATCH \(path) HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: \(offset)\r\n"
            + "Content-Type: application/offset+octet-stream\r\nContent-Length: \(count)\r\n\(extra)\r\n"
    }

    private func patch(port: Int, _ path: String, offset: Int, _ bytes: ArraySlice<UInt8>, extra: String = "") throws
        -> RawHTTPClient.Response
    {
        let client = try RawHTTPClient(port: port, timeoutSeconds: 30)
        client.send(patchHead(path, offset: offset, count: bytes.count, extra: extra))
        client.send(Array(bytes))
        return try client.readResponse()
    }

    private func offset(port: Int, _ path: String) throws -> Int? {
        let client = try RawHTTPClient(port: port)
        client.send("HEAD \(path) HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n\r\n")
        return try client.readResponse(forHead: true).header("Upload-Offset").flatMap { Int($0) }
    }

    private func fileBytes(_ path: String) -> [UInt8] {
        let id = path.split(separator: "/").last.map(String.init) ?? ""
        return Array(FileManager.default.contents(atPath: directory + "/" + id) ?? Data())
    }

    func testLargePlainPatchIsSplicedWithExactBytes() throws {
        let body = patternBytes(count: 12 << 20, seed: 1)
        try withServer { server, port in
            let path = try create(port: port, length: body.count)
            let before = server.splicedBodyBytes
            let client = try RawHTTPClient(port: port, timeoutSeconds: 30)
            client.send(patchHead(path, offset: 0, count: body.count))
            // Under --fsync commit, spliced ranges start writeback as they land, like written batches (every 4 MiB).
            // Sent a third at a time, each waited for, since the body's end stops writeback for its fdatasync: on a
            // loaded machine one writeback job could otherwise still be running when the last byte lands.
            let store = try XCTUnwrap(self.store)
            for (part, end) in [(1, 4 << 20), (2, 8 << 20)] {
                client.send(Array(body[(end - (4 << 20))..<end]))
                let started = Date()
                while store.data.writebacksStarted < part && Date().timeIntervalSince(started) < 10 {
                    Thread.sleep(forTimeInterval: 0.01)
                }
                XCTAssertGreaterThanOrEqual(store.data.writebacksStarted, part, "no writeback after \(end >> 20) MiB")
            }
            client.send(Array(body[(8 << 20)...]))
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 204)
            XCTAssertEqual(response.header("Upload-Offset"), String(body.count))
            // The connection reads normally again after a spliced body: keep-alive works.
            client.send("HEAD \(path) HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n\r\n")
            XCTAssertEqual(try client.readResponse(forHead: true).header("Upload-Offset"), String(body.count))
            // All but what arrived with the head (and was written from the read buffer) went through the pipes.
            XCTAssertGreaterThanOrEqual(server.splicedBodyBytes - before, Int64(body.count - (1 << 20)))
            XCTAssertTrue(fileBytes(path) == body, "stored bytes differ")
        }
    }

    func testSpliceOffReadsTheBodyAsBefore() throws {
        let body = patternBytes(count: 4 << 20, seed: 2)
        try withServer(splice: false) { server, port in
            let path = try create(port: port, length: body.count)
            XCTAssertEqual(try patch(port: port, path, offset: 0, body[...]).status, 204)
            XCTAssertEqual(server.splicedBodyBytes, 0)
            XCTAssertTrue(fileBytes(path) == body, "stored bytes differ")
        }
    }

    /// A checksummed body is spliced too and hashed from the file (issue 19): a mismatch answers 460 and cuts the
    /// file back to the old offset, a match stores the exact bytes. sha256 as well, whose read-back is the same.
    func testChecksummedPatchIsSplicedAndVerified() throws {
        let body = patternBytes(count: 6 << 20, seed: 3)
        try withServer { server, port in
            for algorithm in [DigestAlgorithm.sha1, .sha256] {
                let path = try create(port: port, length: body.count)
                let digest = Base64.encode(StreamingDigest.digest(algorithm, of: body))
                let wrongDigest = Base64.encode(StreamingDigest.digest(algorithm, of: [1]))
                let before = server.splicedBodyBytes
                let wrongHeader = "Upload-Checksum: \(algorithm.rawValue) \(wrongDigest)\r\n"
                let wrong = try patch(port: port, path, offset: 0, body[...], extra: wrongHeader)
                XCTAssertEqual(wrong.status, 460)
                XCTAssertGreaterThan(server.splicedBodyBytes - before, Int64(body.count - (1 << 20)), "spliced")
                XCTAssertEqual(try offset(port: port, path), 0)
                XCTAssertEqual(fileBytes(path).count, 0, "the mismatched bytes were cut off")
                let rightHeader = "Upload-Checksum: \(algorithm.rawValue) \(digest)\r\n"
                let right = try patch(port: port, path, offset: 0, body[...], extra: rightHeader)
                XCTAssertEqual(right.status, 204)
                XCTAssertEqual(right.header("Upload-Offset"), String(body.count))
                XCTAssertTrue(fileBytes(path) == body, "stored bytes differ")
            }
        }
    }

    /// A checksummed PATCH appended after earlier bytes hashes only its own range of the file.
    func testChecksummedSplicedPatchAfterAnOffsetHashesItsOwnBytes() throws {
        let body = patternBytes(count: 10 << 20, seed: 5)
        let split = 3 << 20 + 123
        try withServer { server, port in
            let path = try create(port: port, length: body.count)
            XCTAssertEqual(try patch(port: port, path, offset: 0, body[..<split]).status, 204)
            let digest = Base64.encode(StreamingDigest.digest(.sha1, of: Array(body[split...])))
            let before = server.splicedBodyBytes
            let response = try patch(
                port: port, path, offset: split, body[split...], extra: "Upload-Checksum: sha1 \(digest)\r\n")
            XCTAssertEqual(response.status, 204)
            XCTAssertGreaterThan(server.splicedBodyBytes, before, "spliced")
            XCTAssertTrue(fileBytes(path) == body, "stored bytes differ")
        }
    }

    /// A checksummed spliced body whose client dies midway keeps nothing: its bytes cannot be verified.
    func testChecksummedSplicedPatchCutShortIsRolledBack() throws {
        let body = patternBytes(count: 8 << 20, seed: 9)
        let digest = Base64.encode(StreamingDigest.digest(.sha1, of: body))
        try withServer { server, port in
            let path = try create(port: port, length: body.count)
            let before = server.splicedBodyBytes
            do {
                let client = try RawHTTPClient(port: port, timeoutSeconds: 15)
                client.send(patchHead(path, offset: 0, count: body.count, extra: "Upload-Checksum: sha1 \(digest)\r\n"))
                client.send(Array(body[..<(5 << 20)]))
                let deadline = Date().addingTimeInterval(10)
                while server.splicedBodyBytes - before < Int64(4 << 20), Date() < deadline { usleep(10_000) }
                client.resetOnClose()  // and closed at the end of this scope
            }
            XCTAssertGreaterThan(server.splicedBodyBytes, before, "the body was spliced")
            // Wait for the rollback to finish (the lock is free and the record written).
            var stored = try offset(port: port, path)
            let settled = Date().addingTimeInterval(10)
            while stored != 0 || !fileBytes(path).isEmpty, Date() < settled {
                usleep(20_000)
                stored = try offset(port: port, path)
            }
            XCTAssertEqual(stored, 0)
            XCTAssertEqual(fileBytes(path).count, 0, "the unverified bytes were cut off")
        }
    }

    /// Sends the head and `sent` bytes of a `total`-byte PATCH, waits until the server spliced them, then runs
    /// `stall` with the connection still open. Returns the spliced byte count.
    private func startSplicedPatch(
        server: HTTPServer, port: Int, path: String, body: [UInt8], sent: Int
    ) throws -> RawHTTPClient {
        let before = server.splicedBodyBytes
        let client = try RawHTTPClient(port: port, timeoutSeconds: 15)
        client.send(patchHead(path, offset: 0, count: body.count))
        client.send(Array(body[..<sent]))
        let deadline = Date().addingTimeInterval(10)
        while server.splicedBodyBytes - before < Int64(sent - (1 << 20)), Date() < deadline { usleep(10_000) }
        XCTAssertGreaterThan(server.splicedBodyBytes, before, "the body was spliced")
        return client
    }

    /// Once the PATCH that held the upload is over (its lock released, so its last drain and its commit are done):
    /// offset and file agree, and the file is a prefix of `body`; returns the offset.
    private func assertKeptPrefix(port: Int, _ path: String, of body: [UInt8], atMost sent: Int) throws -> Int {
        let id = path.split(separator: "/").last.map(String.init) ?? ""
        let deadline = Date().addingTimeInterval(20)
        while locker?.heldIDs.contains(id) == true, Date() < deadline { usleep(10_000) }
        XCTAssertEqual(locker?.heldIDs.contains(id), false, "the PATCH released the upload")
        let stored = try offset(port: port, path) ?? -1
        XCTAssertGreaterThan(stored, 0)
        XCTAssertLessThanOrEqual(stored, sent)
        let file = fileBytes(path)
        XCTAssertEqual(file.count, stored, "offset == bytes in the file")
        XCTAssertTrue(file == Array(body[..<min(file.count, body.count)]), "the kept bytes are an exact prefix")
        return stored
    }

    func testStalledSplicedBodyIsCutByTheBodyTimeoutAndKeepsItsBytes() throws {
        let body = patternBytes(count: 8 << 20, seed: 6)
        let sent = 3 << 20
        try withServer(configure: { $0.bodyTimeoutMilliseconds = 1_500; $0.minBodyBytesPerSecond = 0 }) {
            server, port in
            let path = try create(port: port, length: body.count)
            let started = Date()
            let client = try startSplicedPatch(server: server, port: port, path: path, body: body, sent: sent)
            XCTAssertTrue(client.waitForClose(), "the server cut the stalled body")
            XCTAssertLessThan(Date().timeIntervalSince(started), 8)
            _ = try assertKeptPrefix(port: port, path, of: body, atMost: sent)
        }
    }

    func testTricklingSplicedBodyIsCutByTheMinimumRate() throws {
        let body = patternBytes(count: 8 << 20, seed: 7)
        let sent = 2 << 20
        try withServer(configure: {
            $0.bodyTimeoutMilliseconds = 20_000
            $0.minBodyBytesPerSecond = 100_000
            $0.bodyRateWindowMilliseconds = 1_000
        }) { server, port in
            let path = try create(port: port, length: body.count)
            let client = try startSplicedPatch(server: server, port: port, path: path, body: body, sent: sent)
            let started = Date()
            var trickled = 0
            while Date().timeIntervalSince(started) < 10, client.send([body[sent + trickled]]) {
                trickled += 1
                usleep(100_000)
            }
            XCTAssertLessThan(Date().timeIntervalSince(started), 8, "a 10 bytes/s trickle is cut by the rate")
            _ = try assertKeptPrefix(port: port, path, of: body, atMost: sent + trickled)
        }
    }

    /// Termination asks the PATCH's lock holder to let go: the spliced PATCH stops and the DELETE goes through.
    func testDeleteStopsASplicedPatch() throws {
        let body = patternBytes(count: 8 << 20, seed: 8)
        try withServer { server, port in
            let path = try create(port: port, length: body.count)
            let patching = try startSplicedPatch(server: server, port: port, path: path, body: body, sent: 3 << 20)
            let deleting = try RawHTTPClient(port: port, timeoutSeconds: 15)
            deleting.send("DELETE \(path) HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\nContent-Length: 0\r\n\r\n")
            XCTAssertEqual(try deleting.readResponse().status, 204)
            XCTAssertNotEqual(try patching.readResponse().status, 204, "the PATCH was stopped")
            XCTAssertEqual(try offset(port: port, path), nil)
        }
    }

    func testClientDyingMidBodyKeepsAnExactPrefixAndResumeCompletes() throws {
        let body = patternBytes(count: 16 << 20, seed: 4)
        let sent = 9 << 20
        try withServer { server, port in
            let path = try create(port: port, length: body.count)
            let before = server.splicedBodyBytes
            do {
                let client = try RawHTTPClient(port: port, timeoutSeconds: 30)
                client.send(patchHead(path, offset: 0, count: body.count))
                client.send(Array(body[..<sent]))
                // Let the server take what was sent before the client dies.
                let deadline = Date().addingTimeInterval(10)
                while server.splicedBodyBytes - before < Int64(sent - (1 << 20)), Date() < deadline { usleep(10_000) }
                client.resetOnClose()
            }
            XCTAssertGreaterThan(server.splicedBodyBytes, before, "the body was spliced")
            // The abort writes what the pipes hold, then commits what is in the file and releases the lock.
            let stored = try assertKeptPrefix(port: port, path, of: body, atMost: sent)
            let resumed = try patch(port: port, path, offset: stored, body[stored...])
            XCTAssertEqual(resumed.status, 204)
            XCTAssertEqual(resumed.header("Upload-Offset"), String(body.count))
            XCTAssertTrue(fileBytes(path) == body, "resumed upload differs")
        }
    }

    /// The interleaving behind a flake under load, made deterministic by holding every threadpool thread: the client
    /// dies while its last bytes wait in the pipes for a drain. HEAD then reports exactly what the file holds (never
    /// more) while the PATCH still holds the lock; the bytes land, are committed, and only then is the lock
    /// released. A check that took "HEAD == file size" for "the PATCH is over" resumed at the earlier offset and got
    /// 409 (the server had moved on, as it should); `assertKeptPrefix` waits for the lock.
    func testBytesLeftInThePipesWhenTheClientDiesAreCommittedBeforeTheLockIsReleased() throws {
        let body = patternBytes(count: 16 << 20, seed: 9)
        let first = 256 << 10
        let sent = 2 << 20
        try withServer { server, port in
            let path = try create(port: port, length: body.count)
            let id = String(path.split(separator: "/").last ?? "")
            let before = server.splicedBodyBytes
            var held: ThreadpoolBlock?
            // Whatever fails, the server's shutdown must not wait for the threadpool forever.
            defer { held?.release() }
            do {
                let client = try RawHTTPClient(port: port, timeoutSeconds: 30)
                client.send(patchHead(path, offset: 0, count: body.count))
                client.send(Array(body[..<first]))
                let deadline = Date().addingTimeInterval(10)
                while server.splicedBodyBytes == before, Date() < deadline { usleep(5_000) }
                XCTAssertGreaterThan(server.splicedBodyBytes, before, "the body is spliced (the file is open)")
                // From here no drain runs: what the splicer takes stays in its pipes.
                held = try ThreadpoolBlock(executor: XCTUnwrap(server.executors.first))
                let blocked = server.splicedBodyBytes
                client.send(Array(body[first..<sent]))
                while server.splicedBodyBytes == blocked, Date() < deadline { usleep(5_000) }
                XCTAssertGreaterThan(server.splicedBodyBytes, blocked, "bytes wait in the pipes")
                client.resetOnClose()
            }
            let early = try XCTUnwrap(try offset(port: port, path))
            XCTAssertEqual(fileBytes(path).count, early, "HEAD reports what the file holds")
            XCTAssertEqual(locker?.heldIDs.contains(id), true, "the dead PATCH still holds the upload")
            // Released a while after the check starts, so that a check that does not wait for the lock reads `early`.
            let block = try XCTUnwrap(held)
            DispatchQueue.global().asyncAfter(deadline: .now() + 1) { block.release() }
            let stored = try assertKeptPrefix(port: port, path, of: body, atMost: sent)
            XCTAssertGreaterThan(stored, early, "the bytes that were in the pipes are kept")
            let resumed = try patch(port: port, path, offset: stored, body[stored...])
            XCTAssertEqual(resumed.status, 204)
            XCTAssertEqual(resumed.header("Upload-Offset"), String(body.count))
            XCTAssertTrue(fileBytes(path) == body, "resumed upload differs")
        }
    }
}

/// Holds every thread of libuv's threadpool (process-wide; `UV_THREADPOOL_SIZE`, 4 by default) until `release`, so
/// work offloaded meanwhile (a splicer's drain) waits: "bytes in the pipes, none written" on demand.
private final class ThreadpoolBlock: @unchecked Sendable {
    struct NotHeld: Error {}
    private let gate = DispatchSemaphore(value: 0)
    private let size = Int(ProcessInfo.processInfo.environment["UV_THREADPOOL_SIZE"] ?? "").map { max(1, $0) } ?? 4
    private let lock = NSLock()
    private var isReleased = false

    /// Returns once every thread runs one of the blocking jobs.
    init(executor: any LoopExecutor) throws {
        let started = DispatchSemaphore(value: 0)
        for _ in 0..<size {
            executor.execute { [gate] in
                executor.offload({
                    started.signal()
                    gate.wait()
                }, completion: {})
            }
        }
        for _ in 0..<size where started.wait(timeout: .now() + 10) == .timedOut {
            release()
            throw NotHeld()
        }
    }

    /// Idempotent.
    func release() {
        let first = lock.withLock {
            defer { isReleased = true }
            return !isReleased
        }
        guard first else { return }
        for _ in 0..<size { gate.signal() }
    }
}
