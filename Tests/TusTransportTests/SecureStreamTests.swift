import TusCrypto
import TusLoop
import TusTestSupport
import TusTransport
import XCTest

/// Collects plaintext the way a connection does: small buffers (so one socket read of ciphertext yields several
/// records and several `didReceivePlaintext` calls), and reports each finished read.
final class PlaintextCollector: SecureStreamDelegate {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 16)
    var received: [UInt8] = []
    var pieces = 0
    var reads = 0
    var handshakes = 0
    var ends: [SecureStreamReadEvent] = []
    var onReceive: () -> Void = {}
    var onEnd: (SecureStreamReadEvent) -> Void = { _ in }
    var onHandshake: () -> Void = {}

    deinit { buffer.deallocate() }

    func allocatePlaintextBuffer() -> UnsafeMutableRawBufferPointer { buffer }

    func didReceivePlaintext(count: Int) {
        pieces += 1
        received.append(contentsOf: buffer[..<count])
    }

    func didFinishRead(_ event: SecureStreamReadEvent) {
        if case .received = event {
            reads += 1
            onReceive()
        } else {
            ends.append(event)
            onEnd(event)
        }
    }

    func secureStreamDidCompleteHandshake() {
        handshakes += 1
        onHandshake()
    }
}

final class SecureStreamTests: XCTestCase {
    private static let certificates: Result<TestCertificates, any Error> = Result { try TestCertificates.generate() }

    override class func tearDown() {
        if case .success(let certificates) = certificates { certificates.remove() }
    }

    private func serverContext() throws -> TLSContext {
        let files = try Self.certificates.get()
        return try TLSContext.server(
            certificatePath: files.serverCertificate, keyPath: files.serverKey, mode: .tls12, offersHTTP2: true)
    }

    /// A client stream sends `message` after its handshake; the server stream echoes every piece it gets; the client
    /// closes with close_notify once the echo is complete. Both sides see plaintext only, in order.
    private func echo(
        message: [UInt8], server serverTLS: TLSContext?, client clientTLS: TLSContext?
    ) throws -> (client: PlaintextCollector, server: PlaintextCollector, alpn: String?) {
        let client = PlaintextCollector()
        let server = PlaintextCollector()
        var alpn: String?
        let ciphertext = CiphertextBuffer(byteCount: 64 * 1024)
        try withLoop { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            try listener.listen { tcp in
                listener.close()
                let stream = SecureStream(tcp: tcp, tls: serverTLS, ciphertext: ciphertext)
                var echoed = 0
                server.onReceive = { [unowned stream] in
                    let fresh = Array(server.received[echoed...])
                    echoed = server.received.count
                    if !fresh.isEmpty { stream.write(fresh) { XCTAssertNil($0) } }
                }
                server.onEnd = { [unowned stream] _ in stream.close() }
                stream.delegate = server
                stream.startReading()
            }
            TCPStream.connect(loop: loop, host: "127.0.0.1", port: listener.localPort, timeoutMilliseconds: 5000) {
                result in
                guard case .success(let tcp) = result else { return XCTFail("connect: \(result)") }
                let stream = SecureStream(
                    tcp: tcp, tls: clientTLS, serverName: "localhost",
                    ciphertext: CiphertextBuffer(byteCount: 16 * 1024))
                stream.delegate = client
                let send = { [unowned stream] in
                    alpn = stream.negotiatedALPN
                    stream.write(message) { XCTAssertNil($0) }
                }
                client.onHandshake = send
                client.onReceive = { [unowned stream] in
                    guard client.received.count >= message.count else { return }
                    stream.sendCloseNotify()
                    stream.close { finish() }
                }
                client.onEnd = { [unowned stream] event in
                    XCTFail("client ended early: \(event)")
                    stream.close { finish() }
                }
                if stream.isSecure {
                    stream.startHandshake()
                } else {
                    stream.startReading()
                    send()
                }
            }
        }
        return (client, server, alpn)
    }

    func testTLSEchoDeliversPlaintextRecordByRecord() throws {
        let message = patternBytes(count: 300_000)
        let clientTLS = try TLSContext.client(caFile: Self.certificates.get().caCertificate, insecure: false)
        let (client, server, alpn) = try echo(message: message, server: serverContext(), client: clientTLS)
        XCTAssertEqual(client.received, message)
        XCTAssertEqual(server.received, message)
        XCTAssertEqual(client.handshakes, 1)
        XCTAssertEqual(server.handshakes, 1)
        XCTAssertEqual(alpn, "http/1.1")
        // 16 KiB records into 16 KiB buffers: many pieces; reads of 64 KiB ciphertext deliver several at once.
        XCTAssertGreaterThan(server.pieces, server.reads)
        // The client's close_notify (then FIN) ends the server's stream as a clean close, not a failure.
        guard case .closed? = server.ends.first else { return XCTFail("server saw \(server.ends)") }
    }

    func testPlainStreamDeliversEveryReadTheSameWay() throws {
        let message = patternBytes(count: 200_000, seed: 7)
        let (client, server, alpn) = try echo(message: message, server: nil, client: nil)
        XCTAssertEqual(client.received, message)
        XCTAssertEqual(server.received, message)
        XCTAssertEqual(client.handshakes, 0)
        XCTAssertNil(alpn)
        XCTAssertEqual(server.pieces, server.reads, "one piece per socket read without TLS")
        guard case .closed? = server.ends.first else { return XCTFail("server saw \(server.ends)") }
    }

    func testUntrustedCertificateEndsTheClientWithATLSFailure() throws {
        let files = try Self.certificates.get()
        let clientTLS = try TLSContext.client(caFile: files.otherCACertificate, insecure: false)
        let serverTLS = try serverContext()
        var failure: TLSError?
        var serverEnd: SecureStreamReadEvent?
        let ciphertext = CiphertextBuffer(byteCount: 16 * 1024)
        let client = PlaintextCollector()
        let server = PlaintextCollector()
        try withLoop { loop, finish in
            var ended = 0
            let done = {
                ended += 1
                if ended == 2 { finish() }
            }
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            try listener.listen { tcp in
                listener.close()
                let stream = SecureStream(tcp: tcp, tls: serverTLS, ciphertext: ciphertext)
                server.onEnd = { [unowned stream] event in
                    serverEnd = event
                    stream.close { done() }
                }
                stream.delegate = server
                stream.startReading()
            }
            TCPStream.connect(loop: loop, host: "127.0.0.1", port: listener.localPort, timeoutMilliseconds: 5000) {
                result in
                guard case .success(let tcp) = result else { return XCTFail("connect: \(result)") }
                let stream = SecureStream(tcp: tcp, tls: clientTLS, serverName: "localhost", ciphertext: ciphertext)
                client.onEnd = { [unowned stream] event in
                    if case .tlsFailed(let error) = event { failure = error }
                    stream.close { done() }
                }
                stream.delegate = client
                stream.startHandshake()
            }
        }
        XCTAssertEqual(client.handshakes, 0)
        let description = failure.map { "\($0)" } ?? "none"
        XCTAssertTrue(description.contains("certificate verification"), description)
        // The client's alert reaches the server, which fails its handshake too (never a plaintext byte).
        guard case .tlsFailed? = serverEnd else { return XCTFail("server saw \(String(describing: serverEnd))") }
        XCTAssertTrue(server.received.isEmpty)
    }
}
