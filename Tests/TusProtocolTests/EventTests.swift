import Synchronization
import TusCore
import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// Records every event and answers decisions from a table; decisions can be held back to prove that a
/// request waits for its hook while the executor keeps running other work.
final class RecordingEvents: UploadEventHandler, @unchecked Sendable {
    var log: [String] = []
    var events: [UploadEvent] = []
    /// Decisions and notifications with their events, in order (`log` also has post-receive, which `events` lacks).
    var sent: [(name: String, event: UploadEvent)] = []
    var verdicts: [DecisionPoint: EventVerdict] = [:]
    var heldDecisions: [(EventVerdict) -> Void] = []
    var holdDecisions = false
    var stopOnProgress: ResponseOverride?
    var bodyBytes = 0
    var protocolErrors: [Int] = []
    var errors: [TusError] = []
    var lockWaits = 0
    /// Runs at each notification, before the request goes on (what the request had done by then).
    var onNotify: ((UploadNotification) -> Void)?

    var wantsDetails = true
    var wantsRequestDetails: Bool { wantsDetails }
    var wantsAccessDecisions: Bool { verdicts[.preAccess] != nil }
    func wantsDecision(_ point: DecisionPoint) -> Bool { verdicts[point] != nil }

    func decide(
        _ point: DecisionPoint, _ event: UploadEvent, on executor: any LoopExecutor,
        completion: @escaping (EventVerdict) -> Void
    ) {
        log.append(point.rawValue)
        events.append(event)
        sent.append((point.rawValue, event))
        let verdict = verdicts[point] ?? .proceed
        if holdDecisions { heldDecisions.append { _ in completion(verdict) } } else { completion(verdict) }
    }

    func notify(_ notification: UploadNotification, _ event: UploadEvent, on executor: any LoopExecutor) {
        log.append(notification.rawValue)
        events.append(event)
        sent.append((notification.rawValue, event))
        onNotify?(notification)
    }

    func progressed(_ event: UploadEvent, stop: UploadStopSwitch, on executor: any LoopExecutor) {
        log.append("post-receive \(event.upload.offset)")
        if let stopOnProgress { stop.stop(response: stopOnProgress) }
    }

    func measure(_ measurement: RequestMeasurement, on executor: any LoopExecutor) {
        switch measurement {
        case .bodyBytes(let count): bodyBytes += count
        case .error(let error): errors.append(error)
        case .lockWait: lockWaits += 1
        case .protocolError(_, let status, _): protocolErrors.append(status)
        }
    }
}

final class StaticAuthorizer: RequestAuthorizer {
    /// Bearer token → grant.
    let grants: [String: AccessGrant]
    init(_ grants: [String: AccessGrant]) { self.grants = grants }

    func authorize(
        _ head: RequestHead, on executor: any LoopExecutor, completion: @escaping (AuthorizationResult) -> Void
    ) {
        let token = head.headers["Authorization"].map { String($0.dropFirst("Bearer ".count)) }
        if let token, let grant = grants[token] { return completion(.granted(grant)) }
        completion(.denied(challenge: "Bearer error=\"invalid_token\""))
    }
}

final class EventTests: TusTestCase {
    var events = RecordingEvents()

    func configureEvents(_ configuration: TusConfiguration = TusConfiguration(), authorizer: (any RequestAuthorizer)? = nil) {
        events = RecordingEvents()
        store = MemoryUploadStore()
        let clock = clock
        handler = TusHandler(
            configuration: configuration, store: store, locker: MemoryLocker(), events: events, authorizer: authorizer,
            now: { clock.now })
        client = TusTestClient(handler: handler)
    }

    override func setUp() {
        super.setUp()
        configureEvents()
    }

    func testPostEventsComeInUploadOrderAndFinishOnce() {
        var configuration = TusConfiguration()
        configuration.progressIntervalMilliseconds = 0
        configureEvents(configuration)
        let path = createUpload(length: 10)
        client.patch(path, offset: 0, body: Array(repeating: 1, count: 4))
        client.patch(path, offset: 4, body: Array(repeating: 2, count: 6))
        // An empty PATCH at the end commits nothing new: no second finish.
        client.patch(path, offset: 10, body: [])
        XCTAssertEqual(
            events.log, ["post-create", "post-receive 4", "post-receive 10", "post-finish"])
        XCTAssertEqual(events.bodyBytes, 10)
        XCTAssertEqual(events.lockWaits, 3)
    }

