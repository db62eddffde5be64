import Glibc
import TusHTTP1
import TusHTTPServer
import TusLoop
import TusProtocol
import XCTest

@testable import TusClient

/// A real HTTPServer with TusHandler + MemoryUploadStore on 127.0.0.1, port 0.
final class InProcessTusServer {
    let store = MemoryUploadStore()
    let server: HTTPServer
    let endpoint: TusURL

    init(handler: (any HTTPRequestHandler)? = nil) throws {
        var configuration = HTTPServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.loops = 1
        server = HTTPServer(configuration: configuration, handler: handler ?? TusHandler(store: store))
        try server.start()
        endpoint = try TusURL(string: "http://127.0.0.1:\(server.port)/files/")
    }

    func stop() {
        server.shutdown()
        server.wait()
    }
}

/// Answers everything with 200 and no tus headers: an ordinary web server.
final class PlainHandler: HTTPRequestHandler {
    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        exchange.respond(HTTPResponse(status: .ok, text: "hello"))
    }
}

func makeTemporaryDirectory() -> String {
    var template = Array("/tmp/tus-client-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return path
}

func writeRandomFile(_ path: String, size: Int, seed: UInt64 = 1) -> [UInt8] {
    var state = seed
    let bytes = (0..<size).map { _ -> UInt8 in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
    let file = fopen(path, "w")!
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    fclose(file)
    return bytes
}

func readFile(_ path: String) -> [UInt8]? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count <= 0 { break }
        result.append(contentsOf: buffer[0..<count])
    }
    return result
}

func removeTree(_ path: String) {
    guard path.hasPrefix("/tmp/tus-client-test-") else { return }
    _ = path.withCString { _ in system("rm -rf '\(path)'") }
}

final class TusClientTests: XCTestCase {
    var server: InProcessTusServer!
    var client: TusClient!
    var directory: String!

    override func setUpWithError() throws {
        server = try InProcessTusServer()
        var configuration = TusClient.Configuration()
        configuration.timeoutSeconds = 5
        client = try TusClient(configuration: configuration)
        directory = makeTemporaryDirectory()
    }

    override func tearDown() {
        client?.shutdown()
        server?.stop()
        if let directory { removeTree(directory) }
    }

    private func id(of url: TusURL) -> String { String(url.path.split(separator: "/").last!) }

