internal import COpenSSL
internal import COpenSSLShims

/// One TLS connection as a state machine over two in-memory BIOs (`SSL_set_bio`): the owner feeds it network
/// bytes and ships whatever it produces, so TLS needs no socket and the HTTP layer never sees it.
///
/// Usage: after every `feedEncrypted`, `readPlaintext`, `writePlaintext`, `startHandshake` or `shutdown`, send
/// `takeEncryptedOutput()` to the peer. The handshake advances inside `readPlaintext` (and `writePlaintext`).
/// Not thread-safe: one loop owns it. Both BIOs grow without limit, so the owner bounds memory by reading
/// plaintext before feeding more and by draining output before writing more.
public final class TLSSession {
    private let tlsContext: TLSContext
    private let ssl: OpaquePointer
    /// What `SSL_read` reads from: fed bytes first, then the borrowed buffer (see `EncryptedInput`).
    private let input = EncryptedInput()
    /// Owned by `ssl`; records OpenSSL produced, waiting for `takeEncryptedOutput`.
    private let networkOutput: OpaquePointer
    /// Plaintext written before the handshake finished; `SSL_write` cannot take it yet.
    private var pendingPlaintext: [UInt8] = []
    /// Sticky: once OpenSSL reports a fatal error the connection must not be used again (`SSL_shutdown` man page).
    private var failure: TLSError?
    private var isPeerClosed = false
    private var isShutdownStarted = false

