import Foundation
import TusCrypto
import TusCore
import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class ChecksumTests: TusTestCase {
    let helloWorld = Array("hello world".utf8)

    func checksum(_ algorithm: DigestAlgorithm, _ bytes: [UInt8]) -> String {
        "\(algorithm.rawValue) \(Base64.encode(StreamingDigest.digest(algorithm, of: bytes)))"
    }

    func testSpecVectorAndMismatch() {  // K3, K4, K5, K6, K8
        let path = createUpload(length: 22)
        run(
            [
                Row(name: "unknown algo", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "foo AAAA"]), body: helloWorld, status: 400, readsBody: false),
                Row(name: "crc32 not enabled", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "crc32 AAAAAA=="]), body: helloWorld, status: 400, readsBody: false),
                Row(name: "no value", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "sha1"]), body: helloWorld, status: 400, readsBody: false),
                Row(name: "not base64", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "sha1 not-base64!"]), body: helloWorld, status: 400, readsBody: false),
                Row(name: "url alphabet", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "sha1 Kq5sNclPz7QV2-lfQIuc6R7oRu0="]), body: helloWorld, status: 400, readsBody: false),
                Row(name: "wrong length", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "sha1 AAAA"]), body: helloWorld, status: 400, readsBody: false),
                Row(name: "two spaces", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "sha1  Kq5sNclPz7QV2+lfQIuc6R7oRu0="]), body: helloWorld, status: 400, readsBody: false),
                Row(name: "mismatch", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="]), body: Array("hello worlD"), status: 460, readsBody: true),
                Row(name: "offset unchanged", method: .HEAD, status: 200, expectHeaders: ["Upload-Offset": "0"]),
                Row(name: "spec vector", method: .PATCH, headers: patchHeaders(offset: 0, ["Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="]), body: helloWorld, status: 204, expectHeaders: ["Upload-Offset": "11"]),
            ], path: path)
        XCTAssertEqual(store.storedBytes(String(path.dropFirst(7))), helloWorld)
    }

    func testEveryAlgorithmWithSplitBodies() {  // K1 algorithms, digest updated per fragment
        for algorithm in DigestAlgorithm.allCases {
            let body = (0..<1000).map { UInt8($0 % 251) }
            let path = createUpload(length: 1000)
            let ok = client.patch(
                path, offset: 0, body: body, headers: ["Upload-Checksum": checksum(algorithm, body)], fragmentSize: 33)
            XCTAssertEqual(ok.status, 204, algorithm.rawValue)
            let other = createUpload(length: 1000)
            let bad = client.patch(
                other, offset: 0, body: body, headers: ["Upload-Checksum": checksum(algorithm, body + [0])],
                chunked: true, fragmentSize: 100)
            XCTAssertEqual(bad.status, 460, algorithm.rawValue)
            XCTAssertEqual(offset(other), 0)
            XCTAssertEqual(store.storedBytes(String(other.dropFirst(7))), [], "discarded")
        }
    }

    func testMismatchAfterEarlierChunkKeepsEarlierChunk() {  // K4 on a later PATCH
        let path = createUpload(length: 22)
        XCTAssertEqual(client.patch(path, offset: 0, body: helloWorld).status, 204)
        XCTAssertEqual(client.patch(path, offset: 11, body: helloWorld, headers: ["Upload-Checksum": checksum(.md5, [1])]).status, 460)
        XCTAssertEqual(offset(path), 11)
        XCTAssertEqual(store.storedBytes(String(path.dropFirst(7))), helloWorld)
    }

    func testInterruptedChecksummedPatchIsDiscarded() {  // K7
        let path = createUpload(length: 100)
        let exchange = client.start(
            .PATCH, path, headers: patchHeaders(offset: 0, ["Upload-Checksum": checksum(.sha256, helloWorld)]),
            framing: .contentLength(11))
        exchange.deliver(Array(helloWorld[0..<5]))
        XCTAssertEqual(offset(path), 0, "discardable writes are invisible until commit")
        exchange.abortBody(.clientClosed)
        client.executor.runPending()
        XCTAssertEqual(offset(path), 0)
        XCTAssertEqual(store.storedBytes(String(path.dropFirst(7))), [])
    }

    func testChecksumDisabled() {
        configure(TusConfiguration(checksumAlgorithms: []))
        let path = createUpload(length: 11)
        let exchange = client.patch(path, offset: 0, body: helloWorld, headers: ["Upload-Checksum": checksum(.sha1, helloWorld)])
        XCTAssertEqual(exchange.status, 400)
    }
}

