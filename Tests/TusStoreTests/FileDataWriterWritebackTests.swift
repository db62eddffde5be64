import Foundation
import TusCore
import TusHTTP1
import TusLoop
import TusProtocol
import XCTest

@testable import TusStore

/// Writeback started as bytes land (issue 13) only adds `sync_file_range` calls: the bytes, the offsets each write
/// reports and what `sync` returns stay those of a writer without it.
final class FileDataWriterWritebackTests: FileStoreTestCase {
    private let interval: Int64 = 64 << 10
    private let fragment = 16 << 10
    private let fragments = 20

    private func dataStore(_ policy: FsyncPolicy, interval: Int64? = nil) throws -> FileDataStore {
        try FileDataStore(directory: directory, fsync: policy, writebackInterval: interval ?? self.interval)
    }

    private func openWriter(_ store: FileDataStore, _ id: String) throws -> any TruncatableUploadDataWriter {
        let created: StoreError? = driver.run { done in store.create(id: id, on: self.driver.executor, completion: done) }
        XCTAssertNil(created)
        let opened: Result<any TruncatableUploadDataWriter, StoreError> = driver.run { done in
            store.openTruncatableWriter(id: id, at: 0, length: nil, on: self.driver.executor, completion: done)
        }
        return try opened.unwrap()
    }

    /// Writes `fragments` pieces one at a time (each one batch), checking every reported end; returns the bytes.
    private func writeAll(_ writer: any UploadDataWriter) throws -> [UInt8] {
        var expected: [UInt8] = []
        for index in 0..<fragments {
            let piece = patternBytes(count: fragment, seed: index)
            expected += piece
            let end: Result<Int64, StoreError> = driver.run { done in
                writer.write(BodyFragment(copying: piece), completion: done)
            }
            XCTAssertEqual(try end.unwrap(), Int64(expected.count))
        }
        return expected
    }

    private func sync(_ writer: any UploadDataWriter) -> Result<Int64, StoreError> {
        driver.run { done in writer.sync(completion: done) }
    }

    private func close(_ writer: any UploadDataWriter) {
        let closed: Void = driver.run { done in
            writer.close()
            done(())
        }
        _ = closed
    }

    func testCommitPolicyStartsWritebackEveryIntervalAndKeepsBytesAndSyncResult() throws {
        let store = try dataStore(.commit)
        let writer = try openWriter(store, "wb")
        let expected = try writeAll(writer)
        let total = Int64(expected.count)
        // 320 KiB in 64 KiB intervals: one start per interval, fewer when a batch lands while a job still runs.
        XCTAssertGreaterThanOrEqual(store.writebacksStarted, 1)
        XCTAssertLessThanOrEqual(store.writebacksStarted, Int(total / interval))
        XCTAssertEqual(try sync(writer).unwrap(), total)
        XCTAssertEqual(try sync(writer).unwrap(), total, "a second sync with nothing new reports the same end")
        close(writer)
        XCTAssertEqual(fileBytes("wb"), expected)
    }

    func testOnlyCommitPolicyStartsWriteback() throws {
        for policy in [FsyncPolicy.none, .always] {
            let store = try dataStore(policy)
            let writer = try openWriter(store, "wb-\(policy)")
            let expected = try writeAll(writer)
            XCTAssertEqual(try sync(writer).unwrap(), Int64(expected.count))
            close(writer)
            XCTAssertEqual(store.writebacksStarted, 0, "\(policy)")
            XCTAssertEqual(fileBytes("wb-\(policy)"), expected)
        }
        let disabled = try dataStore(.commit, interval: 0)
        let writer = try openWriter(disabled, "wb-off")
        _ = try writeAll(writer)
        close(writer)
        XCTAssertEqual(disabled.writebacksStarted, 0)
    }

    /// A writer closed (or cut back) right after its last write may still have a job on the threadpool.
    func testTruncateAndCloseWithWritebackRunning() throws {
        let store = try dataStore(.commit)
        let writer = try openWriter(store, "wb-cut")
        let expected = try writeAll(writer)
        let cut: StoreError? = driver.run { done in writer.truncate(to: 100_000, completion: done) }
        XCTAssertNil(cut)
        XCTAssertEqual(try sync(writer).unwrap(), 100_000)
        let more = patternBytes(count: Int(interval), seed: 99)
        let end: Result<Int64, StoreError> = driver.run { done in
            writer.write(BodyFragment(copying: more), completion: done)
        }
        XCTAssertEqual(try end.unwrap(), 100_000 + interval)
        close(writer)
        XCTAssertGreaterThanOrEqual(store.writebacksStarted, 2)
        XCTAssertEqual(fileBytes("wb-cut"), Array(expected[..<100_000]) + more)
    }
}
