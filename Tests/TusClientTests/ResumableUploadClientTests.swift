import Glibc
import TusHTTP1
import TusHTTPServer
import XCTest

@testable import TusClient

/// The draft client (TusClient+ResumableUpload, Uploader+ResumableUpload) against FakeResumableUploadHandler on a
/// real HTTPServer, with CuttingProxy for connections that break mid-body.
final class ResumableUploadClientTests: XCTestCase {
    var handler: FakeResumableUploadHandler!
    var server: InProcessTusServer!
    var client: TusClient!
    var directory: String!
    var proxies: [CuttingProxy] = []

    override func setUpWithError() throws {
        handler = FakeResumableUploadHandler(sendsProgress: true)
        server = try InProcessTusServer(handler: handler)
        var configuration = TusClient.Configuration()
        configuration.timeoutSeconds = 5
        client = try TusClient(configuration: configuration)
        directory = makeTemporaryDirectory()
    }

    override func tearDown() {
        client?.shutdown()
        for proxy in proxies { proxy.stop() }
        server?.stop()
        if let directory { removeTree(directory) }
    }

    private func id(of url: TusURL) -> String { String(url.path.split(separator: "/").last!) }

    private func proxiedEndpoint(cutAfter: Int, cutConnections: Int = 1) throws -> TusURL {
        let proxy = CuttingProxy(upstreamPort: server.endpoint.port, cutAfter: cutAfter, cutConnections: cutConnections)
        proxies.append(proxy)
        return try TusURL(string: "http://127.0.0.1:\(proxy.port)/files/")
    }

    func testCreationAppendOffsetAndCancelForEveryInteropVersion() throws {
        let path = directory + "/data.bin"
        let bytes = writeRandomFile(path, size: 120_000)
        for version in ResumableUploadDraft.supportedVersions {
            let draft = try XCTUnwrap(ResumableUploadDraft(version))
            let announced = LocationLog()
            let creation = try client.createResumableUpload(
                at: server.endpoint, draft: draft, body: FileRange(path: path, offset: 0, length: 50_000),
                complete: false, length: 120_000, onLocation: { announced.append($0) })
            XCTAssertEqual(announced.values, [creation.state.url], "v\(version): the 104's Location")
            XCTAssertEqual(creation.informationalCount, 2, "v\(version): the announcing 104 and a progress 104")
            XCTAssertEqual(creation.state.offset, 50_000)
            XCTAssertFalse(creation.state.isComplete)

            let state = try client.resumableUploadState(creation.state.url, draft: draft)
            XCTAssertEqual(state.offset, 50_000)
            XCTAssertFalse(state.isComplete, "v\(version)")

            let done = try client.appendResumableUpload(
                creation.state.url, draft: draft, offset: 50_000,
                range: FileRange(path: path, offset: 50_000, length: 70_000),
                complete: true)
            XCTAssertEqual(done.offset, 120_000)
            XCTAssertTrue(done.isComplete, "v\(version)")
            XCTAssertEqual(handler.upload(id(of: creation.state.url))?.bytes, bytes)
            XCTAssertTrue(try client.resumableUploadState(creation.state.url, draft: draft).isComplete)

            // What each version's requests carried.
            let post = try XCTUnwrap(handler.requests.last { $0.method == .POST })
            let patch = try XCTUnwrap(handler.requests.last { $0.method == .PATCH })
            XCTAssertEqual(post.headers["Upload-Draft-Interop-Version"], String(version))
            if version == 3 {
                XCTAssertEqual(post.headers["Upload-Incomplete"], "?1")
                XCTAssertEqual(patch.headers["Upload-Incomplete"], "?0")
                XCTAssertNil(patch.headers["Upload-Complete"])
            } else {
                XCTAssertEqual(post.headers["Upload-Complete"], "?0")
                XCTAssertEqual(patch.headers["Upload-Complete"], "?1")
                XCTAssertNil(patch.headers["Upload-Incomplete"])
            }
            XCTAssertEqual(post.headers["Upload-Length"], version >= 6 ? "120000" : nil, "v\(version)")
            XCTAssertEqual(patch.headers["Content-Type"], version >= 6 ? "application/partial-upload" : nil)
            XCTAssertEqual(patch.headers["Upload-Offset"], "50000")

            try client.cancelResumableUpload(creation.state.url, draft: draft)
            XCTAssertThrowsError(try client.resumableUploadState(creation.state.url, draft: draft)) { error in
                guard case TusClientError.server(404, _) = error else { return XCTFail("\(error)") }
            }
        }
    }

