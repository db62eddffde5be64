import Foundation
import Synchronization
import TusHTTP1
import TusProtocol
import TusS3Store
import TusTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The `UploadStateStore` contract cases (as in `StateStoreContractTests`) for the records-as-objects store,
/// against the in-memory S3, plus what the objects look like.
final class S3StateStoreTests: XCTestCase {
    var driver: LoopDriver!
    var fake: FakeS3!
    var store: S3StateStore!

    override func setUpWithError() throws {
        driver = try LoopDriver()
        fake = try FakeS3(spill: "/tmp")
        store = S3StateStore(client: fake)
    }

    override func tearDown() {
        XCTAssertEqual(driver.shutDown(), 0)
    }

    func info(_ id: String, length: Int64? = 100, expiresAt: Int64? = nil, metadata: String? = nil) -> UploadInfo {
        UploadInfo(id: id, length: length, metadata: metadata, createdAt: 1_700_000_000, expiresAt: expiresAt)
    }

    final class Lock: UploadLock {
        let token = "t"
        func release() {}
    }

    func testCreateLookupAndDuplicate() {
        let created = info("a1", metadata: "filename aGk=,flag")
        XCTAssertEqual(driver.run { done in self.store.create(created, on: self.driver.executor, completion: done) }, .success(created))
        XCTAssertEqual(driver.run { done in self.store.lookup("a1", on: self.driver.executor, completion: done) }, .success(.found(created)))
        XCTAssertEqual(driver.run { done in self.store.lookup("nope", on: self.driver.executor, completion: done) }, .success(.notFound))
        XCTAssertEqual(driver.run { done in self.store.create(created, on: self.driver.executor, completion: done) }, .failure(.alreadyExists))
        XCTAssertNotNil(fake.objects["a1.info"], "the record is the object P<id>.info")
    }

    func testDeclareLengthOnce() throws {
        _ = driver.run { done in self.store.create(self.info("d", length: nil), on: self.driver.executor, completion: done) }
        let declared = driver.run { done in self.store.declareLength(id: "d", length: 42, on: self.driver.executor, completion: done) }
        XCTAssertEqual(try declared.get().length, 42)
        XCTAssertEqual(driver.run { done in self.store.declareLength(id: "d", length: 43, on: self.driver.executor, completion: done) }, .failure(.lengthAlreadySet))
        XCTAssertEqual(driver.run { done in self.store.declareLength(id: "x", length: 1, on: self.driver.executor, completion: done) }, .failure(.notFound))
    }

    /// A write's checkpoint and a declared length asked for at once (a chunked completing request) both land: each
    /// update reads the record, so one running beside the other would write back a record without the other's change.
    func testUpdatesOfOneUploadAskedAtOnceBothLand() throws {
        let lock = Lock()
        _ = driver.run { done in self.store.create(self.info("r", length: nil), on: self.driver.executor, completion: done) }
        let declared = driver.run { (done: @escaping (Result<UploadInfo, StoreError>) -> Void) in
            self.store.recordProgress(id: "r", offset: 30, lock: lock, on: self.driver.executor) { _ in }
            self.store.declareLength(id: "r", length: 42, on: self.driver.executor, completion: done)
        }
        XCTAssertEqual(try declared.get().length, 42)
        guard case .success(.found(let record)) = driver.run({ done in self.store.lookup("r", on: self.driver.executor, completion: done) }) else {
            return XCTFail("lookup")
        }
        XCTAssertEqual(record.offset, 30, "the checkpoint asked first is not undone by the declaration")
        XCTAssertEqual(record.length, 42)
    }

