import Synchronization
import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// Unix seconds the tests control.
final class TestClock: Sendable {
    private let seconds: Atomic<Int64>
    init(_ start: Int64 = 1_403_712_000) { seconds = Atomic(start) }  // 2014-06-25 16:00:00 GMT
    var now: Int64 { seconds.load(ordering: .relaxed) }
    func advance(_ delta: Int64) { seconds.add(delta, ordering: .relaxed) }
}

/// One row of a table: a request and what the response must contain. `expectHeaders` values: a string =
/// exact value, nil = header must be absent.
struct Row {
    var name: String
    var method: HTTPMethod
    var path: String = "$U"
    var headers: HTTPHeaders = [:]
    var body: [UInt8] = []
    var chunked = false
    var status: Int
    var expectHeaders: [String: String?] = [:]
    /// nil = don't care.
    var readsBody: Bool?
}

class TusTestCase: XCTestCase {
    var clock = TestClock()
    var store = MemoryUploadStore()
    var locker = MemoryLocker()
    var handler: TusHandler!
    var client: TusTestClient!

    func configure(_ configuration: TusConfiguration = TusConfiguration(), store: MemoryUploadStore = MemoryUploadStore()) {
        self.store = store
        locker = MemoryLocker()
        let clock = clock
        handler = TusHandler(configuration: configuration, store: store, locker: locker, now: { clock.now })
        client = TusTestClient(handler: handler)
    }

    override func setUp() {
        super.setUp()
        clock = TestClock()
        configure()
    }

    /// Creates an upload and returns its path.
    func createUpload(length: Int64?, metadata: String? = nil, file: StaticString = #filePath, line: UInt = #line) -> String {
        guard let path = client.create(length: length, metadata: metadata) else {
            XCTFail("creation failed", file: file, line: line)
            return "/files/missing"
        }
        return path
    }

    func head(_ path: String) -> FakeExchange { client.send(.HEAD, path) }

    func offset(_ path: String) -> Int64? { head(path).header("Upload-Offset").flatMap { Int64($0) } }

    /// Runs each row against `path` (substituted for "$U"), asserting status, headers, body reading, and
    /// exactly one response.
    func run(_ rows: [Row], path: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
        for row in rows {
            let target = row.path.replacingOccurrences(of: "$U", with: path())
            let exchange = client.send(row.method, target, headers: row.headers, body: row.body, chunked: row.chunked)
            check(exchange, row, file: file, line: line)
        }
    }

    func check(_ exchange: FakeExchange, _ row: Row, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(exchange.responses.count, 1, "\(row.name): responses", file: file, line: line)
        XCTAssertEqual(exchange.status, row.status, "\(row.name): status", file: file, line: line)
        for (name, expected) in row.expectHeaders {
            XCTAssertEqual(exchange.header(name), expected, "\(row.name): header \(name)", file: file, line: line)
        }
        if let readsBody = row.readsBody {
            XCTAssertEqual(exchange.didReadBody, readsBody, "\(row.name): read body", file: file, line: line)
        }
        if (row.method == .HEAD || exchange.head.method == .HEAD), let response = exchange.response {
            XCTAssertTrue(response.body.isEmpty, "\(row.name): HEAD response has a body", file: file, line: line)
        }
    }

    static let offsetStream: HTTPHeaders = ["Content-Type": "application/offset+octet-stream"]

    func patchHeaders(offset: Int64, _ extra: HTTPHeaders = [:]) -> HTTPHeaders {
        var headers: HTTPHeaders = ["Content-Type": "application/offset+octet-stream", "Upload-Offset": String(offset)]
        for (name, value) in extra { headers.set(name, value) }
        return headers
    }
}

extension Array where Element == UInt8 {
    init(_ text: String) { self = Array(text.utf8) }
}