    /// A handler that wants the request described gets target and fields; one that does not (metrics) gets the
    /// method, protocol and principal only, and the request is not described for it.
    func testNotificationsDescribeTheRequestOnlyWhenAHandlerWantsIt() {
        let path = createUpload(length: 3)
        XCTAssertEqual(client.patch(path, offset: 0, body: [1, 2, 3]).status, 204)
        let described = events.sent.map(\.event.request)
        XCTAssertEqual(described.map(\.method), [.POST, .PATCH])
        XCTAssertEqual(described.map(\.uri), ["/files/", path])
        XCTAssertEqual(described.first?.headers["Upload-Length"], "3")

        configureEvents()
        events.wantsDetails = false
        let bare = createUpload(length: 3)
        XCTAssertEqual(client.patch(bare, offset: 0, body: [1, 2, 3]).status, 204)
        XCTAssertEqual(events.log, ["post-create", "post-receive 3", "post-finish"])
        let bareRequests = events.sent.map(\.event.request)
        XCTAssertEqual(bareRequests.map(\.method), [.POST, .PATCH])
        XCTAssertEqual(bareRequests.map(\.uploadProtocol), [.tus, .tus])
        XCTAssertEqual(bareRequests.map(\.uri), ["", ""])
        XCTAssertTrue(bareRequests.allSatisfy { $0.headers.count == 0 })
    }

    func testEmptyUploadFinishesAtCreation() {
        _ = createUpload(length: 0)
        XCTAssertEqual(events.log, ["post-create", "post-finish"])
    }

    func testPreCreateRejectionUsesTheHookResponse() {
        events.verdicts[.preCreate] = EventVerdict(
            isRejected: true, response: ResponseOverride(statusCode: 422, body: "no thanks", headers: ["X-Why": "quota"]))
        let exchange = client.send(.POST, "/files/", headers: ["Upload-Length": "5"])
        XCTAssertEqual(exchange.status, 422)
        XCTAssertEqual(String(decoding: exchange.response!.body, as: UTF8.self), "no thanks")
        XCTAssertEqual(exchange.header("X-Why"), "quota")
        XCTAssertEqual(store.listExpired(now: .max), [])
        XCTAssertEqual(events.log, ["pre-create"])
        XCTAssertEqual(events.errors, [.uploadRejected])
        XCTAssertEqual(events.events[0].upload.id, "", "pre-create sees no id yet")
    }

    func testPreCreateDefaultRejectionIsTusdsError() {
        events.verdicts[.preCreate] = EventVerdict(isRejected: true)
        let exchange = client.send(.POST, "/files/", headers: ["Upload-Length": "5"])
        XCTAssertEqual(exchange.status, 400)
        XCTAssertTrue(String(decoding: exchange.response!.body, as: UTF8.self).hasPrefix("ERR_UPLOAD_REJECTED"))
    }

    func testUnreachableHookFailsCreationClosed() {
        events.verdicts[.preCreate] = .unavailable
        let exchange = client.send(.POST, "/files/", headers: ["Upload-Length": "5"])
        XCTAssertEqual(exchange.status, 503)
        XCTAssertEqual(exchange.header("Retry-After"), "1")
    }

    func testChangeFileInfoSetsIDAndMetadata() {
        events.verdicts[.preCreate] = EventVerdict(
            response: ResponseOverride(headers: ["X-Hook": "yes"]), changedID: "chosen-by-hook",
            changedMetadata: [("filename", "new.txt")])
        let exchange = client.send(.POST, "/files/", headers: ["Upload-Length": "5", "Upload-Metadata": "a YQ=="])
        XCTAssertEqual(exchange.status, 201)
        XCTAssertEqual(exchange.header("Location"), "http://tus.example/files/chosen-by-hook")
        XCTAssertEqual(exchange.header("X-Hook"), "yes")
        XCTAssertEqual(head("/files/chosen-by-hook").header("Upload-Metadata"), "filename bmV3LnR4dA==")
    }

    func testRequestWaitsForItsDecisionOnly() {
        events.verdicts[.preCreate] = .proceed
        events.holdDecisions = true
        let waiting = client.send(.POST, "/files/", headers: ["Upload-Length": "5"])
        XCTAssertFalse(waiting.hasResponded)
        // Other work on the same executor goes on meanwhile.
        XCTAssertEqual(client.send(.OPTIONS, "/files/").status, 204)
        events.heldDecisions.removeFirst()(.proceed)
        XCTAssertEqual(waiting.status, 201)
    }

