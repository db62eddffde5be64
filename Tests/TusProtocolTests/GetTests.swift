import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class GetTests: TusTestCase {
    let content = Array("0123456789abcdefghij".utf8)

    func upload(metadata: String? = nil) -> String {
        let path = createUpload(length: 20, metadata: metadata)
        XCTAssertEqual(client.patch(path, offset: 0, body: content).status, 204)
        return path
    }

    func testDownloadAndRanges() {
        let path = upload()
        let cases: [(range: String?, status: Int, body: ArraySlice<UInt8>?, contentRange: String?)] = [
            (nil, 200, content[...], nil),
            ("bytes=0-4", 206, content[0...4], "bytes 0-4/20"),
            ("bytes=15-", 206, content[15...], "bytes 15-19/20"),
            ("bytes=-3", 206, content[17...], "bytes 17-19/20"),
            ("bytes=-100", 206, content[...], "bytes 0-19/20"),
            ("bytes=5-100", 206, content[5...], "bytes 5-19/20"),
            ("bytes=20-", 416, nil, "bytes */20"),
            ("bytes=-0", 416, nil, "bytes */20"),
            ("bytes=0-1,3-4", 200, content[...], nil),
            ("bytes=x-y", 200, content[...], nil),
            ("items=0-1", 200, content[...], nil),
            ("bytes=5-2", 200, content[...], nil),
        ]
        for item in cases {
            var headers: HTTPHeaders = [:]
            if let range = item.range { headers.add("Range", range) }
            let exchange = client.send(.GET, path, headers: headers)
            XCTAssertEqual(exchange.status, item.status, item.range ?? "none")
            XCTAssertEqual(exchange.header("Content-Range"), item.contentRange, item.range ?? "none")
            if let body = item.body {
                XCTAssertEqual(exchange.streamedBody, Array(body), item.range ?? "none")
                XCTAssertEqual(exchange.streamedBodyLength, Int64(body.count))
            }
        }
    }

    func testNoTusResumableNeededAndErrors() {
        let path = upload()
        XCTAssertEqual(client.send(.GET, path, headers: ["Host": "x"], includeDefaultHeaders: false).status, 200)
        XCTAssertEqual(client.send(.GET, "/files/unknown").status, 404)
        XCTAssertEqual(client.send(.DELETE, path).status, 204)
        XCTAssertEqual(client.send(.GET, path).status, 410)
        XCTAssertEqual(client.send(.GET, "/files/").status, 405)
    }

    /// `--disable-download`: GET answers as over a store that cannot read (405 without GET in `Allow`);
    /// status and termination are unaffected.
    func testDownloadWithheldByOperator() {
        var configuration = TusConfiguration()
        configuration.withheldCapabilities = [.download]
        configure(configuration)
        let path = upload()
        run(
            [
                Row(name: "get", method: .GET, status: 405, expectHeaders: ["Allow": "HEAD, PATCH, DELETE, OPTIONS"]),
                Row(
                    name: "override", method: .POST, headers: ["X-HTTP-Method-Override": "GET"], status: 405,
                    expectHeaders: ["Allow": "HEAD, PATCH, DELETE, OPTIONS"]),
                Row(name: "head", method: .HEAD, status: 200),
                Row(name: "delete", method: .DELETE, status: 204),
            ], path: path)
        let extensions = client.send(.OPTIONS, "/files/").header("Tus-Extension") ?? ""
        XCTAssertTrue(extensions.split(separator: ",").contains("termination"), extensions)
    }

    func testUnfinishedUploadServesCommittedBytes() {
        let path = createUpload(length: 100)
        XCTAssertEqual(client.patch(path, offset: 0, body: Array("abc")).status, 204)
        let exchange = client.send(.GET, path)
        XCTAssertEqual(exchange.status, 200)
        XCTAssertEqual(exchange.streamedBody, Array("abc"))
    }

    func testContentTypeAndDisposition() {
        func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
        let cases: [(metadata: String?, type: String, disposition: String)] = [
            (nil, "application/octet-stream", "attachment"),
            ("filetype \(b64("image/png")),filename \(b64("a.png"))", "image/png", "inline; filename=\"a.png\""),
            ("filetype \(b64("text/html")),filename \(b64("x.html"))", "application/octet-stream", "attachment; filename=\"x.html\""),
            ("filetype \(b64("image/svg+xml"))", "application/octet-stream", "attachment"),
            (
                "filename \(b64("a\"b\\c\r\nd.txt"))", "application/octet-stream",
                "attachment; filename=\"a_b_cd.txt\"; filename*=UTF-8''a%22b%5Cc%0D%0Ad.txt"
            ),
            ("filename \(b64("résumé.pdf"))", "application/octet-stream", "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"),
        ]
        for item in cases {
            let path = upload(metadata: item.metadata)
            let exchange = client.send(.GET, path)
            XCTAssertEqual(exchange.header("Content-Type"), item.type, item.metadata ?? "")
            XCTAssertEqual(exchange.header("Content-Disposition"), item.disposition, item.metadata ?? "")
            XCTAssertEqual(exchange.header("X-Content-Type-Options"), "nosniff")
        }
    }
}

import Foundation
