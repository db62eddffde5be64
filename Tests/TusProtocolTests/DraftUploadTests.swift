import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// The draft adapter's behaviour that is not one request -> one response (the conformance table has those):
/// the 104 before the body, interrupted bodies resumed, progress 104s, takeover of a stale append, cancellation
/// of a running append, events and authorization, and uploads shared with tus.
final class DraftUploadTests: TusTestCase {
    var events = RecordingEvents()

    private func configureDraft(
        _ configuration: TusConfiguration = TusConfiguration(), authorizer: (any RequestAuthorizer)? = nil
    ) {
        events = RecordingEvents()
        store = MemoryUploadStore()
        locker = MemoryLocker()
        let clock = clock
        handler = TusHandler(
            configuration: configuration, store: store, locker: locker, events: events, authorizer: authorizer,
            now: { clock.now })
        client = TusTestClient(handler: handler)
        client.defaultHeaders = ["Host": "tus.example"]
    }

    override func setUp() {
        super.setUp()
        configureDraft()
    }

    private func draftHeaders(_ version: Int, _ fields: [(String, String)] = []) -> HTTPHeaders {
        var headers: HTTPHeaders = ["Upload-Draft-Interop-Version": String(version)]
        for (name, value) in fields { headers.add(name, value) }
        return headers
    }

    private func appendHeaders(_ version: Int, offset: Int64, complete: Bool) -> HTTPHeaders {
        draftHeaders(
            version,
            [
                ("Upload-Offset", String(offset)), ("Upload-Complete", complete ? "?1" : "?0"),
                ("Content-Type", "application/partial-upload"),
            ])
    }

    private func path(of exchange: FakeExchange) -> String {
        let location = exchange.informationalResponses.first?.headers["Location"] ?? exchange.header("Location") ?? ""
        return ConformanceRunner.path(of: location)
    }

    private func id(_ path: String) -> String { String(path.dropFirst("/files/".count)) }

    func testTheCreation104GoesOutBeforeTheBodyIsReadAndACutCreationResumesByteExact() {  // C4, C18, A1
        let body = (0..<100).map { UInt8($0) }
        let creation = client.start(
            .POST, "/files/", headers: draftHeaders(6, [("Upload-Complete", "?1")]), framing: .contentLength(100))
        XCTAssertEqual(creation.informationalResponses.count, 1)
        XCTAssertEqual(creation.informationalResponses.first?.status.code, 104)
        XCTAssertNotNil(creation.informationalResponses.first?.headers["Location"])
        XCTAssertTrue(creation.didReadBody, "104 first, then the body")
        creation.deliver(Array(body[..<40]), fragmentSize: 7)
        client.executor.runPending()
        creation.abortBody(.clientClosed)
        client.executor.runPending()
        let path = path(of: creation)
        let head = client.send(.HEAD, path, headers: draftHeaders(6))
        XCTAssertEqual(head.status, 204)
        XCTAssertEqual(head.header("Upload-Offset"), "40", "the bytes received are kept")
        XCTAssertEqual(head.header("Upload-Complete"), "?0", "an interrupted body completes nothing")
        XCTAssertEqual(head.header("Upload-Length"), "100", "Content-Length of a complete creation is the length")
        let resumed = client.send(
            .PATCH, path, headers: appendHeaders(6, offset: 40, complete: true), body: Array(body[40...]))
        XCTAssertEqual(resumed.status, 201)
        XCTAssertEqual(resumed.header("Upload-Complete"), "?1")
        XCTAssertEqual(store.storedBytes(id(path)), body)
        XCTAssertEqual(events.log.filter { $0 == "post-finish" }.count, 1)
    }

    func testEventsOfADraftUploadNameTheProtocolAndFinishOnce() {  // hooks
        let creation = client.send(
            .POST, "/files/", headers: draftHeaders(7, [("Upload-Complete", "?1")]), body: Array("hi".utf8),
            chunked: true)
        XCTAssertEqual(creation.status, 201)
        XCTAssertEqual(events.log.filter { $0 == "post-create" }.count, 1)
        XCTAssertEqual(events.log.filter { $0 == "post-finish" }.count, 1, "a chunked complete creation finishes")
        XCTAssertTrue(events.events.allSatisfy { $0.request.uploadProtocol == .ietfDraft(interopVersion: 7) })
        XCTAssertEqual(events.events.last?.upload.length, 2)
    }

