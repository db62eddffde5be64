import Foundation
import TusLoop
import TusProtocol
import XCTest

@testable import TusLoop
@testable import TusStore

/// Uploads whose files an operator or a cleanup job deleted behind the server's back: the index lets go of them (an
/// id never seen: 404, not the 410 of an upload the server removed), and their record goes too, so a restart agrees.
final class FileStoreVanishedUploadTests: FileStoreTestCase {
    func deleteDataFile(_ id: String) throws {
        try FileManager.default.removeItem(atPath: directory + "/" + id)
    }

    func waitUntil(_ condition: () -> Bool, seconds: Double = 3) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { return false }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return true
    }

    /// Without the watcher nothing is looked at per request (HEAD answers from memory); opening the data file for a
    /// PATCH finds it missing and forgets the upload.
    func testOpeningAMissingDataFileForgetsTheUpload() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "patched", length: 10, createdAt: 1, expiresAt: 50)).unwrap()
        _ = try create(store, UploadInfo(id: "kept", length: 10, createdAt: 1)).unwrap()
        try deleteDataFile("patched")
        XCTAssertNotNil(store.lookup("patched").info, "no stat per lookup")
        for discardable in [false, true] {
            let opened: Result<any UploadWriter, StoreError> = driver.run { done in
                store.openWriter(
                    id: "patched", startingAt: 0, discardable: discardable, lock: TestLock(), on: self.driver.executor,
                    completion: done)
            }
            XCTAssertEqual(opened.failure, .notFound, "discardable: \(discardable)")
        }
        XCTAssertEqual(store.lookup("patched"), .notFound, "forgotten, as an id never seen")
        XCTAssertEqual(store.listExpired(now: 100), [], "nothing left for the sweep")
        XCTAssertTrue(waitUntil { fileBytes("patched.info") == nil }, "its record is removed")
        XCTAssertNotNil(store.lookup("kept").info)
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("patched"), .notFound, "a restart agrees")
    }

    func testReadingAMissingDataFileForgetsTheUpload() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "read", length: 0, createdAt: 1)).unwrap()
        try deleteDataFile("read")
        let opened: Result<any UploadReader, StoreError> = driver.run { done in
            store.openReader(id: "read", on: self.driver.executor, completion: done)
        }
        XCTAssertEqual(opened.failure, .notFound)
        XCTAssertEqual(store.lookup("read"), .notFound)
    }

    /// With the watcher (as the server runs it) HEAD needs no request to touch the file: the deletion itself is
    /// reported. The server's own removal stays `.gone` (410).
    func testWatcherForgetsAnUploadDeletedOutsideTheServer() throws {
        for recordsInLog in [false, true] {
            let directory = try makeTemporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            self.directory = directory
            let store = try FileUploadStore(directory: directory, recordsInLog: recordsInLog, watchesRemovals: true)
            _ = try create(store, UploadInfo(id: "deleted", length: 10, createdAt: 1)).unwrap()
            _ = try create(store, UploadInfo(id: "terminated", length: 10, createdAt: 1)).unwrap()
            try deleteDataFile("deleted")
            XCTAssertTrue(waitUntil { store.lookup("deleted") == .notFound }, "records in log: \(recordsInLog)")
            XCTAssertTrue(waitUntil { fileBytes("deleted.info") == nil })

            let removed: Result<Void, StoreError> = driver.run { done in
                store.remove(id: "terminated", reason: .terminated, on: self.driver.executor, completion: done)
            }
            XCTAssertNil(removed.failure)
            Thread.sleep(forTimeInterval: 0.2)  // the watcher hears this removal too
            XCTAssertEqual(store.lookup("terminated"), .gone, "the server's own removal is still remembered as such")
            XCTAssertEqual(
                try FileUploadStore(directory: directory, recordsInLog: recordsInLog).lookup("deleted"), .notFound)
        }
    }

    /// The watcher forgets an upload while a record write of it is on the threadpool (a PATCH's commit moving its
    /// expiry): the write must not leave `<id>.info` behind, or a restart brings the upload back (its data file
    /// recreated empty) although the operator deleted it; and the write reports the upload gone, not success.
    func testRecordWrittenWhileTheUploadIsForgottenDoesNotBringItBack() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "racing", length: 10, createdAt: 1, expiresAt: 100)).unwrap()
        let state = store.state
        let directory = directory
        BlockingFileSystem.injectFaults { operation, path in
            // The deletion and the watcher's turn land between the temporary record's write and its rename.
            guard operation == "rename", path == directory + "/racing.info.tmp" else { return nil }
            _ = BlockingFileSystem.unlink(directory + "/racing")
            state.forgetVanished("racing")?()
            return nil
        }
        defer { BlockingFileSystem.injectFaults(nil) }
        let finished: Result<UploadInfo, StoreError> = driver.run { done in
            state.finishWrite(
                id: "racing", offset: 0, expiry: .set(200), lock: TestLock(), on: self.driver.executor,
                completion: done)
        }
        BlockingFileSystem.injectFaults(nil)
        XCTAssertEqual(finished.failure, .notFound, "the upload went meanwhile")
        XCTAssertTrue(waitUntil { fileBytes("racing.info") == nil }, "no record left behind")
        XCTAssertEqual(store.lookup("racing"), .notFound)
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("racing"), .notFound, "a restart agrees")
    }

    /// Watching again (a test's call on a store the server already watches) keeps one watcher: the earlier one is
    /// stopped, so its thread and inotify descriptor do not outlive the store, and no removal is handled twice.
    func testWatchingAgainStopsTheEarlierWatcher() throws {
        let before = Self.inotifyDescriptorCount()
        var store: FileUploadStore? = try FileUploadStore(directory: directory, watchesRemovals: true)
        XCTAssertEqual(Self.inotifyDescriptorCount(), before + 1)
        store?.state.watchRemovals()
        XCTAssertTrue(waitUntil { Self.inotifyDescriptorCount() == before + 1 }, "the earlier watcher is stopped")
        store = nil
        XCTAssertTrue(waitUntil { Self.inotifyDescriptorCount() == before }, "nothing outlives the store")
    }

    static func inotifyDescriptorCount() -> Int {
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        let targets = descriptors.map { name in
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + name)
        }
        return targets.filter { $0 == "anon_inode:inotify" }.count
    }
}