    /// A draft upload created without a length, completed by a chunked append: one completing declaration sets the
    /// length and ends the wait (one object written, where two declarations wrote two), and the expiry goes.
    func testACompletingDeclarationSetsTheLengthAndEndsTheWaitAtOnce() throws {
        let lock = Lock()
        var draft = info("c", length: nil, expiresAt: 50)
        draft.awaitsCompletion = true
        _ = driver.run { done in self.store.create(draft, on: self.driver.executor, completion: done) }
        _ = driver.run { done in self.store.recordProgress(id: "c", offset: 11, lock: lock, on: self.driver.executor, completion: done) }
        let declared = try driver.run { done in
            self.store.declareLength(id: "c", length: 11, completing: true, on: self.driver.executor, completion: done)
        }.get()
        XCTAssertEqual(declared.length, 11)
        XCTAssertFalse(declared.awaitsCompletion)
        XCTAssertTrue(declared.isComplete)
        XCTAssertNil(declared.expiresAt)
        guard case .success(.found(let record)) = driver.run({ done in self.store.lookup("c", on: self.driver.executor, completion: done) }) else {
            return XCTFail("lookup")
        }
        XCTAssertEqual(record, declared)
    }

    func testWriteLifecycleMovesOffsetAndExpiry() throws {
        let lock = Lock()
        _ = driver.run { done in self.store.create(self.info("w", expiresAt: 5), on: self.driver.executor, completion: done) }
        let conflict = driver.run { done in self.store.beginWrite(id: "w", at: 7, discardable: false, lock: lock, on: self.driver.executor, completion: done) }
        XCTAssertEqual(conflict, .failure(.conflict))
        XCTAssertEqual(try driver.run { done in self.store.beginWrite(id: "w", at: 0, discardable: false, lock: lock, on: self.driver.executor, completion: done) }.get().offset, 0)
        XCTAssertNil(driver.run { done in self.store.recordProgress(id: "w", offset: 30, lock: lock, on: self.driver.executor, completion: done) })
        guard case .success(.found(let progressed)) = driver.run({ done in self.store.lookup("w", on: self.driver.executor, completion: done) }) else {
            return XCTFail("lookup")
        }
        XCTAssertEqual(progressed.offset, 30)
        let finished = try driver.run { done in self.store.finishWrite(id: "w", offset: 40, expiry: .set(99), lock: lock, on: self.driver.executor, completion: done) }.get()
        XCTAssertEqual(finished.offset, 40)
        XCTAssertEqual(finished.expiresAt, 99)
        let complete = try driver.run { done in self.store.finishWrite(id: "w", offset: 100, expiry: .set(120), lock: lock, on: self.driver.executor, completion: done) }.get()
        XCTAssertTrue(complete.isComplete)
        XCTAssertNil(complete.expiresAt, "a complete upload never expires")
    }

    func testExpiryListingAndRemoval() throws {
        _ = driver.run { done in self.store.create(self.info("old", expiresAt: 10), on: self.driver.executor, completion: done) }
        _ = driver.run { done in self.store.create(self.info("new", expiresAt: 1000), on: self.driver.executor, completion: done) }
        _ = driver.run { done in self.store.create(self.info("never"), on: self.driver.executor, completion: done) }
        fake.objects["new.part.2"] = [1, 2, 3]  // data objects in the same bucket are not records
        XCTAssertEqual(driver.run { done in self.store.listExpired(now: 500, on: self.driver.executor, completion: done) }, .success(["old"]))
        XCTAssertNoThrow(try driver.run { done in self.store.remove(id: "old", reason: .expired, on: self.driver.executor, completion: done) }.get())
        XCTAssertEqual(driver.run { done in self.store.lookup("old", on: self.driver.executor, completion: done) }, .success(.gone))
        let marker = try JSONSerialization.jsonObject(with: Data(fake.objects["old.info"] ?? [])) as? [String: Any]
        XCTAssertEqual(marker?["gone"] as? String, "expired")
        XCTAssertNotNil(marker?["at"] as? Int, "a marker carries when it was written")
        let again = driver.run { done in self.store.remove(id: "old", reason: .terminated, on: self.driver.executor, completion: done) }
        guard case .failure(.gone) = again else { return XCTFail("removing a gone upload: \(again)") }
        XCTAssertEqual(driver.run { done in self.store.create(self.info("old"), on: self.driver.executor, completion: done) }, .failure(.alreadyExists), "a gone id is not reused")
        XCTAssertEqual(driver.run { done in self.store.listExpired(now: 5000, on: self.driver.executor, completion: done) }, .success(["new"]))
    }