    /// A draft upload created without a length and completed by a chunked append: one completing declaration sets the
    /// length and ends the wait, one record update (it was two declarations, one S3 object write or Redis round trip
    /// each).
    func testAChunkedCompletingAppendDeclaresTheLengthOnce() {  // A3, A8
        let counting = StallingStore()
        counting.stallWrites = false
        handler = TusHandler(configuration: TusConfiguration(), store: counting, locker: locker, now: { [clock] in clock.now })
        client = TusTestClient(handler: handler)
        client.defaultHeaders = ["Host": "tus.example"]
        let creation = client.send(
            .POST, "/files/", headers: draftHeaders(6, [("Upload-Complete", "?0")]), body: Array("hello".utf8),
            chunked: true)
        XCTAssertEqual(creation.status, 201)
        let path = path(of: creation)
        XCTAssertEqual(counting.declarations, [])
        let completed = client.send(
            .PATCH, path, headers: appendHeaders(6, offset: 5, complete: true), body: Array(" world".utf8), chunked: true)
        XCTAssertEqual(completed.status, 201)
        XCTAssertEqual(completed.header("Upload-Complete"), "?1")
        XCTAssertEqual(counting.declarations, [true], "one completing declaration")
        let head = client.send(.HEAD, path, headers: draftHeaders(6))
        XCTAssertEqual(head.header("Upload-Length"), "11")
        XCTAssertEqual(head.header("Upload-Complete"), "?1")
    }

    func testAnEmptyCompletingAppendFinishesADeferredUpload() {  // A5, A8
        let creation = client.send(
            .POST, "/files/", headers: draftHeaders(9, [("Upload-Complete", "?0")]), body: Array("abc".utf8))
        let path = path(of: creation)
        XCTAssertEqual(events.log.filter { $0 == "post-finish" }.count, 0)
        let complete = client.send(.PATCH, path, headers: appendHeaders(9, offset: 3, complete: true))
        XCTAssertEqual(complete.status, 201)
        XCTAssertEqual(events.log.filter { $0 == "post-finish" }.count, 1)
        let tusHead = client.send(.HEAD, path, headers: ["Tus-Resumable": "1.0.0"])
        XCTAssertEqual(tusHead.header("Upload-Length"), "3", "tus sees the draft upload complete")
        XCTAssertEqual(tusHead.header("Upload-Offset"), "3")
    }

    func testProgress104sCarryTheOffsetAndNeverTheLocation() {  // C6, C7, A19
        for version in 3...9 {
            var configuration = TusConfiguration()
            configuration.progressIntervalMilliseconds = 0
            configureDraft(configuration)
            let creation = client.start(
                .POST, "/files/", headers: draftHeaders(version, [Self.completion(version, complete: false)]),
                framing: .contentLength(30))
            creation.deliver([UInt8](repeating: 1, count: 30), fragmentSize: 10)
            client.executor.runPending()
            creation.endBody()
            client.executor.runPending()
            let informational = creation.informationalResponses
            XCTAssertEqual(creation.status, 201, "v\(version)")
            XCTAssertNotNil(informational.first?.headers["Location"])
            let progress = informational.dropFirst()
            if version <= 4 {
                XCTAssertTrue(progress.isEmpty, "v\(version): one 104 only")
            } else {
                XCTAssertEqual(progress.compactMap { $0.headers["Upload-Offset"] }, ["10", "20", "30"], "v\(version)")
                XCTAssertTrue(progress.allSatisfy { $0.headers["Location"] == nil })
                XCTAssertTrue(progress.allSatisfy { $0.headers["Upload-Draft-Interop-Version"] == String(version) })
            }
        }
    }

    static func completion(_ version: Int, complete: Bool) -> (String, String) {
        DraftConformanceCases.completion(version, complete: complete)
    }

