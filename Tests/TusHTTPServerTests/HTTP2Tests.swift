import Glibc
import Synchronization
import TusCore
import TusCrypto
import TusHTTP1
import TusHTTPServer
import TusTestSupport
import XCTest

/// HTTP/2 over h2c with prior knowledge, driven by a frame-level client written here (no HTTP/2 library on the
/// client side, so the test sees exactly which frames and windows the server produces).
final class HTTP2Tests: XCTestCase {
    /// The issue's backpressure promise: a stream whose sink is slow does not let the client send beyond the
    /// window. The sink holds each fragment for 1.5 s; the client may send the initial 1 MiB and then must wait:
    /// no WINDOW_UPDATE for the stream arrives until fragments are done, and the sink never holds more than
    /// the window. Then the window reopens and the 4 MiB body completes.
    func testSlowSinkHoldsTheClientAtTheStreamWindow() throws {
        let handler = EchoHandler(writeDelayMilliseconds: 1500)
        try withServer(handler, configure: {
            $0.http2.cleartextPriorKnowledge = true
            $0.http2.initialStreamWindow = 1 << 20  // below the body, whatever the default
        }) { server in
            let client = try FrameClient(port: server.port)
            defer { client.close() }
            let body = patternBytes(count: 4 << 20)
            try client.sendHeaders(
                streamID: 1,
                fields: [
                    (":method", "PUT"), (":scheme", "http"), (":path", "/upload"), (":authority", "localhost"),
                    ("content-length", String(body.count)),
                ], endStream: false)
            var sent = 0
            let start = Date()
            // Phase 1: send what the windows allow for 0.7 s (the sink holds every fragment for 1.5 s).
            while Date().timeIntervalSince(start) < 0.7 {
                sent += try client.sendAllowed(streamID: 1, body: body, from: sent)
                try client.readFrames(timeout: 0.05)
            }
            let initialWindow = Int(client.serverInitialWindow)
            XCTAssertEqual(initialWindow, 1 << 20)
            XCTAssertEqual(client.streamWindowUpdates[1, default: 0], 0, "no WINDOW_UPDATE while the sink holds the bytes")
            XCTAssertEqual(sent, initialWindow, "the client could send exactly the stream window, no more")
            XCTAssertLessThanOrEqual(handler.stats.withLock { $0.bodyBytes }, initialWindow)
            // Phase 2: fragments complete, windows reopen, the body finishes.
            let deadline = Date().addingTimeInterval(60)
            while client.responseStatusByte[1] == nil && Date() < deadline {
                if sent < body.count {
                    sent += try client.sendAllowed(streamID: 1, body: body, from: sent)
                }
                try client.readFrames(timeout: 0.05)
            }
            XCTAssertEqual(client.resets[1], nil)
            XCTAssertEqual(client.responseStatusByte[1], 0x88, "200 (HPACK static index 8)")
            XCTAssertGreaterThan(client.streamWindowUpdates[1, default: 0], 0)
            let stats = handler.stats.withLock { $0 }
            XCTAssertEqual(stats.bodyBytes, body.count)
            XCTAssertEqual(stats.aborted, [])
        }
    }

