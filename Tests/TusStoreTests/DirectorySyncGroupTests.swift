import Foundation
import Synchronization
import TusLoop
import XCTest

@testable import TusStore

final class DirectorySyncGroupTests: XCTestCase {
    /// Callers arriving while an fsync runs share the next one, and none returns before an fsync that started
    /// after it arrived has finished (the one running may predate its entry).
    func testCallersDuringAnFsyncShareTheNextOne() throws {
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let finished = Atomic<Int>(0)
        let group = DirectorySyncGroup(path: "/unused") { _ in
            if finished.load(ordering: .relaxed) == 0 {
                started.signal()
                release.wait()
            }
            finished.add(1, ordering: .relaxed)
            return nil
        }
        // Threads of their own: blocked callers would make the global queue slow to add workers.
        let done = DispatchGroup()
        func spawn(_ body: @escaping @Sendable () -> Void) {
            done.enter()
            Thread { body(); done.leave() }.start()
        }
        let finishedWhenReturned = Mutex<[Int]>([])
        spawn { XCTAssertNil(group.sync()) }
        started.wait()
        for _ in 0..<7 {
            spawn {
                XCTAssertNil(group.sync())
                let seen = finished.load(ordering: .relaxed)
                finishedWhenReturned.withLock { $0.append(seen) }
            }
        }
        let deadline = Date().addingTimeInterval(10)
        while group.waitingForNext < 7 && Date() < deadline { usleep(1_000) }
        XCTAssertEqual(group.waitingForNext, 7)
        release.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(group.syncsRun, 2, "one fsync for the first caller, one for the seven that came meanwhile")
        XCTAssertEqual(finishedWhenReturned.withLock { $0 }, Array(repeating: 2, count: 7))
    }

    /// A failed fsync is every member's failure, and the next caller tries again.
    func testFailureReachesEveryCallerOfItsRound() throws {
        let group = DirectorySyncGroup(path: "/nonexistent-\(UUID().uuidString)")
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            let failure = group.sync()
            failures.withLock { $0.append(failure?.operation ?? "none") }
        }
        XCTAssertEqual(failures.withLock { $0 }, Array(repeating: "open", count: 4))
        XCTAssertEqual(group.sync()?.error, .notFound)
    }

    func testRealDirectorySyncs() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let group = DirectorySyncGroup(path: directory)
        XCTAssertNil(group.sync())
        XCTAssertEqual(group.syncsRun, 1)
    }
}
