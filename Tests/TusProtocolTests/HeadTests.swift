import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class HeadTests: TusTestCase {
    func testFreshUpload() {  // C1, C10, C12, C13, C14, CR3, CR7, E8
        let path = createUpload(length: 100, metadata: "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
        run(
            [
                Row(
                    name: "fresh", method: .HEAD, status: 200,
                    expectHeaders: [
                        "Upload-Offset": "0", "Upload-Length": "100", "Cache-Control": "no-store",
                        "Tus-Resumable": "1.0.0", "Upload-Defer-Length": nil,
                        "Upload-Metadata": "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
                        "Upload-Expires": "Wed, 02 Jul 2014 16:00:00 GMT", "X-Content-Type-Options": "nosniff",
                    ])
            ], path: path)
    }

    func testCompletedUpload() {  // C11
        let path = createUpload(length: 3)
        XCTAssertEqual(client.patch(path, offset: 0, body: [1, 2, 3]).status, 204)
        run(
            [
                Row(
                    name: "complete", method: .HEAD, status: 200,
                    expectHeaders: ["Upload-Offset": "3", "Upload-Length": "3", "Upload-Expires": nil])
            ], path: path)
    }

    func testErrorsHaveNoBodyAndNoOffset() {  // C15, C2, C3
        let path = createUpload(length: 10)
        run(
            [
                Row(name: "unknown", method: .HEAD, path: "/files/nope", status: 404, expectHeaders: ["Upload-Offset": nil]),
                Row(
                    name: "wrong version", method: .HEAD, headers: ["Tus-Resumable": "0.2.2"], status: 412,
                    expectHeaders: ["Tus-Version": "1.0.0", "Upload-Offset": nil]),
                Row(
                    name: "override HEAD", method: .POST, headers: ["X-HTTP-Method-Override": "HEAD"], status: 200,
                    expectHeaders: ["Upload-Offset": "0"]),
            ], path: path)
        let missing = client.send(.HEAD, path, headers: ["Host": "x"], includeDefaultHeaders: false)
        XCTAssertEqual(missing.status, 412)
        XCTAssertEqual(missing.header("Tus-Version"), "1.0.0")
    }

    func testHeaderNamesAreCaseInsensitive() {  // TUSKit sends TUS-Resumable
        let path = createUpload(length: 10)
        let exchange = client.send(.HEAD, path, headers: ["TUS-RESUMABLE": "1.0.0", "Host": "x"], includeDefaultHeaders: false)
        XCTAssertEqual(exchange.status, 200)
    }

    func testInvalidIDsNeverReachTheStore() {
        let path = createUpload(length: 10)
        for target in [
            "/files/..", "/files/%2e%2e", "/files/a%2Fb", "/files/\(path.dropFirst(7))/extra", "/files/a.b",
            "/other/\(path.dropFirst(7))", "/files/" + String(repeating: "a", count: 129), "/filesabc",
        ] {
            XCTAssertEqual(client.send(.HEAD, target).status, 404, target)
        }
        XCTAssertEqual(client.send(.HEAD, path + "?x=1").status, 200, "query strings are ignored")
    }
}