    /// Request trailers (checksum-trailer's `Upload-Checksum`) reach the sink's `bodyEnd(trailers:)`, as after a
    /// chunked HTTP/1.1 body; the response is on the same stream.
    func testTrailersReachTheSink() throws {
        let handler = EchoHandler()
        try withServer(handler, configure: { $0.http2.cleartextPriorKnowledge = true }) { server in
            let client = try FrameClient(port: server.port)
            defer { client.close() }
            try client.sendHeaders(
                streamID: 1,
                fields: [(":method", "PATCH"), (":scheme", "http"), (":path", "/t"), (":authority", "localhost")],
                endStream: false)
            try client.sendData(streamID: 1, bytes: Array("hello".utf8), endStream: false)
            try client.sendHeaders(
                streamID: 1, fields: [("upload-checksum", "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=")], endStream: true)
            let deadline = Date().addingTimeInterval(10)
            while !client.ended.contains(1) && Date() < deadline { try client.readFrames(timeout: 0.05) }
            XCTAssertEqual(client.responseStatusByte[1], 0x88)
            let text = String(decoding: client.data[1, default: []], as: UTF8.self)
            XCTAssertEqual(
                text, "PATCH /t bytes=5 sum=\(rollingSum(Array("hello".utf8))) "
                    + "trailers=upload-checksum=sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=\n")
        }
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS (100), once acknowledged: a 101st open stream is refused with RST_STREAM
    /// REFUSED_STREAM (RFC 9113 §5.1.2; nghttp2 alone would end the connection with PROTOCOL_ERROR), and the 100 in
    /// flight finish. The server serves the next connection.
    func testStreamsBeyondTheConcurrencyLimitAreRefusedAndTheOthersFinish() throws {
        let handler = EchoHandler()
        try withServer(handler, configure: { $0.http2.cleartextPriorKnowledge = true }) { server in
            let client = try FrameClient(port: server.port)
            defer { client.close() }
            let deadline = Date().addingTimeInterval(20)
            while client.serverInitialWindow == 65_535 && Date() < deadline { try client.readFrames(timeout: 0.05) }
            for index in 0..<101 {
                try client.sendHeaders(
                    streamID: Int32(1 + 2 * index),
                    fields: [(":method", "PUT"), (":scheme", "http"), (":path", "/c"), (":authority", "localhost"),
                             ("content-length", "1")], endStream: false)
            }
            while client.resets[201] == nil && Date() < deadline { try? client.readFrames(timeout: 0.05) }
            XCTAssertEqual(client.resets[201], 0x7, "REFUSED_STREAM")
            XCTAssertNil(client.goAwayCode)
            for index in 0..<100 { try client.sendData(streamID: Int32(1 + 2 * index), bytes: [0x41], endStream: true) }
            while client.ended.count < 100 && Date() < deadline { try? client.readFrames(timeout: 0.05) }
            for index in 0..<100 { XCTAssertEqual(client.responseStatusByte[Int32(1 + 2 * index)], 0x88) }
            XCTAssertNil(client.goAwayCode)
            let next = try FrameClient(port: server.port)
            defer { next.close() }
            try next.sendHeaders(
                streamID: 1,
                fields: [(":method", "PUT"), (":scheme", "http"), (":path", "/n"), (":authority", "localhost"),
                         ("content-length", "1")], endStream: false)
            try next.sendData(streamID: 1, bytes: [0x41], endStream: true)
            while !next.ended.contains(1) && Date() < deadline { try next.readFrames(timeout: 0.05) }
            XCTAssertEqual(next.responseStatusByte[1], 0x88)
        }
    }

    /// A client that never acknowledges our SETTINGS gets GOAWAY SETTINGS_TIMEOUT (RFC 9113 §6.5.3) after the
    /// head timeout; an idle connection (no stream) gets GOAWAY NO_ERROR after the idle timeout. Both are then
    /// closed.
    func testSettingsAndIdleTimeoutsEndTheConnectionWithGoAway() throws {
        try withServer(EchoHandler(), configure: {
            $0.http2.cleartextPriorKnowledge = true
            $0.headTimeoutMilliseconds = 600
            $0.idleTimeoutMilliseconds = 60_000
        }) { server in
            let silent = try FrameClient(port: server.port, acknowledgesSettings: false)
            defer { silent.close() }
            let deadline = Date().addingTimeInterval(5)
            while silent.goAwayCode == nil && Date() < deadline { try? silent.readFrames(timeout: 0.05) }
            XCTAssertEqual(silent.goAwayCode, 0x4, "SETTINGS_TIMEOUT")
        }
        try withServer(EchoHandler(), configure: {
            $0.http2.cleartextPriorKnowledge = true
            $0.idleTimeoutMilliseconds = 700
        }) { server in
            let idle = try FrameClient(port: server.port)
            defer { idle.close() }
            let deadline = Date().addingTimeInterval(5)
            while idle.goAwayCode == nil && Date() < deadline { try? idle.readFrames(timeout: 0.05) }
            XCTAssertEqual(idle.goAwayCode, 0x0, "NO_ERROR")
        }
    }

    /// Memory per connection stays bounded however many streams are open: with every sink slow, what the sinks
    /// hold across 40 streams never exceeds the connection window (4 MiB), although the stream windows add up to
    /// 40 MiB.
    func testConnectionWindowBoundsBytesHeldAcrossManyStreams() throws {
        let handler = EchoHandler(writeDelayMilliseconds: 2000)
        try withServer(handler, configure: {
            $0.http2.cleartextPriorKnowledge = true
            $0.http2.initialStreamWindow = 1 << 20
            $0.http2.connectionWindow = 4 << 20
        }) { server in
            let client = try FrameClient(port: server.port)
            defer { client.close() }
            let body = patternBytes(count: 2 << 20)
            let streamIDs = (0..<40).map { Int32(1 + 2 * $0) }
            for id in streamIDs {
                try client.sendHeaders(
                    streamID: id,
                    fields: [
                        (":method", "PUT"), (":scheme", "http"), (":path", "/s\(id)"), (":authority", "localhost"),
                        ("content-length", String(body.count)),
                    ], endStream: false)
            }
            var sent = [Int32: Int]()
            let start = Date()
            while Date().timeIntervalSince(start) < 1.0 {
                for id in streamIDs {
                    sent[id, default: 0] += try client.sendAllowed(
                        streamID: id, body: body, from: sent[id, default: 0], limit: 64 * 1024)
                }
                try client.readFrames(timeout: 0.02)
            }
            let total = sent.values.reduce(0, +)
            XCTAssertLessThanOrEqual(total, 4 << 20, "the connection window caps what all streams together may send")
            XCTAssertGreaterThan(total, 3 << 20)
            XCTAssertLessThanOrEqual(handler.stats.withLock { $0.bodyBytes }, 4 << 20)
        }
    }

    /// `stopBody` on one stream (a hook's StopUpload: the handler cleans up, then answers): its sink hears nothing
    /// more, the stream's window never reopens (the client is held at one window, so it stops sending), while the
    /// bytes still arriving are handed back to the connection window: with a connection window no bigger than the
    /// stopped stream's, a second stream on the same connection still uploads 2 MiB. The late 400 ends the stopped
    /// stream and resets it with NO_ERROR (RFC 9113 §8.1: the request had not ended).
    func testStoppedBodyShutsItsStreamWindowAndOtherStreamsGoOn() throws {
        let handler = StopOnFirstFragment(answerAfterMilliseconds: 1500)
        try withServer(handler, configure: {
            $0.http2.cleartextPriorKnowledge = true
            $0.http2.initialStreamWindow = 1 << 20
            $0.http2.connectionWindow = 1 << 20
        }) { server in
            let client = try FrameClient(port: server.port)
            defer { client.close() }
            let stopped = patternBytes(count: 8 << 20)
            let other = patternBytes(count: 2 << 20)
            func put(_ id: Int32, _ path: String, _ length: Int) throws {
                try client.sendHeaders(
                    streamID: id,
                    fields: [
                        (":method", "PUT"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
                        ("content-length", String(length)),
                    ], endStream: false)
            }
            try put(1, "/stop", stopped.count)
            var sentStopped = 0
            var sentOther = 0
            let start = Date()
            let deadline = start.addingTimeInterval(30)
            while Date().timeIntervalSince(start) < 0.5 {
                sentStopped += try client.sendAllowed(streamID: 1, body: stopped, from: sentStopped)
                try client.readFrames(timeout: 0.02)
            }
            try put(3, "/other", other.count)
            while !(client.ended.contains(1) && client.ended.contains(3)) && Date() < deadline {
                if client.resets[1] == nil {
                    sentStopped += try client.sendAllowed(streamID: 1, body: stopped, from: sentStopped)
                }
                sentOther += try client.sendAllowed(streamID: 3, body: other, from: sentOther)
                try client.readFrames(timeout: 0.02)
            }
            // The reset follows the answer's last frame, perhaps in a later read.
            while client.resets[1] == nil && Date() < deadline { try client.readFrames(timeout: 0.02) }
            XCTAssertEqual(client.responseStatusByte[3], 0x88, "the other stream finished (200)")
            XCTAssertEqual(handler.otherBytes.value.withLock { $0 }, other.count)
            XCTAssertEqual(client.responseStatusByte[1], 0x8c, "the late answer (400, HPACK static index 12)")
            XCTAssertEqual(client.resets[1], 0, "RST_STREAM NO_ERROR after the response to an unfinished request")
            XCTAssertEqual(client.streamWindowUpdates[1, default: 0], 0, "no window for a stopped stream")
            XCTAssertEqual(sentStopped, 1 << 20, "the client could send one stream window, then had to stop")
            XCTAssertEqual(handler.heardAfterStop.value.withLock { $0 }, 0, "nothing reached the sink after stopBody")
            XCTAssertNil(client.goAwayCode)
        }
    }

    /// A handler that stops the body and then withholds its answer: the body timeout after the stop the stream is
    /// reset (INTERNAL_ERROR: the server failed it) and its slot is free again, so with one concurrent stream
    /// allowed the next request on the same connection is served; the connection stays.
    func testStoppedStreamNeverAnsweredIsResetAndFreesItsSlot() throws {
        let handler = StopOnFirstFragment(answerAfterMilliseconds: 3_000)  // after the test has its answer
        try withServer(handler, configure: {
            $0.http2.cleartextPriorKnowledge = true
            $0.http2.maxConcurrentStreams = 1
            $0.bodyTimeoutMilliseconds = 600
            $0.minBodyBytesPerSecond = 0
        }) { server in
            let client = try FrameClient(port: server.port)
            defer { client.close() }
            func put(_ id: Int32, _ path: String, _ length: Int) throws {
                try client.sendHeaders(
                    streamID: id,
                    fields: [
                        (":method", "PUT"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
                        ("content-length", String(length)),
                    ], endStream: false)
            }
            let stopped = patternBytes(count: 1 << 20)
            try put(1, "/stop", stopped.count)
            _ = try client.sendAllowed(streamID: 1, body: stopped, from: 0, limit: 64 * 1024)  // the request stays open
            let start = Date()
            while client.resets[1] == nil && Date().timeIntervalSince(start) < 10 {
                try client.readFrames(timeout: 0.05)
            }
            let waited = Date().timeIntervalSince(start)
            XCTAssertEqual(client.resets[1], 2, "RST_STREAM INTERNAL_ERROR")
            XCTAssertNil(client.responseStatusByte[1], "no answer came")
            XCTAssertGreaterThanOrEqual(waited, 0.5, "not before the body timeout")
            XCTAssertLessThan(waited, 2.5, "within the body timeout and one sweep (500 ms)")
            let other = patternBytes(count: 4096)
            try put(3, "/other", other.count)
            _ = try client.sendAllowed(streamID: 3, body: other, from: 0)
            let deadline = Date().addingTimeInterval(10)
            while !client.ended.contains(3) && client.resets[3] == nil && Date() < deadline {
                try client.readFrames(timeout: 0.05)
            }
            XCTAssertNil(client.resets[3], "not refused: the stopped stream's slot is free")
            XCTAssertEqual(client.responseStatusByte[3], 0x88, "200")
            XCTAssertNil(client.goAwayCode)
        }
    }

    // MARK: h2 over TLS: DATA payloads handed on without a copy

    private static let certificates: Result<TestCertificates, any Error> = Result { try TestCertificates.generate() }

    override class func tearDown() {
        if case .success(let certificates) = certificates { certificates.remove() }
    }

    private func tlsContexts() throws -> (server: TLSContext, client: TLSContext) {
        let files = try Self.certificates.get()
        return (
            try TLSContext.server(
                certificatePath: files.serverCertificate, keyPath: files.serverKey, mode: .tls12, offersHTTP2: true),
            try TLSContext.client(caFile: nil, insecure: true, applicationProtocols: ["h2"])
        )
    }

    /// One upload over h2 + TLS: each DATA payload is decrypted right after the previous one in the connection's
    /// receive chunk, so the sink gets ranges spanning many 16 KiB frames (a slow sink lets them grow), no payload
    /// byte is copied on the way (`copiedHTTP2BodyBytes`), and every byte arrives in order.
    func testOneTLSStreamReachesTheSinkInRangesOfManyFramesWithoutACopy() throws {
        let (serverTLS, clientTLS) = try tlsContexts()
        let handler = EchoHandler(writeDelayMilliseconds: 20)
        try withServer(handler, tls: serverTLS) { server in
            let client = try FrameClient(port: server.port, tls: clientTLS)
            defer { client.close() }
            // Not periodic: a frame out of place, or a frame header taken for payload, changes the sum.
            let body = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: ($0 &* 31) ^ ($0 >> 13)) }
            try putOnStreamOne(body, through: client, readTimeout: 0.02)
            XCTAssertEqual(
                String(decoding: client.data[1, default: []], as: UTF8.self),
                "PUT /upload bytes=\(body.count) sum=\(rollingSum(body)) trailers=\n")
            XCTAssertEqual(server.copiedHTTP2BodyBytes, 0, "payloads were copied")
            let fragments = handler.stats.withLock { $0.fragments }
            // 512 DATA frames of 16 KiB; one fragment per frame would be the old copy-free failure mode.
            XCTAssertLessThanOrEqual(fragments, body.count / (64 * 1024), "\(fragments) fragments")
        }
    }

    /// A DATA frame of 16 KiB straddles two TLS records (a record holds 16 KiB of plaintext, a frame 9 bytes more).
    /// The header after a payload is decrypted with the payload's end, into the receive chunk, and the next payload
    /// overwrites it: two pieces of plaintext (two `SSL_read`s, two `nghttp2_session_mem_recv`s) per frame, where
    /// reading each header on its own made three. Every byte still arrives, in order, without a copy.
    func testAFrameHeaderIsReadWithThePayloadBeforeIt() throws {
        let (serverTLS, clientTLS) = try tlsContexts()
        let handler = EchoHandler()
        try withServer(handler, tls: serverTLS) { server in
            let client = try FrameClient(port: server.port, tls: clientTLS)
            defer { client.close() }
            let body = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: ($0 &* 131) ^ ($0 >> 11)) }
            let piecesBefore = server.http2PlaintextPieces
            try putOnStreamOne(body, through: client)
            XCTAssertEqual(
                String(decoding: client.data[1, default: []], as: UTF8.self),
                "PUT /upload bytes=\(body.count) sum=\(rollingSum(body)) trailers=\n")
            XCTAssertEqual(server.copiedHTTP2BodyBytes, 0, "payloads were copied")
            let frames = body.count / 16_384
            let pieces = server.http2PlaintextPieces - piecesBefore
            // Three per frame with a read per header; a few more for the head, the window's pauses, the end.
            XCTAssertLessThanOrEqual(pieces, Int64(frames * 2 + frames / 4), "\(pieces) pieces for \(frames) frames")
        }
    }

    /// Whatever frame follows a DATA payload has its header read with the payload's end: another DATA frame of the
    /// stream (the next payload overwrites that header, the payloads stay contiguous), or trailers (a HEADERS frame,
    /// whose block goes to the side buffer). Odd-sized frames sent in one write put their boundaries anywhere in the
    /// TLS records; every byte arrives in order, and so do the trailers.
    func testFramesAfterAPayloadArriveIntactOverTLS() throws {
        let (serverTLS, clientTLS) = try tlsContexts()
        let handler = EchoHandler()
        try withServer(handler, tls: serverTLS) { server in
            let client = try FrameClient(port: server.port, tls: clientTLS)
            defer { client.close() }
            let sizes = [1, 16_384, 7, 9, 10_000, 16_383, 16_384, 832]
            let body = patternBytes(count: sizes.reduce(0, +))
            try client.sendBatch {
                try client.sendHeaders(
                    streamID: 1,
                    fields: [(":method", "PATCH"), (":scheme", "https"), (":path", "/t"), (":authority", "localhost")],
                    endStream: false)
                var offset = 0
                for size in sizes {
                    try client.sendData(streamID: 1, bytes: Array(body[offset..<(offset + size)]), endStream: false)
                    offset += size
                }
                try client.sendHeaders(streamID: 1, fields: [("upload-checksum", "sha1 x")], endStream: true)
            }
            let deadline = Date().addingTimeInterval(10)
            while !client.ended.contains(1) && Date() < deadline { try client.readFrames(timeout: 0.05) }
            XCTAssertEqual(client.responseStatusByte[1], 0x88)
            XCTAssertEqual(
                String(decoding: client.data[1, default: []], as: UTF8.self),
                "PATCH /t bytes=\(body.count) sum=\(rollingSum(body)) trailers=upload-checksum=sha1 x\n")
            XCTAssertEqual(server.copiedHTTP2BodyBytes, 0, "payloads were copied")
        }
    }

    /// Two streams' DATA frames interleaved, odd-sized and one of them padded, in one TLS write: each header after a
    /// payload lands in the receive chunk past that payload and the next payload overwrites it. A sink that reads
    /// its fragments only at the body's end (as the file writer does, later, on the threadpool) must still find
    /// exactly the bytes sent: nothing a stream was handed is overwritten by a later header or payload.
    func testHeldFragmentsOfInterleavedStreamsStayIntactOverTLS() throws {
        let (serverTLS, clientTLS) = try tlsContexts()
        let handler = ReadAtEndHandler()
        try withServer(handler, tls: serverTLS) { server in
            let client = try FrameClient(port: server.port, tls: clientTLS)
            defer { client.close() }
            let sizes = [5, 16_384, 9, 1, 12_345, 16_375, 3, 16_384, 100]
            let total = sizes.reduce(0, +)
            let bodies: [Int32: [UInt8]] = [
                1: patternBytes(count: total, seed: 1), 3: patternBytes(count: total, seed: 3),
            ]
            try client.sendBatch {
                for id: Int32 in [1, 3] {
                    try client.sendHeaders(
                        streamID: id,
                        fields: [(":method", "PATCH"), (":scheme", "https"), (":path", "/s\(id)"), (":authority", "h")],
                        endStream: false)
                }
                var offset = 0
                for (index, size) in sizes.enumerated() {
                    for id: Int32 in [1, 3] {
                        let piece = Array(bodies[id]![offset..<(offset + size)])
                        if index == 4 && id == 3 {
                            try client.sendPaddedData(streamID: id, bytes: piece, padding: 200)
                        } else {
                            try client.sendData(streamID: id, bytes: piece, endStream: false)
                        }
                    }
                    offset += size
                }
                for id: Int32 in [1, 3] { try client.sendData(streamID: id, bytes: [], endStream: true) }
            }
            let deadline = Date().addingTimeInterval(10)
            while !(client.ended.contains(1) && client.ended.contains(3)) && Date() < deadline {
                try client.readFrames(timeout: 0.05)
            }
            for id: Int32 in [1, 3] {
                XCTAssertEqual(client.responseStatusByte[id], 0x88, "stream \(id)")
                XCTAssertEqual(handler.bodies.withLock { $0["/s\(id)"] }, bodies[id], "stream \(id)")
            }
            XCTAssertEqual(server.copiedHTTP2BodyBytes, 0, "payloads were copied")
        }
    }

    /// PUTs `body` to /upload on stream 1 as fast as the windows allow (at most `batchLimit` bytes per batch, then
    /// `pause`), reading frames between batches, until the response came (60 s at most); asserts it is a 200.
    private func putOnStreamOne(
        _ body: [UInt8], through client: FrameClient, batchLimit: Int = .max, pause: TimeInterval = 0,
        readTimeout: TimeInterval = 0.001, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        try client.sendHeaders(
            streamID: 1,
            fields: [
                (":method", "PUT"), (":scheme", "https"), (":path", "/upload"), (":authority", "localhost"),
                ("content-length", String(body.count)),
            ], endStream: false)
        var sent = 0
        let deadline = Date().addingTimeInterval(60)
        while client.responseStatusByte[1] == nil && Date() < deadline {
            if sent < body.count {
                sent += try client.sendAllowed(streamID: 1, body: body, from: sent, limit: batchLimit, batched: true)
            }
            if pause > 0 { Thread.sleep(forTimeInterval: pause) }
            try client.readFrames(timeout: readTimeout)
        }
        XCTAssertEqual(client.responseStatusByte[1], 0x88, "200", file: file, line: line)
    }

    /// An idle sink on h2 + TLS gets a stream's bytes half a receive chunk at a time (as HTTP/1.1 over TLS does),
    /// not per socket read: with a sink that is done at once, per-read hand-over made one fragment per batch the
    /// client sent.
    func testAnIdleTLSSinkGetsCoalescedFragments() throws {
        let (serverTLS, clientTLS) = try tlsContexts()
        let handler = EchoHandler()
        try withServer(handler, tls: serverTLS) { server in
            let client = try FrameClient(port: server.port, tls: clientTLS)
            defer { client.close() }
            let body = patternBytes(count: 8 << 20)
            // Paced, so that each batch is one server read that finds the sink idle.
            try putOnStreamOne(body, through: client, batchLimit: 48 * 1024, pause: 0.005)
            XCTAssertEqual(
                String(decoding: client.data[1, default: []], as: UTF8.self),
                "PUT /upload bytes=\(body.count) sum=\(rollingSum(body)) trailers=\n")
            let fragments = handler.stats.withLock { $0.fragments }
            // 48 KiB batches, one per read: handed over per read, they would be 171 fragments.
            XCTAssertLessThanOrEqual(fragments, body.count / (128 * 1024), "\(fragments) fragments")
        }
    }

    /// Held bytes are not consumed, so a stream window smaller than half a receive chunk must not make the client
    /// wait for the deadline sweep (500 ms) each window: bytes go to the sink at once when the window is short.
    func testCoalescingNeverStallsAClientWithASmallWindow() throws {
        let (serverTLS, clientTLS) = try tlsContexts()
        let handler = EchoHandler()
        try withServer(handler, configure: {
            $0.http2.initialStreamWindow = 64 * 1024
        }, tls: serverTLS) { server in
            let client = try FrameClient(port: server.port, tls: clientTLS)
            defer { client.close() }
            let body = patternBytes(count: 2 << 20)
            let start = Date()
            try putOnStreamOne(body, through: client)
            // 32 windows: waiting for the sweep each time would take 5-16 s.
            XCTAssertLessThan(Date().timeIntervalSince(start), 4, "the client waited for held bytes")
        }
    }

    /// A stalled stream cannot make the connection pin receive chunks without bound: one byte of it among each
    /// chunk's worth of another stream's payload would pin every chunk. Past the budget (the connection window
    /// plus two chunks) payloads are copied instead, so the chunks the stalled sink holds stay within it, while
    /// the other stream completes.
    func testAStalledStreamAmongAFastOnePinsNoMoreThanTheBudgetOfReceiveChunks() throws {
        let (serverTLS, clientTLS) = try tlsContexts()
        let handler = HoldingHandler()
        let connectionWindow = 2 << 20
        try withServer(handler, configure: {
            $0.http2.initialStreamWindow = 1 << 20
            $0.http2.connectionWindow = Int32(connectionWindow)
        }, tls: serverTLS) { server in
            let client = try FrameClient(port: server.port, tls: clientTLS)
            defer { client.close() }
            // The receive chunk of a TLS connection (`LoopContext.bodyChunkSize(secure: true)`).
            let chunk = server.configuration.secureReadChunkSize
            let rounds = 3 * connectionWindow / chunk
            let fast = patternBytes(count: rounds * chunk)
            let stalled = patternBytes(count: rounds)
            for (id, length) in [(Int32(1), stalled.count), (Int32(3), fast.count)] {
                try client.sendHeaders(
                    streamID: id,
                    fields: [
                        (":method", "PUT"), (":scheme", "https"), (":path", id == 1 ? "/hold" : "/fast"),
                        (":authority", "localhost"), ("content-length", String(length)),
                    ], endStream: false)
            }
            var fastSent = 0
            let deadline = Date().addingTimeInterval(60)
            for round in 0..<rounds {
                XCTAssertEqual(try client.sendAllowed(streamID: 1, body: stalled, from: round, limit: 1), 1)
                let end = (round + 1) * chunk
                while fastSent < end && Date() < deadline {
                    fastSent += try client.sendAllowed(
                        streamID: 3, body: fast, from: fastSent, limit: end - fastSent, batched: true)
                    try client.readFrames(timeout: 0.01)
                }
            }
            while client.responseStatusByte[3] == nil && Date() < deadline { try client.readFrames(timeout: 0.02) }
            XCTAssertEqual(client.responseStatusByte[3], 0x88, "the fast stream completes")
            XCTAssertGreaterThan(server.copiedHTTP2BodyBytes, 0, "past the budget, payloads are copied")
            let pinned = handler.heldChunkBytes()
            XCTAssertLessThanOrEqual(
                pinned, connectionWindow + 2 * chunk + 64 * 1024, "chunks held by \(handler.heldCount()) fragments")
            XCTAssertEqual(handler.heldBytes(), rounds, "every byte of the stalled stream reached its sink")
        }
    }
}

