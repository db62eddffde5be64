internal import COpenSSL
internal import COpenSSLShims

/// One TLS connection as a state machine over two in-memory BIOs (`SSL_set_bio`): the owner feeds it network
/// bytes and ships whatever it produces, so TLS needs no socket and the HTTP layer never sees it.
///
/// Usage: after every `feedEncrypted`, `readPlaintext`, `writePlaintext`, `startHandshake` or `shutdown`, send
/// `takeEncryptedOutput()` to the peer. The handshake advances inside `readPlaintext` (and `writePlaintext`).
/// Not thread-safe: one loop owns it. Both BIOs grow without limit, so the owner bounds memory by reading
/// plaintext before feeding more and by draining output before writing more.
///
/// A TLS 1.3 server session with an AEAD suite of `TLS13RecordReader` reads the client's application records
/// itself once the handshake is done (one copy per received byte less than OpenSSL's record layer); writing stays
/// with OpenSSL, whose write sequence is independent of the read side.
public final class TLSSession {
    private let tlsContext: TLSContext
    let ssl: OpaquePointer
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
    /// Our own TLS 1.3 record reader, once it took over from OpenSSL (see `takeOverRecordsIfPossible`).
    private var recordReader: TLS13RecordReader?
    /// The client application traffic secret from the keylog callback, until the takeover is decided.
    fileprivate var clientTrafficSecret: [UInt8]?
    /// Plaintext of the last record that did not fit the caller's buffer: `recordSpill[spillStart..<spillEnd]`.
    private var recordSpill: UnsafeMutableRawBufferPointer?
    private var spillStart = 0
    private var spillEnd = 0
    /// Our KeyUpdate answering the peer's update_requested is out and no application data of ours followed it:
    /// further requests are answered by that one (RFC 8446 §4.6.3: a side that receives several KeyUpdates while
    /// silent responds with a single update), so a client flooding update_requested gets no record per request.
    private var isKeyUpdateAnswerUnused = false
    /// KeyUpdates, and empty application records, since the last application record with content: each costs a
    /// key setup (three HMACs) or an AEAD call for ~22-27 bytes of input, many times the CPU per byte of data, so
    /// like BoringSSL (kMaxKeyUpdates, kMaxEmptyRecords: 32) we end a connection that sends more in a row.
    private var keyUpdatesInARow = 0
    private var emptyRecordsInARow = 0
    static let maximumKeyUpdatesInARow = 32
    static let maximumEmptyRecordsInARow = 32

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
            SSL_set_ex_data(ssl, sessionIndex, Unmanaged.passUnretained(self).toOpaque())
            input.holdsBackAfterHandshakeOf = ssl
        } else {
            SSL_set_connect_state(ssl)
            if let serverName { configurePeerName(serverName) }
        }
    }

    deinit {
        SSL_free(ssl)  // frees the reader BIO, whose data points at `input`, still alive here
        wipeClientTrafficSecret()
        recordSpill?.deallocate()
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

    /// True once the session decrypts the peer's records itself (a TLS 1.3 server with one of the three AEAD
    /// suites) rather than through OpenSSL.
    public var readsRecordsItself: Bool { recordReader != nil }

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
        if input.holdsBackAfterHandshakeOf != nil && isHandshakeComplete { takeOverRecordsIfPossible() }
        if let recordReader { return readRecords(into: buffer, with: recordReader) }
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
            // The handshake completed in this call and the input held back the next record: decide now.
            if input.holdsBackAfterHandshakeOf != nil && isHandshakeComplete { return readPlaintext(into: buffer) }
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

    // MARK: Our own TLS 1.3 record reader

    /// Decides, once, right after the handshake, whether our reader takes over: only a TLS 1.3 session with one of
    /// its three suites, with OpenSSL between records and holding nothing unread (nor plaintext nor ciphertext),
    /// and no early data. Otherwise OpenSSL keeps reading as before. Either way the secret is wiped.
    private func takeOverRecordsIfPossible() {
        input.holdsBackAfterHandshakeOf = nil
        defer { wipeClientTrafficSecret() }
        guard SSL_version(ssl) == TLS1_3_VERSION, input.isAtRecordBoundary, SSL_has_pending(ssl) == 0,
            SSL_get_early_data_status(ssl) != SSL_EARLY_DATA_ACCEPTED, let cipher = SSL_get_current_cipher(ssl),
            let suite = TLS13RecordReader.Suite(protocolID: SSL_CIPHER_get_protocol_id(cipher)),
            let secret = clientTrafficSecret
        else { return }
        recordReader = secret.withUnsafeBytes { TLS13RecordReader(suite: suite, secret: $0) }
        input.isClosedToOpenSSL = recordReader != nil
    }

    fileprivate func wipeClientTrafficSecret() {
        guard clientTrafficSecret != nil else { return }
        clientTrafficSecret!.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
        clientTrafficSecret = nil
    }

    /// RFC 8446 §5 for received records: decrypts whole records from the input, straight into `buffer` while it
    /// has room for the record's plaintext (else into `recordSpill`, handed out over the next calls). Plaintext is
    /// counted only after its tag verified; any violation fails the session for good. Several records per call.
    private func readRecords(into buffer: UnsafeMutableRawBufferPointer, with reader: TLS13RecordReader)
        -> TLSReadResult
    {
        let base = buffer.baseAddress!
        if spillStart < spillEnd, let recordSpill {
            let count = min(buffer.count, spillEnd - spillStart)
            base.copyMemory(from: recordSpill.baseAddress! + spillStart, byteCount: count)
            spillStart += count
            return .bytes(count)
        }
        var written = 0
        while let header = input.contiguous(TLS13RecordReader.headerLength) {
            let length = Int(header[3]) << 8 | Int(header[4])
            // After the handshake every TLS 1.3 record is protected application_data with version 0x0303
            // (RFC 8446 §5.1, §5.2): a change_cipher_spec, a plaintext alert or handshake is an error.
            guard header[0] == 23, header[1] == 3, header[2] == 3 else {
                return failRecord("TLS record: unexpected record type \(header[0]) or version")
            }
            guard length <= TLS13RecordReader.maximumCiphertextLength,
                length - TLS13RecordReader.tagLength <= TLS13RecordReader.maximumInnerPlaintextLength
            else { return failRecord("TLS record_overflow: \(length) bytes") }
            guard length > TLS13RecordReader.tagLength else { return failRecord("TLS record too short") }
            let innerLength = length - TLS13RecordReader.tagLength
            let fitsBuffer = buffer.count - written >= innerLength
            if !fitsBuffer && written > 0 { break }
            guard let record = input.contiguous(TLS13RecordReader.headerLength + length) else { break }
            let destination = fitsBuffer ? base + written : spillBuffer()
            guard reader.open(record, into: destination) else {
                OPENSSL_cleanse(destination, innerLength)
                return failRecord("TLS record authentication failed (bad_record_mac)")
            }
            input.consume(record.count)
            // TLSInnerPlaintext: content, content type, zero padding (RFC 8446 §5.4).
            var end = innerLength
            while end > 0 && destination.load(fromByteOffset: end - 1, as: UInt8.self) == 0 { end -= 1 }
            guard end > 0 else { return failRecord("TLS record without a content type") }
            let content = UnsafeRawBufferPointer(start: destination, count: end - 1)
            let contentType = destination.load(fromByteOffset: end - 1, as: UInt8.self)
            switch contentType {
            case 23:  // application_data
                if content.count > 0 {
                    keyUpdatesInARow = 0
                    emptyRecordsInARow = 0
                } else {
                    emptyRecordsInARow += 1
                    guard emptyRecordsInARow <= Self.maximumEmptyRecordsInARow else {
                        return failRecord("TLS: too many empty records in a row")
                    }
                }
                if fitsBuffer {
                    written += content.count
                } else {
                    spillStart = 0
                    spillEnd = content.count
                    return readRecords(into: buffer, with: reader)
                }
            case 21:  // alert: close_notify ends the stream; any other alert ends it in error
                guard content.count == 2, content[1] == 0 else {
                    return failRecord("TLS alert \(content.count == 2 ? Int(content[1]) : -1) received")
                }
                isPeerClosed = true
                return written > 0 ? .bytes(written) : .closed
            case 22:  // handshake: only KeyUpdate, alone in its record (it must end a record, RFC 8446 §5.1)
                guard content.count == 5, content[0] == 24, content[1] == 0, content[2] == 0, content[3] == 1,
                    content[4] <= 1
                else { return failRecord("TLS post-handshake message refused") }
                keyUpdatesInARow += 1
                guard keyUpdatesInARow <= Self.maximumKeyUpdatesInARow else {
                    return failRecord("TLS: too many KeyUpdates in a row")
                }
                guard reader.update() else { return failRecord("TLS KeyUpdate failed") }
                if content[4] == 1, let error = answerKeyUpdate() { return .failed(error) }
            default:
                return failRecord("TLS record with content type \(contentType)")
            }
        }
        return written > 0 ? .bytes(written) : .wantMore
    }

    private func spillBuffer() -> UnsafeMutableRawPointer {
        if recordSpill == nil {
            recordSpill = .allocate(byteCount: TLS13RecordReader.maximumInnerPlaintextLength, alignment: 16)
        }
        return recordSpill!.baseAddress!
    }

    /// update_requested: our own KeyUpdate (OpenSSL's write side) goes out before any further record of ours.
    private func answerKeyUpdate() -> TLSError? {
        guard !isShutdownStarted, !isKeyUpdateAnswerUnused else { return nil }
        isKeyUpdateAnswerUnused = true
        OpenSSLErrorQueue.clear()
        // Fails only when one of ours is already pending, which answers the request as well.
        _ = SSL_key_update(ssl, SSL_KEY_UPDATE_NOT_REQUESTED)
        OpenSSLErrorQueue.clear()
        let status = SSL_do_handshake(ssl)
        guard status != 1 else { return nil }
        switch SSL_get_error(ssl, status) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return nil
        default: return fail("TLS KeyUpdate reply failed")
        }
    }

    private func failRecord(_ message: String) -> TLSReadResult {
        let error = TLSError(message)
        failure = error
        return .failed(error)
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
        if status == 1 {
            isKeyUpdateAnswerUnused = false
            return .done
        }
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
            isKeyUpdateAnswerUnused = false
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

/// The read side of a session: bytes fed with `feedEncrypted` (kept while unread) come first, then the buffer lent
/// for one socket read. OpenSSL reads it through `encryptedInputMethod`; after the takeover, `TLSSession` reads
/// whole records from it (`contiguous`, `consume`). Loop thread only.
private final class EncryptedInput {
    private var stored: UnsafeMutableRawPointer?
    private var storedCapacity = 0
    private var storedStart = 0
    private var storedCount = 0
    private var borrowed: UnsafeRawPointer?
    private var borrowedCount = 0
    /// Set on server sessions until the record layer is decided: once the handshake is complete (this SSL) and
    /// OpenSSL has read whole records, it reads no more, so the next record is still here for our own reader.
    var holdsBackAfterHandshakeOf: OpaquePointer?
    /// Set when our own record reader took over: OpenSSL gets no byte any more (an `SSL_do_handshake` for a
    /// KeyUpdate, or `SSL_shutdown`, must not consume records behind the reader's back).
    var isClosedToOpenSSL = false
    /// Where OpenSSL is in the record stream: header bytes read of the next record, body bytes still to come.
    private var header: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0)
    private var headerFill = 0
    private var bodyRemaining = 0

    deinit {
        stored?.deallocate()
    }

    var pendingCount: Int { storedCount + borrowedCount }

    /// OpenSSL has consumed whole records only.
    var isAtRecordBoundary: Bool { headerFill == 0 && bodyRemaining == 0 }

    func feed(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if storedCount + bytes.count > storedCapacity - storedStart {
            if storedCount + bytes.count <= storedCapacity, let stored {
                stored.copyMemory(from: stored + storedStart, byteCount: storedCount)
            } else {
                var capacity = max(storedCapacity, 16 * 1024)
                while capacity < storedCount + bytes.count { capacity *= 2 }
                let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
                if let stored {
                    grown.copyMemory(from: stored + storedStart, byteCount: storedCount)
                    stored.deallocate()
                }
                stored = grown
                storedCapacity = capacity
            }
            storedStart = 0
        }
        (stored! + storedStart + storedCount).copyMemory(from: base, byteCount: bytes.count)
        storedCount += bytes.count
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

    /// The next `count` unread bytes in one piece, or nil if fewer have arrived. Straight from the borrowed buffer
    /// unless earlier bytes are stored; then the missing ones are moved behind them (the one record per socket
    /// read that straddles two reads). Valid until the next call of any method.
    func contiguous(_ count: Int) -> UnsafeRawBufferPointer? {
        if storedCount == 0 {
            guard let borrowed, borrowedCount >= count else { return nil }
            return UnsafeRawBufferPointer(start: borrowed, count: count)
        }
        if storedCount < count, let borrowed, borrowedCount > 0 {
            let step = min(count - storedCount, borrowedCount)
            feed(UnsafeRawBufferPointer(start: borrowed, count: step))
            self.borrowed = borrowed + step
            borrowedCount -= step
        }
        guard storedCount >= count, let stored else { return nil }
        return UnsafeRawBufferPointer(start: stored + storedStart, count: count)
    }

    /// Drops `count` bytes that `contiguous(count)` returned.
    func consume(_ count: Int) {
        if storedCount > 0 {
            storedStart += count
            storedCount -= count
            if storedCount == 0 { releaseStorageIfLarge() }
        } else {
            borrowed = borrowed.map { $0 + count }
            borrowedCount -= count
        }
    }

    /// Idle connections keep at most 64 KiB (one partial record at the usual sizes).
    private func releaseStorageIfLarge() {
        storedStart = 0
        guard storedCapacity > 64 * 1024 else { return }
        stored?.deallocate()
        stored = nil
        storedCapacity = 0
    }

    /// `BIO_read_ex` semantics: 1 with `read` bytes, or 0 with the retry flag set when nothing is there yet.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, read: inout Int, bio: OpaquePointer) -> Int32 {
        BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
        let isHeldBack =
            isClosedToOpenSSL
            || holdsBackAfterHandshakeOf.map { isAtRecordBoundary && SSL_is_init_finished($0) == 1 } ?? false
        let source: UnsafeRawPointer?
        if isHeldBack {
            source = nil
        } else if storedCount > 0, let stored {
            source = UnsafeRawPointer(stored + storedStart)
        } else {
            source = borrowedCount > 0 ? borrowed : nil
        }
        guard let source else {
            // Like an empty memory BIO: "retry later", not end of stream.
            BIO_set_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY)
            read = 0
            return 0
        }
        let step = min(count, storedCount > 0 ? storedCount : borrowedCount)
        buffer.copyMemory(from: source, byteCount: step)
        if holdsBackAfterHandshakeOf != nil { track(source, count: step) }
        consume(step)
        read = step
        return 1
    }

    /// Follows the record headers of what OpenSSL reads (only until the record layer is decided).
    private func track(_ bytes: UnsafeRawPointer, count: Int) {
        var offset = 0
        while offset < count {
            if bodyRemaining > 0 {
                let step = min(bodyRemaining, count - offset)
                bodyRemaining -= step
                offset += step
                continue
            }
            let byte = bytes.load(fromByteOffset: offset, as: UInt8.self)
            switch headerFill {
            case 3: header.3 = byte
            case 4: header.4 = byte
            default: break
            }
            headerFill += 1
            offset += 1
            if headerFill == 5 {
                headerFill = 0
                bodyRemaining = Int(header.3) << 8 | Int(header.4)
            }
        }
    }
}