    func testPreTerminateRejection() {
        let path = createUpload(length: 5)
        events.verdicts[.preTerminate] = EventVerdict(isRejected: true)
        XCTAssertEqual(client.send(.DELETE, path).status, 400)
        XCTAssertEqual(head(path).status, 200)
        events.verdicts[.preTerminate] = .proceed
        XCTAssertEqual(client.send(.DELETE, path).status, 204)
        XCTAssertEqual(events.log.suffix(2), ["pre-terminate", "post-terminate"])
    }

    /// tusd v2 `writeChunk`: a stop ends the body, terminates the upload (post-terminate, never pre-terminate), and
    /// only then answers 400 ERR_UPLOAD_STOPPED as the hook's response changed it.
    func testStopUploadEndsTheRunningPatchAndTerminatesTheUpload() {
        var configuration = TusConfiguration()
        configuration.progressIntervalMilliseconds = 0
        configureEvents(configuration)
        let path = createUpload(length: 100)
        events.stopOnProgress = ResponseOverride(body: "stopped by hook", headers: ["X-Quota": "spent"])
        events.verdicts[.preTerminate] = EventVerdict(isRejected: true)
        let exchange = client.start(
            .PATCH, path, headers: ["Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"],
            framing: .contentLength(100))
        var answeredBeforeTermination: Bool?
        events.onNotify = { if $0 == .terminated { answeredBeforeTermination = exchange.hasResponded } }
        exchange.deliver(Array(repeating: 7, count: 10))
        client.executor.runPending()
        XCTAssertTrue(exchange.bodyStopped, "the body stops at once")
        XCTAssertFalse(exchange.deliver([8]), "nothing more is delivered")
        XCTAssertEqual(exchange.status, 400)
        XCTAssertEqual(String(decoding: exchange.response!.body, as: UTF8.self), "stopped by hook")
        XCTAssertEqual(exchange.header("X-Quota"), "spent")
        XCTAssertEqual(exchange.response?.closeConnection, true)
        XCTAssertEqual(answeredBeforeTermination, false, "terminated first, then answered")
        XCTAssertEqual(events.log, ["post-create", "post-receive 10", "post-terminate"], "no pre-terminate")
        XCTAssertEqual(events.events.last?.upload.offset, 0, "the upload as the PATCH found it, as tusd sends it")
        XCTAssertEqual(head(path).status, 410)
    }

    func testStopUploadWithoutTerminationKeepsTheBytes() {
        var configuration = TusConfiguration()
        configuration.progressIntervalMilliseconds = 0
        events = RecordingEvents()
        store = MemoryUploadStore(capabilities: UploadStoreCapabilities.all.subtracting(.termination))
        let clock = clock
        handler = TusHandler(
            configuration: configuration, store: store, locker: MemoryLocker(), events: events, now: { clock.now })
        client = TusTestClient(handler: handler)
        let path = createUpload(length: 100)
        events.stopOnProgress = ResponseOverride()
        let exchange = client.start(
            .PATCH, path, headers: ["Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"],
            framing: .contentLength(100))
        exchange.deliver(Array(repeating: 7, count: 10))
        client.executor.runPending()
        XCTAssertEqual(exchange.status, 400)
        XCTAssertEqual(offset(path), 10, "a store that cannot terminate keeps what came before the stop")
    }

    /// tusd `emitFinishEvents`: post-finish only after pre-finish said yes, and never when it failed.
    func testPostFinishWaitsForPreFinishAndNeedsItsYes() {
        events.verdicts[.preFinish] = .proceed
        events.holdDecisions = true
        let path = createUpload(length: 3)
        let last = client.send(
            .PATCH, path, headers: ["Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"],
            body: [1, 2, 3])
        XCTAssertFalse(last.hasResponded)
        XCTAssertEqual(events.log.suffix(2), ["post-receive 3", "pre-finish"], "no post-finish before pre-finish's answer")
        events.heldDecisions.removeFirst()(.proceed)
        XCTAssertEqual(last.status, 204)
        XCTAssertEqual(events.log.suffix(2), ["pre-finish", "post-finish"])

        events.holdDecisions = false
        for (verdict, status) in [(EventVerdict.unavailable, 503), (EventVerdict(isRejected: true), 400)] {
            events.verdicts[.preFinish] = verdict
            events.log = []
            let other = createUpload(length: 2)
            XCTAssertEqual(client.patch(other, offset: 0, body: [1, 2]).status, status)
            XCTAssertEqual(events.log, ["post-create", "post-receive 2", "pre-finish"], "no post-finish")
            XCTAssertEqual(offset(other), 2, "the bytes are stored and the upload complete anyway")
        }
    }

