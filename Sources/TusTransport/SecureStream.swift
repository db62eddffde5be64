public import TusCrypto
public import TusLoop

/// What ended (or completed) one read of a `SecureStream`.
public enum SecureStreamReadEvent {
    /// Every plaintext byte this socket read yielded was delivered (`didReceivePlaintext`); perhaps none (a
    /// handshake record, a partial record).
    case received
    /// The peer closed: TCP EOF, or a TLS close_notify.
    case closed
    case failed(UVError)
    /// The TLS session failed (bad handshake, certificate, MAC, a renegotiation attempt); OpenSSL's failures sent
    /// their alert, the session's own TLS 1.3 record reader's end the connection without one.
    case tlsFailed(TLSError)
}

/// The owner of a `SecureStream` (a connection): it says where plaintext goes and hears what arrived.
public protocol SecureStreamDelegate: AnyObject {
    /// Memory for the next plaintext. Plain streams hand it to libuv's `alloc_cb` (the kernel copies straight into
    /// it); TLS streams decrypt into it. Must stay valid until the matching `didReceivePlaintext` or `didFinishRead`.
    /// An empty buffer means "no memory now" (as for `TCPStreamDelegate`).
    func allocatePlaintextBuffer() -> UnsafeMutableRawBufferPointer
    /// `count` plaintext bytes were written at the start of the last allocated buffer. Several may come per
    /// socket read (one per TLS record); act on them in `didFinishRead`.
    func didReceivePlaintext(count: Int)
    /// The socket read behind the preceding `didReceivePlaintext` calls is done, or the stream ended.
    func didFinishRead(_ event: SecureStreamReadEvent)
    /// The TLS handshake just completed (before any plaintext of that read is delivered). Never for plain streams.
    func secureStreamDidCompleteHandshake()
}

extension SecureStreamDelegate {
    public func secureStreamDidCompleteHandshake() {}
}

/// Where TLS streams receive ciphertext. One per loop serves every TLS stream of the loop, because each read is
/// decrypted completely before the next one (see `SecureStream`); an outbound connection may own one.
public final class CiphertextBuffer {
    public let bytes: UnsafeMutableRawBufferPointer

    /// 256 KiB by default: as big as a plaintext body chunk, so that the plaintext of one read becomes one body
    /// fragment (one file write), as a cleartext read does.
    public init(byteCount: Int = 256 * 1024) {
        bytes = .allocate(byteCount: byteCount, alignment: 16)
    }

    deinit { bytes.deallocate() }
}

/// A TCP stream that speaks plaintext to its owner, with or without TLS underneath: the one place that pumps TLS
/// (handshake, ALPN, decryption, encryption, close_notify) for the HTTP/1.1 and HTTP/2 servers and the outbound
/// HTTP client. Connections above it never see ciphertext.
///
/// Reading: a plain stream lets libuv read into the delegate's buffer. A TLS stream reads ciphertext into the
/// shared `CiphertextBuffer`, and OpenSSL decrypts it from there in place (`TLSSession.withBorrowedEncryptedInput`)
/// into the delegate's buffers, record by record, until the read is used up (after a TLS 1.3 server handshake the
/// session decrypts the records itself, from the same buffer: `TLS13RecordReader`); a partial record's bytes move
/// into the session, so the shared buffer is free again when `didFinishRead` runs. Handshake replies and alerts go out
/// at once. Renegotiation is refused by the context (`SSL_OP_NO_RENEGOTIATION`): a peer that tries gets a fatal
/// error, reported as `.tlsFailed`.
///
/// Lifetime: the TCP stream holds this object until it is closed, and this object holds its delegate until then,
/// so a connection lives exactly as long as its socket is open. Loop thread only.
public final class SecureStream: TCPStreamDelegate {
    public let tcp: TCPStream
    public var delegate: (any SecureStreamDelegate)?
    private let tls: TLSSession?
    private let ciphertext: CiphertextBuffer?
    private var hasReportedHandshake = false
    /// The TLS failure that ended the stream, if any (a write after it fails with `.connectionReset`).
    public private(set) var tlsFailure: TLSError?

    /// A plain stream when `tls` is nil. Otherwise a new session of that context (server or client): a client
    /// checks the certificate against `serverName` (and sends it as SNI); `ciphertext` is where reads land, shared
    /// by the streams of one loop (nil: a 64 KiB buffer of this stream's own).
    public init(tcp: TCPStream, tls: TLSContext?, serverName: String? = nil, ciphertext: CiphertextBuffer? = nil) {
        self.tcp = tcp
        self.tls = tls.map { TLSSession(context: $0, serverName: serverName) }
        self.ciphertext = tls == nil ? nil : ciphertext ?? CiphertextBuffer(byteCount: 64 * 1024)
        tcp.delegate = self
    }

    public var isSecure: Bool { tls != nil }
    public var isClosed: Bool { tcp.isClosed }
    public var isReading: Bool { tcp.isReading }
    public var isHandshakeComplete: Bool { tls?.isHandshakeComplete ?? true }
    /// The ALPN protocol agreed on ("h2", "http/1.1"), nil for plain streams or when the peer offered none.
    public var negotiatedALPN: String? { tls?.negotiatedALPN }
    public var negotiatedProtocolVersion: String? { tls?.negotiatedProtocolVersion }
    public var remoteAddress: String? { tcp.remoteAddress }