/// On `/stop`: takes the first fragment, stops the body and answers 400 later (as the upload handler does after a
/// hook's StopUpload); counts what its sink hears after that. Any other path: reads the body and answers 200.
private final class StopOnFirstFragment: HTTPRequestHandler {
    final class Count: Sendable {
        let value = Mutex(0)
    }
    let heardAfterStop = Count()
    let otherBytes = Count()
    let answerAfterMilliseconds: UInt64

    init(answerAfterMilliseconds: UInt64) {
        self.answerAfterMilliseconds = answerAfterMilliseconds
    }

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        exchange.readBody(into: Sink(exchange, handler: self, stops: head.target == "/stop"))
    }

    private final class Sink: HTTPBodySink {
        let exchange: any HTTPExchange
        let handler: StopOnFirstFragment
        let stops: Bool
        var stopped = false

        init(_ exchange: any HTTPExchange, handler: StopOnFirstFragment, stops: Bool) {
            self.exchange = exchange
            self.handler = handler
            self.stops = stops
        }

        func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
            done()
            guard stops else { return handler.otherBytes.value.withLock { $0 += fragment.count } }
            guard !stopped else { return handler.heardAfterStop.value.withLock { $0 += 1 } }
            stopped = true
            exchange.stopBody()
            let exchange = exchange
            _ = exchange.executor.schedule(afterMilliseconds: handler.answerAfterMilliseconds) {
                exchange.respond(HTTPResponse(status: .badRequest, text: "stopped"))
            }
        }

        func bodyEnd(trailers: HTTPHeaders) {
            if stopped { return handler.heardAfterStop.value.withLock { $0 += 1 } }
            exchange.respond(HTTPResponse(status: .ok, text: "read"))
        }

        func bodyAborted(_ reason: BodyAbortReason) {
            if stopped { handler.heardAfterStop.value.withLock { $0 += 1 } }
        }
    }
}