    func testEveryVerbAgainstTheServer() throws {
        let capabilities = try client.options(server.endpoint)
        XCTAssertEqual(capabilities.versions, ["1.0.0"])
        XCTAssertTrue(capabilities.extensions.contains("creation"))
        XCTAssertTrue(capabilities.checksumAlgorithms.contains("sha256"))

        let path = directory + "/data.bin"
        let bytes = writeRandomFile(path, size: 300_000)
        let created = try client.create(
            at: server.endpoint, length: 300_000, metadata: [(key: "filename", value: "data.bin")])
        XCTAssertEqual(created.offset, 0)
        XCTAssertEqual(created.url.port, server.endpoint.port)

        var status = try client.head(created.url)
        XCTAssertEqual(status.offset, 0)
        XCTAssertEqual(status.length, 300_000)
        XCTAssertEqual(status.metadata, "filename ZGF0YS5iaW4=")

        let middle = try client.patch(
            created.url, offset: 0, range: FileRange(path: path, offset: 0, length: 100_000), checksum: .sha256)
        XCTAssertEqual(middle, 100_000)
        let end = try client.patch(
            created.url, offset: middle, range: FileRange(path: path, offset: middle, length: 200_000), checksum: .md5)
        XCTAssertEqual(end, 300_000)
        status = try client.head(created.url)
        XCTAssertEqual(status.offset, 300_000)
        XCTAssertEqual(server.store.storedBytes(id(of: created.url)), bytes)

        let downloaded = directory + "/downloaded.bin"
        XCTAssertEqual(try client.download(created.url, to: downloaded), 300_000)
        XCTAssertEqual(readFile(downloaded), bytes)

        try client.delete(created.url)
        XCTAssertThrowsError(try client.head(created.url)) { error in
            guard case TusClientError.server(let code, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue([404, 410].contains(code), "\(code)")
        }
    }

    func testWrongOffsetIsAServerErrorWithTheServersMessage() throws {
        let path = directory + "/data.bin"
        _ = writeRandomFile(path, size: 1000)
        let created = try client.create(at: server.endpoint, length: 1000)
        XCTAssertThrowsError(
            try client.patch(created.url, offset: 10, range: FileRange(path: path, offset: 10, length: 990))
        ) { error in
            guard case TusClientError.server(409, let message) = error else { return XCTFail("\(error)") }
            XCTAssertFalse(message.isEmpty)
            XCTAssertEqual((error as! TusClientError).exitCode, 3)
            XCTAssertTrue((error as! TusClientError).isRetryable)
        }
        // The connection was closed after the early answer; the next request must still work.
        XCTAssertEqual(try client.head(created.url).offset, 0)
    }

    func testCreationWithUploadAndDeferredLength() throws {
        let path = directory + "/data.bin"
        let bytes = writeRandomFile(path, size: 50_000)
        let created = try client.create(
            at: server.endpoint, length: nil, upload: FileRange(path: path, offset: 0, length: 20_000))
        XCTAssertEqual(created.offset, 20_000)
        XCTAssertNil(try client.head(created.url).length)
        let end = try client.patch(
            created.url, offset: 20_000, range: FileRange(path: path, offset: 20_000, length: 30_000),
            declareLength: 50_000)
        XCTAssertEqual(end, 50_000)
        XCTAssertEqual(server.store.storedBytes(id(of: created.url)), bytes)
    }

    func testUploaderSendsChunksWithChecksumsAndForgetsTheRecord() throws {
        let path = directory + "/photo.PNG"
        let bytes = writeRandomFile(path, size: 350_000)
        var options = UploadOptions()
        options.chunkSize = 100_000
        options.checksum = .sha1
        options.cacheDirectory = directory + "/cache"
        let uploader = Uploader(client: client, options: options)
        let progress = ProgressLog()
        uploader.onProgress = { progress.append($0.offset) }
        let url = try uploader.upload(file: path, to: server.endpoint)
        XCTAssertEqual(server.store.storedBytes(id(of: url)), bytes)
        XCTAssertEqual(progress.values.last, 350_000)
        let status = try client.head(url)
        XCTAssertEqual(status.metadata, "filename cGhvdG8uUE5H,filetype aW1hZ2UvcG5n")  // photo.PNG, image/png
        let store = ResumeStore(directory: options.cacheDirectory!)
        let key = try Uploader.fingerprint(path: path, size: 350_000, endpoint: server.endpoint)
        XCTAssertNil(store.lookup(key), "a finished upload is not remembered")
    }

    func testUploaderResumesARememberedUpload() throws {
        let path = directory + "/data.bin"
        let bytes = writeRandomFile(path, size: 200_000)
        // A previous run created the upload and got 70_000 bytes through before dying.
        let created = try client.create(at: server.endpoint, length: 200_000)
        _ = try client.patch(created.url, offset: 0, range: FileRange(path: path, offset: 0, length: 70_000))
        var options = UploadOptions()
        options.cacheDirectory = directory + "/cache"
        let key = try Uploader.fingerprint(path: path, size: 200_000, endpoint: server.endpoint)
        ResumeStore(directory: options.cacheDirectory!).remember(key, url: created.url.description)

        let uploader = Uploader(client: client, options: options)
        let messages = MessageLog()
        uploader.onMessage = { messages.append($0) }
        let url = try uploader.upload(file: path, to: server.endpoint)
        XCTAssertEqual(url, created.url, "the same upload is continued, no new one created")
        XCTAssertTrue(messages.values.contains { $0.contains("resuming") && $0.contains("70000") }, "\(messages.values)")
        XCTAssertEqual(server.store.storedBytes(id(of: url)), bytes)
    }

    func testAChangedFileGetsAnotherFingerprint() throws {
        let path = directory + "/data.bin"
        _ = writeRandomFile(path, size: 100_000, seed: 1)
        let before = try Uploader.fingerprint(path: path, size: 100_000, endpoint: server.endpoint)
        _ = writeRandomFile(path, size: 100_000, seed: 2)
        let after = try Uploader.fingerprint(path: path, size: 100_000, endpoint: server.endpoint)
        XCTAssertNotEqual(before, after)
    }

    func testAServerThatIsNotTusIsReported() throws {
        let plain = try InProcessTusServer(handler: PlainHandler())
        defer { plain.stop() }
        XCTAssertThrowsError(try client.options(plain.endpoint)) { error in
            guard case TusClientError.notTusServer = error else { return XCTFail("\(error)") }
            XCTAssertEqual((error as! TusClientError).exitCode, 3)
        }
    }

    func testAnUnreachableServerIsANetworkError() throws {
        let url = server.endpoint
        server.stop()
        server = nil
        XCTAssertThrowsError(try client.options(url)) { error in
            guard case TusClientError.network(let inner) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(inner.isTransient)
            XCTAssertEqual((error as! TusClientError).exitCode, 2)
        }
    }
}

final class ProgressLog: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var storage: [Int64] = []
    init() { pthread_mutex_init(&lock, nil) }
    func append(_ value: Int64) {
        pthread_mutex_lock(&lock)
        storage.append(value)
        pthread_mutex_unlock(&lock)
    }
    var values: [Int64] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return storage
    }
}