    public func startReading() { tcp.startReading() }
    public func stopReading() { tcp.stopReading() }

    /// Client side: sends the ClientHello and starts reading; `secureStreamDidCompleteHandshake` follows.
    public func startHandshake() {
        guard let tls else { return }
        tls.startHandshake()
        flushCiphertext()
        tcp.startReading()
    }

    // MARK: Reading (TCPStreamDelegate)

    public func allocateReadBuffer(suggestedSize: Int) -> UnsafeMutableRawBufferPointer {
        if let ciphertext { return ciphertext.bytes }
        return delegate?.allocatePlaintextBuffer() ?? UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    public func didRead(_ result: ReadResult) {
        guard let delegate else { return }
        switch result {
        case .bytes(let count):
            guard let tls, let ciphertext else {
                delegate.didReceivePlaintext(count: count)
                return delegate.didFinishRead(.received)
            }
            decrypt(UnsafeRawBufferPointer(rebasing: ciphertext.bytes[0..<count]), with: tls)
        case .eof:
            delegate.didFinishRead(.closed)
        case .error(let error):
            delegate.didFinishRead(.failed(error))
        }
    }

    /// Decrypts the whole read. The delegate is looked up for every record: one may hand the stream on (an
    /// HTTP/1.1 connection that negotiated h2 gives it to its HTTP/2 successor) and the rest goes to the new owner.
    private func decrypt(_ input: UnsafeRawBufferPointer, with tls: TLSSession) {
        var end = SecureStreamReadEvent.received
        tls.withBorrowedEncryptedInput(input) {
            reading: while !tcp.isClosed, let delegate {
                if !hasReportedHandshake && tls.isHandshakeComplete {
                    hasReportedHandshake = true
                    flushCiphertext()
                    delegate.secureStreamDidCompleteHandshake()
                    continue reading
                }
                let space = delegate.allocatePlaintextBuffer()
                guard space.count > 0 else { break reading }
                switch tls.readPlaintext(into: space) {
                case .bytes(let count):
                    delegate.didReceivePlaintext(count: count)
                case .wantMore:
                    // The handshake may have completed on this call (a server's last flight).
                    if !hasReportedHandshake && tls.isHandshakeComplete { continue reading }
                    break reading
                case .closed:
                    end = .closed
                    break reading
                case .failed(let error):
                    tlsFailure = error
                    end = .tlsFailed(error)
                    break reading
                }
            }
        }
        flushCiphertext()
        delegate?.didFinishRead(end)
    }

    // MARK: Writing

    /// Sends `bytes` (encrypted first on a TLS stream; OpenSSL copies them into its records at once).
    public func write(_ bytes: [UInt8], completion: @escaping (UVError?) -> Void) {
        guard tls != nil else { return tcp.write(bytes, completion: completion) }
        bytes.withUnsafeBytes { write($0, owner: nil, completion: completion) }
    }

    /// Sends `buffer`; on a plain stream `owner` keeps its memory alive until the write completed (no copy).
    public func write(_ buffer: UnsafeRawBufferPointer, owner: AnyObject?, completion: @escaping (UVError?) -> Void) {
        guard let tls else { return tcp.write([buffer], owner: owner, completion: completion) }
        do {
            try tls.writePlaintext(buffer)
        } catch {
            tlsFailure = tlsFailure ?? (error as? TLSError)
            return completion(.connectionReset)
        }
        let output = tls.takeEncryptedOutput()
        guard !output.isEmpty else { return completion(nil) }
        tcp.write(output, completion: completion)
    }

    /// Handshake messages, alerts, close_notify: whatever OpenSSL produced outside a `write`.
    private func flushCiphertext() {
        guard let tls, tls.pendingEncryptedByteCount > 0, !tcp.isClosed else { return }
        tcp.write(tls.takeEncryptedOutput()) { _ in }
    }

    /// Bytes queued in the socket but not yet written (libuv's write queue).
    public var writeQueueSize: Int { tcp.writeQueueSize }

    // MARK: Ending

    /// close_notify (after the handshake) so the peer can tell a complete response from a cut one, then a TCP
    /// shutdown (FIN) once everything queued is written.
    public func shutdown(_ completion: @escaping (UVError?) -> Void) {
        sendCloseNotify()
        tcp.shutdown(completion)
    }

    /// Closes now, without close_notify (a peer being cut off must not read a cut response as complete); the
    /// delegate is released once the socket is closed.
    public func close(_ completion: (() -> Void)? = nil) {
        tcp.close { [self] in
            delegate = nil
            completion?()
        }
    }

    /// Queues close_notify (once, after a successful handshake; nothing on a plain stream).
    public func sendCloseNotify() {
        guard let tls, tls.isHandshakeComplete, tlsFailure == nil else { return }
        tls.shutdown()
        flushCiphertext()
    }
}