/// On `/hold`: keeps every fragment (never calls `done`), so its chunks stay pinned; counts the distinct chunks they
/// hold. Any other path: reads the body and answers 200.
private final class HoldingHandler: HTTPRequestHandler, @unchecked Sendable {
    private let held = Mutex<[BodyFragment]>([])

    func heldChunkBytes() -> Int {
        held.withLock { fragments in
            var seen = Set<ObjectIdentifier>()
            return fragments.reduce(0) { total, fragment in
                total + (seen.insert(ObjectIdentifier(fragment.chunk)).inserted ? fragment.chunk.capacity : 0)
            }
        }
    }
    func heldCount() -> Int { held.withLock { $0.count } }
    func heldBytes() -> Int { held.withLock { $0.reduce(0) { $0 + $1.count } } }

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        exchange.readBody(into: Sink(exchange, handler: self, holds: head.target == "/hold"))
    }

    private final class Sink: HTTPBodySink {
        let exchange: any HTTPExchange
        let handler: HoldingHandler
        let holds: Bool

        init(_ exchange: any HTTPExchange, handler: HoldingHandler, holds: Bool) {
            self.exchange = exchange
            self.handler = handler
            self.holds = holds
        }

        func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
            guard holds else { return done() }
            handler.held.withLock { $0.append(fragment) }
        }

        func bodyEnd(trailers: HTTPHeaders) { exchange.respond(HTTPResponse(status: .ok, text: "read")) }
        func bodyAborted(_ reason: BodyAbortReason) {}
    }
}

