import TusCrypto
import XCTest

final class SecureRandomTests: XCTestCase {
    func testBytesHaveRequestedCountAndDiffer() {
        XCTAssertEqual(SecureRandom.bytes(0), [])
        let first = SecureRandom.bytes(32)
        let second = SecureRandom.bytes(32)
        XCTAssertEqual(first.count, 32)
        XCTAssertNotEqual(first, second)
    }

    func testUploadIDIs32LowercaseHexAndUnique() {
        var seen = Set<String>()
        for _ in 0..<1000 {
            let id = SecureRandom.uploadID()
            XCTAssertEqual(id.utf8.count, 32)
            XCTAssertTrue(
                id.utf8.allSatisfy {
                    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                        || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
                }, id)
            seen.insert(id)
        }
        XCTAssertEqual(seen.count, 1000)
    }
}
