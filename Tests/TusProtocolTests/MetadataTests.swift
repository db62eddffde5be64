import TusHTTP1
@testable import TusProtocol
import TusTestSupport
import XCTest

final class MetadataTests: TusTestCase {
    func testAcceptedHeaders() {  // CR7, CR8, CR11, old aiotus whitespace
        let accepted = [
            "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential", "key ", "key", "", "   ",
            "a aGk=, b, c ", "a aGk=,\tb", "emptyvalue ,x eA==",
        ]
        for header in accepted {
            let exchange = client.send(.POST, "/files/", headers: ["Upload-Length": "1", "Upload-Metadata": header])
            XCTAssertEqual(exchange.status, 201, "'\(header)'")
        }
    }

    func testRejectedHeaders() {  // CR9
        let rejected = [
            ",x aGk=", "a aGk=,a aGk=", "a !!!", "a b c", "a aGk", "a aGk=,", "a  aGk=", "a aGk=,,b", "a\u{1}b aGk=",
            "a aGk= x", "a YQ", "a -_8=",
        ]
        for header in rejected {
            let exchange = client.send(.POST, "/files/", headers: ["Upload-Length": "1", "Upload-Metadata": header])
            XCTAssertEqual(exchange.status, 400, "'\(header)'")
        }
    }

    func testRawValueEchoedAndBlankOmitted() {  // CR7, CR10
        let raw = "b YmI=,a,c Yw=="
        let path = createUpload(length: 1, metadata: raw)
        XCTAssertEqual(head(path).header("Upload-Metadata"), raw)
        let blank = createUpload(length: 1, metadata: " ")
        XCTAssertNil(head(blank).header("Upload-Metadata"))
        let newline = createUpload(length: 1, metadata: "name DQo=")  // "\r\n"
        XCTAssertEqual(head(newline).header("Upload-Metadata"), "name DQo=", "decoded values never reach headers")
    }

    func testParsedPairs() {
        let parsed = UploadMetadata.parse("filename aGVsbG8udHh0, bare,empty ")
        XCTAssertEqual(parsed?.pairs.map(\.key), ["filename", "bare", "empty"])
        XCTAssertEqual(parsed?["filename"], Array("hello.txt"))
        XCTAssertEqual(parsed?["bare"], [])
        XCTAssertEqual(parsed?["empty"], [])
        XCTAssertNil(parsed?["missing"])
    }
}
