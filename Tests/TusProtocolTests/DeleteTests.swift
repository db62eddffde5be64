import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class DeleteTests: TusTestCase {
    func testTermination() {  // X2, X3, X4
        let path = createUpload(length: 10)
        XCTAssertEqual(client.patch(path, offset: 0, body: [1, 2]).status, 204)
        run(
            [
                Row(name: "delete", method: .DELETE, status: 204, expectHeaders: ["Tus-Resumable": "1.0.0"]),
                Row(name: "head after", method: .HEAD, status: 410),
                Row(name: "patch after", method: .PATCH, headers: patchHeaders(offset: 2), body: [1], status: 410),
                Row(name: "delete again", method: .DELETE, status: 410),
                Row(name: "unknown", method: .DELETE, path: "/files/unknown", status: 404),
                Row(name: "wrong version", method: .DELETE, path: "/files/unknown", headers: ["Tus-Resumable": "1"], status: 412),
            ], path: path)
        XCTAssertNil(store.storedBytes(String(path.dropFirst(7))))
    }

    func testCompletedUploadCanBeTerminated() {  // X2
        let path = createUpload(length: 1)
        XCTAssertEqual(client.patch(path, offset: 0, body: [1]).status, 204)
        XCTAssertEqual(client.send(.DELETE, path).status, 204)
    }

    func testMethodOverrideDelete() {  // X6
        let path = createUpload(length: 1)
        XCTAssertEqual(client.send(.POST, path, headers: ["X-HTTP-Method-Override": "DELETE"]).status, 204)
        XCTAssertEqual(head(path).status, 410)
    }

    func testTerminationDisabled() {  // X7
        configure(TusConfiguration(), store: MemoryUploadStore(capabilities: [.discardableWrites, .download]))
        let path = createUpload(length: 1)
        XCTAssertEqual(client.send(.DELETE, path).status, 405)
        XCTAssertEqual(head(path).status, 200)
    }

    /// `--disable-termination`: a store that can terminate, an operator who does not offer it. Answered as over
    /// a store without termination: 405 naming what is allowed, the extension gone, the upload untouched.
    func testTerminationWithheldByOperator() {
        var configuration = TusConfiguration()
        configuration.withheldCapabilities = [.termination]
        configure(configuration)
        let path = createUpload(length: 1)
        run(
            [
                Row(
                    name: "delete", method: .DELETE, status: 405,
                    expectHeaders: ["Allow": "HEAD, PATCH, GET, OPTIONS"]),
                Row(
                    name: "override", method: .POST, headers: ["X-HTTP-Method-Override": "DELETE"], status: 405,
                    expectHeaders: ["Allow": "HEAD, PATCH, GET, OPTIONS"]),
                Row(name: "still there", method: .HEAD, status: 200),
            ], path: path)
        let extensions = client.send(.OPTIONS, "/files/").header("Tus-Extension") ?? ""
        XCTAssertFalse(extensions.split(separator: ",").contains("termination"), extensions)
        XCTAssertTrue(extensions.split(separator: ",").contains("concatenation"), extensions)
    }

    func testDeleteTakesOverInFlightPatch() {  // X5
        let path = createUpload(length: 100)
        let patch = client.start(.PATCH, path, headers: patchHeaders(offset: 0), framing: .contentLength(100))
        patch.deliver([1, 2, 3])
        let delete = client.start(.DELETE, path)
        client.executor.runPending()
        XCTAssertEqual(patch.status, 400, "holder answered ERR_UPLOAD_INTERRUPTED")
        XCTAssertEqual(delete.status, 204)
        XCTAssertEqual(head(path).status, 410)
    }
}
