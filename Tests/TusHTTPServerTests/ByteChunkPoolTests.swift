import Dispatch
import TusHTTP1
@testable import TusHTTPServer
import XCTest

/// The pool behind body chunks: memory comes back when the last fragment lets go (on any thread), is lent again
/// at the same address (its pages stay mapped), never beyond its bound, and an idle pool empties itself.
final class ByteChunkPoolTests: XCTestCase {
    func testAChunkDroppedByItsLastFragmentIsLentAgainAtTheSameAddress() {
        let pool = ByteChunkPool(maxFreeBytes: 1 << 20)
        var chunk: ByteChunk? = pool.chunk(capacity: 256 * 1024)
        let address = chunk!.base
        var fragment: BodyFragment? = BodyFragment(chunk: chunk!, range: 0..<10)
        chunk = nil
        XCTAssertEqual(pool.freeByteCount, 0, "a fragment still holds the chunk")
        fragment = nil
        _ = fragment
        XCTAssertEqual(pool.freeByteCount, 256 * 1024)
        let again = pool.chunk(capacity: 256 * 1024)
        XCTAssertEqual(again.base, address)
        XCTAssertEqual(pool.freeByteCount, 0)
        // Another size is not served from memory of this one.
        XCTAssertEqual(pool.chunk(capacity: 64 * 1024).capacity, 64 * 1024)
    }

    func testFreeMemoryStaysWithinTheBound() {
        let pool = ByteChunkPool(maxFreeBytes: 512 * 1024)
        var chunks = (0..<5).map { _ in pool.chunk(capacity: 256 * 1024) }
        chunks.removeAll()
        XCTAssertEqual(pool.freeByteCount, 512 * 1024, "two kept, three freed")
    }

    func testChunksReleasedOnOtherThreadsComeBack() {
        let pool = ByteChunkPool(maxFreeBytes: 64 << 20)
        let group = DispatchGroup()
        for _ in 0..<4 {
            // Each batch is owned by its worker alone: the last reference dies there, as after a digest job.
            let batch = (0..<16).map { _ in BodyFragment(chunk: pool.chunk(capacity: 16 * 1024), range: 0..<1) }
            DispatchQueue.global().async(group: group) { XCTAssertEqual(batch.count, 16) }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 10), .success)
        // Dispatch releases a block (and with it the batch) after leaving the group, so the last release may come a
        // little after `wait` returns; on a loaded machine that thread may not run for a while.
        for _ in 0..<1000 where pool.freeByteCount < 64 * 16 * 1024 { usleep(10_000) }
        XCTAssertEqual(pool.freeByteCount, 64 * 16 * 1024)
    }

    func testAnIdlePoolFreesEverythingAtTheSecondSweep() {
        let pool = ByteChunkPool(maxFreeBytes: 1 << 20)
        _ = pool.chunk(capacity: 128 * 1024)
        XCTAssertEqual(pool.freeByteCount, 128 * 1024)
        pool.trimIfIdle()
        XCTAssertEqual(pool.freeByteCount, 128 * 1024, "lent since the last sweep: kept")
        pool.trimIfIdle()
        XCTAssertEqual(pool.freeByteCount, 0)
    }
}
