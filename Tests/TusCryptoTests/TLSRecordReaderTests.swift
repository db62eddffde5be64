import COpenSSL
import Foundation
import XCTest

@testable import TusCrypto

/// The server's own TLS 1.3 record reader (`TLS13RecordReader` behind `TLSSession`): every check of RFC 8446 §5
/// it makes has a test here that fails without it. Records are sent by a real OpenSSL client, and forged ones
/// (content types and paddings a client would not send) are sealed with the client's own traffic secret, which
/// the test reads from the client context's keylog callback.
final class TLSRecordReaderTests: XCTestCase {
    private static let certificates: Result<TestCertificates, any Error> = Result { try TestCertificates.generate() }

    override class func tearDown() {
        if case .success(let certificates) = certificates { certificates.remove() }
        super.tearDown()
    }

    private func serverContext() throws -> TLSContext {
        let files = try Self.certificates.get()
        return try TLSContext.server(certificatePath: files.serverCertificate, keyPath: files.serverKey, mode: .tls12)
    }

    /// A client context limited to `suite` (TLS 1.3 ciphersuites by OpenSSL name) that reports its traffic secret.
    private func clientContext(suite: String? = nil, allowsTLS13: Bool = true) throws -> TLSContext {
        let context = try TLSContext.client(
            caFile: try Self.certificates.get().caCertificate, insecure: false, allowsTLS13: allowsTLS13)
        if let suite { XCTAssertEqual(SSL_CTX_set_ciphersuites(context.context, suite), 1) }
        SSL_CTX_set_keylog_callback(context.context, captureClientSecret)
        return context
    }

    /// A completed TLS 1.3 handshake whose server reads records itself.
    private func connectedPair(suite: String? = nil) throws -> RecordPair {
        let pair = RecordPair(
            client: TLSSession(context: try clientContext(suite: suite), serverName: "localhost"),
            server: TLSSession(context: try serverContext()))
        try pair.handshake()
        XCTAssertTrue(pair.server.readsRecordsItself)
        return pair
    }

    private func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    // MARK: Happy paths