    func testOffsetMismatchIsARetryableConflict() throws {
        let path = directory + "/data.bin"
        _ = writeRandomFile(path, size: 1000)
        let creation = try client.createResumableUpload(at: server.endpoint, body: nil, complete: false, length: 1000)
        XCTAssertEqual(creation.state.offset, 0)
        XCTAssertThrowsError(
            try client.appendResumableUpload(
                creation.state.url, offset: 10, range: FileRange(path: path, offset: 10, length: 990), complete: true)
        ) { error in
            guard case TusClientError.server(409, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue((error as! TusClientError).isRetryable)
        }
        XCTAssertEqual(try client.resumableUploadState(creation.state.url).offset, 0)
    }

    func testCreationCutMidBodyStillTellsTheLocationAndTheUploadResumesByteExact() throws {
        let path = directory + "/data.bin"
        let bytes = writeRandomFile(path, size: 400_000)
        let endpoint = try proxiedEndpoint(cutAfter: 150_000)
        let announced = LocationLog()
        XCTAssertThrowsError(
            try client.createResumableUpload(
                at: endpoint, body: FileRange(path: path, offset: 0, length: 400_000), complete: true, length: 400_000,
                onLocation: { announced.append($0) })
        ) { error in
            guard case TusClientError.network = error else { return XCTFail("\(error)") }
        }
        let url = try XCTUnwrap(announced.values.first, "the 104 came before the cut")
        let state = try client.resumableUploadState(url)
        XCTAssertGreaterThan(state.offset, 0)
        XCTAssertLessThan(state.offset, 150_000, "the cut request's head counts in the 150000 bytes")
        XCTAssertFalse(state.isComplete)
        let done = try client.appendResumableUpload(
            url, offset: state.offset,
            range: FileRange(path: path, offset: state.offset, length: 400_000 - state.offset),
            complete: true)
        XCTAssertTrue(done.isComplete)
        XCTAssertEqual(handler.upload(id(of: url))?.bytes, bytes)
    }

    func testUploaderRetriesACutCreationByAppendingFromTheServersOffset() throws {
        let path = directory + "/data.bin"
        let bytes = writeRandomFile(path, size: 300_000)
        for version in [3, 5, 6, 9] {
            let endpoint = try proxiedEndpoint(cutAfter: 100_000)
            var options = UploadOptions()
            options.uploadProtocol = .ietf(ResumableUploadDraft(version)!)
            options.cacheDirectory = directory + "/cache-\(version)"
            options.retryDelayMilliseconds = 10
            let uploader = Uploader(client: client, options: options)
            let messages = MessageLog()
            uploader.onMessage = { messages.append($0) }
            let url = try uploader.upload(file: path, to: endpoint)
            XCTAssertEqual(handler.upload(id(of: url))?.bytes, bytes, "v\(version)")
            XCTAssertTrue(handler.upload(id(of: url))?.isComplete ?? false)
            XCTAssertTrue(messages.values.contains { $0.contains("announced by 104") }, "\(messages.values)")
            XCTAssertTrue(messages.values.contains { $0.contains("retry 1/") }, "\(messages.values)")
            let patch = try XCTUnwrap(handler.requests.last)
            XCTAssertEqual(patch.method, .PATCH, "resumed by an append, not a second creation")
            let creations = handler.requests.filter { $0.method == .POST }.count
            XCTAssertEqual(creations, [3, 5, 6, 9].firstIndex(of: version)! + 1)
            let post = try XCTUnwrap(handler.requests.last { $0.method == .POST })
            XCTAssertEqual(post.headers["Content-Disposition"], "inline; filename=\"data.bin\"")
            XCTAssertEqual(post.headers["Content-Type"], "application/octet-stream")
        }
    }

    func testARunThatDiedMidCreationIsResumedByTheNextRun() throws {
        let path = directory + "/data.bin"
        let bytes = writeRandomFile(path, size: 250_000)
        let endpoint = try proxiedEndpoint(cutAfter: 80_000)
        var options = UploadOptions()
        options.uploadProtocol = .ietf(.latest)
        options.cacheDirectory = directory + "/cache"
        options.retries = 0
        XCTAssertThrowsError(try Uploader(client: client, options: options).upload(file: path, to: endpoint)) {
            error in
            guard case TusClientError.network = error else { return XCTFail("\(error)") }
        }
        let key = try Uploader.fingerprint(path: path, size: 250_000, endpoint: endpoint, protocolName: "ietf")
        let remembered = try XCTUnwrap(ResumeStore(directory: options.cacheDirectory!).lookup(key), "104 remembered")

        let second = Uploader(client: client, options: options)
        let messages = MessageLog()
        second.onMessage = { messages.append($0) }
        let url = try second.upload(file: path, to: endpoint)
        XCTAssertEqual(url.description, remembered, "the same upload is continued")
        XCTAssertTrue(messages.values.contains { $0.hasPrefix("resuming \(url) at byte ") }, "\(messages.values)")
        XCTAssertEqual(handler.upload(id(of: url))?.bytes, bytes)
        XCTAssertNil(ResumeStore(directory: options.cacheDirectory!).lookup(key), "a finished upload is forgotten")
        XCTAssertNotEqual(
            key, try Uploader.fingerprint(path: path, size: 250_000, endpoint: endpoint), "tus records stay apart")
    }

    func testChunkedUploadAndAnEmptyFile() throws {
        let path = directory + "/notes.txt"
        let bytes = writeRandomFile(path, size: 70_000)
        var options = UploadOptions()
        options.uploadProtocol = .ietf(ResumableUploadDraft(8)!)
        options.chunkSize = 30_000
        options.cacheDirectory = directory + "/cache"
        let url = try Uploader(client: client, options: options).upload(file: path, to: server.endpoint)
        XCTAssertEqual(handler.upload(id(of: url))?.bytes, bytes)
        let recent = handler.requests.suffix(3)
        XCTAssertEqual(recent.map(\.method), [.POST, .PATCH, .PATCH])
        XCTAssertEqual(recent.map { $0.headers["Upload-Complete"] }, ["?0", "?0", "?1"])
        XCTAssertEqual(recent.first?.headers["Content-Type"], "text/plain")

        let empty = directory + "/empty.bin"
        _ = writeRandomFile(empty, size: 0)
        let emptyURL = try Uploader(client: client, options: options).upload(file: empty, to: server.endpoint)
        XCTAssertEqual(handler.upload(id(of: emptyURL))?.isComplete, true)
        XCTAssertEqual(handler.requests.last?.headers["Upload-Complete"], "?1")
    }

    func testContentDispositionQuotesPlainNamesAndEncodesOthers() {
        XCTAssertEqual(Uploader.contentDisposition(filename: "a b.txt"), "inline; filename=\"a b.txt\"")
        XCTAssertEqual(Uploader.contentDisposition(filename: "ä\".txt"), "inline; filename*=UTF-8''%C3%A4%22.txt")
    }

    func testStructuredFieldItems() {
        XCTAssertEqual(StructuredField.nonNegativeInteger("05"), 5)
        for bad in ["-1", "1.5", "\"5\"", "abc", "", "1234567890123456"] {
            XCTAssertNil(StructuredField.nonNegativeInteger(bad), bad)
        }
        XCTAssertEqual(StructuredField.boolean("?1"), true)
        XCTAssertEqual(StructuredField.boolean("?0"), false)
        XCTAssertNil(StructuredField.boolean("true"))
        XCTAssertEqual(ResumableUploadDraft(3)!.isComplete(["Upload-Incomplete": "?1"]), false)
        XCTAssertEqual(ResumableUploadDraft(3)!.isComplete([:]), true)
        XCTAssertNil(ResumableUploadDraft(9)!.isComplete([:]))
        XCTAssertNil(ResumableUploadDraft(2))
        XCTAssertNil(ResumableUploadDraft(10))
    }
}

final class LocationLog: @unchecked Sendable {
    private let lock = NSLockLike()
    private var storage: [TusURL] = []
    func append(_ url: TusURL) { lock.run { storage.append(url) } }
    var values: [TusURL] { lock.run { storage } }
}

/// pthread mutex without Foundation's NSLock (the module imports Glibc only).
final class NSLockLike: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    func run<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}

