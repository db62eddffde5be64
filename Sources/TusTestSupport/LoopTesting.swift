import Foundation
public import TusLoop
import XCTest

/// Runs `body` on a fresh loop on the calling thread, then asserts the loop ended clean: every handle closed by
/// its owner (none left for the loop to close) and nothing live. `body` must eventually call `finish`; a watchdog
/// fails the test (and stops the loop) after `timeoutMilliseconds`, so no test can hang.
public func withLoop(
    timeoutMilliseconds: UInt64 = 10_000, file: StaticString = #filePath, line: UInt = #line,
    _ body: (EventLoop, _ finish: @escaping () -> Void) throws -> Void
) throws {
    let loop = try EventLoop()
    let watchdog = TusLoop.Timer(loop: loop)
    watchdog.start(afterMilliseconds: timeoutMilliseconds) {
        XCTFail("loop test timed out", file: file, line: line)
        watchdog.close()
        loop.stop()
    }
    let finish = {
        watchdog.close()
        loop.stop()
    }
    try body(loop, finish)
    loop.run()
    XCTAssertEqual(loop.handlesClosedAtShutdown, 0, "handles left open for the loop to close", file: file, line: line)
    XCTAssertEqual(loop.liveHandleCount, 0, file: file, line: line)
}

/// A thread-safe recorder for callbacks that run on other threads (NSLock: pthread underneath, visible to TSan).
public final class Recorder<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Value] = []

    public init() {}

    public func append(_ value: Value) {
        lock.withLock { values.append(value) }
    }

    public var all: [Value] {
        lock.withLock { values }
    }
}

/// A test byte pattern whose every position is checkable.
public func patternBytes(count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) &+ seed) }
}
