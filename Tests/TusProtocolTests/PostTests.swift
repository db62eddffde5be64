import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

final class PostTests: TusTestCase {
    func testCreationTable() {  // CR2, CR4, CR6, C8, D3, D4, C2
        configure(TusConfiguration(maxSize: 1000))
        run([
            Row(
                name: "create", method: .POST, path: "/files/", headers: ["Upload-Length": "100"], status: 201,
                expectHeaders: ["Tus-Resumable": "1.0.0", "Upload-Offset": nil]),
            Row(name: "no slash", method: .POST, path: "/files", headers: ["Upload-Length": "1"], status: 201),
            Row(name: "no length", method: .POST, path: "/files/", status: 400),
            Row(name: "negative", method: .POST, path: "/files/", headers: ["Upload-Length": "-1"], status: 400),
            Row(name: "plus", method: .POST, path: "/files/", headers: ["Upload-Length": "+5"], status: 400),
            Row(name: "space", method: .POST, path: "/files/", headers: ["Upload-Length": " 5"], status: 400),
            Row(name: "exponent", method: .POST, path: "/files/", headers: ["Upload-Length": "1e3"], status: 400),
            Row(name: "text", method: .POST, path: "/files/", headers: ["Upload-Length": "abc"], status: 400),
            Row(
                name: "overflow", method: .POST, path: "/files/", headers: ["Upload-Length": "99999999999999999999"],
                status: 400),
            Row(name: "empty", method: .POST, path: "/files/", headers: ["Upload-Length": ""], status: 400),
            Row(name: "over max", method: .POST, path: "/files/", headers: ["Upload-Length": "1001"], status: 413),
            Row(name: "at max", method: .POST, path: "/files/", headers: ["Upload-Length": "1000"], status: 201),
            Row(
                name: "wrong version", method: .POST, path: "/files/",
                headers: ["Upload-Length": "1", "Tus-Resumable": "0.2.2"], status: 412,
                expectHeaders: ["Tus-Version": "1.0.0"]),
            Row(name: "POST to upload URL", method: .POST, path: "/files/abc", headers: ["Upload-Length": "1"], status: 405),
            Row(name: "outside base", method: .POST, path: "/uploads/", headers: ["Upload-Length": "1"], status: 404),
            Row(
                name: "partial upload", method: .POST, path: "/files/",
                headers: ["Upload-Concat": "partial", "Upload-Length": "5"], status: 201),
            Row(name: "PUT", method: .PUT, path: "/files/", headers: ["Upload-Length": "1"], status: 405),
        ])
    }

    func testWrongVersionCreatesNothing() {  // C2
        let exchange = client.send(.POST, "/files/", headers: ["Upload-Length": "5", "Tus-Resumable": "0.2.2"])
        XCTAssertEqual(exchange.status, 412)
        XCTAssertEqual(store.listExpired(now: .max), [])
    }

    func testLocationIsAbsoluteAndIDsDiffer() {  // CR2, CR12
        let first = client.send(.POST, "/files/", headers: ["Upload-Length": "1"])
        let second = client.send(.POST, "/files/", headers: ["Upload-Length": "1"])
        let a = first.header("Location") ?? "", b = second.header("Location") ?? ""
        XCTAssertTrue(a.hasPrefix("http://tus.example/files/"), a)
        XCTAssertEqual(a.count, "http://tus.example/files/".count + 32)
        XCTAssertNotEqual(a, b)
        let secure = client.send(.POST, "/files/", headers: ["Upload-Length": "1"], isSecure: true)
        XCTAssertTrue(secure.header("Location")!.hasPrefix("https://tus.example/files/"))
    }

    func testRelativeLocationAndProxyHeaders() {  // CR13
        let proxied: HTTPHeaders = ["Upload-Length": "1", "X-Forwarded-Host": "a.example", "X-Forwarded-Proto": "https"]
        XCTAssertTrue(client.send(.POST, "/files/", headers: proxied).header("Location")!.hasPrefix("http://tus.example/"))
        configure(TusConfiguration(behindProxy: true))
        XCTAssertTrue(client.send(.POST, "/files/", headers: proxied).header("Location")!.hasPrefix("https://a.example/files/"))
        let forwarded = client.send(
            .POST, "/files/", headers: ["Upload-Length": "1", "Forwarded": "for=1.2.3.4;host=b.example;proto=https"])
        XCTAssertTrue(forwarded.header("Location")!.hasPrefix("https://b.example/files/"))
        let hostile = client.send(.POST, "/files/", headers: ["Upload-Length": "1", "X-Forwarded-Host": "a\r\nX: y"])
        XCTAssertTrue(hostile.header("Location")!.hasPrefix("/files/"), "unsafe host falls back to a relative URL")
        configure(TusConfiguration(relativeLocation: true))
        let relative = client.send(.POST, "/files/", headers: ["Upload-Length": "1"]).header("Location")!
        XCTAssertTrue(relative.hasPrefix("/files/") && relative.count == 7 + 32, relative)
    }

    func testEmptyUploadIsCompleteAtOnce() {  // CR5
        let path = createUpload(length: 0)
        let head = head(path)
        XCTAssertEqual(head.header("Upload-Offset"), "0")
        XCTAssertEqual(head.header("Upload-Length"), "0")
        XCTAssertNil(head.header("Upload-Expires"))
    }