/// A blocking h2c client that speaks just enough HTTP/2 for the tests: literal (never Huffman) header fields,
/// DATA within the server's windows, SETTINGS acknowledgement, and a record of WINDOW_UPDATEs and response heads.
/// Given a client `TLSContext` (ALPN "h2") it speaks h2 over TLS instead.
final class FrameClient {
    private let socket: Int32
    private let tls: TLSSession?
    /// Frames queued by `sendAllowed(..., batched: true)`, sent as one write (so the server reads many at once).
    private var batch: [UInt8]?
    private var input: [UInt8] = []
    private(set) var serverInitialWindow: Int64 = 65_535
    private var connectionWindow: Int64 = 65_535
    private var streamWindowDeltas: [Int32: Int64] = [:]
    private var streamSent: [Int32: Int64] = [:]
    private(set) var streamWindowUpdates: [Int32: Int] = [:]
    /// First byte of each response's header block (0x88 = ":status 200" from the HPACK static table).
    private(set) var responseStatusByte: [Int32: UInt8] = [:]
    private(set) var resets: [Int32: UInt32] = [:]
    private(set) var data: [Int32: [UInt8]] = [:]
    private(set) var ended: Set<Int32> = []
    private(set) var goAwayCode: UInt32?
    private let acknowledgesSettings: Bool

