import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class OptionsTests: TusTestCase {
    func testCapabilitiesWithoutTusResumable() {  // C4, C5, C6, C7, CR1, W1, D1, E1, K1, K2, X1
        configure(TusConfiguration(maxSize: 1000))
        run([
            Row(
                name: "no Tus-Resumable", method: .OPTIONS, path: "/files/",
                headers: ["Tus-Resumable": ""], status: 204,
                expectHeaders: [
                    "Tus-Version": "1.0.0",
                    "Tus-Extension":
                        "creation,creation-with-upload,creation-defer-length,termination,concatenation,"
                        + "concatenation-unfinished,checksum,checksum-trailer,expiration",
                    "Tus-Max-Size": "1000", "Tus-Checksum-Algorithm": "sha1,md5,sha256,sha512",
                ]),
            Row(
                name: "bogus Tus-Resumable", method: .OPTIONS, path: "/files/", headers: ["Tus-Resumable": "9.9.9"],
                status: 204, expectHeaders: ["Tus-Version": "1.0.0"]),
            Row(  // C27
                name: "upload URL", method: .OPTIONS, path: "/files/abc", status: 204,
                expectHeaders: ["Tus-Version": "1.0.0"]),
            Row(name: "any path", method: .OPTIONS, path: "/elsewhere", status: 204),
        ])
        let missing = client.send(.OPTIONS, "/files/", includeDefaultHeaders: false)
        XCTAssertEqual(missing.status, 204)
        XCTAssertEqual(missing.header("Tus-Version"), "1.0.0")
    }

    func testExtensionsFollowStoreAndConfiguration() {  // C6, C7, X7, E1
        configure(
            TusConfiguration(expirationSeconds: 0, checksumAlgorithms: []),
            store: MemoryUploadStore(capabilities: [.download]))
        let exchange = client.send(.OPTIONS, "/files/")
        XCTAssertEqual(exchange.header("Tus-Extension"), "creation,creation-with-upload,creation-defer-length")
        XCTAssertNil(exchange.header("Tus-Max-Size"))
        XCTAssertNil(exchange.header("Tus-Checksum-Algorithm"))
    }

    func testMethodOverrideOptions() {  // C9
        let exchange = client.send(.POST, "/files/", headers: ["X-HTTP-Method-Override": "OPTIONS"])
        XCTAssertEqual(exchange.status, 204)
        XCTAssertEqual(exchange.header("Tus-Version"), "1.0.0")
    }
}