    func testEachTLS13SuiteUploadsByteExactThroughTheOwnReader() throws {
        for suite in ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"] {
            let pair = try connectedPair(suite: suite)
            XCTAssertEqual(String(cString: SSL_CIPHER_get_name(SSL_get_current_cipher(pair.server.ssl))), suite)
            let payload = randomBytes(1024 * 1024 + 17)
            try pair.client.writePlaintext(payload)
            try pair.pump()
            XCTAssertTrue(pair.receivedByServer == payload, "\(suite): \(pair.receivedByServer.count) bytes")
            // Responses still go through OpenSSL.
            try pair.server.writePlaintext([1, 2, 3])
            try pair.pump()
            XCTAssertEqual(pair.receivedByClient, [1, 2, 3])
        }
    }

    func testTLS12StaysWithOpenSSL() throws {
        try assertOpenSSLReadsAnUpload(
            client: try clientContext(allowsTLS13: false), server: try serverContext(), version: "TLSv1.2")
    }

    /// A TLS 1.3 suite the reader does not know (AES-128-CCM, off by default) stays with OpenSSL.
    func testATLS13SuiteWithoutOwnSupportStaysWithOpenSSL() throws {
        let server = try serverContext()
        XCTAssertEqual(SSL_CTX_set_ciphersuites(server.context, "TLS_AES_128_CCM_SHA256"), 1)
        try assertOpenSSLReadsAnUpload(
            client: try clientContext(suite: "TLS_AES_128_CCM_SHA256"), server: server, version: "TLSv1.3")
    }

    /// A session the reader declines: the handshake negotiates `version`, OpenSSL keeps reading, bytes arrive whole.
    private func assertOpenSSLReadsAnUpload(
        client: TLSContext, server: TLSContext, version: String, line: UInt = #line
    ) throws {
        let pair = RecordPair(
            client: TLSSession(context: client, serverName: "localhost"), server: TLSSession(context: server))
        try pair.handshake()
        let payload = randomBytes(200_000)
        try pair.client.writePlaintext(payload)
        try pair.pump()
        XCTAssertEqual(pair.server.negotiatedProtocolVersion, version, line: line)
        XCTAssertFalse(pair.server.readsRecordsItself, line: line)
        XCTAssertTrue(pair.receivedByServer == payload, line: line)
    }

    /// 0-RTT data would arrive under another key before the handshake ends: server contexts never accept it
    /// (OpenSSL's default max_early_data of 0), and the takeover also checks `SSL_get_early_data_status`.
    func testServerContextsAcceptNoEarlyData() throws {
        let context = try serverContext()
        XCTAssertEqual(SSL_CTX_get_max_early_data(context.context), 0)
        let session = TLSSession(context: context)
        XCTAssertEqual(SSL_get_max_early_data(session.ssl), 0)
    }

    func testClientKeyUpdatesMidUploadKeepTheUploadCorrect() throws {
        let pair = try connectedPair()
        var sent: [UInt8] = []
        for requested in [SSL_KEY_UPDATE_NOT_REQUESTED, SSL_KEY_UPDATE_REQUESTED, SSL_KEY_UPDATE_REQUESTED] {
            let part = randomBytes(100_000)
            try pair.client.writePlaintext(part)
            XCTAssertEqual(SSL_key_update(pair.client.ssl, requested), 1)
            sent += part
            try pair.client.writePlaintext(part)  // sends the KeyUpdate first, then records under the new key
            sent += part
            let (received, _) = pair.deliverToServer(pair.client.takeEncryptedOutput())
            pair.receivedByServer += received
            // Only update_requested makes the server send a KeyUpdate of its own (one 27-byte record).
            XCTAssertEqual(pair.server.pendingEncryptedByteCount, requested == SSL_KEY_UPDATE_REQUESTED ? 27 : 0)
            try pair.pump()
            // update_requested makes the server update its own write key: the client must still read it.
            try pair.server.writePlaintext([7])
            try pair.pump()
        }
        XCTAssertTrue(pair.receivedByServer == sent, "\(pair.receivedByServer.count) of \(sent.count) bytes")
        XCTAssertEqual(pair.receivedByClient, [7, 7, 7])
        XCTAssertEqual(pair.serverFailure?.description, nil)
    }

    func testCloseNotifyEndsTheStreamCleanly() throws {
        let pair = try connectedPair()
        try pair.client.writePlaintext([1, 2, 3])
        pair.client.shutdown()
        try pair.pump()
        XCTAssertEqual(pair.receivedByServer, [1, 2, 3])
        XCTAssertTrue(pair.serverSawClose)
        XCTAssertNil(pair.serverFailure)
    }

    // MARK: Hostile records

    func testAFlippedCiphertextOrTagBitEndsTheSessionWithNothingDelivered() throws {
        for flip in [5, 100, 1000, -16, -1] {  // first ciphertext byte, inner ones, first and last tag byte
            let pair = try connectedPair()
            try pair.client.writePlaintext(randomBytes(1000))
            var record = pair.client.takeEncryptedOutput()
            let index = flip < 0 ? record.count + flip : flip
            record[index] ^= 0x10
            let (received, result) = pair.deliverToServer(record)
            XCTAssertEqual(received, [], "flip at \(flip)")
            guard case .failed(let error) = result else { return XCTFail("flip at \(flip): \(result)") }
            XCTAssertTrue(error.description.contains("bad_record_mac"), error.description)
            // Sticky: nothing more comes out of this session.
            try pair.client.writePlaintext([1])
            let (later, laterResult) = pair.deliverToServer(pair.client.takeEncryptedOutput())
            XCTAssertEqual(later, [])
            guard case .failed = laterResult else { return XCTFail("\(laterResult)") }
        }
    }

    func testRecordsOverTheLengthLimitsAreRefusedFromTheHeader() throws {
        for length in [16384 + 256 + 1, 16384 + 1 + 16 + 1, 0xFFFF, 16, 0] {
            let pair = try connectedPair()
            // Only the header: the limit is enforced before any body byte is waited for.
            let (received, result) = pair.deliverToServer([23, 3, 3, UInt8(length >> 8), UInt8(length & 0xFF)])
            XCTAssertEqual(received, [])
            guard case .failed = result else { return XCTFail("length \(length): \(result)") }
        }
        // TLSInnerPlaintext may not exceed 2^14 + 1 bytes, padding included (RFC 8446 §5.4): a forged record of
        // 2^14 content bytes and its type is read, one byte of padding more is record_overflow.
        let pair = try connectedPair()
        let content = randomBytes(16384)
        let (received, result) = pair.deliverToServer(try pair.forge(content + [23]))
        XCTAssertTrue(received == content, "\(result)")
        let padded = try connectedPair()
        let (none, overflow) = padded.deliverToServer(try padded.forge(content + [23, 0]))
        XCTAssertEqual(none, [])
        guard case .failed(let error) = overflow else { return XCTFail("\(overflow)") }
        XCTAssertTrue(error.description.contains("record_overflow"), error.description)
    }

    func testATruncatedRecordDeliversNothing() throws {
        let pair = try connectedPair()
        try pair.client.writePlaintext(randomBytes(5000))
        let record = pair.client.takeEncryptedOutput()
        let (received, result) = pair.deliverToServer(Array(record.dropLast()))
        XCTAssertEqual(received, [])
        guard case .wantMore = result else { return XCTFail("\(result)") }
        let (rest, _) = pair.deliverToServer([record.last!])
        XCTAssertEqual(rest.count, 5000)
    }

    func testForgedInnerPlaintextsAreRefusedButAValidForgeryIsRead() throws {
        // The forger is right: a well-formed record of its own is read (with padding stripped).
        let valid = try connectedPair()
        let (hello, _) = valid.deliverToServer(try valid.forge(Array("hi".utf8) + [23, 0, 0, 0]))
        XCTAssertEqual(hello, Array("hi".utf8))

        let hostile: [(String, [UInt8])] = [
            ("unknown content type", [1, 2, 3, 99]),
            ("all-zero plaintext", [0, 0, 0, 0]),
            ("alert other than close_notify", [2, 40, 21]),
            ("a handshake message other than KeyUpdate", [4, 0, 0, 0, 22]),
            ("a KeyUpdate with a bad request value", [24, 0, 0, 1, 2, 22]),
            ("a KeyUpdate followed by more in its record", [24, 0, 0, 1, 0, 24, 0, 0, 1, 0, 22]),
            ("change_cipher_spec inside a record", [1, 20]),
        ]
        for (name, inner) in hostile {
            let pair = try connectedPair()
            let (received, result) = pair.deliverToServer(try pair.forge(inner))
            XCTAssertEqual(received, [], name)
            guard case .failed = result else { return XCTFail("\(name): \(result)") }
        }
        // A plaintext change_cipher_spec record after the handshake.
        let pair = try connectedPair()
        let (received, result) = pair.deliverToServer([20, 3, 3, 0, 1, 1])
        XCTAssertEqual(received, [])
        guard case .failed = result else { return XCTFail("plaintext change_cipher_spec: \(result)") }
    }

    // MARK: Boundaries and floods

    /// The client's Finished, its first records and a KeyUpdate arrive in one flight, then one byte per socket
    /// read: the record boundary tracking during the handshake must hand over exactly at the first record after
    /// Finished, and records split across many reads must be reassembled.
    func testAFlightWithFinishedDataAndKeyUpdateSplitByteByByteIsReadInOrder() throws {
        for pieceSize in [100_000, 1, 7] {
            let pair = RecordPair(
                client: TLSSession(context: try clientContext(), serverName: "localhost"),
                server: TLSSession(context: try serverContext()))
            pair.pieceSize = pieceSize
            let first = randomBytes(20_000)
            try pair.client.writePlaintext(first)  // held until the client's handshake completes, then follows Finished
            pair.client.startHandshake()
            try pair.pump()
            XCTAssertTrue(pair.server.readsRecordsItself, "piece size \(pieceSize)")
            let second = randomBytes(3000)
            XCTAssertEqual(SSL_key_update(pair.client.ssl, SSL_KEY_UPDATE_REQUESTED), 1)
            try pair.client.writePlaintext(second)
            try pair.pump()
            XCTAssertTrue(pair.receivedByServer == first + second, "piece size \(pieceSize)")
            try pair.server.writePlaintext([9])
            try pair.pump()
            XCTAssertEqual(pair.receivedByClient, [9])
        }
    }

    /// RFC 8446 §4.6.3: a side receiving several KeyUpdates while silent responds with a single update. Without
    /// that, every 27-byte update_requested record a client sends (and never reads the answer of) queues a
    /// 27-byte record of ours: output as large as the input, unbounded.
    func testUpdateRequestedFloodWhileTheServerIsSilentGetsOneAnswer() throws {
        let pair = try connectedPair()
        for _ in 0..<20 {
            XCTAssertEqual(SSL_key_update(pair.client.ssl, SSL_KEY_UPDATE_REQUESTED), 1)
            XCTAssertEqual(SSL_do_handshake(pair.client.ssl), 1)
        }
        try pair.client.writePlaintext([1])  // resets the run of KeyUpdates, not our answer
        let (received, result) = pair.deliverToServer(pair.client.takeEncryptedOutput())
        XCTAssertEqual(received, [1], "\(result)")
        XCTAssertEqual(pair.server.pendingEncryptedByteCount, 27)
        // After data of ours, the next request gets its own answer again.
        try pair.server.writePlaintext([2])
        try pair.pump()
        XCTAssertEqual(SSL_key_update(pair.client.ssl, SSL_KEY_UPDATE_REQUESTED), 1)
        XCTAssertEqual(SSL_do_handshake(pair.client.ssl), 1)
        _ = pair.deliverToServer(pair.client.takeEncryptedOutput())
        XCTAssertEqual(pair.server.pendingEncryptedByteCount, 27)
        try pair.pump()
        try pair.server.writePlaintext([3])
        try pair.client.writePlaintext([4])
        try pair.pump()
        XCTAssertEqual(pair.receivedByClient, [2, 3])
        XCTAssertEqual(pair.receivedByServer, [4])
    }

    /// Each KeyUpdate costs a key schedule step for 27 bytes of input: more than 32 in a row (no application data
    /// between) end the session; 32, then data, then 32 more are fine.
    func testMoreThan32KeyUpdatesInARowEndTheSession() throws {
        let pair = try connectedPair()
        for round in 0..<2 {
            for _ in 0..<TLSSession.maximumKeyUpdatesInARow {
                XCTAssertEqual(SSL_key_update(pair.client.ssl, SSL_KEY_UPDATE_NOT_REQUESTED), 1)
                XCTAssertEqual(SSL_do_handshake(pair.client.ssl), 1)
            }
            try pair.client.writePlaintext([UInt8(round)])
            try pair.pump()
        }
        XCTAssertEqual(pair.receivedByServer, [0, 1])
        for _ in 0...TLSSession.maximumKeyUpdatesInARow {
            XCTAssertEqual(SSL_key_update(pair.client.ssl, SSL_KEY_UPDATE_NOT_REQUESTED), 1)
            XCTAssertEqual(SSL_do_handshake(pair.client.ssl), 1)
        }
        try pair.client.writePlaintext([2])
        let (received, result) = pair.deliverToServer(pair.client.takeEncryptedOutput())
        XCTAssertEqual(received, [])
        guard case .failed(let error) = result else { return XCTFail("\(result)") }
        XCTAssertTrue(error.description.contains("KeyUpdate"), error.description)
    }

    /// Empty application records (legal, RFC 8446 §5.1) cost an AEAD call for 22 bytes each: more than 32 in a
    /// row end the session; 32 then a record with content are read.
    func testMoreThan32EmptyRecordsInARowEndTheSession() throws {
        let limit = TLSSession.maximumEmptyRecordsInARow
        let pair = try connectedPair()
        var flight: [UInt8] = []
        for sequence in 0..<limit { flight += try pair.forge([23, 0], sequence: UInt64(sequence)) }
        flight += try pair.forge([5, 23], sequence: UInt64(limit))
        let (received, result) = pair.deliverToServer(flight)
        XCTAssertEqual(received, [5], "\(result)")
        let flood = try connectedPair()
        var records: [UInt8] = []
        for sequence in 0...limit { records += try flood.forge([23], sequence: UInt64(sequence)) }
        let (none, failed) = flood.deliverToServer(records)
        XCTAssertEqual(none, [])
        guard case .failed(let error) = failed else { return XCTFail("\(failed)") }
        XCTAssertTrue(error.description.contains("empty"), error.description)
    }

    /// close_notify ends the stream: records after it in the same read are never decrypted nor delivered, and the
    /// session stays closed.
    func testNothingAfterCloseNotifyIsRead() throws {
        let pair = try connectedPair()
        let flight = try pair.forge([1, 2, 3, 23]) + pair.forge([1, 0, 21], sequence: 1)
            + pair.forge([9, 9, 23], sequence: 2)
        let (received, first) = pair.deliverToServer(flight)
        XCTAssertEqual(received, [1, 2, 3])
        guard case .closed = first else { return XCTFail("\(first)") }
        var buffer = [UInt8](repeating: 0, count: 64)
        guard case .closed = buffer.withUnsafeMutableBytes({ pair.server.readPlaintext(into: $0) }) else {
            return XCTFail("read after close_notify")
        }
    }

    /// A record that fails its tag after good ones in the same read: the session fails, and a later read
    /// returns the failure, never the records behind the bad one.
    func testRecordsBehindAFailedOneAreNeverRead() throws {
        let pair = try connectedPair()
        var bad = try pair.forge([7, 23], sequence: 1)
        bad[bad.count - 1] ^= 1
        let flight = try pair.forge([6, 23]) + bad + pair.forge([8, 23], sequence: 2)
        let (_, result) = pair.deliverToServer(flight)
        guard case .failed = result else { return XCTFail("\(result)") }
        var buffer = [UInt8](repeating: 0, count: 64)
        guard case .failed = buffer.withUnsafeMutableBytes({ pair.server.readPlaintext(into: $0) }) else {
            return XCTFail("read after a failed record")
        }
    }
}