/// A memory store whose writers also offer a file for direct (spliced) bodies, as the file store does: the test
/// plays the splicer, writing bytes into `file` and reporting them to the sink (issue 19: checksummed bodies are
/// spliced and hashed by reading the file back).
final class DirectFileStore: UploadStore, @unchecked Sendable {
    let inner = MemoryUploadStore()
    let file: Int32
    var isReadable = true
    var rollbacks = 0
    var directEnds = 0

    init(path: String) { file = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600) }
    deinit { close(file) }

    var capabilities: UploadStoreCapabilities { inner.capabilities }
    func lookup(_ id: String, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadLookup, StoreError>) -> Void) {
        inner.lookup(id, on: executor, completion: completion)
    }
    func create(_ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        inner.create(info, on: executor, completion: completion)
    }
    func declareLength(id: String, length: Int64, completing: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        inner.declareLength(id: id, length: length, completing: completing, on: executor, completion: completion)
    }
    func remove(id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void) {
        inner.remove(id: id, reason: reason, on: executor, completion: completion)
    }
    func openReader(id: String, on executor: any LoopExecutor,
        completion: @escaping (Result<any UploadReader, StoreError>) -> Void) {
        inner.openReader(id: id, on: executor, completion: completion)
    }
    func listExpired(now: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void) {
        inner.listExpired(now: now, on: executor, completion: completion)
    }
    func finals(referencing partialID: String, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void) {
        inner.finals(referencing: partialID, on: executor, completion: completion)
    }
    func moveExpiry(of upload: UploadInfo, to expiresAt: Int64, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        inner.moveExpiry(of: upload, to: expiresAt, lock: lock, on: executor, completion: completion)
    }
    func completeConcatenation(_ final: UploadInfo, partials: [UploadInfo], on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
        inner.completeConcatenation(final, partials: partials, on: executor, completion: completion)
    }
    func openWriter(id: String, startingAt offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor, completion: @escaping (Result<any UploadWriter, StoreError>) -> Void) {
        inner.openWriter(id: id, startingAt: offset, discardable: discardable, lock: lock, on: executor) { result in
            completion(result.map { Writer(store: self, inner: $0, offset: offset) })
        }
    }

    final class Writer: DirectUploadWriter {
        let store: DirectFileStore
        let inner: any UploadWriter
        var offset: Int64
        init(store: DirectFileStore, inner: any UploadWriter, offset: Int64) {
            self.store = store
            self.inner = inner
            self.offset = offset
        }
        func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void) {
            offset += Int64(fragment.count)
            inner.write(fragment, completion: completion)
        }
        func commit(expiresAt: Int64?, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
            inner.commit(expiresAt: expiresAt, completion: completion)
        }
        func rollback(completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
            store.rollbacks += 1
            inner.rollback(completion: completion)
        }
        func beginDirectWrite() -> DirectBodyTarget? {
            DirectBodyTarget(descriptor: store.file, offset: offset, maxCount: .max, isReadable: store.isReadable)
        }
        func directlyWritten(count: Int) -> Result<Int64, StoreError> {
            offset += Int64(count)
            return .success(offset)
        }
        func endDirectWrite(error: StoreError?) { store.directEnds += 1 }
    }
}

