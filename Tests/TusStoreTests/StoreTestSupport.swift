import Foundation
import Synchronization
import TusHTTP1
import TusLoop
import TusProtocol
@_exported import TusTestSupport
import XCTest

@testable import TusStore
import TusHTTPServer

/// A lock for store tests, which run without a locker.
final class TestLock: UploadLock {
    let token = "test"
    func release() {}
}

/// A fresh directory under the system temp dir, removed by `tearDown`.
func makeTemporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "tus-store-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
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