    func testCreationWithUpload() {  // W2, W8
        let exchange = client.send(
            .POST, "/files/", headers: ["Upload-Length": "100", "Content-Type": "application/offset+octet-stream"],
            body: Array("hello"))
        XCTAssertEqual(exchange.status, 201)
        XCTAssertEqual(exchange.header("Upload-Offset"), "5")
        XCTAssertNotNil(exchange.header("Upload-Expires"))
        let path = String(exchange.header("Location")!.dropFirst("http://tus.example".count))
        XCTAssertEqual(offset(path), 5)
    }

    func testCreationWithUploadChunkedAndSplit() {  // W2 with chunked framing
        let exchange = client.send(
            .POST, "/files/", headers: ["Upload-Length": "11", "Content-Type": "application/offset+octet-stream"],
            body: Array("hello world"), chunked: true, fragmentSize: 2)
        XCTAssertEqual(exchange.status, 201)
        XCTAssertEqual(exchange.header("Upload-Offset"), "11")
    }

    func testCreationBodyInterrupted() {  // W3
        let exchange = client.start(
            .POST, "/files/", headers: ["Upload-Length": "100", "Content-Type": "application/offset+octet-stream"],
            framing: .contentLength(10))
        exchange.deliver([1, 2, 3])
        exchange.abortBody(.clientClosed)
        client.executor.runPending()
        XCTAssertEqual(exchange.responses.count, 1)
        let location = exchange.header("Location")!
        XCTAssertEqual(offset(String(location.dropFirst("http://tus.example".count))), 3)
    }

    func testBodyWithOtherContentTypeIsIgnored() {  // W4
        let exchange = client.send(
            .POST, "/files/", headers: ["Upload-Length": "100", "Content-Type": "text/plain"], body: Array("hello"))
        XCTAssertEqual(exchange.status, 201)
        XCTAssertFalse(exchange.didReadBody)
        XCTAssertNil(exchange.header("Upload-Offset"))
    }

    func testRejectionsDoNotReadTheBody() {  // W5, W6
        configure(TusConfiguration(maxSize: 10))
        let base: HTTPHeaders = ["Content-Type": "application/offset+octet-stream", "Expect": "100-continue"]
        var tooLong = base
        tooLong.set("Upload-Length", "3")
        let overLength = client.send(.POST, "/files/", headers: tooLong, body: Array("hello"))
        check(overLength, Row(name: "body > length", method: .POST, status: 413, readsBody: false))
        XCTAssertTrue(overLength.response!.closeConnection)
        var overMax = base
        overMax.set("Upload-Length", "11")
        check(client.send(.POST, "/files/", headers: overMax, body: [1]), Row(name: "max", method: .POST, status: 413, readsBody: false))
        var badVersion = base
        badVersion.set("Upload-Length", "5")
        badVersion.set("Tus-Resumable", "0.1")
        check(client.send(.POST, "/files/", headers: badVersion, body: [1]), Row(name: "412", method: .POST, status: 412, readsBody: false))
        XCTAssertEqual(store.listExpired(now: .max), [], "no upload was created")
    }

    func testChunkedCreationBodyOverLength() {  // W6, chunked
        let exchange = client.send(
            .POST, "/files/", headers: ["Upload-Length": "3", "Content-Type": "application/offset+octet-stream"],
            body: Array("hello"), chunked: true, fragmentSize: 2)
        XCTAssertEqual(exchange.status, 413)
        let path = String(exchange.header("Location")!.dropFirst("http://tus.example".count))
        XCTAssertEqual(offset(path), 3, "bytes up to the length are kept")
    }

    func testCreationWithUploadChecksum() {  // W7
        let good = client.send(
            .POST, "/files/",
            headers: [
                "Upload-Length": "11", "Content-Type": "application/offset+octet-stream",
                "Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
            ], body: Array("hello world"))
        XCTAssertEqual(good.status, 201)
        XCTAssertEqual(good.header("Upload-Offset"), "11")
        let bad = client.send(
            .POST, "/files/",
            headers: [
                "Upload-Length": "11", "Content-Type": "application/offset+octet-stream",
                "Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
            ], body: Array("hello worlD"))
        XCTAssertEqual(bad.status, 460)
        let path = String(bad.header("Location")!.dropFirst("http://tus.example".count))
        XCTAssertEqual(offset(path), 0)
        let unknown = client.send(
            .POST, "/files/",
            headers: ["Upload-Length": "11", "Content-Type": "application/offset+octet-stream", "Upload-Checksum": "foo AAAA"],
            body: Array("hello world"))
        XCTAssertEqual(unknown.status, 400)
        XCTAssertFalse(unknown.didReadBody)
    }

    func testMethodOverrideIgnoresRealMethod() {  // C9: "the actual method MUST be ignored"
        let exchange = client.send(.PATCH, "/files/", headers: ["X-HTTP-Method-Override": "POST", "Upload-Length": "4"])
        XCTAssertEqual(exchange.status, 201)
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["X-HTTP-Method-Override": "FROB"]).status, 405)
    }
}
