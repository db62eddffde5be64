import TusCrypto
import XCTest

final class Base64Tests: XCTestCase {
    func testRFC4648Vectors() {
        let vectors: [(String, String)] = [
            ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
        ]
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.encode(Array(plain.utf8)), encoded)
            XCTAssertEqual(Base64.decode(encoded), Array(plain.utf8))
        }
    }

    func testRoundTripAllLengthsAndBytes() {
        let allBytes = (0...255).map { UInt8($0) }
        for length in 0...70 {
            let bytes = Array(allBytes.reversed().prefix(length)) + Array(allBytes.prefix(length))
            XCTAssertEqual(Base64.decode(Base64.encode(bytes)), bytes, "length \(length)")
        }
        XCTAssertEqual(Base64.encode([0xFB, 0xFF]), "+/8=")
    }

    func testStrictAcceptance() {
        XCTAssertEqual(Base64.decode("aGk="), Array("hi".utf8))
        XCTAssertEqual(Base64.decode(""), [])
        let header = "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="
        let value = header[header.index(after: header.firstIndex(of: " ")!)...]
        XCTAssertEqual(Base64.decode(value)?.count, 20, "decodes a Substring slice of a header")
    }

    func testStrictRejections() {
        let rejected = [
            "aGk",  // no padding
            "aG k=",  // whitespace
            "a-_=",  // URL alphabet
            "aGk=\n", " aGk=", "aGk==", "aGk===", "====", "a===", "aG=k", "=aGk", "aGk=aGk=",
            "aGl=",  // non-zero trailing bits (canonical is "aGk=")
            "aR==",  // non-zero trailing bits (canonical is "aQ==")
            "aGk\u{0}", "é===",
        ]
        for text in rejected {
            XCTAssertNil(Base64.decode(text), "should reject \(text.debugDescription)")
        }
    }
}
