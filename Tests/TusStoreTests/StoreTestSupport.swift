import Foundation
import Synchronization
import TusHTTP1
import TusLoop
import TusProtocol
import XCTest

@testable import TusStore
import TusHTTPServer

/// A lock for store tests, which run without a locker.
final class TestLock: UploadLock {
    let token = "test"
    func release() {}
}

/// A real `EventLoop` on its own thread, driven step by step from the test thread: each `run` hands a closure
/// to the loop and blocks until it reports, so tests read top to bottom while every store call still happens
/// on a loop thread with real threadpool I/O.
final class LoopDriver {
    let loop: EventLoop
    /// The executor stores are given, as the server gives them its loops.
    let executor: LoopExecutorAdapter

    init() throws {
        loop = try EventLoop()
        executor = LoopExecutorAdapter(loop)
        loop.runOnNewThread(name: "store-tests")
    }

    /// Runs `body` on the loop thread and returns what it passes to its callback (within 10 s).
    func run<T>(
        file: StaticString = #filePath, line: UInt = #line, _ body: @escaping (_ done: @escaping (T) -> Void) -> Void
    ) -> T {
        let outcome = Outcome<T>()
        let work = UncheckedBox(body)
        loop.execute {
            precondition(EventLoop.current != nil)
            work.value { value in outcome.deliver(value) }
        }
        guard let value = outcome.wait(seconds: 10) else {
            XCTFail("loop step timed out", file: file, line: line)
            fatalError("loop step timed out")
        }
        return value
    }

    /// Stops the loop, waits for its thread and checks nothing was left open.
    func shutDown(file: StaticString = #filePath, line: UInt = #line) {
        loop.stop()
        loop.join()
        XCTAssertEqual(loop.handlesClosedAtShutdown, 0, file: file, line: line)
    }
}

struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// One value handed from the loop thread to the waiting test thread.
private final class Outcome<T>: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let slot = Mutex<UncheckedBox<T>?>(nil)

    func deliver(_ value: T) {
        slot.withLock { $0 = UncheckedBox(value) }
        semaphore.signal()
    }

    func wait(seconds: Int) -> T? {
        guard semaphore.wait(timeout: .now() + .seconds(seconds)) == .success else { return nil }
        return slot.withLock { $0?.value }
    }
}

/// A fresh directory under the system temp dir, removed by `tearDown`.
func makeTemporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "tus-store-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func patternBytes(count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) &+ seed) }
}

/// Collects the store's log lines (the log callback may run on any thread).
final class LogRecorder: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    var sink: @Sendable (String) -> Void { { [self] line in lines.withLock { $0.append(line) } } }
}

extension Result {
    func unwrap(file: StaticString = #filePath, line: UInt = #line) throws -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let error):
            XCTFail("unexpected failure: \(error)", file: file, line: line)
            throw error
        }
    }
}
