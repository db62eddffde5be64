@testable import TusS3Store
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

final class SpillCleanupTests: XCTestCase {
    func testOnlyFilesUntouchedForAnHourAreRemoved() throws {
        var template = Array("/tmp/s3-spill-XXXXXX".utf8CString)
        let directory = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { _ = system("rm -rf '\(directory)'") }
        for name in ["old.1.a", "fresh.1.b"] {
            let file = fopen(directory + "/" + name, "w")
            fclose(file)
        }
        var times = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
        XCTAssertEqual(utimes(directory + "/old.1.a", &times), 0)
        S3DataStore.removeAbandonedSpillFiles(in: directory)
        XCTAssertNotEqual(access(directory + "/old.1.a", F_OK), 0, "a leftover of a dead process is removed")
        XCTAssertEqual(access(directory + "/fresh.1.b", F_OK), 0, "a live writer's file is kept")
    }
}