    init(port: Int, acknowledgesSettings: Bool = true, tls: TLSContext? = nil) throws {
        self.acknowledgesSettings = acknowledgesSettings
        self.tls = tls.map { TLSSession(context: $0) }
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else { throw POSIXError(.ECONNREFUSED) }
        if let session = self.tls {
            session.startHandshake()
            let deadline = Date().addingTimeInterval(10)
            while !session.isHandshakeComplete {
                try sendRaw(session.takeEncryptedOutput())
                guard Date() < deadline else { throw POSIXError(.ETIMEDOUT) }
                try receive(timeout: 0.05)
            }
            try sendRaw(session.takeEncryptedOutput())
            guard session.negotiatedALPN == "h2" else { throw POSIXError(.EPROTO) }
        }
        try send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8))
        try sendFrame(type: 0x4, flags: 0, streamID: 0, payload: [])
    }

    func close() { Glibc.close(socket) }

    /// Sends every frame `frames` queues as one write (one `SSL_write` on TLS: records then hold many frames).
    func sendBatch(_ frames: () throws -> Void) throws {
        batch = []
        defer { batch = nil }
        try frames()
        if let queued = batch {
            batch = nil
            try send(queued)
        }
    }

    private func send(_ bytes: [UInt8]) throws {
        guard let tls else { return try sendRaw(bytes) }
        try tls.writePlaintext(bytes)
        try sendRaw(tls.takeEncryptedOutput())
    }

    private func sendRaw(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            offset += n
        }
    }

    private func sendFrame(type: UInt8, flags: UInt8, streamID: Int32, payload: [UInt8]) throws {
        let length = payload.count
        var frame: [UInt8] = [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags]
        frame += [UInt8(streamID >> 24 & 0x7f), UInt8(streamID >> 16 & 0xff), UInt8(streamID >> 8 & 0xff), UInt8(streamID & 0xff)]
        if batch != nil {
            batch! += frame + payload
        } else {
            try send(frame + payload)
        }
    }

    private static func hpackLength(_ value: Int) -> [UInt8] {
        // 7-bit prefix integer, Huffman bit clear (RFC 7541 §5.1).
        if value < 127 { return [UInt8(value)] }
        var rest = value - 127
        var out: [UInt8] = [127]
        while rest >= 128 {
            out.append(UInt8(rest % 128 + 128))
            rest /= 128
        }
        out.append(UInt8(rest))
        return out
    }

    func sendHeaders(streamID: Int32, fields: [(String, String)], endStream: Bool) throws {
        var block: [UInt8] = []
        for (name, value) in fields {
            block.append(0x00)  // literal without indexing, new name
            block += Self.hpackLength(name.utf8.count) + Array(name.utf8)
            block += Self.hpackLength(value.utf8.count) + Array(value.utf8)
        }
        try sendFrame(type: 0x1, flags: 0x4 | (endStream ? 0x1 : 0), streamID: streamID, payload: block)
    }

    /// A DATA frame with the PADDED flag: a pad length byte, `bytes`, then `padding` zeros (all flow-controlled).
    func sendPaddedData(streamID: Int32, bytes: [UInt8], padding: UInt8) throws {
        let payload = [padding] + bytes + [UInt8](repeating: 0, count: Int(padding))
        try sendDataFrame(streamID: streamID, flags: 0x8, payload: payload)
    }

    func sendData(streamID: Int32, bytes: [UInt8], endStream: Bool) throws {
        try sendDataFrame(streamID: streamID, flags: endStream ? 0x1 : 0, payload: bytes)
    }

    /// A DATA frame, counted against the connection's and the stream's windows (the whole payload, padding included).
    private func sendDataFrame(streamID: Int32, flags: UInt8, payload: [UInt8]) throws {
        try sendFrame(type: 0x0, flags: flags, streamID: streamID, payload: payload)
        connectionWindow -= Int64(payload.count)
        streamSent[streamID, default: 0] += Int64(payload.count)
    }

    private func streamWindow(_ id: Int32) -> Int64 {
        serverInitialWindow + streamWindowDeltas[id, default: 0] - streamSent[id, default: 0]
    }

    /// Sends as much of `body[from...]` as both windows allow (in 16 KiB frames, at most `limit`); ends the
    /// stream with the last byte. Returns the bytes sent.
    func sendAllowed(streamID: Int32, body: [UInt8], from: Int, limit: Int = .max, batched: Bool = false) throws
        -> Int
    {
        if batched { batch = [] }
        defer {
            if let frames = batch {
                batch = nil
                try? send(frames)
            }
        }
        var sent = 0
        while from + sent < body.count && sent < limit {
            let allowed = min(connectionWindow, streamWindow(streamID), 16_384, Int64(limit - sent))
            guard allowed > 0 else { break }
            let size = min(Int(allowed), body.count - from - sent)
            let end = from + sent + size == body.count
            try sendData(streamID: streamID, bytes: Array(body[(from + sent)..<(from + sent + size)]), endStream: end)
            sent += size
        }
        return sent
    }

    /// Reads what arrives within `timeout` seconds and handles complete frames.
    func readFrames(timeout: Double) throws {
        try receive(timeout: timeout)
        while input.count >= 9 {
            let length = Int(input[0]) << 16 | Int(input[1]) << 8 | Int(input[2])
            guard input.count >= 9 + length else { break }
            let type = input[3]
            let flags = input[4]
            let streamID = Int32(input[5] & 0x7f) << 24 | Int32(input[6]) << 16 | Int32(input[7]) << 8 | Int32(input[8])
            let payload = Array(input[9..<(9 + length)])
            input.removeFirst(9 + length)
            try handle(type: type, flags: flags, streamID: streamID, payload: payload)
        }
    }

    /// One socket read (within `timeout` seconds), decrypted on TLS, appended to `input`.
    private func receive(timeout: Double) throws {
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(timeout * 1000)) > 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let n = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw POSIXError(.ECONNRESET) }
        guard let tls else {
            input += buffer[0..<n]
            return
        }
        buffer.withUnsafeBytes { tls.feedEncrypted(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        var plaintext = [UInt8](repeating: 0, count: 65_536)
        reading: while true {
            switch plaintext.withUnsafeMutableBytes({ tls.readPlaintext(into: $0) }) {
            case .bytes(let count): input += plaintext[0..<count]
            case .wantMore: break reading
            case .closed, .failed: throw POSIXError(.ECONNRESET)
            }
        }
        // Handshake replies, session tickets.
        try sendRaw(tls.takeEncryptedOutput())
    }

    private func handle(type: UInt8, flags: UInt8, streamID: Int32, payload: [UInt8]) throws {
        func u32(_ at: Int) -> UInt32 {
            UInt32(payload[at]) << 24 | UInt32(payload[at + 1]) << 16 | UInt32(payload[at + 2]) << 8 | UInt32(payload[at + 3])
        }
        switch type {
        case 0x4 where flags & 0x1 == 0:  // SETTINGS
            var index = 0
            while index + 6 <= payload.count {
                let id = UInt16(payload[index]) << 8 | UInt16(payload[index + 1])
                if id == 0x4 { serverInitialWindow = Int64(u32(index + 2)) }
                index += 6
            }
            if acknowledgesSettings { try sendFrame(type: 0x4, flags: 0x1, streamID: 0, payload: []) }
        case 0x8:  // WINDOW_UPDATE
            let delta = Int64(u32(0) & 0x7fff_ffff)
            if streamID == 0 {
                connectionWindow += delta
            } else {
                streamWindowDeltas[streamID, default: 0] += delta
                streamWindowUpdates[streamID, default: 0] += Int(delta)
            }
        case 0x1:  // HEADERS
            if responseStatusByte[streamID] == nil, let first = payload.first { responseStatusByte[streamID] = first }
            if flags & 0x1 != 0 { ended.insert(streamID) }
        case 0x0:  // DATA
            data[streamID, default: []] += payload
            if flags & 0x1 != 0 { ended.insert(streamID) }
        case 0x3:
            resets[streamID] = u32(0)
        case 0x7:
            goAwayCode = u32(4)
        case 0x6 where flags & 0x1 == 0:  // PING
            try sendFrame(type: 0x6, flags: 0x1, streamID: 0, payload: payload)
        default:
            break
        }
    }
}

/// Keeps every body fragment (and so its memory) until the body ends and only then reads them, as a writer that
/// writes later would: bytes overwritten after they were handed over show up in `bodies`.
private final class ReadAtEndHandler: HTTPRequestHandler {
    let bodies = Mutex<[String: [UInt8]]>([:])

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        exchange.readBody(into: ReadAtEndSink(target: head.target, exchange: exchange, handler: self))
    }
}

private final class ReadAtEndSink: HTTPBodySink {
    let target: String
    let exchange: any HTTPExchange
    let handler: ReadAtEndHandler
    var fragments: [BodyFragment] = []

    init(target: String, exchange: any HTTPExchange, handler: ReadAtEndHandler) {
        self.target = target
        self.exchange = exchange
        self.handler = handler
    }

    func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
        fragments.append(fragment)
        done()
    }

    func bodyEnd(trailers: HTTPHeaders) {
        let body = fragments.flatMap(\.array)
        handler.bodies.withLock { $0[target] = body }
        exchange.respond(HTTPResponse(status: .ok, text: "\(body.count)"))
    }

    func bodyAborted(_ reason: BodyAbortReason) {}
}
