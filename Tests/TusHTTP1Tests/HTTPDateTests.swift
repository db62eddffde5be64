import TusHTTP1
import XCTest

final class HTTPDateTests: XCTestCase {
    /// RFC 9110's example, the epoch, a leap day, the end of a year, a three-digit year and one past 9999.
    func testIMFFixdateOfKnownInstants() {
        XCTAssertEqual(HTTPDate.format(unixSeconds: 784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(HTTPDate.format(unixSeconds: 0), "Thu, 01 Jan 1970 00:00:00 GMT")
        XCTAssertEqual(HTTPDate.format(unixSeconds: 951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT")
        XCTAssertEqual(HTTPDate.format(unixSeconds: 1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT")
        XCTAssertEqual(HTTPDate.format(unixSeconds: -59_011_459_200), "Fri, 01 Jan 0100 00:00:00 GMT")
        XCTAssertEqual(HTTPDate.format(unixSeconds: 253_402_300_800), "Sat, 01 Jan 10000 00:00:00 GMT")
    }
}
