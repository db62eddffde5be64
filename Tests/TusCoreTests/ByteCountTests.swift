import XCTest

@testable import TusCore

/// The formats every size and duration flag took before they shared one parser (tus-cli `--chunk-size`,
/// tus-server `--min-free-space` and `--hooks-http-backoff`, tus-bench's sizes), and the errors.
final class ByteCountTests: XCTestCase {
    func testSizes() throws {
        let cases: [(String, Int64)] = [
            ("1048576", 1_048_576), ("0", 0), ("64K", 64 << 10), ("64k", 64 << 10), ("5M", 5 << 20),
            ("1G", 1 << 30), ("2T", 2 << 40), ("500m", 500 << 20),
            // tus-cli also took a B or iB tail, tus-bench KiB/MiB/GiB.
            ("64KB", 64 << 10), ("64kb", 64 << 10), ("64KiB", 64 << 10), ("8MiB", 8 << 20), ("1GiB", 1 << 30),
            ("1gib", 1 << 30), ("100B", 100), ("100b", 100), (" 10G ", 10 << 30),
        ]
        for (text, bytes) in cases {
            XCTAssertEqual(try ByteCount(parsing: text).bytes, bytes, text)
        }
    }

    func testSizeErrors() {
        for text in ["", " ", "K", "MiB", "-1", "+5", "1.5M", "5X", "5 M", "0x10", "1e6", "64iB", "5MM", "１２"] {
            XCTAssertThrowsError(try ByteCount(parsing: text), text) { error in
                XCTAssertEqual((error as? QuantityParseError)?.text, text)
                XCTAssert("\(error)".contains("is not a size"), "\(error)")
            }
        }
        XCTAssertThrowsError(try ByteCount(parsing: "9000000T"), "overflows Int64") { error in
            XCTAssert("\(error)".contains("below 8 EiB"), "\(error)")
        }
        XCTAssertThrowsError(try ByteCount(parsing: "99999999999999999999"), "more digits than Int64 holds")
    }

    func testDurations() throws {
        let cases: [(String, UInt64)] = [
            ("1s", 1000), ("500ms", 500), ("2.5s", 2500), ("0.5", 500), ("30", 30_000), ("0", 0), ("0ms", 0),
            (" 1s ", 1000), ("1.5ms", 1),
        ]
        for (text, milliseconds) in cases {
            XCTAssertEqual(try Duration(parsing: text).wholeMilliseconds, milliseconds, text)
        }
    }

    func testDurationErrors() {
        for text in ["", "s", "ms", "-1s", "1m", "1h", "nan", "inf", "1e3", "1 s", "1,5s", "0x10", "1ss"] {
            XCTAssertThrowsError(try Duration(parsing: text), text) { error in
                XCTAssert("\(error)".contains("is not a duration"), "\(error)")
            }
        }
    }
}
