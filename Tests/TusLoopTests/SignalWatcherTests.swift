import Glibc
import TusLoop
import TusTestSupport
import XCTest

final class SignalWatcherTests: XCTestCase {
    func testRaisedSignalReachesCallbackOnLoop() throws {
        var received: [Int32] = []
        weak var weakWatcher: SignalWatcher?
        try withLoop { loop, finish in
            let watcher = try SignalWatcher(loop: loop, signal: SIGUSR1) { signal in
                XCTAssertTrue(loop.inLoop)
                received.append(signal)
                weakWatcher?.close()
                finish()
            }
            weakWatcher = watcher
            loop.schedule(afterMilliseconds: 1) { raise(SIGUSR1) }
        }
        XCTAssertEqual(received, [SIGUSR1])
        XCTAssertNil(weakWatcher)
    }

    func testInvalidSignalThrows() throws {
        try withLoop { loop, finish in
            XCTAssertThrowsError(try SignalWatcher(loop: loop, signal: 9999) { _ in })
            finish()
        }
    }
}
