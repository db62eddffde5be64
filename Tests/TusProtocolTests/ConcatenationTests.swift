import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// concatenation, concatenation-unfinished and checksum-trailer beyond the conformance table: what hooks will read
/// (N18), expiry of partials, stores without the capability, and trailers split across fragments.
final class ConcatenationTests: TusTestCase {
    func createPartial(length: Int64?, bytes: [UInt8] = []) -> String {
        let path = client.create(length: length, headers: ["Upload-Concat": "partial"]) ?? "/files/missing"
        if !bytes.isEmpty { XCTAssertEqual(client.patch(path, offset: 0, body: bytes).status, 204) }
        return path
    }

    func createFinal(_ list: String, headers: HTTPHeaders = [:]) -> FakeExchange {
        var all = headers
        all.set("Upload-Concat", "final;" + list)
        return client.send(.POST, "/files/", headers: all)
    }

    func id(_ path: String) -> String { String(path.split(separator: "/").last!) }

    func location(_ exchange: FakeExchange) -> String {
        ConformanceRunner.path(of: exchange.header("Location") ?? "")
    }

    func testRecordsTellPartialsAndFinalsApart() {  // N18: a hook payload's IsPartial, IsFinal, PartialUploads
        let a = createPartial(length: 2, bytes: [1, 2])
        let b = createPartial(length: 1)
        let plain = createUpload(length: 1)
        let final = createFinal("\(a) \(b) \(a)")
        XCTAssertEqual(final.status, 201)
        guard case .found(let partial) = store.lookup(id(a)), case .found(let finalInfo) = store.lookup(id(location(final))),
            case .found(let plainInfo) = store.lookup(id(plain))
        else { return XCTFail("records missing") }
        XCTAssertTrue(partial.isPartial)
        XCTAssertFalse(partial.isFinal)
        XCTAssertEqual(partial.concat, "partial")
        XCTAssertTrue(finalInfo.isFinal)
        XCTAssertFalse(finalInfo.isPartial)
        XCTAssertEqual(finalInfo.partialIDs, [id(a), id(b), id(a)], "list order, repeats kept")
        XCTAssertEqual(finalInfo.concat, "final;\(a) \(b) \(a)")
        XCTAssertEqual(finalInfo.length, 5, "all partial lengths known: the sum")
        XCTAssertFalse(finalInfo.isComplete, "b is not complete")
        XCTAssertNotNil(finalInfo.expiresAt, "an unfinished final expires like any unfinished upload")
        XCTAssertFalse(plainInfo.isPartial || plainInfo.isFinal)
        XCTAssertNil(plainInfo.concat)
    }

    func testFinalCompletesWhenTheLastPartialFinishes() {  // N11
        let a = createPartial(length: 3, bytes: [1, 2, 3])
        let b = createPartial(length: 2)
        let final = location(createFinal("\(a) \(b)"))
        XCTAssertNil(head(final).header("Upload-Offset"))
        XCTAssertEqual(client.patch(b, offset: 0, body: [4]).status, 204)
        XCTAssertNil(head(final).header("Upload-Offset"), "one byte still missing")
        XCTAssertEqual(client.patch(b, offset: 1, body: [5]).status, 204)
        guard case .found(let after) = store.lookup(id(final)) else { return XCTFail() }
        XCTAssertTrue(after.isComplete, "the PATCH that completed the last partial assembled the final; nobody looked")
        XCTAssertEqual(store.storedBytes(id(final)), [1, 2, 3, 4, 5])
        XCTAssertEqual(locker.heldIDs, [], "the assembling lock is released")
        let seen = head(final)
        XCTAssertEqual(seen.header("Upload-Offset"), "5")
        XCTAssertEqual(seen.header("Upload-Length"), "5")
    }

    /// A final whose partials completed while its assembly could not run (a crash in between, a store failure) is
    /// assembled by the next look.
    func testALookAssemblesAFinalNobodyAssembled() {
        let a = createPartial(length: 1, bytes: [7])
        guard case .found(let partial) = store.lookup(id(a)) else { return XCTFail() }
        let final = UploadInfo(id: "f0", length: 1, createdAt: 0, concat: "final;\(a)", partialIDs: [partial.id])
        client.executor.runPending()
        var created: Result<UploadInfo, StoreError>?
        store.create(final, on: client.executor) { created = $0 }
        XCTAssertNotNil(try created?.get())
        XCTAssertEqual(head("/files/f0").header("Upload-Offset"), "1")
        XCTAssertEqual(client.send(.GET, "/files/f0").streamedBody, [7])
    }

    func testExpiredPartials() {
        configure(TusConfiguration(expirationSeconds: 60))
        let done = createPartial(length: 1, bytes: [9])
        let open = createPartial(length: 2)
        let final = location(createFinal("\(done) \(open)"))
        clock.advance(61)
        XCTAssertEqual(head(final).status, 410, "the unfinished final needs an expired partial")
        XCTAssertEqual(client.send(.GET, final).status, 410)
        XCTAssertEqual(createFinal("\(open)").status, 410, "a new final cannot use it either")
        XCTAssertEqual(createFinal("\(done)").status, 201, "a complete partial never expires")
    }

