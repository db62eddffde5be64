import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// The upload service on its own: domain calls against the in-memory stores, no request, no header.
final class UploadServiceTests: XCTestCase {
    var clock = TestClock()
    var store = MemoryUploadStore()
    var events = RecordingEvents()
    var service: UploadService!
    let executor = ManualExecutor()

    override func setUp() {
        super.setUp()
        configure()
    }

    func configure(_ configuration: TusConfiguration = TusConfiguration(), store: MemoryUploadStore = MemoryUploadStore()) {
        clock = TestClock()
        self.store = store
        events = RecordingEvents()
        let clock = clock
        service = UploadService(
            configuration: configuration, store: store, locker: MemoryLocker(), events: events, now: { clock.now })
    }

    func caller(_ principal: String? = nil) -> UploadCaller {
        UploadCaller(executor: executor, principal: principal) {
            EventRequest(method: .POST, uri: "/service", remoteAddress: "", headers: [:], requestID: "", principal: principal)
        }
    }

    /// Runs the loop until `operation` has answered.
    func wait<T>(_ operation: (@escaping (T) -> Void) -> Void, file: StaticString = #filePath, line: UInt = #line) -> T? {
        var answer: T?
        operation { answer = $0 }
        for _ in 0..<100 where answer == nil { executor.runPending() }
        if answer == nil { XCTFail("no answer", file: file, line: line) }
        return answer
    }

    @discardableResult
    func put(_ info: UploadInfo) -> UploadInfo? {
        guard case .success(let created)? = wait({ self.store.create(info, on: self.executor, completion: $0) }) else {
            XCTFail("create \(info.id)")
            return nil
        }
        return created
    }

    func status(_ id: String, _ caller: UploadCaller? = nil) -> Result<UploadService.Status, UploadServiceError>? {
        wait { service.status(of: id, for: caller ?? self.caller(), completion: $0) }
    }

    func cancel(_ id: String, _ caller: UploadCaller? = nil) -> Result<ResponseOverride, UploadServiceError>? {
        wait { service.cancel(id, for: caller ?? self.caller(), completion: $0) }
    }

    // MARK: status

    func testStatusReportsOffsetLengthAndMetadata() {
        put(UploadInfo(id: "a", length: 10, metadata: "name YQ==", createdAt: clock.now))
        guard case .success(.upload(let info))? = status("a") else { return XCTFail("\(String(describing: status("a")))") }
        XCTAssertEqual(info.offset, 0)
        XCTAssertEqual(info.length, 10)
        XCTAssertEqual(info.metadata, "name YQ==")
    }

    func testStatusOfUnknownAndOthersUploadsIsNotFound() {
        put(UploadInfo(id: "mine", length: 10, createdAt: clock.now, owner: "alice"))
        guard case .failure(.notFound)? = status("nope") else { return XCTFail("unknown") }
        guard case .failure(.notFound)? = status("mine", caller("bob")) else { return XCTFail("other owner") }
        guard case .success? = status("mine", caller("alice")) else { return XCTFail("owner") }
    }

    func testStatusOfExpiredUploadIsGone() {
        configure(TusConfiguration(expirationSeconds: 60))
        put(UploadInfo(id: "e", length: 10, createdAt: clock.now, expiresAt: clock.now + 60))
        guard case .success? = status("e") else { return XCTFail("live") }
        clock.advance(60)
        guard case .failure(.gone)? = status("e") else { return XCTFail("expired") }
    }

    func testStatusAsksPreAccessAndReportsRefusal() {
        put(UploadInfo(id: "a", length: 10, createdAt: clock.now))
        events.verdicts[.preAccess] = EventVerdict(isRejected: true, response: ResponseOverride(statusCode: 451))
        guard case .failure(.rejected(.preAccess, let response))? = status("a") else { return XCTFail("refused") }
        XCTAssertEqual(response.statusCode, 451)
        events.verdicts[.preAccess] = EventVerdict(isUnavailable: true)
        guard case .failure(.hookUnavailable)? = status("a") else { return XCTFail("unavailable") }
        XCTAssertEqual(events.log, ["pre-access", "pre-access"])
    }