/// The last CLIENT_TRAFFIC_SECRET_0 a test client logged (tests run one at a time).
nonisolated(unsafe) private var capturedClientSecret: [UInt8] = []

private let captureClientSecret: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { _, line in
    guard let line else { return }
    let fields = String(cString: line).split(separator: " ")
    guard fields.count == 3, fields[0] == "CLIENT_TRAFFIC_SECRET_0" else { return }
    let hex = Array(fields[2].utf8)
    capturedClientSecret = stride(from: 0, to: hex.count, by: 2).map {
        UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)!
    }
}

/// A client and a server session back to back in memory; the server reads through the borrowed input, as
/// `SecureStream` does.
private final class RecordPair {
    let client: TLSSession
    let server: TLSSession
    var receivedByServer: [UInt8] = []
    var receivedByClient: [UInt8] = []
    var serverSawClose = false
    var serverFailure: TLSError?
    /// The size of the socket reads `deliverToServer` simulates.
    var pieceSize = 100_000

    init(client: TLSSession, server: TLSSession) {
        capturedClientSecret = []
        self.client = client
        self.server = server
    }

    func handshake() throws {
        client.startHandshake()
        try pump()
        guard client.isHandshakeComplete, server.isHandshakeComplete else {
            throw TLSError("handshake did not complete")
        }
    }