final class InformationalResponseHeadTests: XCTestCase {
    /// Two 104s and the final response in one byte stream, split at every point: each head comes out whole, in
    /// order, and the consumed counts add up to where the final head ends.
    func testInterimHeadsThenTheFinalOneAtEverySplitPoint() {
        let text =
            "HTTP/1.1 104 Upload Resumption Supported\r\nLocation: /files/a\r\nUpload-Draft-Interop-Version: 9\r\n\r\n"
            + "HTTP/1.1 104 Upload Resumption Supported\r\nUpload-Offset: 7\r\n\r\n"
            + "HTTP/1.1 201 Created\r\nLocation: /files/a\r\nContent-Length: 0\r\n\r\n"
        let bytes = Array(text.utf8)
        for split in 0...bytes.count {
            var parser = ResponseHeadParser()
            var heads: [HTTPResponseHead] = []
            var position = 0
            for end in [split, bytes.count] where position < end {
                // Feed [position, end) until it is used up, restarting the parser after each head.
                while position < end {
                    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: end - position, alignment: 1)
                    defer { copy.deallocate() }
                    copy.copyBytes(from: bytes[position..<end])
                    switch parser.parse(UnsafeRawBufferPointer(copy)) {
                    case .needMoreData: position = end
                    case .head(let head, let consumed):
                        heads.append(head)
                        position += consumed
                        parser = ResponseHeadParser()
                    case .failure(let message): return XCTFail(message)
                    }
                }
            }
            XCTAssertEqual(heads.map(\.status.code), [104, 104, 201], "split \(split)")
            XCTAssertEqual(heads.map(\.isInformational), [true, true, false])
            XCTAssertEqual(heads.first?.headers["Location"], "/files/a")
            XCTAssertEqual(heads.dropFirst().first?.headers["Upload-Offset"], "7")
        }
    }
}