    /// An unfinished final carries its own expiry (creation + `--expiration`), shown as the later of that and its
    /// partials' (progress on a partial is progress on the final). Once a partial is gone the final answers 410, and
    /// the sweep removes it like any expired upload.
    func testUnfinishedFinalExpires() {
        configure(TusConfiguration(expirationSeconds: 60))
        let done = createPartial(length: 1, bytes: [9])
        let open = createPartial(length: 2)
        let created = createFinal("\(done) \(open)")
        XCTAssertEqual(created.status, 201)
        XCTAssertEqual(created.header("Upload-Expires"), "Wed, 25 Jun 2014 16:01:00 GMT")
        let final = location(created)
        XCTAssertEqual(head(final).header("Upload-Expires"), "Wed, 25 Jun 2014 16:01:00 GMT")
        XCTAssertNil(head(final).header("Upload-Offset"))

        clock.advance(50)
        XCTAssertEqual(client.patch(open, offset: 0, body: [1]).status, 204)
        XCTAssertEqual(head(final).header("Upload-Expires"), "Wed, 25 Jun 2014 16:01:50 GMT", "follows its partials")

        clock.advance(20)  // past the final's own expiry, not its partial's
        XCTAssertEqual(head(final).status, 200)
        var removed: [String]?
        handler.sweepExpired(executor: client.executor) { removed = $0 }
        XCTAssertEqual(removed, [])
        guard case .found(let kept) = store.lookup(id(final)) else { return XCTFail("the sweep removed a live final") }
        XCTAssertEqual(kept.expiresAt, clock.now + 40, "moved to its partial's expiry so the next sweeps skip it")
        XCTAssertEqual(head(final).header("Upload-Expires"), "Wed, 25 Jun 2014 16:01:50 GMT")

        clock.advance(41)  // the open partial expired: the final can never complete
        XCTAssertEqual(head(final).status, 410)
        XCTAssertEqual(client.send(.GET, final).status, 410)
        handler.sweepExpired(executor: client.executor) { removed = $0 }
        XCTAssertEqual(removed.map(Set.init), Set([id(open), id(final)]))
        XCTAssertEqual(store.lookup(id(final)), .gone)
        XCTAssertEqual(head(final).status, 410)
        guard case .found(let complete) = store.lookup(id(done)) else { return XCTFail("a complete partial stays") }
        XCTAssertTrue(complete.isComplete)
    }

    /// A terminated partial makes the final answer 410 at once; the final itself goes at its own expiry.
    func testFinalOfATerminatedPartialIsSweptAtItsExpiry() {
        configure(TusConfiguration(expirationSeconds: 60))
        let open = createPartial(length: 2)
        let final = location(createFinal(open))
        XCTAssertEqual(client.send(.DELETE, open).status, 204)
        XCTAssertEqual(head(final).status, 410)
        XCTAssertEqual(client.patch(final, offset: 0, body: [1]).status, 403, "PATCH on a final is 403 (spec MUST)")
        var removed: [String]?
        handler.sweepExpired(executor: client.executor) { removed = $0 }
        XCTAssertEqual(removed, [], "not before its own expiry")
        clock.advance(60)
        handler.sweepExpired(executor: client.executor) { removed = $0 }
        XCTAssertEqual(removed, [id(final)])
        XCTAssertEqual(store.lookup(id(final)), .gone)
        XCTAssertEqual(client.patch(final, offset: 0, body: [1]).status, 410)
    }

    /// Completing the last partial completes the final, which then never expires (like a finished upload).
    func testCompletedFinalLosesItsExpiry() {
        configure(TusConfiguration(expirationSeconds: 60))
        let open = createPartial(length: 2)
        let final = location(createFinal(open))
        XCTAssertEqual(client.patch(open, offset: 0, body: [1, 2]).status, 204)
        guard case .found(let complete) = store.lookup(id(final)) else { return XCTFail() }
        XCTAssertTrue(complete.isComplete)
        XCTAssertNil(complete.expiresAt)
        XCTAssertNil(head(final).header("Upload-Expires"))
        clock.advance(1_000_000)
        XCTAssertEqual(store.listExpired(now: clock.now), [])
        XCTAssertEqual(head(final).header("Upload-Offset"), "2")
        let already = createPartial(length: 1, bytes: [3])
        let assembledAtOnce = createFinal(already)
        XCTAssertEqual(assembledAtOnce.status, 201)
        XCTAssertNil(assembledAtOnce.header("Upload-Expires"), "complete on creation: no expiry")
    }

