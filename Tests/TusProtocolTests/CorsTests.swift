import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class CorsTests: TusTestCase {
    func testAnyOrigin() {
        let path = createUpload(length: 1)
        run(
            [
                Row(
                    name: "head", method: .HEAD, headers: ["Origin": "https://app.example"], status: 200,
                    expectHeaders: [
                        "Access-Control-Allow-Origin": "*", "Vary": nil, "Access-Control-Allow-Credentials": nil,
                        "Access-Control-Expose-Headers":
                            "Location, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Concat, Upload-Expires, Tus-Version, Tus-Resumable, Tus-Max-Size, Tus-Extension, Tus-Checksum-Algorithm, X-Request-ID, WWW-Authenticate, Upload-Draft-Interop-Version, Upload-Complete, Upload-Incomplete, Upload-Limit",
                    ]),
                Row(name: "no origin", method: .HEAD, status: 200, expectHeaders: ["Access-Control-Allow-Origin": nil]),
                Row(
                    name: "error too", method: .HEAD, path: "/files/nope", headers: ["Origin": "https://a"], status: 404,
                    expectHeaders: ["Access-Control-Allow-Origin": "*"]),
                Row(
                    name: "preflight", method: .OPTIONS,
                    headers: ["Origin": "https://a", "Access-Control-Request-Method": "PATCH"], status: 204,
                    expectHeaders: [
                        "Access-Control-Allow-Origin": "*",
                        "Access-Control-Allow-Methods": "POST, HEAD, PATCH, OPTIONS, GET, DELETE",
                        "Access-Control-Allow-Headers":
                            "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Checksum, Upload-Draft-Interop-Version, Upload-Complete, Upload-Incomplete, Content-Digest, Repr-Digest",
                        "Access-Control-Max-Age": "86400",
                    ]),
            ], path: path)
    }

    func testOriginList() {
        configure(TusConfiguration(corsOrigins: ["https://good.example"]))
        run([
            Row(
                name: "allowed", method: .OPTIONS, path: "/files/",
                headers: ["Origin": "https://good.example", "Access-Control-Request-Method": "POST"], status: 204,
                expectHeaders: [
                    "Access-Control-Allow-Origin": "https://good.example", "Vary": "Origin",
                    "Access-Control-Allow-Methods": "POST, HEAD, PATCH, OPTIONS, GET, DELETE",
                ]),
            Row(
                name: "denied", method: .OPTIONS, path: "/files/",
                headers: ["Origin": "https://evil.example", "Access-Control-Request-Method": "POST"], status: 204,
                expectHeaders: [
                    "Access-Control-Allow-Origin": nil, "Vary": "Origin", "Access-Control-Allow-Methods": nil,
                ]),
        ])
    }

    func testCredentialsEchoOrigin() {  // Uppy withCredentials
        configure(TusConfiguration(corsAllowCredentials: true))
        let exchange = client.send(.POST, "/files/", headers: ["Upload-Length": "1", "Origin": "https://app.example"])
        XCTAssertEqual(exchange.header("Access-Control-Allow-Origin"), "https://app.example")
        XCTAssertEqual(exchange.header("Access-Control-Allow-Credentials"), "true")
        XCTAssertEqual(exchange.header("Vary"), "Origin")
    }
}