    /// `serverName` (client contexts only) is sent as SNI and checked against the certificate: `SSL_set1_host`
    /// for DNS names, `X509_VERIFY_PARAM_set1_ip_asc` for IP literals (which are never sent as SNI, RFC 6066 §3).
    public init(context: TLSContext, serverName: String? = nil) {
        self.tlsContext = context
        OpenSSLErrorQueue.clear()
        guard let ssl = SSL_new(context.context), let reader = BIO_new(encryptedInputMethod),
            let output = BIO_new(BIO_s_mem())
        else { preconditionFailure("SSL_new/BIO_new failed: \(OpenSSLErrorQueue.drain())") }
        BIO_set_data(reader, Unmanaged.passUnretained(input).toOpaque())
        BIO_set_init(reader, 1)
        SSL_set_bio(ssl, reader, output)
        self.ssl = ssl
        self.networkOutput = output
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let serverName { configurePeerName(serverName) }
        }
    }

    deinit {
        SSL_free(ssl)  // frees the reader BIO, whose data points at `input`, still alive here
    }

    private func configurePeerName(_ name: String) {
        let isIPLiteral =
            name.contains(":") || name.utf8.allSatisfy { $0 == UInt8(ascii: ".") || ($0 >= 48 && $0 <= 57) }
        if isIPLiteral {
            if X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1 {
                failure = TLSError.fromErrorQueue("TLS server name \(name): not a valid IP address")
            }
        } else {
            if COpenSSLShims_SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1 {
                failure = TLSError.fromErrorQueue("TLS server name \(name): rejected")
            }
        }
    }

    // MARK: State

    public var isHandshakeComplete: Bool { SSL_is_init_finished(ssl) == 1 }

    /// "TLSv1.2" or "TLSv1.3" (`SSL_get_version`), once the handshake is complete.
    public var negotiatedProtocolVersion: String? {
        guard isHandshakeComplete, let version = SSL_get_version(ssl) else { return nil }
        return String(cString: version)
    }

    /// The ALPN protocol both sides agreed on (`SSL_get0_alpn_selected`), or nil if the peer offered none.
    public var negotiatedALPN: String? {
        var data: UnsafePointer<UInt8>? = nil
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    // MARK: Network side

    /// Feed bytes received from the network (copied into a memory BIO, read before any borrowed buffer).
    public func feedEncrypted(_ bytes: UnsafeRawBufferPointer) {
        input.feed(bytes)
    }

    /// Runs `body` (which calls `readPlaintext`) with OpenSSL reading the ciphertext straight from `bytes`,
    /// instead of first copying it into the fed input (`feedEncrypted`): one memcpy less per received byte on a
    /// TLS upload. Whatever `body` leaves unread is fed afterwards, so `bytes` may be reused once this returns.
    /// The reader BIO is the session's own for its lifetime: a BIO made per socket read (`BIO_new_mem_buf`,
    /// swapped in with `SSL_set0_rbio`) cost ~3 % of the loop thread of a TLS upload (allocation, lock, free).
    public func withBorrowedEncryptedInput(_ bytes: UnsafeRawBufferPointer, _ body: () -> Void) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return body() }
        input.borrow(base, count: bytes.count)
        body()
        input.endBorrowing()
    }

    /// Encrypted bytes waiting for the network (`BIO_ctrl_pending`).
    public var pendingEncryptedByteCount: Int { Int(BIO_ctrl_pending(networkOutput)) }

    /// Drain bytes that must go to the network (handshake messages, records, alerts) as one array.
    public func takeEncryptedOutput() -> [UInt8] {
        let count = pendingEncryptedByteCount
        guard count > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = takeEncryptedOutput(into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Copies up to `buffer.count` pending encrypted bytes into `buffer` (e.g. the connection's own write
    /// buffer, avoiding an intermediate array); returns how many.
    public func takeEncryptedOutput(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        var read = 0
        guard BIO_read_ex(networkOutput, base, buffer.count, &read) == 1 else {
            // An empty memory BIO "fails" with a retry flag: nothing to take.
            OpenSSLErrorQueue.clear()
            return 0
        }
        return read
    }

    // MARK: Application side

    /// Drive the client handshake (`SSL_do_handshake`): produces the ClientHello. Servers need not call it.
    public func startHandshake() {
        guard failure == nil else { return }
        if case .failed = driveHandshake() { return }
    }

    /// Decrypt as much as fits into `buffer` (`SSL_read_ex`), advancing the handshake first if needed.
    public func readPlaintext(into buffer: UnsafeMutableRawBufferPointer) -> TLSReadResult {
        if let failure { return .failed(failure) }
        if isPeerClosed { return .closed }
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            preconditionFailure("TLSSession.readPlaintext needs a non-empty buffer")
        }
        OpenSSLErrorQueue.clear()
        var read = 0
        let status = SSL_read_ex(ssl, base, buffer.count, &read)
        if status == 1 {
            if let failure = flushPendingPlaintext() { return .failed(failure) }
            return .bytes(read)
        }
        switch SSL_get_error(ssl, status) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            if let failure = flushPendingPlaintext() { return .failed(failure) }
            return .wantMore
        case SSL_ERROR_ZERO_RETURN:
            isPeerClosed = true
            return .closed
        default:
            return .failed(fail(isHandshakeComplete ? "TLS read failed" : "TLS handshake failed"))
        }
    }

    /// Encrypt plaintext (`SSL_write_ex`). Before the handshake completes the bytes are kept and sent as soon as
    /// it does. Throws the sticky failure, or on writing after `shutdown()`.
    public func writePlaintext(_ bytes: UnsafeRawBufferPointer) throws {
        if let failure { throw failure }
        guard !isShutdownStarted else { throw TLSError("TLS write after shutdown") }
        guard bytes.count > 0 else { return }
        if pendingPlaintext.isEmpty && isHandshakeComplete {
            if case .failed(let error) = writeNow(bytes) { throw error }
            return
        }
        pendingPlaintext.append(contentsOf: bytes)
        if case .failed(let error) = driveHandshake() { throw error }
        if let error = flushPendingPlaintext() { throw error }
    }

    public func writePlaintext(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writePlaintext($0) }
    }

    /// Start a clean shutdown: queue close_notify (`SSL_shutdown`); then take output. Pending plaintext goes first.
    public func shutdown() {
        guard !isShutdownStarted else { return }
        isShutdownStarted = true
        guard failure == nil, isHandshakeComplete else { return }
        _ = flushPendingPlaintext()
        OpenSSLErrorQueue.clear()
        // Returns 0 ("sent, peer's not yet received"): we do not wait for the peer's close_notify.
        _ = SSL_shutdown(ssl)
        OpenSSLErrorQueue.clear()
    }

    // MARK: Internals

    private enum Progress {
        case done
        case blocked
        case failed(TLSError)
    }

    private func driveHandshake() -> Progress {
        if isHandshakeComplete { return .done }
        OpenSSLErrorQueue.clear()
        let status = SSL_do_handshake(ssl)
        if status == 1 { return .done }
        switch SSL_get_error(ssl, status) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .blocked
        default: return .failed(fail("TLS handshake failed"))
        }
    }

    /// Memory BIOs never block on output, so once the handshake is done a write either completes or is fatal;
    /// `.blocked` is kept only for a peer-driven post-handshake message, and then the bytes stay pending.
    private func writeNow(_ bytes: UnsafeRawBufferPointer) -> Progress {
        OpenSSLErrorQueue.clear()
        var written = 0
        let status = SSL_write_ex(ssl, bytes.baseAddress, bytes.count, &written)
        if status == 1 { return .done }
        switch SSL_get_error(ssl, status) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            pendingPlaintext.append(contentsOf: bytes)
            return .blocked
        default:
            return .failed(fail("TLS write failed"))
        }
    }

    private func flushPendingPlaintext() -> TLSError? {
        guard !pendingPlaintext.isEmpty, isHandshakeComplete else { return nil }
        OpenSSLErrorQueue.clear()
        var written = 0
        let status = pendingPlaintext.withUnsafeBytes { SSL_write_ex(ssl, $0.baseAddress, $0.count, &written) }
        if status == 1 {
            pendingPlaintext.removeAll(keepingCapacity: false)
            return nil
        }
        switch SSL_get_error(ssl, status) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return nil
        default: return fail("TLS write failed")
        }
    }

    /// Records the sticky failure with OpenSSL's queue text and, for certificate problems, the verify result.
    private func fail(_ what: String) -> TLSError {
        var message = "\(what): \(OpenSSLErrorQueue.drain())"
        let verifyResult = SSL_get_verify_result(ssl)
        if verifyResult != X509_V_OK, let reason = X509_verify_cert_error_string(verifyResult) {
            message += " (certificate verification: \(String(cString: reason)))"
        }
        let error = TLSError(message)
        failure = error
        return error
    }
}