final class ChecksumDirectBodyTests: TusTestCase {
    private var path = ""
    private var direct: DirectFileStore!
    private let body = Array("hello world, spliced".utf8)

    override func setUp() {
        super.setUp()
        path = NSTemporaryDirectory() + "tus-direct-\(UUID().uuidString)"
        direct = DirectFileStore(path: path)
        let clock = clock
        handler = TusHandler(configuration: TusConfiguration(), store: direct, locker: locker, now: { clock.now })
        client = TusTestClient(handler: handler)
    }

    override func tearDown() {
        direct = nil
        unlink(path)
        super.tearDown()
    }

    private func checksumHeader(_ bytes: [UInt8]) -> HTTPHeaders {
        patchHeaders(offset: 0, ["Upload-Checksum": "sha1 \(Base64.encode(StreamingDigest.digest(.sha1, of: bytes)))"])
    }

    /// The first 6 bytes come as a fragment (read with the head), the rest "spliced" into the file at offset 6.
    private func patchSplicingTheTail(headers: HTTPHeaders, fileBytes: [UInt8]) -> (FakeExchange, DirectBodyTarget?) {
        let upload = createUpload(length: Int64(body.count))
        let exchange = client.start(.PATCH, upload, headers: headers, framing: .contentLength(Int64(body.count)))
        exchange.deliver(Array(body[..<6]))
        client.executor.runPending()
        XCTAssertEqual(exchange.outstandingFragments, 0, "the fragment was written and hashed")
        let sink = exchange.sink as? any HTTPDirectBodySink
        let target = sink?.beginDirectBody(minimumCount: 1)
        guard let sink, let target else { return (exchange, nil) }
        XCTAssertEqual(target.offset, 6)
        XCTAssertEqual(pwrite(direct.file, fileBytes, fileBytes.count, 0), fileBytes.count)
        sink.bodyWrittenDirectly(count: 7)
        sink.bodyWrittenDirectly(count: body.count - 13)
        sink.endDirectBody(writeErrorNumber: nil)
        exchange.endBody()
        client.executor.runPending()
        return (exchange, target)
    }

    func testSplicedTailIsHashedAfterTheFragmentInBodyOrder() {
        let (exchange, target) = patchSplicingTheTail(headers: checksumHeader(body), fileBytes: body)
        XCTAssertNotNil(target, "a checksummed body may be spliced into a readable file")
        XCTAssertEqual(exchange.status, 204)
        XCTAssertEqual(direct.rollbacks, 0)
        XCTAssertEqual(direct.directEnds, 1)
    }

    func testSplicedBytesThatDifferFromTheChecksumAreRolledBack() {
        var tampered = body
        tampered[10] ^= 1
        let (exchange, _) = patchSplicingTheTail(headers: checksumHeader(body), fileBytes: tampered)
        XCTAssertEqual(exchange.status, 460)
        XCTAssertEqual(direct.rollbacks, 1)
    }

    /// The file ends before the reported range (truncated elsewhere): the bytes cannot be verified, so 500 and
    /// rollback, never a 204.
    func testSplicedRangeThatCannotBeReadBackIsAStoreFailureAndRolledBack() {
        let (exchange, _) = patchSplicingTheTail(headers: checksumHeader(body), fileBytes: Array(body[..<10]))
        XCTAssertEqual(exchange.status, 500)
        XCTAssertEqual(direct.rollbacks, 1)
    }

    /// A file the HTTP layer could write but not read back: checksummed bodies keep to fragments.
    func testUnreadableTargetIsDeclinedForAChecksummedBody() {
        direct.isReadable = false
        let (exchange, target) = patchSplicingTheTail(headers: checksumHeader(body), fileBytes: body)
        XCTAssertNil(target)
        XCTAssertEqual(direct.directEnds, 1, "the direct write begun was ended")
        XCTAssertTrue(exchange.deliver(Array(body[6...])))
        exchange.endBody()
        client.executor.runPending()
        XCTAssertEqual(exchange.status, 204)
    }
}