    /// A final that is due while its partials are all complete (the assembly after the last PATCH was cut short) is
    /// assembled by the sweep, not removed.
    func testSweepAssemblesADueFinalWhosePartialsAreComplete() {
        configure(TusConfiguration(expirationSeconds: 60))
        let a = createPartial(length: 1, bytes: [7])
        client.executor.runPending()
        let final = UploadInfo(
            id: "f0", length: 1, createdAt: 0, expiresAt: clock.now - 1, concat: "final;\(a)", partialIDs: [id(a)])
        var created: Result<UploadInfo, StoreError>?
        store.create(final, on: client.executor) { created = $0 }
        XCTAssertNotNil(try created?.get())
        var removed: [String]?
        handler.sweepExpired(executor: client.executor) { removed = $0 }
        XCTAssertEqual(removed, [])
        guard case .found(let assembled) = store.lookup("f0") else { return XCTFail("removed") }
        XCTAssertTrue(assembled.isComplete)
        XCTAssertNil(assembled.expiresAt)
        XCTAssertEqual(client.send(.GET, "/files/f0").streamedBody, [7])
    }

    func testWithoutTheCapability() {  // N19-style: a store that cannot concatenate says so
        configure(store: MemoryUploadStore(capabilities: [.termination, .discardableWrites, .download]))
        let options = client.send(.OPTIONS, "/files/")
        XCTAssertFalse(options.header("Tus-Extension")!.contains("concatenation"))
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Concat": "partial", "Upload-Length": "1"]).status, 501)
    }

    func testPartialsBehaveLikeUploads() {  // N3
        let partial = createPartial(length: 4)
        run(
            [
                Row(name: "patch", method: .PATCH, headers: patchHeaders(offset: 0), body: [1, 2], status: 204),
                Row(name: "head", method: .HEAD, status: 200, expectHeaders: ["Upload-Offset": "2", "Upload-Concat": "partial"]),
                Row(name: "wrong offset", method: .PATCH, headers: patchHeaders(offset: 0), body: [3], status: 409),
            ], path: partial)
    }

    func testFinalCreationRejects() {  // N7, N9, N15, N16
        let partial = createPartial(length: 1, bytes: [1])
        let plain = createUpload(length: 1)
        run([
            Row(name: "length", method: .POST, path: "/files/", headers: ["Upload-Concat": "final;\(partial)", "Upload-Length": "1"], status: 400),
            Row(
                name: "body", method: .POST, path: "/files/",
                headers: ["Upload-Concat": "final;\(partial)", "Content-Type": "application/offset+octet-stream"], body: [1],
                status: 403, readsBody: false),
            Row(name: "empty list", method: .POST, path: "/files/", headers: ["Upload-Concat": "final;"], status: 400),
            Row(name: "relative without slash", method: .POST, path: "/files/", headers: ["Upload-Concat": "final;\(id(partial))"], status: 400),
            Row(name: "not partial", method: .POST, path: "/files/", headers: ["Upload-Concat": "final;\(plain)"], status: 400),
            Row(name: "bad metadata", method: .POST, path: "/files/", headers: ["Upload-Concat": "final;\(partial)", "Upload-Metadata": "a !"], status: 400),
            Row(name: "partial with neither length", method: .POST, path: "/files/", headers: ["Upload-Concat": "partial"], status: 400),
        ])
        XCTAssertEqual(createFinal(partial).status, 201, "nothing above spoiled the partial")
    }

    func testDeferredPartialsOverTheMaximumFailTheFinal() {  // N17 when the lengths come late
        configure(TusConfiguration(maxSize: 10))
        let a = createPartial(length: nil)
        let b = createPartial(length: nil)
        let final = location(createFinal("\(a) \(b)"))
        XCTAssertEqual(client.patch(a, offset: 0, body: Array(repeating: 1, count: 6), headers: ["Upload-Length": "6"]).status, 204)
        XCTAssertEqual(client.patch(b, offset: 0, body: Array(repeating: 2, count: 6), headers: ["Upload-Length": "6"]).status, 204)
        XCTAssertEqual(head(final).status, 413)
    }

    func testChecksumTrailerAcrossFragments() {  // T2
        let path = createUpload(length: 11)
        let body = Array("hello world".utf8)
        let ok = client.patch(
            path, offset: 0, body: body, headers: ["Trailer": "Upload-Checksum"], chunked: true, fragmentSize: 3,
            trailers: ["Upload-Checksum": "md5 XrY7u+Ae7tCTyyK7j1rNww=="])
        XCTAssertEqual(ok.status, 204)
        XCTAssertEqual(ok.header("Upload-Offset"), "11")
    }

    func testChecksumHeaderWinsOverAnnouncedTrailer() {
        let path = createUpload(length: 11)
        let exchange = client.patch(
            path, offset: 0, body: Array("hello world".utf8),
            headers: ["Trailer": "Upload-Checksum", "Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="], chunked: true)
        XCTAssertEqual(exchange.status, 204, "verified by the header; no trailer needed")
    }

    func testInterruptedTrailerRequestIsDiscarded() {  // T3
        let path = createUpload(length: 11)
        let exchange = client.start(
            .PATCH, path, headers: patchHeaders(offset: 0, ["Trailer": "Upload-Checksum"]), framing: .chunked)
        exchange.deliver(Array("hello".utf8))
        exchange.abortBody(.clientClosed)
        client.executor.runPending()
        XCTAssertEqual(offset(path), 0, "bytes that could not be verified are discarded")
    }
}
