import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// A singleton tus field sent on two lines is refused with 400 before anything acts on either value.
final class RepeatedHeaderTests: TusTestCase {
    private func fields(_ pairs: (String, String)...) -> HTTPHeaders {
        HTTPHeaders(pairs.map { (name: $0.0, value: $0.1) })
    }

    private func text(_ exchange: FakeExchange) -> String {
        String(decoding: exchange.response?.body ?? [], as: UTF8.self)
    }

    private func assertRefused(
        _ exchange: FakeExchange, naming field: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(exchange.responses.count, 1, file: file, line: line)
        XCTAssertEqual(exchange.status, 400, file: file, line: line)
        XCTAssertFalse(exchange.didReadBody, "no body is read for a refused request", file: file, line: line)
        let expected = "ERR_REPEATED_HEADER: header must appear only once: \(field)\n"
        XCTAssertEqual(text(exchange), expected, file: file, line: line)
        XCTAssertEqual(exchange.header("Tus-Resumable"), "1.0.0", file: file, line: line)
    }

    func testRepeatedCreationFieldsCreateNothing() {
        let rows: [(String, HTTPHeaders)] = [
            ("Upload-Length", fields(("Upload-Length", "5"), ("Upload-Length", "6"))),
            ("Upload-Length", fields(("Upload-Length", "5"), ("Upload-Length", "5"))),
            ("Upload-Length", fields(("upload-length", "5"), ("UPLOAD-LENGTH", "6"))),
            ("Upload-Defer-Length", fields(("Upload-Defer-Length", "1"), ("Upload-Defer-Length", "1"))),
            ("Upload-Metadata", fields(
                ("Upload-Length", "5"), ("Upload-Metadata", "a YQ=="), ("Upload-Metadata", "b Yg=="))),
            ("Upload-Concat", fields(
                ("Upload-Length", "5"), ("Upload-Concat", "partial"), ("Upload-Concat", "partial"))),
            ("Tus-Resumable", fields(("Upload-Length", "5"), ("Tus-Resumable", "1.0.0"))),  // plus the default one
            ("X-HTTP-Method-Override", fields(
                ("Upload-Length", "5"), ("X-HTTP-Method-Override", "POST"), ("X-HTTP-Method-Override", "POST"))),
        ]
        client.defaultHeaders = ["Host": "tus.example"]
        for (field, headers) in rows {
            var all = headers
            all.add("Tus-Resumable", "1.0.0")
            assertRefused(client.send(.POST, "/files/", headers: all), naming: field)
        }
        XCTAssertEqual(store.listExpired(now: .max), [], "no upload was created")
    }

    func testRepeatedPatchFieldsWriteNothing() {
        let path = createUpload(length: 5)
        let stream = ("Content-Type", "application/offset+octet-stream")
        let rows: [(String, HTTPHeaders)] = [
            ("Upload-Offset", fields(stream, ("Upload-Offset", "0"), ("Upload-Offset", "0"))),
            ("Upload-Offset", fields(stream, ("Upload-Offset", "0"), ("Upload-Offset", "3"))),
            ("Content-Type", fields(stream, stream, ("Upload-Offset", "0"))),
            ("Upload-Checksum", fields(
                stream, ("Upload-Offset", "0"), ("Upload-Checksum", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00="),
                ("Upload-Checksum", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00="))),
            ("Upload-Length", fields(stream, ("Upload-Offset", "0"), ("Upload-Length", "5"), ("Upload-Length", "5"))),
        ]
        for (field, headers) in rows {
            assertRefused(client.send(.PATCH, path, headers: headers, body: Array("hello".utf8)), naming: field)
        }
        XCTAssertEqual(offset(path), 0, "nothing was written")
        XCTAssertEqual(client.patch(path, offset: 0, body: Array("hello".utf8)).status, 204, "the upload still works")
    }

    func testRepeatedFieldsAreRefusedForEveryMethod() {
        let path = createUpload(length: 5)
        let twice = fields(("Upload-Offset", "0"), ("Upload-Offset", "0"))
        for method in [HTTPMethod.HEAD, .GET, .DELETE, .OPTIONS] {
            let exchange = client.send(method, path, headers: twice)
            XCTAssertEqual(exchange.status, 400, "\(method)")
        }
        XCTAssertEqual(head(path).status, 200, "DELETE with a repeated field removed nothing")
    }

    func testFieldsOutsideTheListMayRepeatAndOneLineListsAreNotRepeats() {
        let custom = fields(("Upload-Length", "5"), ("X-Trace", "a"), ("X-Trace", "b"))
        XCTAssertEqual(client.send(.POST, "/files/", headers: custom).status, 201)
        // A comma-joined single line is one field line: judged by the field's own syntax, not as a repeat.
        let joined = client.send(.POST, "/files/", headers: ["Upload-Length": "5, 6"])
        XCTAssertEqual(joined.status, 400)
        XCTAssertTrue(text(joined).hasPrefix("ERR_INVALID_UPLOAD_LENGTH"), text(joined))
    }

    func testFirstRepeatedScansInOrder() {
        XCTAssertNil(SingletonFields.firstRepeated(in: ["Upload-Length": "1", "Upload-Offset": "0"]))
        XCTAssertEqual(
            SingletonFields.firstRepeated(
                in: fields(
                    ("Upload-Offset", "0"), ("content-type", "x"), ("Content-Type", "y"), ("Upload-Offset", "1"))),
            "Content-Type")
    }
}