    func testEmptyUploadAsksPreFinishAtCreation() {
        events.verdicts[.preFinish] = EventVerdict(response: ResponseOverride(headers: ["X-Finished": "yes"]))
        let created = client.send(.POST, "/files/", headers: ["Upload-Length": "0"])
        XCTAssertEqual(created.status, 201)
        XCTAssertEqual(created.header("X-Finished"), "yes")
        XCTAssertEqual(events.log, ["post-create", "pre-finish", "post-finish"])
        events.verdicts[.preFinish] = .unavailable
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Length": "0"]).status, 503)
        XCTAssertEqual(events.log.suffix(2), ["post-create", "pre-finish"])
    }

    func testPreFinishChangesTheFinalResponse() {
        events.verdicts[.preFinish] = EventVerdict(response: ResponseOverride(headers: ["X-Processed": "1"]))
        let path = createUpload(length: 3)
        let first = client.patch(path, offset: 0, body: [1])
        XCTAssertNil(first.header("X-Processed"), "not finished yet")
        let last = client.patch(path, offset: 1, body: [2, 3])
        XCTAssertEqual(last.status, 204)
        XCTAssertEqual(last.header("X-Processed"), "1")
    }

    /// concatenation-unfinished: a final completed after its creation, by the PATCH that completed its last partial,
    /// is finished once (pre-finish, then post-finish) with the final as the upload and that PATCH as the request;
    /// the looks that follow send nothing more.
    func testFinalCompletedByItsLastPartialIsFinishedOnce() {
        events.verdicts[.preFinish] = .proceed
        let first = client.create(length: 2, headers: ["Upload-Concat": "partial"])!
        XCTAssertEqual(client.patch(first, offset: 0, body: [1, 2]).status, 204)
        let last = client.create(length: 3, headers: ["Upload-Concat": "partial"])!
        let created = client.send(.POST, "/files/", headers: ["Upload-Concat": "final;\(first) \(last)"])
        XCTAssertEqual(created.status, 201)
        let final = ConformanceRunner.path(of: created.header("Location") ?? "")
        let finalID = String(final.split(separator: "/").last!)
        XCTAssertEqual(client.patch(last, offset: 0, body: [3, 4, 5]).status, 204)
        client.executor.runPending()
        XCTAssertEqual(head(final).header("Upload-Offset"), "5")
        XCTAssertEqual(client.send(.GET, final).streamedBody, [1, 2, 3, 4, 5])
        let finishes = events.sent.filter { $0.event.upload.id == finalID && $0.name.hasSuffix("finish") }
        XCTAssertEqual(finishes.map(\.name), ["pre-finish", "post-finish"])
        guard let posted = finishes.last?.event else { return }
        XCTAssertEqual(posted.upload.length, 5)
        XCTAssertEqual(posted.upload.offset, 5)
        XCTAssertTrue(posted.upload.isFinal)
        XCTAssertEqual(posted.upload.partialIDs, [first, last].map { String($0.split(separator: "/").last!) })
        XCTAssertEqual(posted.request.method, .PATCH)
        XCTAssertEqual(posted.request.uri, last)
    }