    /// As `StateStoreContract.testFinalExpiryIsListedMovedAndDroppedOnCompletion`.
    func testFinalExpiryIsListedMovedAndDroppedOnCompletion() throws {
        let lock = Lock()
        let final = UploadInfo(
            id: "f9", length: 4, createdAt: 1_700_000_000, expiresAt: 10, concat: "final;/files/p9", partialIDs: ["p9"])
        XCTAssertEqual(driver.run { done in self.store.create(final, on: self.driver.executor, completion: done) }, .success(final))
        XCTAssertEqual(driver.run { done in self.store.listExpired(now: 500, on: self.driver.executor, completion: done) }, .success(["f9"]))
        let moved = try driver.run { done in self.store.finishWrite(id: "f9", offset: 0, expiry: .set(1000), lock: lock, on: self.driver.executor, completion: done) }.get()
        XCTAssertEqual(moved.expiresAt, 1000)
        XCTAssertEqual(driver.run { done in self.store.listExpired(now: 500, on: self.driver.executor, completion: done) }, .success([]))
        XCTAssertEqual(driver.run { done in self.store.listExpired(now: 1000, on: self.driver.executor, completion: done) }, .success(["f9"]))
        let completed = try driver.run { done in self.store.completeFinal(id: "f9", length: 4, on: self.driver.executor, completion: done) }.get()
        XCTAssertNil(completed.expiresAt, "a complete final never expires")
        XCTAssertEqual(driver.run { done in self.store.listExpired(now: 5000, on: self.driver.executor, completion: done) }, .success([]))
    }

    /// A removed id answers 410 for the marker's window, then 404; the sweep's listing deletes markers past it and
    /// gives a time to markers written before they had one (their window starts then).
    func testGoneMarkersAnswer410ForTheirWindowThenTheSweepDeletesThem() throws {
        let clock = Atomic<Int64>(1_000)
        let store = S3StateStore(client: fake, goneLifetimeSeconds: 100, now: { clock.load(ordering: .relaxed) })
        let lookup = { (id: String) in self.driver.run { done in store.lookup(id, on: self.driver.executor, completion: done) } }
        let sweep = { self.driver.run { done in store.listExpired(now: 0, on: self.driver.executor, completion: done) } }
        _ = driver.run { done in store.create(self.info("g1"), on: self.driver.executor, completion: done) }
        XCTAssertNoThrow(try driver.run { done in store.remove(id: "g1", reason: .terminated, on: self.driver.executor, completion: done) }.get())
        fake.objects["legacy.info"] = Array("{\"gone\":\"terminated\"}".utf8)
        clock.store(1_099, ordering: .relaxed)
        XCTAssertEqual(sweep(), .success([]))
        XCTAssertEqual(lookup("g1"), .success(.gone), "inside the window")
        XCTAssertNotNil(fake.objects["g1.info"])
        XCTAssertEqual(lookup("legacy"), .success(.gone))
        clock.store(1_100, ordering: .relaxed)
        XCTAssertEqual(lookup("g1"), .success(.notFound), "past the window, even before the sweep")
        XCTAssertEqual(sweep(), .success([]))
        XCTAssertNil(fake.objects["g1.info"], "the sweep deleted the marker")
        XCTAssertEqual(lookup("legacy"), .success(.gone), "an old marker's window starts at the first sweep (1099)")
        clock.store(1_198, ordering: .relaxed)
        XCTAssertEqual(sweep(), .success([]))
        XCTAssertNotNil(fake.objects["legacy.info"])
        clock.store(1_199, ordering: .relaxed)
        XCTAssertEqual(sweep(), .success([]))
        XCTAssertNil(fake.objects["legacy.info"])
        XCTAssertEqual(lookup("legacy"), .success(.notFound))
    }
}
