import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class DeferLengthTests: TusTestCase {
    func testDeferredLifecycle() {  // D2, D5, D6, D9
        configure(TusConfiguration(maxSize: 100))
        let path = createUpload(length: nil)
        run(
            [
                Row(
                    name: "deferred head", method: .HEAD, status: 200,
                    expectHeaders: ["Upload-Defer-Length": "1", "Upload-Length": nil, "Upload-Offset": "0"]),
                Row(name: "chunk without length", method: .PATCH, headers: patchHeaders(offset: 0), body: Array("hello"), status: 204, expectHeaders: ["Upload-Offset": "5"]),
                Row(name: "still deferred", method: .HEAD, status: 200, expectHeaders: ["Upload-Defer-Length": "1"]),
                Row(name: "below offset", method: .PATCH, headers: patchHeaders(offset: 5, ["Upload-Length": "4"]), status: 400),
                Row(name: "over max", method: .PATCH, headers: patchHeaders(offset: 5, ["Upload-Length": "101"]), status: 413),
                Row(name: "invalid", method: .PATCH, headers: patchHeaders(offset: 5, ["Upload-Length": "x"]), status: 400),
                Row(name: "declare", method: .PATCH, headers: patchHeaders(offset: 5, ["Upload-Length": "11"]), body: Array(" world"), status: 204, expectHeaders: ["Upload-Offset": "11"]),
                Row(
                    name: "known now", method: .HEAD, status: 200,
                    expectHeaders: ["Upload-Length": "11", "Upload-Defer-Length": nil, "Upload-Offset": "11"]),
                Row(name: "same again", method: .PATCH, headers: patchHeaders(offset: 11, ["Upload-Length": "11"]), status: 400),
                Row(name: "change", method: .PATCH, headers: patchHeaders(offset: 11, ["Upload-Length": "12"]), status: 400),
            ], path: path)
    }

    func testCreationTable() {  // D3, D4
        run([
            Row(name: "2", method: .POST, path: "/files/", headers: ["Upload-Defer-Length": "2"], status: 400),
            Row(name: "true", method: .POST, path: "/files/", headers: ["Upload-Defer-Length": "true"], status: 400),
            Row(name: "both", method: .POST, path: "/files/", headers: ["Upload-Defer-Length": "1", "Upload-Length": "5"], status: 400),
            Row(name: "ok", method: .POST, path: "/files/", headers: ["Upload-Defer-Length": "1"], status: 201),
        ])
    }

    func testDeclaredLengthLimitsTheSameRequest() {  // D5 + C24
        let path = createUpload(length: nil)
        let exchange = client.patch(path, offset: 0, body: Array("hello"), headers: ["Upload-Length": "3"])
        XCTAssertEqual(exchange.status, 413)
        XCTAssertFalse(exchange.didReadBody)
        XCTAssertEqual(head(path).header("Upload-Defer-Length"), "1", "nothing declared when rejected up front")
    }

    func testDeferredUploadStopsAtMaxSize() {
        configure(TusConfiguration(maxSize: 4))
        let path = createUpload(length: nil)
        let exchange = client.patch(path, offset: 0, body: Array("hello"), chunked: true, fragmentSize: 2)
        XCTAssertEqual(exchange.status, 413)
        XCTAssertEqual(offset(path), 4)
    }
}