/// The `SSL_set_ex_data` slot where a server `SSL` points at its (unretained) `TLSSession`, for `logTrafficSecret`.
private let sessionIndex: Int32 = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, nil, nil, nil, nil)

/// `SSL_CTX_set_keylog_callback` of server contexts: OpenSSL hands every TLS 1.3 secret here as an NSS key log line.
/// Only "CLIENT_TRAFFIC_SECRET_0 <client random> <secret>" is kept, in the session, until the record reader is
/// set up from it (`TLSSession.takeOverRecordsIfPossible`); nothing is logged. OpenSSL wipes the line afterwards.
let logTrafficSecret: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { ssl, line in
    guard let ssl, let line, let data = SSL_get_ex_data(ssl, sessionIndex) else { return }
    let session = Unmanaged<TLSSession>.fromOpaque(data).takeUnretainedValue()
    var cursor = line
    for byte in "CLIENT_TRAFFIC_SECRET_0 ".utf8 {
        guard UInt8(bitPattern: cursor.pointee) == byte else { return }
        cursor += 1
    }
    while cursor.pointee != 0 && cursor.pointee != 0x20 { cursor += 1 }  // the client random
    guard cursor.pointee == 0x20 else { return }
    cursor += 1
    var secret: [UInt8] = []
    secret.reserveCapacity(64)
    func nibble(_ c: CChar) -> UInt8? {
        switch UInt8(bitPattern: c) {
        case 0x30...0x39: return UInt8(bitPattern: c) - 0x30
        case 0x61...0x66: return UInt8(bitPattern: c) - 0x61 + 10
        case 0x41...0x46: return UInt8(bitPattern: c) - 0x41 + 10
        default: return nil
        }
    }
    while let high = nibble(cursor.pointee), let low = nibble(cursor[1]), secret.count < 64 {
        secret.append(high << 4 | low)
        cursor += 2
    }
    session.wipeClientTrafficSecret()
    session.clientTrafficSecret = secret
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
