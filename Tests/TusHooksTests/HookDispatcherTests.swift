import Foundation
import Synchronization
import TusCore
import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

@testable import TusHooks

/// A transport the test answers by hand: calls wait until `answer` is called for them.
final class ManualTransport: HookTransport, @unchecked Sendable {
    var calls: [(type: String, payload: [String: Any], headers: HTTPHeaders, complete: (Result<[UInt8], HookFailure>) -> Void)] = []
    var subjects: [HookSubject] = []
    var missing: Set<String> = []

    func handles(_ type: String) -> Bool { !missing.contains(type) }

    func invoke(
        _ type: String, payload: [UInt8], subject: HookSubject, forwardedHeaders: HTTPHeaders, retrySafe: Bool,
        on executor: any LoopExecutor, completion: @escaping (Result<[UInt8], HookFailure>) -> Void
    ) {
        subjects.append(subject)
        let json = (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any] ?? [:]
        calls.append((type, json, forwardedHeaders, completion))
    }

    func answer(_ index: Int, _ json: String = "{}") { calls[index].complete(.success(Array(json.utf8))) }
    func fail(_ index: Int) { calls[index].complete(.failure(HookFailure("down"))) }
    var types: [String] { calls.map(\.type) }
}

final class HookDispatcherTests: XCTestCase {
    let executor = ManualExecutor()
    var transport = ManualTransport()
    let logged = LogLines()

    func dispatcher(_ adjust: (inout HookConfiguration) -> Void = { _ in }) -> HookDispatcher {
        var configuration = HookConfiguration()
        configuration.enabledEvents = HookConfiguration.allEvents
        configuration.forwardHeaders = ["Authorization"]
        configuration.storage = { id in ["Type": "filestore", "Path": "/data/" + id] }
        adjust(&configuration)
        let logged = logged
        return HookDispatcher(configuration: configuration, transport: transport, log: { line in logged.append(line) })
    }

    func event(_ id: String, offset: Int64 = 0, method: HTTPMethod = .PATCH) -> UploadEvent {
        UploadEvent(
            upload: UploadInfo(id: id, length: 10, offset: offset, metadata: "filename YS50eHQ=,empty", createdAt: 0),
            request: EventRequest(
                method: method, uri: "/files/\(id)", remoteAddress: "127.0.0.1:4000",
                headers: ["Tus-Resumable": "1.0.0", "x-request-id": "r1", "Authorization": "Bearer t"], requestID: "r1"))
    }

    func testPayloadHasTusdsFieldNames() throws {
        let hooks = dispatcher()
        hooks.notify(.created, event("u1"), on: executor)
        let payload = transport.calls[0].payload
        XCTAssertEqual(payload["Type"] as? String, "post-create")
        let event = try XCTUnwrap(payload["Event"] as? [String: Any])
        let upload = try XCTUnwrap(event["Upload"] as? [String: Any])
        XCTAssertEqual(Set(upload.keys), ["ID", "Size", "SizeIsDeferred", "Offset", "MetaData", "IsPartial", "IsFinal", "PartialUploads", "Storage"])
        XCTAssertEqual(upload["MetaData"] as? [String: String], ["filename": "a.txt", "empty": ""])
        XCTAssertTrue(upload["PartialUploads"] is NSNull)
        XCTAssertEqual((upload["Storage"] as? [String: String])?["Path"], "/data/u1")
        let http = try XCTUnwrap(event["HTTPRequest"] as? [String: Any])
        XCTAssertEqual(http["RemoteAddr"] as? String, "127.0.0.1:4000")
        XCTAssertEqual((http["Header"] as? [String: [String]])?["X-Request-Id"], ["r1"], "Go's canonical spelling")
        XCTAssertEqual(transport.calls[0].headers["Authorization"], "Bearer t", "forwarded header")
    }

    func testNotificationsAreDeliveredInOrderPerUploadOneAtATime() {
        let hooks = dispatcher()
        let stop = UploadStopSwitchProbe()
        hooks.notify(.created, event("a"), on: executor)
        hooks.progressed(event("a", offset: 3), stop: stop.make(executor), on: executor)
        hooks.progressed(event("a", offset: 6), stop: stop.make(executor), on: executor)
        hooks.progressed(event("a", offset: 9), stop: stop.make(executor), on: executor)
        hooks.notify(.created, event("b"), on: executor)
        hooks.notify(.finished, event("a", offset: 10), on: executor)
        XCTAssertEqual(transport.types, ["post-create", "post-create"], "one in flight per upload, uploads independent")
        transport.fail(0)  // a failure is logged and the queue goes on
        executor.runPending()
        XCTAssertEqual(transport.types.count, 3)
        XCTAssertEqual(transport.types[2], "post-receive")
        transport.answer(2)
        executor.runPending()
        // The waiting progress events were coalesced into the newest one.
        let offsets = transport.calls.filter { $0.type == "post-receive" }.map {
            (($0.payload["Event"] as? [String: Any])?["Upload"] as? [String: Any])?["Offset"] as? Int
        }
        XCTAssertEqual(offsets, [9], "3 and 6 waited behind post-create and were replaced")
        transport.answer(3)
        executor.runPending()
        XCTAssertEqual(transport.types.last, "post-finish")
        XCTAssertTrue(logged.all.contains { $0.contains("post-create failed after retries") && $0.contains("request_id=r1") })
    }

