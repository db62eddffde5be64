import TusHTTP1

/// Runs conformance requests through a handler with `FakeExchange`s: no sockets, no loop.
public struct HandlerConformanceTransport: ConformanceTransport {
    public let client: TusTestClient

    public init(client: TusTestClient) { self.client = client }

    public enum Failure: Error { case unknownMethod(String), responseCount(Int) }

    public func send(_ request: ConformanceRequest) throws -> ConformanceResponse { try send(request) { _ in } }

    /// `inspect` sees the exchange once the response is in (its informational responses, say).
    public func send(_ request: ConformanceRequest, inspect: (FakeExchange) -> Void) throws -> ConformanceResponse {
        guard let method = HTTPMethod(rawValue: request.method) else { throw Failure.unknownMethod(request.method) }
        var headers = HTTPHeaders()
        for (name, value) in request.headers { headers.add(name, value) }
        let exchange = client.send(
            method, request.target, headers: headers, body: request.body, chunked: request.chunked,
            includeDefaultHeaders: false, trailers: HTTPHeaders(request.trailers.map { (name: $0.0, value: $0.1) }))
        inspect(exchange)
        guard exchange.responses.count == 1, let response = exchange.response else {
            throw Failure.responseCount(exchange.responses.count)
        }
        return ConformanceResponse(
            status: response.status.code, headers: response.headers.map { ($0.name, $0.value) },
            body: exchange.streamedBody ?? response.body)
    }
}

/// Runs conformance requests over a real TCP connection (one per request) with exact bytes on the wire.
/// `Expect: 100-continue` is honoured like a careful client: the body goes out only after `100 Continue`.
public struct SocketConformanceTransport: ConformanceTransport {
    public let port: Int

    public init(port: Int) { self.port = port }

    /// The request's head and its body as framed on the wire.
    static func encode(_ request: ConformanceRequest) -> (head: String, body: [UInt8]) {
        var head = "\(request.method) \(request.target) HTTP/1.1\r\n"
        for (name, value) in request.headers { head += "\(name): \(value)\r\n" }
        var body = request.body
        if request.chunked {
            head += "Transfer-Encoding: chunked\r\n"
            body = Self.chunked(request.body, trailers: request.trailers)
        } else if !request.body.isEmpty, request.header("Content-Length") == nil {
            head += "Content-Length: \(request.body.count)\r\n"
        }
        head += "\r\n"
        return (head, body)
    }

    public func send(_ request: ConformanceRequest) throws -> ConformanceResponse {
        let client = try RawHTTPClient(port: port, timeoutSeconds: 5)
        let (head, body) = Self.encode(request)
        let isHead = request.method == "HEAD" || request.header("X-HTTP-Method-Override") == "HEAD"
        if request.header("Expect")?.lowercased() == "100-continue" {
            client.send(head)
            var response = try client.readResponse(forHead: isHead)
            if response.status == 100 {
                client.send(body)
                response = try client.readResponse(forHead: isHead)
            }
            return ConformanceResponse(status: response.status, headers: response.headers, body: response.body)
        }
        client.send(Array(head.utf8) + body)
        let response = try client.readResponse(forHead: isHead)
        return ConformanceResponse(status: response.status, headers: response.headers, body: response.body)
    }

    /// Two chunks (so the decoder sees a chunk boundary), then the last chunk and the trailer section.
    static func chunked(_ body: [UInt8], trailers: [(String, String)] = []) -> [UInt8] {
        var out: [UInt8] = []
        let half = body.count / 2
        for piece in [body[..<half], body[half...]] where !piece.isEmpty {
            out += Array((String(piece.count, radix: 16) + "\r\n").utf8) + piece + Array("\r\n".utf8)
        }
        let trailerSection = trailers.map { "\($0.0): \($0.1)\r\n" }.joined()
        return out + Array("0\r\n\(trailerSection)\r\n".utf8)
    }
}