    func testANewAppendTakesOverAStaleOneAtTheOffsetHEADReported() {  // R8, A20
        let creation = client.send(.POST, "/files/", headers: draftHeaders(8, [("Upload-Complete", "?0")]))
        let path = path(of: creation)
        let stale = client.start(
            .PATCH, path, headers: appendHeaders(8, offset: 0, complete: true), framing: .contentLength(50))
        stale.deliver([UInt8](repeating: 1, count: 10))
        client.executor.runPending()
        let head = client.send(.HEAD, path, headers: draftHeaders(8))
        XCTAssertEqual(head.header("Upload-Offset"), "10", "HEAD never waits for the stale append's lock")
        // The stale request's Content-Length made the upload 50 bytes long (row C16): the resume brings the rest.
        let fresh = client.start(
            .PATCH, path, headers: appendHeaders(8, offset: 10, complete: true), framing: .contentLength(40))
        client.executor.runPending()
        XCTAssertTrue(stale.hasResponded, "the stale append was asked to let go")
        XCTAssertEqual(stale.header("Upload-Complete"), "?0")
        XCTAssertFalse(stale.deliver([9]), "and takes nothing more")
        fresh.deliver([UInt8](repeating: 2, count: 40))
        fresh.endBody()
        client.executor.runPending()
        XCTAssertEqual(fresh.status, 201)
        XCTAssertEqual(store.storedBytes(id(path)), [UInt8](repeating: 1, count: 10) + [UInt8](repeating: 2, count: 40))
    }

    func testCancellationStopsARunningAppend() {  // X7
        let creation = client.send(.POST, "/files/", headers: draftHeaders(6, [("Upload-Complete", "?0")]))
        let path = path(of: creation)
        let running = client.start(
            .PATCH, path, headers: appendHeaders(6, offset: 0, complete: false), framing: .contentLength(50))
        running.deliver([1, 2, 3])
        let cancel = client.send(.DELETE, path, headers: draftHeaders(6))
        XCTAssertEqual(cancel.status, 204)
        XCTAssertTrue(running.hasResponded)
        XCTAssertTrue(running.response?.closeConnection ?? false, "the running append's connection is closed")
        XCTAssertEqual(client.send(.HEAD, path, headers: draftHeaders(6)).status, 404)
    }

    func testEveryDraftRequestIsAuthorized() {  // O1
        configureDraft(
            authorizer: StaticAuthorizer(["alice": AccessGrant(subject: "alice"), "bob": AccessGrant(subject: "bob")]))
        let anonymous = client.send(.POST, "/files/", headers: draftHeaders(9, [("Upload-Complete", "?0")]))
        XCTAssertEqual(anonymous.status, 401)
        XCTAssertTrue(anonymous.informationalResponses.isEmpty, "nothing announced to a stranger")
        let created = client.send(
            .POST, "/files/", headers: draftHeaders(9, [("Upload-Complete", "?0"), ("Authorization", "Bearer alice")]))
        XCTAssertEqual(created.status, 201)
        let path = path(of: created)
        XCTAssertEqual(
            client.send(.HEAD, path, headers: draftHeaders(9, [("Authorization", "Bearer bob")])).status, 404)
        XCTAssertEqual(
            client.send(.HEAD, path, headers: draftHeaders(9, [("Authorization", "Bearer alice")])).status, 204)
        XCTAssertEqual(client.send(.HEAD, path, headers: draftHeaders(9)).status, 401)
    }

    func testTokenCapLowersMaxSizeInUploadLimit() {  // L1
        configureDraft(
            TusConfiguration(maxSize: 1000, expirationSeconds: 0),
            authorizer: StaticAuthorizer(["small": AccessGrant(subject: "s", maxUploadLength: 10)]))
        let options = client.send(.OPTIONS, "/files/", headers: draftHeaders(6))
        XCTAssertEqual(options.header("Upload-Limit"), "max-size=1000")
        let refused = client.send(
            .POST, "/files/", headers: draftHeaders(9, [("Upload-Complete", "?1"), ("Authorization", "Bearer small")]),
            body: [UInt8](repeating: 0, count: 11))
        XCTAssertEqual(refused.status, 413)
        XCTAssertEqual(refused.header("Upload-Limit"), "max-size=10")
    }

    func testARepeatedSingletonFieldIsNamedInTheFieldsOrderWhateverItsCaseAndArrivalOrder() {
        let repeated = client.send(
            .POST, "/files/",
            headers: draftHeaders(
                9,
                [
                    ("Content-Type", "a/b"), ("content-type", "c/d"), ("Upload-Complete", "?0"),
                    ("upload-length", "5"), ("UPLOAD-LENGTH", "5"),
                ]))
        XCTAssertEqual(repeated.status, 400)
        let detail = String(decoding: repeated.response?.body ?? [], as: UTF8.self)
        XCTAssertTrue(detail.contains("\"Upload-Length given more than once\""), detail)
        XCTAssertTrue(repeated.informationalResponses.isEmpty, "refused before anything is created")
        // Repeated fields that are not singletons (one as long as a singleton's name) are no reason to refuse.
        let other = client.send(
            .POST, "/files/",
            headers: draftHeaders(
                9,
                [("Upload-Complete", "?0"), ("Upload-Length", "5"), ("X-Upload-Len", "1"), ("X-Upload-Len", "2")]))
        XCTAssertEqual(other.status, 201)
    }