/// The read side of a session: bytes fed with `feedEncrypted` (a memory BIO, kept while unread) come first, then
/// the buffer lent for one socket read. OpenSSL reads it through `encryptedInputMethod`; loop thread only.
private final class EncryptedInput {
    private let fed: OpaquePointer
    private var borrowed: UnsafeRawPointer?
    private var borrowedCount = 0

    init() {
        guard let fed = BIO_new(BIO_s_mem()) else {
            preconditionFailure("BIO_new failed: \(OpenSSLErrorQueue.drain())")
        }
        self.fed = fed
    }

    deinit {
        BIO_free(fed)
    }

    var pendingCount: Int { Int(BIO_ctrl_pending(fed)) + borrowedCount }

    func feed(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var written = 0
        guard BIO_write_ex(fed, base, bytes.count, &written) == 1, written == bytes.count else {
            preconditionFailure("BIO_write_ex on a memory BIO failed: \(OpenSSLErrorQueue.drain())")
        }
    }

    func borrow(_ base: UnsafeRawPointer, count: Int) {
        borrowed = base
        borrowedCount = count
    }

    func endBorrowing() {
        if let borrowed, borrowedCount > 0 { feed(UnsafeRawBufferPointer(start: borrowed, count: borrowedCount)) }
        borrowed = nil
        borrowedCount = 0
    }

    /// `BIO_read_ex` semantics: 1 with `read` bytes, or 0 with the retry flag set when nothing is there yet.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, read: inout Int, bio: OpaquePointer) -> Int32 {
        BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
        if BIO_ctrl_pending(fed) > 0 { return BIO_read_ex(fed, buffer, count, &read) }
        guard let borrowed, borrowedCount > 0 else {
            // Like an empty memory BIO: "retry later", not end of stream.
            BIO_set_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY)
            read = 0
            return 0
        }
        let step = min(count, borrowedCount)
        buffer.copyMemory(from: borrowed, byteCount: step)
        self.borrowed = borrowed + step
        borrowedCount -= step
        read = step
        return 1
    }
}

/// A source BIO over `EncryptedInput` (its `BIO_get_data`): read, pending and flush; nothing else.
nonisolated(unsafe) private let encryptedInputMethod: OpaquePointer = {
    guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tus encrypted input") else {
        preconditionFailure("BIO_meth_new failed: \(OpenSSLErrorQueue.drain())")
    }
    BIO_meth_set_read_ex(method) { bio, buffer, count, read in
        guard let bio, let buffer, let read, let data = BIO_get_data(bio) else { return 0 }
        return Unmanaged<EncryptedInput>.fromOpaque(data)._withUnsafeGuaranteedRef {
            $0.read(into: buffer, count: count, read: &read.pointee, bio: bio)
        }
    }
    BIO_meth_set_ctrl(method) { bio, command, _, _ in
        switch command {
        case BIO_CTRL_PENDING:
            guard let bio, let data = BIO_get_data(bio) else { return 0 }
            return Unmanaged<EncryptedInput>.fromOpaque(data)._withUnsafeGuaranteedRef { $0.pendingCount }
        case BIO_CTRL_FLUSH: return 1
        default: return 0
        }
    }
    return method
}()