    func pump() throws {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        for _ in 0..<100_000 {
            let toServer = client.takeEncryptedOutput()
            let toClient = server.takeEncryptedOutput()
            if toServer.isEmpty && toClient.isEmpty { break }
            let (bytes, result) = deliverToServer(toServer)
            receivedByServer += bytes
            switch result {
            case .closed: serverSawClose = true
            case .failed(let error): serverFailure = serverFailure ?? error
            default: break
            }
            toClient.withUnsafeBytes { client.feedEncrypted($0) }
            reading: while true {
                switch buffer.withUnsafeMutableBytes({ client.readPlaintext(into: $0) }) {
                case .bytes(let count): receivedByClient += buffer[0..<count]
                case .wantMore, .closed: break reading
                case .failed(let error): throw error
                }
            }
        }
        if let serverFailure { throw serverFailure }
    }

    /// Lends `bytes` to the server in pieces of up to `pieceSize` (as socket reads would come) and reads with a
    /// 256 KiB buffer, like an upload body chunk; returns the plaintext and the last result.
    func deliverToServer(_ bytes: [UInt8]) -> ([UInt8], TLSReadResult) {
        var received: [UInt8] = []
        var last = TLSReadResult.wantMore
        var plaintext = [UInt8](repeating: 0, count: 256 * 1024)
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + pieceSize)
            bytes[offset..<end].withUnsafeBytes { piece in
                server.withBorrowedEncryptedInput(piece) {
                    while true {
                        last = plaintext.withUnsafeMutableBytes { server.readPlaintext(into: $0) }
                        guard case .bytes(let count) = last else { break }
                        received += plaintext[0..<count]
                    }
                }
            }
            offset = end
        } while offset < bytes.count
        return (received, last)
    }

    /// Seals `inner` (TLSInnerPlaintext: content, type, padding) as the client's record number `sequence` would be,
    /// with the client's traffic secret (0: the client has sent no application record yet).
    func forge(_ inner: [UInt8], sequence: UInt64 = 0) throws -> [UInt8] {
        guard let cipher = SSL_get_current_cipher(client.ssl),
            let suite = TLS13RecordReader.Suite(protocolID: SSL_CIPHER_get_protocol_id(cipher)),
            capturedClientSecret.count == suite.hashLength
        else { throw TLSError("no client secret captured") }
        let key = capturedClientSecret.withUnsafeBytes {
            TLS13RecordReader.expandLabel(suite, secret: $0, label: "key", length: suite.keyLength)
        }
        let iv = capturedClientSecret.withUnsafeBytes {
            TLS13RecordReader.expandLabel(suite, secret: $0, label: "iv", length: 12)
        }
        defer {
            key.deallocate()
            iv.deallocate()
        }
        for index in 0..<8 { iv[4 + index] ^= UInt8(truncatingIfNeeded: sequence >> (56 - 8 * index)) }
        let length = inner.count + 16
        let header: [UInt8] = [23, 3, 3, UInt8(length >> 8), UInt8(length & 0xFF)]
        var ciphertext = [UInt8](repeating: 0, count: inner.count + 16)
        guard let context = EVP_CIPHER_CTX_new() else { throw TLSError("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        var outLength: Int32 = 0
        let ok = ciphertext.withUnsafeMutableBufferPointer { out in
            EVP_EncryptInit_ex(
                context, suite.cipher, nil, key.baseAddress!.assumingMemoryBound(to: UInt8.self),
                iv.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
                && EVP_EncryptUpdate(context, nil, &outLength, header, 5) == 1
                && EVP_EncryptUpdate(context, out.baseAddress, &outLength, inner, Int32(inner.count)) == 1
                && EVP_EncryptFinal_ex(context, out.baseAddress! + inner.count, &outLength) == 1
                && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, 16, out.baseAddress! + inner.count) == 1
        }
        guard ok else { throw TLSError("sealing failed") }
        return header + ciphertext
    }
}
