import Foundation
import TusCrypto
import TusCore
import TusHTTP1
import TusProtocol
import TusS3Store
import TusStore
import TusTestSupport
import XCTest

/// The `UploadDataStore` contract and its abilities, run against every implementation: the in-memory twin (this
/// class), the file store and the S3 store on a real Ceph RGW (started for the class; skipped only when it cannot
/// start). A case that passes on the twin and fails elsewhere is a bug there. The sizes cross S3's 5 MiB parts.
/// Subclasses restate the inherited cases: Linux XCTest discovers only methods a class declares itself.
class DataStoreContract: XCTestCase {
    var driver: LoopDriver!
    var directory = ""

    /// Overridden per implementation.
    func makeStore() throws -> any UploadDataStore { MemoryDataStore() }
    /// A second `create` of one id fails with `.alreadyExists` (S3 has no exclusive create: there the state
    /// store's create is the only guard, and ids are random).
    var createIsExclusive: Bool { true }

    override func setUpWithError() throws {
        driver = try LoopDriver()
        directory = NSTemporaryDirectory() + "tus-data-contract-" + UUID().uuidString
    }

    /// Closes what the store keeps open on the loop (the S3 client's keep-alive connections).
    func closeStore() {}

    override func tearDownWithError() throws {
        closeStore()
        XCTAssertEqual(driver.shutDown(), 0, "handles left for the loop to close")
        try? FileManager.default.removeItem(atPath: directory)
    }