    /// What exec hooks put in TUS_ID, TUS_SIZE, TUS_OFFSET: tusd's `Upload.Size` is 0 while the length is deferred,
    /// and pre-create has no id yet.
    func testEveryCallNamesItsUploadForTheTransport() {
        let hooks = dispatcher()
        var deferred = event("d", offset: 7)
        deferred.upload.length = nil
        hooks.notify(.created, event("u", offset: 3), on: executor)
        hooks.progressed(deferred, stop: UploadStopSwitchProbe().make(executor), on: executor)
        hooks.decide(.preCreate, event(""), on: executor) { _ in }
        XCTAssertEqual(
            transport.subjects,
            [
                HookSubject(id: "u", size: 10, offset: 3), HookSubject(id: "d", size: 0, offset: 7),
                HookSubject(id: "", size: 10, offset: 0),
            ])
    }

    func testStopUploadAnswerStopsTheRequest() {
        let hooks = dispatcher()
        let probe = UploadStopSwitchProbe()
        hooks.progressed(event("s", offset: 5), stop: probe.make(executor), on: executor)
        transport.answer(0, #"{"StopUpload":true,"HTTPResponse":{"StatusCode":409,"Body":"enough"}}"#)
        executor.runPending()
        XCTAssertEqual(probe.stopped?.statusCode, 409)
        XCTAssertEqual(probe.stopped?.body, "enough")
    }

    func testDecisionsMapTusdsAnswers() {
        let hooks = dispatcher()
        var verdicts: [EventVerdict] = []
        hooks.decide(.preCreate, event(""), on: executor) { verdicts.append($0) }
        transport.answer(0, #"{"RejectUpload":false,"ChangeFileInfo":{"ID":"new","MetaData":{"b":"2","a":"1"}},"HTTPResponse":{"Header":{"X-A":"1"}}}"#)
        hooks.decide(.preTerminate, event("t"), on: executor) { verdicts.append($0) }
        transport.answer(1, #"{"RejectTermination":true}"#)
        hooks.decide(.preAccess, event("t"), on: executor) { verdicts.append($0) }
        transport.fail(2)
        hooks.decide(.preCreate, event(""), on: executor) { verdicts.append($0) }
        transport.answer(3, "not json")
        XCTAssertEqual(verdicts.count, 4)
        XCTAssertEqual(verdicts[0].changedID, "new")
        XCTAssertEqual(verdicts[0].changedMetadata?.map(\.key), ["a", "b"])
        XCTAssertEqual(verdicts[0].response.headers["X-A"], "1")
        XCTAssertFalse(verdicts[0].isRejected)
        XCTAssertTrue(verdicts[1].isRejected)
        XCTAssertTrue(verdicts[2].isUnavailable, "a hook that is down fails closed")
        XCTAssertTrue(verdicts[3].isUnavailable, "an unreadable answer too")
    }

    func testAccessVerdictsAreCachedPerUploadAndCredential() {
        let hooks = dispatcher { $0.accessCacheMilliseconds = 60_000 }
        var answers = 0
        hooks.decide(.preAccess, event("c", method: .HEAD), on: executor) { _ in answers += 1 }
        transport.answer(0, #"{"RejectAccess":false}"#)
        for _ in 0..<5 { hooks.decide(.preAccess, event("c", method: .HEAD), on: executor) { _ in answers += 1 } }
        XCTAssertEqual(answers, 6)
        XCTAssertEqual(transport.calls.count, 1)
        var other = event("c", method: .HEAD)
        other.request.headers.set("Authorization", "Bearer someone-else")
        hooks.decide(.preAccess, other, on: executor) { _ in answers += 1 }
        XCTAssertEqual(transport.calls.count, 2, "another credential asks again")
    }

    func testDisabledOrMissingHooksAreNotCalled() {
        transport.missing = ["post-receive"]
        let hooks = dispatcher { $0.enabledEvents = ["post-finish", "post-receive"] }
        XCTAssertFalse(hooks.wantsDecision(.preCreate))
        XCTAssertFalse(hooks.wantsAccessDecisions)
        hooks.notify(.created, event("d"), on: executor)
        hooks.progressed(event("d"), stop: UploadStopSwitchProbe().make(executor), on: executor)
        XCTAssertTrue(transport.calls.isEmpty)
    }
}

final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

/// Makes stop switches that record what they were asked.
final class UploadStopSwitchProbe: @unchecked Sendable {
    var stopped: ResponseOverride?
    func make(_ executor: ManualExecutor) -> UploadStopSwitch {
        UploadStopSwitch.forTesting(executor: executor) { [self] in stopped = $0 }
    }
}
