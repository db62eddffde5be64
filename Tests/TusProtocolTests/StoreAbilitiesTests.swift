import TusCore
import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// Only the core of a data store (create, append, remove), on top of the memory twin: no ability protocol, so no
/// reading, no truncation, no concatenation, whatever the wrapped store could do.
final class CoreOnlyDataStore: UploadDataStore {
    let inner = MemoryDataStore()

    func create(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        inner.create(id: id, on: executor, completion: completion)
    }

    func openWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any UploadDataWriter, StoreError>) -> Void
    ) {
        inner.openWriter(id: id, at: offset, length: length, on: executor, completion: completion)
    }

    func remove(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        inner.remove(id: id, on: executor, completion: completion)
    }
}

/// Reading and truncation, no concatenation: what the S3 store offered before it could assemble finals.
final class ReadableTruncatingDataStore: TruncatingUploadDataStore, ReadableUploadDataStore {
    let inner = MemoryDataStore()

    func create(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        inner.create(id: id, on: executor, completion: completion)
    }

    func openTruncatableWriter(
        id: String, at offset: Int64, length: Int64?, on executor: any LoopExecutor,
        completion: @escaping (Result<any TruncatableUploadDataWriter, StoreError>) -> Void
    ) {
        inner.openTruncatableWriter(id: id, at: offset, length: length, on: executor, completion: completion)
    }

    func openReader(
        id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void
    ) {
        inner.openReader(id: id, on: executor, completion: completion)
    }

    func remove(id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        inner.remove(id: id, on: executor, completion: completion)
    }
}

/// Abilities are protocols: a store offers what it conforms to, and the handler offers (in `Tus-Extension`) and
/// serves only that. A store without concatenation refuses `Upload-Concat` up front instead of answering 500 at the
/// final (issue 20: `--store s3` used to advertise concatenation it had no code for).
final class StoreAbilitiesTests: XCTestCase {
    private func client<Data: UploadDataStore>(_ data: Data) -> (TusTestClient, ComposedUploadStore<MemoryStateStore, Data>) {
        let store = ComposedUploadStore(state: MemoryStateStore(), data: data)
        let handler = TusHandler(configuration: TusConfiguration(expirationSeconds: 0), store: store)
        return (TusTestClient(handler: handler), store)
    }

    func testCapabilitiesFollowConformances() {
        XCTAssertEqual(ComposedUploadStore(state: MemoryStateStore(), data: CoreOnlyDataStore()).capabilities, [.termination])
        XCTAssertEqual(
            ComposedUploadStore(state: MemoryStateStore(), data: ReadableTruncatingDataStore()).capabilities,
            [.termination, .download, .discardableWrites])
        XCTAssertEqual(ComposedUploadStore(state: MemoryStateStore(), data: MemoryDataStore()).capabilities, .all)
        XCTAssertEqual(
            ComposedUploadStore(state: MemoryStateStore(), data: MemoryDataStore(), disabled: [.concatenation]).capabilities,
            [.termination, .download, .discardableWrites], "an operator can take an ability away, never add one")
    }

    func testCoreOnlyStoreOffersAndServesNoAbility() {
        let (client, _) = client(CoreOnlyDataStore())
        XCTAssertEqual(
            client.send(.OPTIONS, "/files/").header("Tus-Extension"),
            "creation,creation-with-upload,creation-defer-length,termination")
        guard let path = client.create(length: 3) else { return XCTFail("creation failed") }
        XCTAssertEqual(client.patch(path, offset: 0, body: [1, 2, 3]).status, 204)
        XCTAssertEqual(client.send(.GET, path).status, 405)
        let checksummed = client.patch(
            path, offset: 3, body: [], headers: ["Upload-Checksum": "sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk="])
        XCTAssertEqual(checksummed.status, 400, "no truncation, so no checksum: its header is refused")
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Length": "1", "Upload-Concat": "partial"]).status, 501)
    }

    func testStoreWithoutConcatenationRefusesFinalsUpFront() {
        let (client, _) = client(ReadableTruncatingDataStore())
        let extensions = client.send(.OPTIONS, "/files/").header("Tus-Extension") ?? ""
        XCTAssertFalse(extensions.contains("concatenation"), extensions)
        XCTAssertTrue(extensions.contains("checksum"), extensions)
        let partial = client.send(.POST, "/files/", headers: ["Upload-Length": "1", "Upload-Concat": "partial"])
        XCTAssertEqual(partial.status, 501)
        let final = client.send(.POST, "/files/", headers: ["Upload-Concat": "final;/files/a /files/b"])
        XCTAssertEqual(final.status, 501)
        guard let path = client.create(length: 2) else { return XCTFail("creation failed") }
        XCTAssertEqual(client.patch(path, offset: 0, body: [7, 8]).status, 204)
        let download = client.send(.GET, path)
        XCTAssertEqual(download.status, 200)
        XCTAssertEqual(download.streamedBody, [7, 8])
    }
}