    func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        let block = (0..<4093).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ Int(seed)) }
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count { result += block.prefix(count - result.count) }
        return result
    }

    func create(_ store: any UploadDataStore, _ id: String) -> StoreError? {
        driver.run { done in store.create(id: id, on: self.driver.executor, completion: done) }
    }

    /// Opens a writer at `offset`, writes `bytes` in 256 KiB fragments, then `finish`; returns the reported end.
    func append(
        _ store: any UploadDataStore, _ id: String, at offset: Int64, length: Int64?, _ bytes: ArraySlice<UInt8>
    ) throws -> Int64 {
        let opened: Result<any UploadDataWriter, StoreError> = driver.run { done in
            store.openWriter(id: id, at: offset, length: length, on: self.driver.executor, completion: done)
        }
        let writer = try opened.get()
        defer { driver.run { done in writer.close(); done(()) } as Void }
        return try write(writer, bytes)
    }

    func write(_ writer: any UploadDataWriter, _ bytes: ArraySlice<UInt8>) throws -> Int64 {
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = min(start + (256 << 10), bytes.endIndex)
            let fragment = BodyFragment(copying: Array(bytes[start..<end]))
            _ = try (driver.run { done in writer.write(fragment, completion: done) } as Result<Int64, StoreError>).get()
            start = end
        }
        return try (driver.run { done in writer.finish(completion: done) } as Result<Int64, StoreError>).get()
    }

    func read(_ store: any UploadDataStore, _ id: String, length: Int) throws -> [UInt8] {
        guard let readable = store as? any ReadableUploadDataStore else { throw XCTSkip("the store cannot read") }
        let opened: Result<any UploadReader, StoreError> = driver.run { done in
            readable.openReader(id: id, on: self.driver.executor, completion: done)
        }
        let reader = try opened.get()
        defer { driver.run { done in reader.close(); done(()) } as Void }
        var result: [UInt8] = []
        while result.count < length {
            let fragment: Result<BodyFragment, StoreError> = driver.run { done in
                reader.read(at: Int64(result.count), maxLength: 1 << 20, completion: done)
            }
            let bytes = try fragment.get().array
            guard !bytes.isEmpty else { break }
            result += bytes
        }
        return result
    }

    /// A complete upload of `bytes` under `id`, as the handler leaves one.
    func completeUpload(_ store: any UploadDataStore, _ id: String, _ bytes: [UInt8]) throws {
        XCTAssertNil(create(store, id))
        if bytes.isEmpty {
            let completed: StoreError? = driver.run { done in
                store.completeEmpty(id: id, on: self.driver.executor, completion: done)
            }
            XCTAssertNil(completed)
            return
        }
        XCTAssertEqual(try append(store, id, at: 0, length: Int64(bytes.count), bytes[...]), Int64(bytes.count))
    }

    func testCreateWriteAndReadBack() throws {
        let store = try makeStore()
        let data = pattern((7 << 20) + 123, seed: 1)
        try completeUpload(store, "w1", data)
        XCTAssertTrue(try read(store, "w1", length: data.count) == data)
        if createIsExclusive { XCTAssertEqual(create(store, "w1"), .alreadyExists) }
    }

    /// Several writers one after the other, each starting where the previous one's `finish` said the data ends,
    /// as PATCHes do (on S3 the second starts inside a part, from the incomplete-part object).
    func testAppendsResumeWhereTheLastFinishEnded() throws {
        let store = try makeStore()
        let data = pattern((11 << 20) + 77, seed: 2)
        XCTAssertNil(create(store, "r1"))
        var offset: Int64 = 0
        for end in [(3 << 20) + 5, (8 << 20) + 1, data.count] {
            offset = try append(store, "r1", at: offset, length: Int64(data.count), data[Int(offset)..<end])
            XCTAssertEqual(offset, Int64(end))
        }
        XCTAssertTrue(try read(store, "r1", length: data.count) == data)
    }

    func testTruncatedBytesAreReplacedByTheNextWriter() throws {
        let store = try makeStore()
        guard let truncating = store as? any TruncatingUploadDataStore else { throw XCTSkip("the store cannot truncate") }
        let data = pattern((6 << 20) + 9, seed: 3)
        XCTAssertNil(create(store, "t1"))
        let start: Int64 = 1 << 20
        XCTAssertEqual(try append(store, "t1", at: 0, length: Int64(data.count), data[..<Int(start)]), start)
        let opened: Result<any TruncatableUploadDataWriter, StoreError> = driver.run { done in
            truncating.openTruncatableWriter(id: "t1", at: start, length: Int64(data.count), on: self.driver.executor, completion: done)
        }
        let writer = try opened.get()
        let junk = BodyFragment(copying: Array(repeating: 0xEE, count: 5 << 20))
        _ = try (driver.run { done in writer.write(junk, completion: done) } as Result<Int64, StoreError>).get()
        XCTAssertNil(driver.run { done in writer.truncate(to: start, completion: done) } as StoreError?)
        driver.run { done in writer.close(); done(()) } as Void
        XCTAssertEqual(try append(store, "t1", at: start, length: Int64(data.count), data[Int(start)...]), Int64(data.count))
        XCTAssertTrue(try read(store, "t1", length: data.count) == data)
    }

    func testRemovedDataIsGoneAndRemovingAgainIsFine() throws {
        let store = try makeStore()
        try completeUpload(store, "d1", pattern(1000, seed: 4))
        for _ in 0..<2 {
            XCTAssertNil(driver.run { done in store.remove(id: "d1", on: self.driver.executor, completion: done) } as StoreError?)
        }
        if let readable = store as? any ReadableUploadDataStore {
            let opened: Result<any UploadReader, StoreError> = driver.run { done in
                readable.openReader(id: "d1", on: self.driver.executor, completion: done)
            }
            XCTAssertEqual(opened.failure, .notFound)
        }
    }

    func testEmptyUploadReadsEmpty() throws {
        let store = try makeStore()
        try completeUpload(store, "e1", [])
        XCTAssertEqual(try read(store, "e1", length: 0), [])
    }

    /// Big partials (copied on S3), small ones (streamed), a repeat and an empty one; the final reads as their
    /// concatenation, a second call changes nothing, and it outlives the removal of a partial.
    func testConcatenationOfMixedPartsIsIdempotentAndIndependent() throws {
        let store = try makeStore()
        guard let concatenating = store as? any ConcatenatingUploadDataStore else {
            throw XCTSkip("the store cannot concatenate")
        }
        let partials = ["c-a": pattern(6 << 20, seed: 5), "c-b": pattern(3, seed: 6), "c-c": pattern(1 << 20, seed: 7),
                        "c-e": []]
        for (id, bytes) in partials.sorted(by: { $0.key < $1.key }) { try completeUpload(store, id, bytes) }
        XCTAssertNil(create(store, "c-final"))
        let order = ["c-a", "c-b", "c-e", "c-c", "c-b", "c-a"]
        let expected = order.flatMap { partials[$0]! }
        for _ in 0..<2 {
            let concatenated: StoreError? = driver.run { done in
                concatenating.concatenate(
                    id: "c-final", parts: order, lengths: order.map { Int64(partials[$0]!.count) },
                    on: self.driver.executor, completion: done)
            }
            XCTAssertNil(concatenated)
            XCTAssertTrue(try read(store, "c-final", length: expected.count) == expected)
        }
        XCTAssertNil(driver.run { done in store.remove(id: "c-a", on: self.driver.executor, completion: done) } as StoreError?)
        XCTAssertTrue(try read(store, "c-final", length: expected.count) == expected, "the final keeps its bytes")
    }

    func testConcatenationOfAMissingPartIsGone() throws {
        let store = try makeStore()
        guard let concatenating = store as? any ConcatenatingUploadDataStore else {
            throw XCTSkip("the store cannot concatenate")
        }
        try completeUpload(store, "g-a", pattern(10, seed: 8))
        XCTAssertNil(create(store, "g-final"))
        let concatenated: StoreError? = driver.run { done in
            concatenating.concatenate(
                id: "g-final", parts: ["g-a", "g-ghost"], lengths: [10, 5], on: self.driver.executor, completion: done)
        }
        XCTAssertEqual(concatenated, .gone)
    }
}

