import Synchronization
import TusCrypto
import TusCore
import TusHTTP1
import TusHTTPServer
import TusTestSupport
import XCTest

/// A handler that reads every body and answers with what it saw, so tests can check framing end to end.
/// `writeDelayMilliseconds` simulates a slow disk: each fragment's `done` is delayed, which exercises
/// backpressure.
final class EchoHandler: HTTPRequestHandler {
    struct Stats: Sendable {
        var maxOutstanding = 0
        var fragments = 0
        var aborted: [BodyAbortReason] = []
        var bodyBytes = 0
    }
    let stats = Mutex(Stats())
    let writeDelayMilliseconds: UInt64
    /// Reject bodies over this size before reading them (to test 100-continue and closing).
    let rejectOver: Int64

    init(writeDelayMilliseconds: UInt64 = 0, rejectOver: Int64 = .max) {
        self.writeDelayMilliseconds = writeDelayMilliseconds
        self.rejectOver = rejectOver
    }

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        if let length = head.bodyFraming.knownLength, length > rejectOver {
            exchange.respond(HTTPResponse(status: .payloadTooLarge, text: "too large"))
            return
        }
        exchange.readBody(into: EchoSink(head: head, exchange: exchange, handler: self))
    }
}

final class EchoSink: HTTPBodySink {
    let head: RequestHead
    let exchange: any HTTPExchange
    let handler: EchoHandler
    var count = 0
    var checksum: UInt64 = 0
    var outstanding = 0

    init(head: RequestHead, exchange: any HTTPExchange, handler: EchoHandler) {
        self.head = head
        self.exchange = exchange
        self.handler = handler
    }

    func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
        count += fragment.count
        for byte in fragment.bytes { checksum = checksum &* 31 &+ UInt64(byte) }
        outstanding += 1
        let current = outstanding
        handler.stats.withLock {
            $0.maxOutstanding = max($0.maxOutstanding, current)
            $0.fragments += 1
            $0.bodyBytes += fragment.count
        }
        if handler.writeDelayMilliseconds > 0 {
            _ = exchange.executor.schedule(afterMilliseconds: handler.writeDelayMilliseconds) { [self] in
                outstanding -= 1
                done()
            }
        } else {
            outstanding -= 1
            done()
        }
    }

    func bodyEnd(trailers: HTTPHeaders) {
        let trailerText = trailers.map { "\($0.name)=\($0.value)" }.joined(separator: ";")
        let text = "\(head.method) \(head.target) bytes=\(count) sum=\(checksum) trailers=\(trailerText)"
        exchange.respond(HTTPResponse(status: .ok, text: text))
    }

    func bodyAborted(_ reason: BodyAbortReason) {
        handler.stats.withLock { $0.aborted.append(reason) }
    }
}

func rollingSum(_ bytes: [UInt8]) -> UInt64 {
    var sum: UInt64 = 0
    for byte in bytes { sum = sum &* 31 &+ UInt64(byte) }
    return sum
}

/// Starts a one-loop server (HTTPS with `tls`) on an ephemeral port and stops it (joining its thread) after the
/// test body.
func withServer(
    _ handler: any HTTPRequestHandler, configure: (inout HTTPServerConfiguration) -> Void = { _ in },
    tls: TLSContext? = nil, _ body: (HTTPServer) throws -> Void
) throws {
    var configuration = HTTPServerConfiguration()
    configuration.host = "127.0.0.1"
    configuration.port = 0
    configuration.loops = 1
    configuration.shutdownTimeoutMilliseconds = 1000
    configure(&configuration)
    let server = HTTPServer(configuration: configuration, handler: handler, tls: tls)
    try server.start()
    defer {
        server.shutdown()
        server.wait()
    }
    try body(server)
}
