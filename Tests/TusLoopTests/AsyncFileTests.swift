import Foundation
import TusLoop
import TusTestSupport
import XCTest

final class AsyncFileTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tusloop-\(UUID().uuidString)").path
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testWriteReadTruncateSyncStatCloseRenameUnlink() throws {
        let path = directory + "/upload"
        let renamed = directory + "/upload.done"
        let parts: [[UInt8]] = [patternBytes(count: 5), patternBytes(count: 70_000, seed: 3), [0xAB]]
        let expected = parts.flatMap { $0 }
        let offset: Int64 = 10
        var steps: [String] = []
        weak var weakFile: AsyncFile?

        try withLoop { loop, finish in
            func fail(_ step: String, _ error: UVError?) -> Bool {
                guard let error else { return false }
                XCTFail("\(step): \(error)")
                finish()
                return true
            }
            FileSystem.mkdir(loop: loop, path: self.directory) { error in
                if fail("mkdir", error) { return }
                steps.append("mkdir")
                AsyncFile.open(loop: loop, path: path, flags: [.readWrite, .create, .exclusive]) { result in
                    guard case .success(let file) = result else { return XCTFail("open \(result)") }
                    weakFile = file
                    steps.append("open")
                    let pinned = parts.map(PinnedBytes.init)
                    file.write(pinned.map(\.buffer), at: offset, owner: pinned as AnyObject) { result in
                        XCTAssertEqual(try? result.get(), expected.count)
                        steps.append("write")
                        let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 100_000, alignment: 16)
                        file.read(into: readBuffer, at: 0, owner: nil) { result in
                            defer { readBuffer.deallocate() }
                            XCTAssertEqual(try? result.get(), Int(offset) + expected.count)
                            XCTAssertEqual(Array(readBuffer[..<Int(offset)]), Array(repeating: 0, count: Int(offset)))
                            XCTAssertEqual(
                                Array(readBuffer[Int(offset)..<(Int(offset) + expected.count)]), expected)
                            steps.append("read")
                            file.truncate(to: 12) { error in
                                if fail("truncate", error) { return }
                                file.datasync { error in
                                    if fail("datasync", error) { return }
                                    file.stat { result in
                                        XCTAssertEqual(try? result.get().size, 12)
                                        XCTAssertGreaterThan((try? result.get().mtimeSeconds) ?? 0, 1_600_000_000)
                                        steps.append("stat")
                                        file.close { error in
                                            if fail("close", error) { return }
                                            steps.append("close")
                                            file.stat { result in
                                                if case .failure(let error) = result {
                                                    XCTAssertEqual(error, .badFileDescriptor)
                                                    steps.append("stat-after-close")
                                                }
                                            }
                                            renameAndUnlink()
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }

            func renameAndUnlink() {
                FileSystem.rename(loop: loop, from: path, to: renamed) { error in
                    if fail("rename", error) { return }
                    FileSystem.stat(loop: loop, path: renamed) { result in
                        XCTAssertEqual(try? result.get().size, 12)
                        steps.append("rename")
                        FileSystem.unlink(loop: loop, path: renamed) { error in
                            if fail("unlink", error) { return }
                            FileSystem.stat(loop: loop, path: renamed) { result in
                                if case .failure(let error) = result { XCTAssertEqual(error, .notFound) }
                                steps.append("unlink")
                                FileSystem.listDirectory(loop: loop, path: self.directory) { result in
                                    XCTAssertEqual(try? result.get(), [])
                                    finish()
                                }
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(
            steps, ["mkdir", "open", "write", "read", "stat", "close", "stat-after-close", "rename", "unlink"])
        XCTAssertNil(weakFile)
    }

    func testOpenMissingPathFailsOnce() throws {
        var results: [Result<AsyncFile, UVError>] = []
        try withLoop { loop, finish in
            AsyncFile.open(loop: loop, path: directory + "/missing/file", flags: .readOnly) { result in
                results.append(result)
                loop.schedule(afterMilliseconds: 5) { finish() }
            }
        }
        XCTAssertEqual(results.count, 1)
        guard case .failure(let error) = results.first else { return XCTFail("expected failure") }
        XCTAssertEqual(error, .notFound)
    }

    /// A file whose path the kernel has cached opens on the loop thread, before `openCachedOnLoop` returns, and
    /// works as one from the threadpool; a missing path goes the threadpool way and fails once with `.notFound`.
    func testOpenCachedOnLoopCompletesInlineAndFallsBack() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/cached"
        FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3]))
        _ = try FileManager.default.attributesOfItem(atPath: path)  // the lookup is in the dentry cache now
        var completedInline: Bool?
        var missing: [Result<AsyncFile, UVError>] = []
        var size: Int64?
        try withLoop { loop, finish in
            var returned = false
            AsyncFile.openCachedOnLoop(loop: loop, path: path, flags: .readWrite) { result in
                completedInline = !returned
                guard case .success(let file) = result else { return XCTFail("open \(result)") }
                let pinned = PinnedBytes([4, 5])
                file.write([pinned.buffer], at: 3, owner: pinned) { written in
                    XCTAssertEqual(try? written.get(), 2)
                    file.stat { status in
                        size = try? status.get().size
                        file.close { _ in
                            AsyncFile.openCachedOnLoop(loop: loop, path: path + ".missing", flags: .readWrite) {
                                missing.append($0)
                                loop.schedule(afterMilliseconds: 5) { finish() }
                            }
                        }
                    }
                }
            }
            returned = true
        }
        XCTAssertEqual(size, 5)
        XCTAssertEqual(missing.count, 1)
        guard case .failure(let error) = missing.first else { return XCTFail("expected failure") }
        XCTAssertEqual(error, .notFound)
        // openat2's RESOLVE_CACHED came with Linux 5.12; older kernels take the threadpool (and still pass above).
        if try !Self.kernelVersion().lexicographicallyPrecedes([5, 12]) {
            XCTAssertEqual(completedInline, true, "a cached path opens on the loop thread")
        }
    }

    private static func kernelVersion() throws -> [Int] {
        let release = try String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)
        return release.split(separator: "-")[0].split(separator: ".").prefix(2).compactMap { Int($0) }
    }

    func testSynchronousWriteMatchesAsyncPath() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/sync"
        let bytes = patternBytes(count: 4096)
        var readBack: [UInt8] = []
        try withLoop { loop, finish in
            AsyncFile.open(loop: loop, path: path, flags: [.writeOnly, .create, .truncate]) { result in
                guard case .success(let file) = result else { return XCTFail("open \(result)") }
                let written = bytes.withUnsafeBytes { file.writeSynchronously([$0, $0], at: 0) }
                XCTAssertEqual(try? written.get(), 2 * bytes.count)
                file.close { _ in
                    readBack = (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
                    finish()
                }
            }
        }
        XCTAssertEqual(readBack, bytes + bytes)
    }

    /// The write-back runs on the threadpool while `close` is called at once: the descriptor stays open until the
    /// job finished (it must not hit a reused number), then closes, and the bytes are the ones written.
    func testWritebackCompletesBeforeADeferredClose() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/writeback"
        let bytes = patternBytes(count: 3 * 65_536 + 17)
        var events: [String] = []
        weak var weakFile: AsyncFile?
        try withLoop { loop, finish in
            AsyncFile.open(loop: loop, path: path, flags: [.writeOnly, .create, .truncate]) { result in
                guard case .success(let file) = result else { return XCTFail("open \(result)") }
                weakFile = file
                let pinned = PinnedBytes(bytes)
                file.write([pinned.buffer], at: 0, owner: pinned) { result in
                    XCTAssertEqual(try? result.get(), bytes.count)
                    let total = Int64(bytes.count)
                    file.startWriteback(of: 65_536..<total, waitingFor: 0..<65_536) { error in
                        XCTAssertNil(error)
                        events.append("writeback")
                    }
                    file.close { error in
                        XCTAssertNil(error)
                        events.append("close")
                        file.startWriteback(of: 0..<1, waitingFor: nil) { error in
                            XCTAssertEqual(error, .badFileDescriptor)
                            events.append("writeback-after-close")
                            finish()
                        }
                    }
                }
            }
        }
        XCTAssertEqual(events, ["writeback", "close", "writeback-after-close"])
        XCTAssertEqual(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))), bytes)
        XCTAssertNil(weakFile)
    }
}

/// Bytes at an address that stays put until the last reference goes: what `AsyncFile.write`'s `owner` must keep
/// alive while the threadpool writes. An array is no such owner: `array as AnyObject` bridges to a copy
/// (an `NSArray` with Foundation), so the array's own storage may be freed while pwrite still reads it.
private final class PinnedBytes {
    let buffer: UnsafeRawBufferPointer

    init(_ bytes: [UInt8]) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        bytes.withUnsafeBytes { storage.copyMemory(from: $0) }
        buffer = UnsafeRawBufferPointer(storage)
    }

    deinit { buffer.deallocate() }
}
