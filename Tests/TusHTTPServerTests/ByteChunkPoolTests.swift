import Dispatch
import TusCore
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
        // All 64 chunks are lent before any comes back: a chunk returned early would be lent again to a later batch.
        // Each batch is owned by its worker alone and dropped there, as after a digest job. The worker empties the
        // box itself: when Dispatch releases a finished block is its own business, so the block's capture must not
        // be the last reference.
        let batches = (0..<4).map { _ in
            FragmentBatch((0..<16).map { _ in BodyFragment(chunk: pool.chunk(capacity: 16 * 1024), range: 0..<1) })
        }
        let group = DispatchGroup()
        for batch in batches {
            DispatchQueue.global().async(group: group) { XCTAssertEqual(batch.drop(), 16) }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 10), .success)
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

/// Fragments handed to one worker thread, which drops them itself (`drop`); the caller keeps no other reference.
private final class FragmentBatch: @unchecked Sendable {
    private var fragments: [BodyFragment]?

    init(_ fragments: [BodyFragment]) {
        self.fragments = fragments
    }

    /// Releases the fragments on the calling thread; returns how many there were.
    func drop() -> Int {
        let count = fragments?.count ?? 0
        fragments = nil
        return count
    }
}
