import Dispatch
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

    /// Counts around the 8-byte words the kernel's generator and the old word-by-word fill worked in.
    func testCountsAroundWordBoundariesAreFilled() {
        for count in [1, 7, 8, 9, 15, 16, 17, 1000] {
            let draws = (0..<4).map { _ in SecureRandom.bytes(count) }
            XCTAssertTrue(draws.allSatisfy { $0.count == count }, "\(count)")
            // Four draws of even one byte are all equal with probability 2^-24.
            XCTAssertGreaterThan(Set(draws).count, 1, "\(count): \(draws)")
        }
        // Every byte position gets random data, the tail of the last word included: over 64 draws of 9 bytes, a
        // position left at zero (or copied from the same word byte) would show as one value throughout.
        let draws = (0..<64).map { _ in SecureRandom.bytes(9) }
        for position in 0..<9 {
            XCTAssertGreaterThan(Set(draws.map { $0[position] }).count, 8, "byte \(position)")
        }
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

    /// Ids come from a per-thread pool refilled every 32 ids: threads drawing at once (each through several
    /// refills) never hand out the same bytes.
    func testUploadIDsFromSeveralThreadsAreUnique() {
        let threads = 4, perThread = 200
        let ids = UnsafeMutableBufferPointer<String>.allocate(capacity: threads * perThread)
        ids.initialize(repeating: "")
        defer { ids.deallocate() }
        nonisolated(unsafe) let shared = ids
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<perThread { shared[thread * perThread + index] = SecureRandom.uploadID() }
        }
        XCTAssertEqual(Set(ids).count, threads * perThread)
    }
}