    func testStatusOfFinalAssemblesItOnceItsPartialsAreComplete() {
        put(UploadInfo(id: "p1", length: 2, offset: 2, createdAt: clock.now, concat: "partial", isPartial: true))
        put(UploadInfo(id: "p2", length: 3, createdAt: clock.now, concat: "partial", isPartial: true))
        put(UploadInfo(id: "f", length: 5, createdAt: clock.now, concat: "final;/files/p1 /files/p2", partialIDs: ["p1", "p2"]))
        guard case .success(.unfinishedFinal(let final, let length, _))? = status("f") else {
            return XCTFail("unfinished")
        }
        XCTAssertEqual(final.id, "f")
        XCTAssertEqual(length, 5)
        put(UploadInfo(id: "e1", length: 0, createdAt: clock.now, concat: "partial", isPartial: true))
        put(UploadInfo(id: "e2", length: 0, createdAt: clock.now, concat: "partial", isPartial: true))
        put(UploadInfo(id: "g", length: 0, createdAt: clock.now, concat: "final;/files/e1 /files/e2", partialIDs: ["e1", "e2"]))
        guard case .success(.upload(let assembled))? = status("g") else { return XCTFail("assembled") }
        XCTAssertTrue(assembled.isComplete)
        guard case .success? = cancel("p2") else { return XCTFail("cancel partial") }
        guard case .failure(.partialGone)? = status("f") else { return XCTFail("partial gone") }
    }

    // MARK: cancel

    func testCancelRemovesTheUploadAndTellsTheHooks() {
        put(UploadInfo(id: "c", length: 10, createdAt: clock.now))
        events.verdicts[.preTerminate] = EventVerdict(response: ResponseOverride(headers: ["X-Why": "asked"]))
        guard case .success(let response)? = cancel("c") else { return XCTFail("cancel") }
        XCTAssertEqual(response.headers["X-Why"], "asked")
        XCTAssertEqual(events.log, ["pre-terminate", "post-terminate"])
        XCTAssertEqual(events.lockWaits, 1)
        XCTAssertEqual(store.lookup("c"), .gone)
        guard case .failure(.gone)? = status("c") else { return XCTFail("gone after cancel") }
        guard case .failure(.gone)? = cancel("c") else { return XCTFail("second cancel") }
    }

    func testCancelRefusedByHookKeepsTheUploadAndFreesTheLock() {
        put(UploadInfo(id: "c", length: 10, createdAt: clock.now))
        events.verdicts[.preTerminate] = EventVerdict(isRejected: true)
        guard case .failure(.rejected(.preTerminate, _))? = cancel("c") else { return XCTFail("refused") }
        guard case .success? = status("c") else { return XCTFail("kept") }
        events.verdicts[.preTerminate] = nil
        guard case .success? = cancel("c") else { return XCTFail("lock was not released") }
    }

    func testCancelWithoutTerminationIsNotOffered() {
        configure(store: MemoryUploadStore(capabilities: UploadStoreCapabilities.all.subtracting(.termination)))
        put(UploadInfo(id: "c", length: 10, createdAt: clock.now))
        guard case .failure(.notOffered(let missing))? = cancel("c") else { return XCTFail("not offered") }
        XCTAssertEqual(missing, .termination)
        guard case .success? = status("c") else { return XCTFail("kept") }
    }

    func testCancelOfOthersUploadIsNotFound() {
        put(UploadInfo(id: "c", length: 10, createdAt: clock.now, owner: "alice"))
        guard case .failure(.notFound)? = cancel("c", caller("bob")) else { return XCTFail("other owner") }
        guard case .success? = cancel("c", caller("alice")) else { return XCTFail("owner") }
    }
}
