import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class ExpirationTests: TusTestCase {
    nonisolated(unsafe) static let imfFixdate = #/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$/#

    func testExpiresOnPostPatchHead() {  // E2, E3, E4, E8
        configure(TusConfiguration(expirationSeconds: 3600))
        let post = client.send(.POST, "/files/", headers: ["Upload-Length": "10"])
        XCTAssertEqual(post.header("Upload-Expires"), "Wed, 25 Jun 2014 17:00:00 GMT")
        let path = String(post.header("Location")!.dropFirst("http://tus.example".count))
        clock.advance(1800)
        let patch = client.patch(path, offset: 0, body: [1])
        XCTAssertEqual(patch.header("Upload-Expires"), "Wed, 25 Jun 2014 17:30:00 GMT", "sliding (E5)")
        XCTAssertEqual(head(path).header("Upload-Expires"), "Wed, 25 Jun 2014 17:30:00 GMT")
        XCTAssertNotNil(try? Self.imfFixdate.wholeMatch(in: patch.header("Upload-Expires")!))
    }

    func testExpiredUploadIsGone() {  // E6
        configure(TusConfiguration(expirationSeconds: 60))
        let path = createUpload(length: 10)
        clock.advance(59)
        XCTAssertEqual(head(path).status, 200)
        clock.advance(1)
        run(
            [
                Row(name: "head", method: .HEAD, status: 410),
                Row(name: "patch", method: .PATCH, headers: patchHeaders(offset: 0), body: [1], status: 410, readsBody: false),
                Row(name: "delete", method: .DELETE, status: 410),
                Row(name: "get", method: .GET, status: 410),
            ], path: path)
    }

    func testFinishedUploadsNeverExpire() {  // E7
        configure(TusConfiguration(expirationSeconds: 60))
        let path = createUpload(length: 2)
        let patch = client.patch(path, offset: 0, body: [1, 2])
        XCTAssertNil(patch.header("Upload-Expires"))
        clock.advance(1_000_000)
        XCTAssertEqual(head(path).status, 200)
        XCTAssertEqual(store.listExpired(now: clock.now), [])
    }

    func testSweepRemovesExpiredButNotLockedUploads() {
        configure(TusConfiguration(expirationSeconds: 60))
        let idle = createUpload(length: 10)
        let busy = createUpload(length: 10)
        let inFlight = client.start(.PATCH, busy, headers: patchHeaders(offset: 0), framing: .contentLength(5))
        XCTAssertTrue(inFlight.isReadingBody)
        clock.advance(61)
        let fresh = createUpload(length: 10)
        var removed: [String]?
        handler.sweepExpired(executor: client.executor) { removed = $0 }
        XCTAssertEqual(removed, [String(idle.dropFirst(7))])
        XCTAssertEqual(store.lookup(String(idle.dropFirst(7))), .gone)
        XCTAssertEqual(head(idle).status, 410)
        XCTAssertEqual(head(fresh).status, 200)
        inFlight.deliver([1, 2, 3, 4, 5])
        inFlight.endBody()
        XCTAssertEqual(inFlight.status, 204, "commit moved the expiry")
        XCTAssertEqual(head(busy).status, 200)
    }

    func testExpirationDisabled() {  // E1
        configure(TusConfiguration(expirationSeconds: 0))
        let post = client.send(.POST, "/files/", headers: ["Upload-Length": "10"])
        XCTAssertNil(post.header("Upload-Expires"))
        let path = String(post.header("Location")!.dropFirst("http://tus.example".count))
        clock.advance(100_000_000)
        XCTAssertEqual(head(path).status, 200)
        XCTAssertNil(head(path).header("Upload-Expires"))
    }
}