final class MessageLog: @unchecked Sendable {
    var values: [String] = []
    func append(_ value: String) { values.append(value) }
}

final class TusURLTests: XCTestCase {
    func testParsing() throws {
        let url = try TusURL(string: "https://Example.com/files/?a=b")
        XCTAssertTrue(url.isTLS)
        XCTAssertEqual(url.port, 443)
        XCTAssertEqual(url.path, "/files/?a=b")
        XCTAssertEqual(try TusURL(string: "http://[::1]:8080").path, "/")
        XCTAssertEqual(try TusURL(string: "http://[::1]:8080").host, "::1")
        for bad in ["ftp://x/", "http://", "http://host:99999/", "http://us@er:1/", "localhost:8080/files"] {
            XCTAssertThrowsError(try TusURL(string: bad), bad) { error in
                XCTAssertEqual((error as! TusClientError).exitCode, 1)
            }
        }
    }

    func testResolvingLocation() throws {
        let base = try TusURL(string: "http://127.0.0.1:1080/files/")
        XCTAssertEqual(try base.resolving("/files/abc").description, "http://127.0.0.1:1080/files/abc")
        XCTAssertEqual(try base.resolving("abc").description, "http://127.0.0.1:1080/files/abc")
        XCTAssertEqual(try base.resolving("http://other:9/x").description, "http://other:9/x")
    }

    func testMediaTypeGuess() {
        XCTAssertEqual(MediaType.guess(forFileName: "a.JPG"), "image/jpeg")
        XCTAssertEqual(MediaType.guess(forFileName: "noext"), "application/octet-stream")
    }
}

final class ResponseHeadParserTests: XCTestCase {
    let response = Array(
        "HTTP/1.1 204 No Content\r\nUpload-Offset: 42\r\nTus-Resumable:1.0.0 \r\nConnection: close\r\n\r\nNEXT".utf8)

    func testEverySplitPoint() {
        for split in 0...response.count {
            var parser = ResponseHeadParser()
            var consumedTotal = 0
            var head: HTTPResponseHead?
            for part in [Array(response[0..<split]), Array(response[split...])] {
                guard head == nil else { break }
                let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: part.count, alignment: 1)
                defer { copy.deallocate() }
                copy.copyBytes(from: part)
                switch parser.parse(UnsafeRawBufferPointer(copy)) {
                case .needMoreData: consumedTotal += part.count
                case .head(let parsed, let consumed):
                    head = parsed
                    consumedTotal += consumed
                case .failure(let message): XCTFail(message)
                }
            }
            XCTAssertEqual(head?.status.code, 204, "split \(split)")
            XCTAssertEqual(head?.headers["upload-offset"], "42")
            XCTAssertEqual(head?.headers["Tus-Resumable"], "1.0.0")
            XCTAssertEqual(head?.keepsAlive, false)
            XCTAssertEqual(consumedTotal, response.count - 4, "split \(split)")
        }
    }

    func testMalformedAndOversizedHeads() {
        for text in ["HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n"] {
            var parser = ResponseHeadParser()
            let bytes = Array(text.utf8)
            guard case .failure = bytes.withUnsafeBytes({ parser.parse($0) }) else { return XCTFail(text) }
        }
        var parser = ResponseHeadParser(maxHeadBytes: 100)
        let big = Array(("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 200)).utf8)
        guard case .failure = big.withUnsafeBytes({ parser.parse($0) }) else { return XCTFail("no limit") }
    }
}