final class MemoryDataStoreContractTests: DataStoreContract {
    override func testCreateWriteAndReadBack() throws { try super.testCreateWriteAndReadBack() }
    override func testAppendsResumeWhereTheLastFinishEnded() throws { try super.testAppendsResumeWhereTheLastFinishEnded() }
    override func testTruncatedBytesAreReplacedByTheNextWriter() throws { try super.testTruncatedBytesAreReplacedByTheNextWriter() }
    override func testRemovedDataIsGoneAndRemovingAgainIsFine() throws { try super.testRemovedDataIsGoneAndRemovingAgainIsFine() }
    override func testEmptyUploadReadsEmpty() throws { try super.testEmptyUploadReadsEmpty() }
    override func testConcatenationOfMixedPartsIsIdempotentAndIndependent() throws {
        try super.testConcatenationOfMixedPartsIsIdempotentAndIndependent()
    }
    override func testConcatenationOfAMissingPartIsGone() throws { try super.testConcatenationOfAMissingPartIsGone() }
}

final class FileDataStoreContractTests: DataStoreContract {
    override func makeStore() throws -> any UploadDataStore { try FileDataStore(directory: directory, fsync: .none) }

    override func testCreateWriteAndReadBack() throws { try super.testCreateWriteAndReadBack() }
    override func testAppendsResumeWhereTheLastFinishEnded() throws { try super.testAppendsResumeWhereTheLastFinishEnded() }
    override func testTruncatedBytesAreReplacedByTheNextWriter() throws { try super.testTruncatedBytesAreReplacedByTheNextWriter() }
    override func testRemovedDataIsGoneAndRemovingAgainIsFine() throws { try super.testRemovedDataIsGoneAndRemovingAgainIsFine() }
    override func testEmptyUploadReadsEmpty() throws { try super.testEmptyUploadReadsEmpty() }
    override func testConcatenationOfMixedPartsIsIdempotentAndIndependent() throws {
        try super.testConcatenationOfMixedPartsIsIdempotentAndIndependent()
    }
    override func testConcatenationOfAMissingPartIsGone() throws { try super.testConcatenationOfAMissingPartIsGone() }
}

/// One gateway for the class (a few seconds to start), one bucket, a key prefix per test; stopped after the last test.
final class S3DataStoreContractTests: DataStoreContract {
    nonisolated(unsafe) static var gateway: CephRGWProcess?
    nonisolated(unsafe) static var startFailure: String?
    static let bucket = "contract"

    override class func tearDown() {
        gateway?.stop()
        gateway = nil
        super.tearDown()
    }

    override var createIsExclusive: Bool { false }
    private var client: S3Client?

    override func closeStore() {
        guard let client else { return }
        driver.run { done in
            client.shutdown(on: self.driver.loop)
            done(())
        } as Void
    }

    override func makeStore() throws -> any UploadDataStore {
        if Self.gateway == nil, Self.startFailure == nil {
            do {
                Self.gateway = try CephRGWProcess()
                try createBucket()
            } catch {
                Self.startFailure = "\(error)"
            }
        }
        guard let gateway = Self.gateway else { throw XCTSkip("Ceph RGW cannot start here: \(Self.startFailure ?? "")") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = try S3Configuration(
            endpoint: gateway.endpoint, bucket: Self.bucket, prefix: UUID().uuidString + "/", pathStyle: true,
            credentials: SigV4Credentials(accessKeyID: gateway.accessKeyID, secretAccessKey: gateway.secretAccessKey),
            partSize: 5 << 20, spillDirectory: directory + "/spill")
        let client = try S3Client(configuration: configuration)
        self.client = client
        return try S3DataStore(client: client)
    }

    private func createBucket() throws {
        guard let gateway = Self.gateway else { return }
        let configuration = try S3Configuration(
            endpoint: gateway.endpoint, bucket: Self.bucket, pathStyle: true,
            credentials: SigV4Credentials(accessKeyID: gateway.accessKeyID, secretAccessKey: gateway.secretAccessKey),
            spillDirectory: NSTemporaryDirectory())
        let client = try S3Client(configuration: configuration)
        let created: Result<S3Response, S3Error> = driver.run { done in
            client.send(S3Request(method: .PUT, key: nil), on: self.driver.loop, streamBody: nil, completion: done)
        }
        _ = try created.get()
        driver.run { done in
            client.shutdown(on: self.driver.loop)
            done(())
        } as Void
    }

    override func testCreateWriteAndReadBack() throws { try super.testCreateWriteAndReadBack() }
    override func testAppendsResumeWhereTheLastFinishEnded() throws { try super.testAppendsResumeWhereTheLastFinishEnded() }
    override func testTruncatedBytesAreReplacedByTheNextWriter() throws { try super.testTruncatedBytesAreReplacedByTheNextWriter() }
    override func testRemovedDataIsGoneAndRemovingAgainIsFine() throws { try super.testRemovedDataIsGoneAndRemovingAgainIsFine() }
    override func testEmptyUploadReadsEmpty() throws { try super.testEmptyUploadReadsEmpty() }
    override func testConcatenationOfMixedPartsIsIdempotentAndIndependent() throws {
        try super.testConcatenationOfMixedPartsIsIdempotentAndIndependent()
    }
    override func testConcatenationOfAMissingPartIsGone() throws { try super.testConcatenationOfAMissingPartIsGone() }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