    func testTheCreation201CarriesTheSameLimitsAsIts104() {  // L1, C8
        configureDraft(
            TusConfiguration(maxSize: 1000, expirationSeconds: 60),
            authorizer: StaticAuthorizer(["small": AccessGrant(subject: "s", maxUploadLength: 10)]))
        let creation = client.send(
            .POST, "/files/",
            headers: draftHeaders(
                9, [("Upload-Complete", "?0"), ("Upload-Length", "5"), ("Authorization", "Bearer small")]))
        XCTAssertEqual(creation.status, 201)
        XCTAssertEqual(creation.informationalResponses.first?.headers["Upload-Limit"], "max-size=10, max-age=60")
        XCTAssertEqual(creation.header("Upload-Limit"), "max-size=10, max-age=60")
    }

    func testRepresentationMetadataIsKeptFromCreation() {  // C21, A23
        let creation = client.send(
            .POST, "/files/",
            headers: draftHeaders(
                6,
                [
                    ("Upload-Complete", "?0"), ("Content-Type", "image/png"),
                    ("Content-Disposition", "attachment; filename=\"cat.png\""),
                ]))
        let path = path(of: creation)
        _ = client.send(
            .PATCH, path,
            headers: appendHeaders(6, offset: 0, complete: true), body: [1, 2, 3])
        let tusHead = client.send(.HEAD, path, headers: ["Tus-Resumable": "1.0.0"])
        XCTAssertEqual(
            tusHead.header("Upload-Metadata"),
            UploadMetadata.encode([("filetype", "image/png"), ("filename", "cat.png")]))
    }

    func testAnUploadCreatedUnderOneVersionIsResumedUnderAnother() {  // D1: the engine state is version-free
        let creation = client.send(
            .POST, "/files/", headers: draftHeaders(3, [("Upload-Incomplete", "?1")]), body: Array("abc".utf8))
        XCTAssertEqual(creation.status, 201)
        XCTAssertEqual(creation.header("Upload-Incomplete"), "?1")
        let path = path(of: creation)
        let v5 = client.send(.HEAD, path, headers: draftHeaders(5))
        XCTAssertEqual(v5.header("Upload-Complete"), "?0")
        XCTAssertEqual(v5.header("Upload-Offset"), "3")
        let v6 = client.send(.PATCH, path, headers: appendHeaders(6, offset: 3, complete: false), body: Array("de".utf8))
        XCTAssertEqual(v6.status, 201)
        let v9 = client.send(.PATCH, path, headers: appendHeaders(9, offset: 5, complete: true), body: Array("f".utf8))
        XCTAssertEqual(v9.status, 201)
        XCTAssertEqual(store.storedBytes(id(path)), Array("abcdef".utf8))
        XCTAssertEqual(client.send(.HEAD, path, headers: draftHeaders(3)).header("Upload-Incomplete"), "?0")
    }

    func testAnUnservedVersionOnHEADHasNoBody() {  // D3
        let response = client.send(.HEAD, "/files/abc", headers: ["Upload-Draft-Interop-Version": "2"])
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(response.response?.body, [])
    }

    func testRepeatedDraftFieldsAreRefused() {
        var headers = appendHeaders(6, offset: 0, complete: false)
        headers.add("Upload-Offset", "5")
        let creation = client.send(.POST, "/files/", headers: draftHeaders(6, [("Upload-Complete", "?0")]))
        let response = client.send(.PATCH, path(of: creation), headers: headers, body: [1])
        XCTAssertEqual(response.status, 400)
        XCTAssertEqual(offset(path(of: creation)), nil, "tus HEAD needs Tus-Resumable; checked below")
        XCTAssertEqual(client.send(.HEAD, path(of: creation), headers: draftHeaders(6)).header("Upload-Offset"), "0")
    }
}
