import TusCrypto
import TusCore
import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// The upload service on its own: domain calls against the in-memory stores, no request, no header.
final class UploadServiceTests: XCTestCase {
    var clock = TestClock()
    var store = MemoryUploadStore()
    var events = RecordingEvents()
    var locker = MemoryLocker()
    var service: UploadService!
    let executor = ManualExecutor()

    override func setUp() {
        super.setUp()
        configure()
    }

    func configure(
        _ configuration: TusConfiguration = TusConfiguration(), store: MemoryUploadStore = MemoryUploadStore()
    ) {
        clock = TestClock()
        self.store = store
        events = RecordingEvents()
        locker = MemoryLocker()
        let clock = clock
        service = UploadService(
            configuration: configuration, store: store, locker: locker, events: events, now: { clock.now })
    }

    func caller(_ principal: String? = nil) -> UploadCaller {
        UploadCaller(executor: executor, principal: principal, method: .POST, uploadProtocol: .tus) {
            EventRequest(method: .POST, uri: "/service", principal: principal)
        }
    }

    /// Runs the loop until `operation` has answered.
    func wait<T>(
        _ operation: (@escaping (T) -> Void) -> Void, file: StaticString = #filePath, line: UInt = #line
    ) -> T? {
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
        guard case .success(.upload(let info))? = status("a") else { return XCTFail("status") }
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
        put(UploadInfo(id: "f", length: 5, createdAt: clock.now, concat: "final;", partialIDs: ["p1", "p2"]))
        guard case .success(.unfinishedFinal(let final, let length, _))? = status("f") else {
            return XCTFail("unfinished")
        }
        XCTAssertEqual(final.id, "f")
        XCTAssertEqual(length, 5)
        put(UploadInfo(id: "e1", length: 0, createdAt: clock.now, concat: "partial", isPartial: true))
        put(UploadInfo(id: "e2", length: 0, createdAt: clock.now, concat: "partial", isPartial: true))
        put(UploadInfo(id: "g", length: 0, createdAt: clock.now, concat: "final;", partialIDs: ["e1", "e2"]))
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

    // MARK: create

    func create(_ new: UploadService.NewUpload, _ caller: UploadCaller? = nil)
        -> Result<UploadService.Created, UploadServiceError>?
    {
        wait { service.create(new, for: caller ?? self.caller(), completion: $0) }
    }

    func testCreateStoresTheUploadWithItsOwnerAndExpiry() {
        configure(TusConfiguration(expirationSeconds: 60))
        let new = UploadService.NewUpload(length: 10, metadata: "name YQ==")
        guard case .success(let created)? = create(new, caller("alice")) else { return XCTFail("create") }
        let upload = created.upload
        XCTAssertTrue(UploadID.isValid(upload.id[...]))
        XCTAssertEqual(upload.owner, "alice")
        XCTAssertEqual(upload.expiresAt, clock.now + 60)
        XCTAssertEqual(store.lookup(upload.id), .found(upload))
        XCTAssertEqual(events.log, ["post-create"])
        guard case .success(.upload(let looked))? = status(upload.id, caller("alice")) else { return XCTFail("status") }
        XCTAssertEqual(looked.metadata, "name YQ==")
        XCTAssertEqual(looked.length, 10)
    }

    func testCreationRefusalsBeforeAnyBody() {
        configure(TusConfiguration(maxSize: 100))
        XCTAssertNil(service.refusal(ofLength: 100, for: caller()))
        guard case .tooLarge? = service.refusal(ofLength: 101, for: caller()) else { return XCTFail("server max") }
        let capped = UploadCaller(
            executor: executor, maxUploadLength: 10, method: .POST, uploadProtocol: .tus
        ) { EventRequest(method: .POST, uri: "/") }
        guard case .tooLarge? = service.refusal(ofLength: 11, for: capped) else { return XCTFail("caller's cap") }
        XCTAssertNil(service.refusalOfNewUploads())
    }

    func testCreateDeferredAndEmptyUploads() {
        configure(TusConfiguration(expirationSeconds: 60))
        guard case .success(let deferred)? = create(.init(length: nil)) else { return XCTFail("deferred") }
        XCTAssertTrue(deferred.upload.isLengthDeferred)
        guard case .success(let empty)? = create(.init(length: 0)) else { return XCTFail("empty") }
        XCTAssertTrue(empty.upload.isComplete)
        XCTAssertNil(empty.upload.expiresAt, "complete at once: never expires")
    }

    func testCreateFollowsPreCreate() {
        events.verdicts[.preCreate] = EventVerdict(
            response: ResponseOverride(headers: ["X-Hook": "yes"]), changedID: "chosen-by-hook",
            changedMetadata: [(key: "k", value: "v")])
        guard case .success(let created)? = create(.init(length: 5)) else { return XCTFail("create") }
        XCTAssertEqual(created.upload.id, "chosen-by-hook")
        XCTAssertEqual(created.upload.metadata, UploadMetadata.encode([(key: "k", value: "v")]))
        XCTAssertEqual(created.response.headers["X-Hook"], "yes")
        XCTAssertEqual(events.log, ["pre-create", "post-create"])
        XCTAssertEqual(events.events.first?.upload.id, "", "pre-create sees no id")

        events.verdicts[.preCreate] = EventVerdict(isRejected: true)
        guard case .failure(.rejected(.preCreate, _))? = create(.init(length: 5)) else { return XCTFail("refused") }
        events.verdicts[.preCreate] = EventVerdict(changedID: "../escape")
        guard case .failure(.storageFailure)? = create(.init(length: 5)) else { return XCTFail("invalid id") }
        XCTAssertEqual(events.log.filter { $0 == "post-create" }.count, 1)
    }

    // MARK: append

    /// A body the test feeds by hand.
    final class HandFedBody: UploadBodySource {
        var sink: (any HTTPBodySink)?
        var isStopped = false
        func readBody(into sink: any HTTPBodySink) { self.sink = sink }
        func stopBody() { isStopped = true }
    }

    /// Appends `bytes` as one fragment once the service reads the body; the outcome once it has one.
    func append(
        _ id: String, _ request: UploadService.AppendRequest, _ bytes: [UInt8], creation: UploadInfo? = nil,
        trailers: HTTPHeaders = [:]
    ) -> (UploadService.AppendOutcome?, HandFedBody) {
        let body = HandFedBody()
        var outcome: UploadService.AppendOutcome?
        if let creation {
            service.appendCreationBody(to: creation, checksum: request.checksum, for: caller(), body: body) {
                outcome = $0
            }
        } else {
            service.append(to: id, request, for: caller(), body: body) { outcome = $0 }
        }
        executor.runPending()
        if let sink = body.sink, outcome == nil {
            sink.bodyFragment(BodyFragment(copying: bytes)) {}
            executor.runPending()
            sink.bodyEnd(trailers: trailers)
        }
        for _ in 0..<100 where outcome == nil { executor.runPending() }
        return (outcome, body)
    }

    func created(length: Int64?) -> UploadInfo {
        guard case .success(let created)? = create(.init(length: length)) else {
            XCTFail("create")
            return UploadInfo(id: "missing", length: nil, createdAt: 0)
        }
        return created.upload
    }

    func testAppendCompletesTheUploadAndFinishesIt() {
        let upload = created(length: 5)
        let (outcome, _) = append(upload.id, .init(offset: 0, knownBodyLength: 5), [1, 2, 3, 4, 5])
        guard case .appended(let appended)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertEqual(appended.upload.offset, 5)
        XCTAssertTrue(appended.upload.isComplete)
        XCTAssertEqual(store.storedBytes(upload.id), [1, 2, 3, 4, 5])
        XCTAssertEqual(events.log, ["post-create", "post-receive 5", "post-finish"])
    }

    // MARK: append flags of the draft adapter

    func testCompletingAtBodyEndDeclaresTheLengthWhereTheBodyEnded() {
        let upload = created(length: nil)
        let (outcome, _) = append(upload.id, .init(offset: 0, completesAtBodyEnd: true), [1, 2, 3])
        guard case .appended(let appended)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertEqual(appended.upload.length, 3)
        XCTAssertTrue(appended.upload.isComplete)
        XCTAssertNil(appended.upload.expiresAt, "a complete upload does not expire")
        XCTAssertEqual(events.log.filter { $0 == "post-finish" }.count, 1)
        guard case .success(.upload(let info))? = status(upload.id) else { return XCTFail("status") }
        XCTAssertEqual(info.length, 3)
    }

    func testCompletingShortOfAKnownLengthKeepsTheBytesAndSaysSo() {
        let upload = created(length: 10)
        let (outcome, _) = append(upload.id, .init(offset: 0, completesAtBodyEnd: true), [1, 2, 3])
        guard case .failed(.lengthMismatch)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertEqual(store.storedBytes(upload.id), [1, 2, 3])
        XCTAssertEqual(events.log.filter { $0 == "post-finish" }.count, 0)
    }

    func testAnEmptyCompletingAppendFinishesADeferredUploadOnce() {
        let upload = created(length: nil)
        _ = append(upload.id, .init(offset: 0), [1, 2])
        let (outcome, _) = append(upload.id, .init(offset: 2, declaredLength: 2, knownBodyLength: 0), [])
        guard case .appended(let appended)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertTrue(appended.upload.isComplete)
        XCTAssertEqual(events.log.filter { $0 == "post-finish" }.count, 1)
    }

    func testRepeatedLengthAndCompleteUploadFlags() {
        let upload = created(length: 4)
        var (outcome, _) = append(upload.id, .init(offset: 0, declaredLength: 5, mayRepeatLength: true), [1])
        guard case .refused(.lengthMismatch)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        (outcome, _) = append(upload.id, .init(offset: 0, declaredLength: 4, mayRepeatLength: true), [1, 2, 3, 4])
        guard case .appended? = outcome else { return XCTFail("\(String(describing: outcome))") }
        (outcome, _) = append(upload.id, .init(offset: 4, knownBodyLength: 0, refusesCompleteUpload: true), [])
        guard case .refused(.alreadyComplete(let length))? = outcome else {
            return XCTFail("\(String(describing: outcome))")
        }
        XCTAssertEqual(length, 4)
        (outcome, _) = append(upload.id, .init(offset: 4, knownBodyLength: 0), [])
        guard case .appended? = outcome else { return XCTFail("without the flag, tus's empty PATCH is fine") }
    }

    func testProgressIsReportedWhileTheBodyStreams() {
        var configuration = TusConfiguration()
        configuration.progressIntervalMilliseconds = 0
        configure(configuration)
        let upload = created(length: nil)
        var reported: [Int64] = []
        let (outcome, _) = append(
            upload.id, .init(offset: 0, progress: { reported.append($0) }), [1, 2, 3])
        guard case .appended? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertEqual(reported, [3])
    }

    func testAppendRefusedBeforeTheBodyIsRead() {
        let upload = created(length: 5)
        var (outcome, body) = append(upload.id, .init(offset: 2), [1])
        guard case .refused(.offsetMismatch)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertNil(body.sink, "body never read")
        (outcome, body) = append(upload.id, .init(offset: 0, knownBodyLength: 6), [])
        guard case .refused(.exceedsLength)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        (outcome, body) = append(upload.id, .init(offset: 0, declaredLength: 5), [])
        guard case .refused(.lengthAlreadySet)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        (outcome, body) = append("nope", .init(offset: 0), [])
        guard case .refused(.notFound)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        put(UploadInfo(id: "f", length: nil, createdAt: clock.now, concat: "final;/files/x", partialIDs: ["x"]))
        (outcome, body) = append("f", .init(offset: 0), [])
        guard case .refused(.finalNotWritable)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertNil(body.sink)
        // The refusals released the lock: an append still goes through.
        (outcome, body) = append(upload.id, .init(offset: 0), [9])
        guard case .appended(let appended)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertEqual(appended.upload.offset, 1)
    }

    func testAppendDeclaresADeferredLength() {
        let upload = created(length: nil)
        var (outcome, _) = append(upload.id, .init(offset: 0, declaredLength: 1), [1, 2])
        guard case .failed(.exceedsLength)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        guard case .success(.upload(let info))? = status(upload.id) else { return XCTFail("status") }
        XCTAssertEqual(info.length, 1, "declared, and the byte up to it kept")
        XCTAssertEqual(info.offset, 1)
        (outcome, _) = append(upload.id, .init(offset: 1, declaredLength: 3), [])
        guard case .refused(.lengthAlreadySet)? = outcome else { return XCTFail("\(String(describing: outcome))") }
    }

    func testAppendChecksumMismatchDiscardsTheBytes() {
        let upload = created(length: 5)
        let wrong = UploadChecksum(algorithm: .sha1, expected: Array(repeating: 0, count: 20))
        var (outcome, _) = append(upload.id, .init(offset: 0, checksum: .digest(wrong)), [1, 2])
        guard case .failed(.checksumMismatch)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        guard case .success(.upload(let info))? = status(upload.id) else { return XCTFail("status") }
        XCTAssertEqual(info.offset, 0)
        var judged: [DigestAlgorithm: [UInt8]] = [:]
        let afterBody = UploadService.AppendChecksum.afterBody(algorithms: [.sha1, .md5]) { trailers, digests in
            judged = digests
            return trailers["Digest"] == "ok" ? nil : .checksumMissing
        }
        (outcome, _) = append(upload.id, .init(offset: 0, checksum: afterBody), [1, 2], trailers: ["Digest": "ok"])
        guard case .appended(let appended)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertEqual(appended.upload.offset, 2)
        XCTAssertEqual(Set(judged.keys), [.sha1, .md5], "hashed with every candidate")
    }

    func testCreationBodyIsAppendedToTheNewUpload() {
        let upload = created(length: 3)
        let (outcome, _) = append(upload.id, .init(offset: 0), [7, 8, 9], creation: upload)
        guard case .appended(let appended)? = outcome else { return XCTFail("\(String(describing: outcome))") }
        XCTAssertTrue(appended.upload.isComplete)
        XCTAssertEqual(store.storedBytes(upload.id), [7, 8, 9])
        XCTAssertEqual(events.log.last, "post-finish")
    }

    // MARK: concatenate

    func createFinal(_ ids: [String], _ caller: UploadCaller? = nil)
        -> Result<UploadService.CreatedFinal, UploadServiceError>?
    {
        wait {
            service.createFinal(of: ids, metadata: nil, concat: "final;", for: caller ?? self.caller(), completion: $0)
        }
    }

    func partial(_ bytes: [UInt8], length: Int64? = nil) -> String {
        guard case .success(let created)? = create(.init(length: length ?? Int64(bytes.count), isPartial: true)) else {
            XCTFail("partial")
            return "missing"
        }
        if !bytes.isEmpty { _ = append(created.upload.id, .init(offset: 0), bytes) }
        return created.upload.id
    }

    func testConcatenationOfCompletePartialsIsAssembledAtOnce() {
        let first = partial([1, 2])
        let second = partial([3])
        guard case .success(let final)? = createFinal([first, second, first]) else { return XCTFail("final") }
        XCTAssertTrue(final.isAssembled)
        XCTAssertEqual(final.upload.length, 5)
        XCTAssertTrue(final.upload.isComplete)
        XCTAssertEqual(read(final.upload.id), [1, 2, 3, 1, 2])
    }

    func testConcatenationWaitsForUnfinishedPartialsAndRefusesBadOnes() {
        let done = partial([1])
        let pending = partial([], length: 4)
        guard case .success(let final)? = createFinal([done, pending]) else { return XCTFail("final") }
        XCTAssertFalse(final.isAssembled)
        XCTAssertEqual(final.upload.length, 5)
        guard case .failure(.partialNotFound)? = createFinal([done, "nope"]) else { return XCTFail("unknown partial") }
        guard case .failure(.notPartial)? = createFinal([final.upload.id]) else { return XCTFail("not partial") }
        guard case .success(let alices)? = create(.init(length: 0, isPartial: true), caller("alice")) else {
            return XCTFail("alice's partial")
        }
        guard case .failure(.partialNotFound)? = createFinal([alices.upload.id], caller("eve")) else {
            return XCTFail("not hers")
        }
        guard case .success? = createFinal([alices.upload.id], caller("alice")) else { return XCTFail("hers") }
        _ = append(pending, .init(offset: 0), [2, 3, 4, 5])
        executor.runPending()  // the append that completed the partial assembles its finals on the next turn
        guard case .success(.upload(let assembled))? = status(final.upload.id) else { return XCTFail("status") }
        XCTAssertTrue(assembled.isComplete)
    }

    /// A final completed after its creation is finished once, with the final as the upload: the append that
    /// completed its last partial assembles it (on the next turn) and sends pre-finish, then post-finish.
    func testFinalCompletedAfterItsCreationIsFinishedOnce() {
        events.verdicts[.preFinish] = .proceed
        let done = partial([1, 2])
        let pending = partial([], length: 3)
        guard case .success(let created)? = createFinal([done, pending]) else { return XCTFail("final") }
        XCTAssertFalse(created.isAssembledByCreation)
        let finalID = created.upload.id
        _ = append(pending, .init(offset: 0), [3, 4, 5])
        executor.runPending()
        guard case .success(.upload(let assembled))? = status(finalID) else { return XCTFail("status") }
        XCTAssertTrue(assembled.isComplete)
        XCTAssertEqual(read(finalID), [1, 2, 3, 4, 5])
        let finishes = events.sent.filter { $0.event.upload.id == finalID && $0.name.hasSuffix("finish") }
        XCTAssertEqual(finishes.map(\.name), ["pre-finish", "post-finish"])
        guard let posted = finishes.last?.event.upload else { return }
        XCTAssertEqual(posted.length, 5)
        XCTAssertEqual(posted.offset, 5)
        XCTAssertTrue(posted.isFinal)
        XCTAssertEqual(posted.partialIDs, [done, pending])
    }

    /// Several instances (services sharing the stores and the locker) look at a final whose partials are complete at
    /// the same moment: each finds it unfinished, the lock lets one assemble it, and only that one finishes it.
    func testInstancesRacingToAssembleAFinalFinishItOnce() {
        let other = RecordingEvents()
        let clock = clock
        let second = UploadService(store: store, locker: locker, events: other, now: { clock.now })
        for sink in [events, other] { sink.verdicts[.preFinish] = .proceed }
        let parts = [partial([1, 2]), partial([3, 4, 5])]
        put(UploadInfo(id: "f", length: 5, createdAt: clock.now, concat: "final;", partialIDs: parts))
        // Held here until every look has found the partials complete and waits to assemble.
        var held: (any UploadLock)?
        locker.lock(id: "f", executor: executor, timeoutMilliseconds: 60_000, onReleaseRequested: {}) {
            held = try? $0.get()
        }
        var complete = 0
        for instance in [service!, second, service!, second] {
            instance.status(of: "f", for: caller()) { result in
                if case .success(.upload(let info)) = result, info.isComplete { complete += 1 }
            }
        }
        executor.runPending()
        XCTAssertEqual(complete, 0, "all four wait for the final's lock")
        held?.release()
        for _ in 0..<100 where complete < 4 { executor.runPending() }
        XCTAssertEqual(complete, 4)
        let finishes = (events.sent + other.sent).filter { $0.event.upload.id == "f" }.map(\.name)
        XCTAssertEqual(finishes.sorted(), ["post-finish", "pre-finish"])
        XCTAssertEqual(locker.heldIDs, [])
    }

    // MARK: download

    func read(_ id: String) -> [UInt8]? {
        guard case .success(let upload)? = wait({ service.download(id, for: caller(), completion: $0) }),
            case .success(let source)? = wait({
                service.read(id, first: 0, count: upload.offset, for: caller(), completion: $0)
            })
        else { return nil }
        var bytes: [UInt8] = []
        while true {
            guard case .success(let fragment?)? = wait({ source.next(maxLength: 2, completion: $0) }) else { break }
            bytes += fragment.bytes
        }
        return bytes
    }

    func testDownloadServesWhatIsCommitted() {
        let upload = created(length: 5)
        _ = append(upload.id, .init(offset: 0), [4, 5, 6])
        XCTAssertEqual(read(upload.id), [4, 5, 6])
        configure(store: MemoryUploadStore(capabilities: UploadStoreCapabilities.all.subtracting(.download)))
        let other = created(length: 1)
        let refused = wait { service.download(other.id, for: caller(), completion: $0) }
        guard case .failure(.notOffered(.download))? = refused else { return XCTFail("not offered") }
    }
}
