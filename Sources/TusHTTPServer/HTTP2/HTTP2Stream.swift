import TusCore
import TusHTTP1

/// One HTTP/2 stream: a request head being collected, then one `HTTPExchange`. Owned by its `HTTP2Connection`
/// (loop thread only); the connection drives every transition.
///
/// Body bytes are copied out of nghttp2's input into chunks of this stream (DATA frames of many streams are
/// interleaved in one read, so the HTTP/1.1 trick of handing out ranges of the read buffer would let one slow
/// stream pin buffers full of other streams' bytes). The stream's window is reopened only when a fragment's
/// `done` runs (`nghttp2_session_consume`), so the bytes held here never exceed the window.
final class HTTP2Stream {
    let id: Int32

    // MARK: Request head
    var method = ""
    var path = ""
    var authority: String?
    var headers = HTTPHeaders()
    var trailers = HTTPHeaders()
    var head: RequestHead?
    var exchange: HTTP2Exchange?

    // MARK: Lifecycle
    /// Body phase, request end, answer, close and scheduling marks; the connection acts on its answers.
    var lifecycle = HTTP2StreamStateMachine()
    var isClosed: Bool { lifecycle.isClosed }
    var hasResponded: Bool { lifecycle.hasResponded }
    var isRemoteEnded: Bool { lifecycle.isRemoteEnded }

    // MARK: Request body
    /// Where the body goes while `lifecycle.body` is `.reading`.
    var sink: (any HTTPBodySink)?
    /// Filled chunks not yet handed to the sink, in order.
    var queued: [BodyFragment] = []
    var current: ByteChunk?
    /// `current[deliveredEnd..<filledEnd]` holds bytes not yet handed out.
    var deliveredEnd = 0
    var filledEnd = 0
    var nextChunkCapacity = 16 * 1024
    /// Fragments handed to the sink whose `done` has not run; their bytes are still unconsumed.
    var outstandingFragments = 0

    // MARK: Response
    enum ResponseBody {
        case none
        case bytes([UInt8], sent: Int)
        case source(any HTTPBodySource, remaining: Int64)
    }
    var responseBody: ResponseBody = .none
    /// The piece of a streamed response being sent (`responseOffset` bytes of it are out).
    var responseFragment: BodyFragment?
    var responseOffset = 0

    init(id: Int32) {
        self.id = id
    }

    var bufferedByteCount: Int {
        queued.reduce(0) { $0 + $1.count } + (filledEnd - deliveredEnd)
    }

    /// Copies DATA payload into this stream's chunks. Chunks start small (16 KiB) and double up to `maxChunk`
    /// while the stream keeps sending, so a stream that sends a few bytes pins little and a big upload gets
    /// big writes.
    /// Chunks come from `pool` (the loop's) when given, so their pages stay mapped from one chunk to the next.
    func append(_ bytes: UnsafeRawBufferPointer, maxChunk: Int, pool: ByteChunkPool? = nil) {
        var offset = 0
        while offset < bytes.count {
            if current == nil || filledEnd == current!.capacity {
                if let current, filledEnd > deliveredEnd {
                    queued.append(BodyFragment(chunk: current, range: deliveredEnd..<filledEnd))
                } else if current != nil, isKnownUniquelyReferenced(&current) {
                    // Every fragment of it is done: start over at its beginning instead of allocating (a fresh
                    // 256 KiB chunk costs page faults each time, measured with perf on a large upload).
                    deliveredEnd = 0
                    filledEnd = 0
                    continue
                }
                let capacity = nextChunkCapacity
                nextChunkCapacity = min(maxChunk, capacity * 2)
                current = pool?.chunk(capacity: capacity) ?? ByteChunk(capacity: capacity)
                deliveredEnd = 0
                filledEnd = 0
            }
            let chunk = current!
            let count = min(bytes.count - offset, chunk.capacity - filledEnd)
            (chunk.base + filledEnd).copyMemory(from: bytes.baseAddress! + offset, byteCount: count)
            filledEnd += count
            offset += count
        }
    }

    /// The bytes of `current` not yet handed out, as a fragment (and marks them handed out).
    func takeCurrent() -> BodyFragment? {
        guard let current, filledEnd > deliveredEnd else { return nil }
        let fragment = BodyFragment(chunk: current, range: deliveredEnd..<filledEnd)
        deliveredEnd = filledEnd
        if filledEnd == current.capacity { self.current = nil }
        return fragment
    }

    /// Drops every byte not handed out; returns how many (to be consumed, so the windows reopen).
    func dropBuffered() -> Int {
        let count = bufferedByteCount
        queued = []
        current = nil
        deliveredEnd = 0
        filledEnd = 0
        return count
    }
}

/// The handler's view of one HTTP/2 stream. Calls after the stream ended (a late answer after a reset or a
/// lock takeover) are ignored, as on HTTP/1.1.
final class HTTP2Exchange: HTTPExchange {
    let head: RequestHead
    private weak var connection: HTTP2Connection?
    private let stream: HTTP2Stream

    let executor: any LoopExecutor
    let isSecure: Bool

    init(head: RequestHead, connection: HTTP2Connection, stream: HTTP2Stream) {
        self.head = head
        self.connection = connection
        self.stream = stream
        self.executor = connection.context.executor
        self.isSecure = connection.isSecure
    }

    func readBody(into sink: any HTTPBodySink) {
        guard let connection, !stream.isClosed, !stream.hasResponded else { return sink.bodyAborted(.clientClosed) }
        connection.streamReadBody(stream, into: sink)
    }

    func stopBody() {
        guard let connection, !stream.isClosed, !stream.hasResponded else { return }
        connection.streamStopBody(stream)
    }

    func respond(_ response: HTTPResponse) {
        guard let connection, !stream.hasResponded else { return }
        connection.streamRespond(stream, response, bodyLength: nil, source: nil)
    }

    func sendInformational(_ response: HTTPResponse) {
        guard let connection, response.status.isInterim else { return }
        connection.streamSendInformational(stream, response)
    }

    func respond(_ response: HTTPResponse, bodyLength: Int64, source: any HTTPBodySource) {
        guard let connection, !stream.hasResponded else { return source.cancel() }
        connection.streamRespond(stream, response, bodyLength: bodyLength, source: source)
    }
}
