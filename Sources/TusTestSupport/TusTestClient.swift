public import TusHTTP1

/// Sends whole requests through a handler with `FakeExchange`s: the table-driven tests' "request → status
/// and headers" step, without sockets.
public final class TusTestClient {
    public let handler: any HTTPRequestHandler
    public let executor: ManualExecutor
    public var defaultHeaders: HTTPHeaders = ["Host": "tus.example", "Tus-Resumable": "1.0.0"]

    public init(handler: any HTTPRequestHandler, executor: ManualExecutor = ManualExecutor()) {
        self.handler = handler
        self.executor = executor
    }

    /// Starts a request and returns its exchange without delivering any body (for interleaving tests).
    public func start(
        _ method: HTTPMethod, _ target: String, headers: HTTPHeaders = [:], framing: BodyFraming = .none,
        isSecure: Bool = false, includeDefaultHeaders: Bool = true
    ) -> FakeExchange {
        // `headers` replace defaults of the same name but keep their own repeats: repeated fields are test input.
        var all = HTTPHeaders()
        if includeDefaultHeaders {
            for (name, value) in defaultHeaders where !headers.contains(name) { all.add(name, value) }
        }
        for (name, value) in headers { all.add(name, value) }
        let head = RequestHead(
            method: method, target: target, headers: all, bodyFraming: framing,
            expectsContinue: all["Expect"]?.lowercased() == "100-continue")
        let exchange = FakeExchange(head: head, executor: executor, isSecure: isSecure)
        handler.handle(head, exchange: exchange)
        executor.runPending()
        return exchange
    }

    /// Sends a complete request: head, then (if the handler reads it) the body in `fragmentSize` pieces, then
    /// the end. `chunked` frames the body without a Content-Length.
    @discardableResult
    public func send(
        _ method: HTTPMethod, _ target: String, headers: HTTPHeaders = [:], body: [UInt8] = [],
        chunked: Bool = false, fragmentSize: Int? = nil, isSecure: Bool = false, includeDefaultHeaders: Bool = true,
        trailers: HTTPHeaders = [:]
    ) -> FakeExchange {
        let framing: BodyFraming = chunked ? .chunked : (body.isEmpty ? .none : .contentLength(Int64(body.count)))
        let exchange = start(
            method, target, headers: headers, framing: framing, isSecure: isSecure,
            includeDefaultHeaders: includeDefaultHeaders)
        if exchange.isReadingBody {
            exchange.deliver(body, fragmentSize: fragmentSize)
            executor.runPending()
            exchange.endBody(trailers: trailers)
        }
        executor.runPending()
        return exchange
    }

    /// POSTs a creation request and returns the upload's path (from `Location`).
    public func create(length: Int64?, metadata: String? = nil, headers: HTTPHeaders = [:]) -> String? {
        var all = headers
        if let length { all.set("Upload-Length", String(length)) } else { all.set("Upload-Defer-Length", "1") }
        if let metadata { all.set("Upload-Metadata", metadata) }
        let exchange = send(.POST, "/files/", headers: all)
        guard exchange.status == 201, let location = exchange.header("Location") else { return nil }
        // Absolute URL → its path (everything from the first "/" after "://").
        guard let scheme = location.firstRange(of: "://") else { return location }
        let afterScheme = location[scheme.upperBound...]
        return afterScheme.firstIndex(of: "/").map { String(afterScheme[$0...]) } ?? location
    }

    /// PATCHes `body` at `offset`.
    @discardableResult
    public func patch(
        _ path: String, offset: Int64, body: [UInt8], headers: HTTPHeaders = [:], chunked: Bool = false,
        fragmentSize: Int? = nil, trailers: HTTPHeaders = [:]
    ) -> FakeExchange {
        var all: HTTPHeaders = ["Content-Type": "application/offset+octet-stream", "Upload-Offset": String(offset)]
        for (name, value) in headers { all.set(name, value) }
        return send(
            .PATCH, path, headers: all, body: body, chunked: chunked, fragmentSize: fragmentSize, trailers: trailers)
    }
}
