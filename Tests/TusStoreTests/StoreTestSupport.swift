import Foundation
import Synchronization
import TusCore
import TusHTTP1
@testable import TusLoop
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

/// A file store in a fresh directory with a real loop, and each store operation as one blocking step, so the
/// store tests read top to bottom.
class FileStoreTestCase: XCTestCase {
    var directory = ""
    var driver: LoopDriver!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory()
        driver = try LoopDriver()
    }

    override func tearDownWithError() throws {
        XCTAssertEqual(driver.shutDown(), 0, "handles left for the loop to close")
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: helpers (each one a step on the loop thread)

    /// Holds the threadpool in the data file's mknod of `id` until `release` is signalled (10 s at most, then
    /// `timedOut`), so that a test decides what the creation job finds queued. Undone by
    /// `BlockingFileSystem.injectFaults(nil)`.
    final class CreationHold: Sendable {
        let release = DispatchSemaphore(value: 0)
        let timedOut = Mutex(false)
    }

    func holdCreation(of id: String) -> CreationHold {
        let hold = CreationHold()
        let held = directory + "/" + id
        BlockingFileSystem.injectFaults { operation, path in
            if operation == "mknod", path == held, hold.release.wait(timeout: .now() + 10) == .timedOut {
                hold.timedOut.withLock { $0 = true }
            }
            return nil
        }
        return hold
    }

    func create(_ store: FileUploadStore, _ info: UploadInfo) -> Result<UploadInfo, StoreError> {
        driver.run { done in store.create(info, on: self.driver.executor, completion: done) }
    }

    func openWriter(
        _ store: FileUploadStore, _ id: String, at offset: Int64, discardable: Bool
    ) throws -> any UploadWriter {
        let result: Result<any UploadWriter, StoreError> = driver.run { done in
            store.openWriter(id: id, startingAt: offset, discardable: discardable, lock: TestLock(), on: self.driver.executor, completion: done)
        }
        return try result.unwrap()
    }

    func write(_ writer: any UploadWriter, _ bytes: [UInt8]) -> Result<Int64, StoreError> {
        driver.run { done in writer.write(BodyFragment(copying: bytes), completion: done) }
    }

    func commit(_ writer: any UploadWriter, expiresAt: Int64? = nil) -> Result<UploadInfo, StoreError> {
        driver.run { done in writer.commit(expiresAt: expiresAt, completion: done) }
    }

    func readAll(_ store: FileUploadStore, _ id: String, pieceSize: Int = 5) throws -> [UInt8] {
        let result: Result<[UInt8], StoreError> = driver.run { done in
            store.openReader(id: id, on: self.driver.executor) { opened in
                switch opened {
                case .failure(let error): done(.failure(error))
                case .success(let reader):
                    var collected: [UInt8] = []
                    func next() {
                        reader.read(at: Int64(collected.count), maxLength: pieceSize) { piece in
                            switch piece {
                            case .failure(let error):
                                reader.close()
                                done(.failure(error))
                            case .success(let fragment) where fragment.count == 0:
                                reader.close()
                                done(.success(collected))
                            case .success(let fragment):
                                collected += fragment.array
                                next()
                            }
                        }
                    }
                    next()
                }
            }
        }
        return try result.unwrap()
    }

    func fileBytes(_ name: String) -> [UInt8]? {
        FileManager.default.contents(atPath: directory + "/" + name).map { Array($0) }
    }

    func record(_ id: String) throws -> UploadRecord {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: directory + "/" + id + ".info"))
        return try JSONDecoder().decode(UploadRecord.self, from: data)
    }
}