    /// A final whose partials completed while nobody assembled it (a crash in between) is finished by the HEAD that
    /// assembles it, without the HEAD waiting on or answering for the hook: a refused pre-finish only withholds
    /// post-finish. A second look finishes nothing again.
    func testFinalAssembledByALookIsFinishedByItAndARefusalOnlyWithholdsPostFinish() {
        let part = client.create(length: 1, headers: ["Upload-Concat": "partial"])!
        XCTAssertEqual(client.patch(part, offset: 0, body: [7]).status, 204)
        let partID = String(part.split(separator: "/").last!)
        for (finalID, verdict) in [("f0", EventVerdict.proceed), ("f1", EventVerdict(isRejected: true))] {
            events.verdicts[.preFinish] = verdict
            var created: Result<UploadInfo, StoreError>?
            store.create(
                UploadInfo(id: finalID, length: 1, createdAt: 0, concat: "final;\(part)", partialIDs: [partID]),
                on: client.executor
            ) { created = $0 }
            client.executor.runPending()
            XCTAssertNotNil(try created?.get())
            let seen = head("/files/\(finalID)")
            XCTAssertEqual(seen.status, 200)
            XCTAssertEqual(seen.header("Upload-Offset"), "1")
            XCTAssertEqual(head("/files/\(finalID)").header("Upload-Offset"), "1")
            let finishes = events.sent.filter { $0.event.upload.id == finalID }
            let expected = verdict.isRejected ? ["pre-finish"] : ["pre-finish", "post-finish"]
            XCTAssertEqual(finishes.map(\.name), expected, finalID)
            XCTAssertEqual(finishes.first?.event.request.method, .HEAD)
        }
    }

    func testPreAccessGuardsEveryUploadRequest() {
        let path = createUpload(length: 3)
        events.verdicts[.preAccess] = EventVerdict(isRejected: true)
        XCTAssertEqual(head(path).status, 403)
        XCTAssertEqual(client.patch(path, offset: 0, body: [1]).status, 403)
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Length": "5"]).status, 403)
        XCTAssertEqual(client.send(.OPTIONS, path).status, 204, "preflights are never gated")
        events.verdicts[.preAccess] = EventVerdict(isRejected: true, response: ResponseOverride(statusCode: 451))
        XCTAssertEqual(client.send(.GET, path).status, 451)
    }

    func testAuthorizerOwnersAndCaps() {
        configureEvents(
            authorizer: StaticAuthorizer([
                "alice": AccessGrant(subject: "alice"), "bob": AccessGrant(subject: "bob", maxUploadLength: 10),
            ]))
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Length": "5"]).status, 401)
        let denied = client.send(.HEAD, "/files/whatever", headers: ["Authorization": "Bearer mallory"])
        XCTAssertEqual(denied.status, 401)
        XCTAssertEqual(denied.header("WWW-Authenticate"), "Bearer error=\"invalid_token\"")
        XCTAssertEqual(client.send(.OPTIONS, "/files/").status, 204, "preflights carry no credentials")

        let path = client.create(length: 5, headers: ["Authorization": "Bearer alice"])!
        XCTAssertEqual(client.send(.HEAD, path, headers: ["Authorization": "Bearer alice"]).status, 200)
        XCTAssertEqual(client.send(.HEAD, path, headers: ["Authorization": "Bearer bob"]).status, 404)
        XCTAssertEqual(
            client.patch(path, offset: 0, body: [1], headers: ["Authorization": "Bearer bob"]).status, 404)
        XCTAssertEqual(client.send(.DELETE, path, headers: ["Authorization": "Bearer bob"]).status, 404)
        XCTAssertEqual(client.send(.GET, path, headers: ["Authorization": "Bearer bob"]).status, 404)
        XCTAssertEqual(client.send(.HEAD, path, headers: ["Authorization": "Bearer alice"]).status, 200)

        XCTAssertEqual(
            client.send(.POST, "/files/", headers: ["Upload-Length": "11", "Authorization": "Bearer bob"]).status, 413)
        XCTAssertEqual(
            client.send(.POST, "/files/", headers: ["Upload-Length": "10", "Authorization": "Bearer bob"]).status, 201)
    }
}

extension EventTests {
    /// Bytes of a checksummed PATCH can be rolled back, so they are reported only once committed.
    func testChecksummedBytesAreReportedOnlyWhenCommitted() {
        var configuration = TusConfiguration()
        configuration.progressIntervalMilliseconds = 0
        configureEvents(configuration)
        let path = createUpload(length: 10)
        let bad = client.patch(
            path, offset: 0, body: Array("hello".utf8), headers: ["Upload-Checksum": "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA="],
            fragmentSize: 1)
        XCTAssertEqual(bad.status, 460)
        XCTAssertEqual(events.log, ["post-create"], "nothing was kept, nothing reported")
        let good = client.patch(
            path, offset: 0, body: Array("hello".utf8), headers: ["Upload-Checksum": "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00="],
            fragmentSize: 1)
        XCTAssertEqual(good.status, 204)
        XCTAssertEqual(events.log, ["post-create", "post-receive 5"])
    }
}
