import TusCrypto
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
