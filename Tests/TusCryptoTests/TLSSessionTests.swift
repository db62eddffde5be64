import Foundation
import XCTest

@testable import TusCrypto

final class TLSSessionTests: XCTestCase {
    private static let certificates: Result<TestCertificates, any Error> = Result { try TestCertificates.generate() }

    override class func tearDown() {
        if case .success(let certificates) = certificates { certificates.remove() }
        super.tearDown()
    }

    private func fixtures() throws -> TestCertificates {
        try Self.certificates.get()
    }

    private func serverContext(_ mode: TLSMode = .tls12) throws -> TLSContext {
        let files = try fixtures()
        return try TLSContext.server(certificatePath: files.serverCertificate, keyPath: files.serverKey, mode: mode)
    }

    private func clientContext(allowsTLS13: Bool = true) throws -> TLSContext {
        try TLSContext.client(caFile: try fixtures().caCertificate, insecure: false, allowsTLS13: allowsTLS13)
    }

    // MARK: Handshake and negotiation

    func testHandshakeNegotiatesTLS13AndHTTP11() throws {
        let pair = Pair(
            client: TLSSession(context: try clientContext(), serverName: "localhost"),
            server: TLSSession(context: try serverContext(.tls12)))
        try pair.handshake()
        for session in [pair.client, pair.server] {
            XCTAssertTrue(session.isHandshakeComplete)
            XCTAssertEqual(session.negotiatedProtocolVersion, "TLSv1.3")
            XCTAssertEqual(session.negotiatedALPN, "http/1.1")
        }
    }

    func testEveryModeAcceptsADefaultClient() throws {
        for mode in TLSMode.allCases {
            let pair = Pair(
                client: TLSSession(context: try clientContext(), serverName: "localhost"),
                server: TLSSession(context: try serverContext(mode)))
            try pair.handshake()
            XCTAssertEqual(pair.server.negotiatedProtocolVersion, "TLSv1.3", "\(mode)")
        }
        XCTAssertEqual(TLSMode(rawValue: "tls12-strong"), .tls12Strong)
    }

    func testTLS12OnlyClientWorksWithTLS12ModesAndFailsAgainstTLS13Mode() throws {
        for mode in [TLSMode.tls12, .tls12Strong] {
            let pair = Pair(
                client: TLSSession(context: try clientContext(allowsTLS13: false), serverName: "localhost"),
                server: TLSSession(context: try serverContext(mode)))
            try pair.handshake()
            XCTAssertEqual(pair.client.negotiatedProtocolVersion, "TLSv1.2", "\(mode)")
            XCTAssertEqual(pair.server.negotiatedALPN, "http/1.1", "\(mode)")
            try pair.roundTrip(Array("hello over 1.2".utf8))
        }
        let pair = Pair(
            client: TLSSession(context: try clientContext(allowsTLS13: false), serverName: "localhost"),
            server: TLSSession(context: try serverContext(.tls13)))
        XCTAssertThrowsError(try pair.handshake()) { error in
            XCTAssertTrue("\(error)".contains("version"), "\(error)")
        }
        XCTAssertFalse(pair.server.isHandshakeComplete)
    }

    func testIPAddressServerNameIsVerifiedAgainstSubjectAltName() throws {
        let pair = Pair(
            client: TLSSession(context: try clientContext(), serverName: "127.0.0.1"),
            server: TLSSession(context: try serverContext()))
        try pair.handshake()
        XCTAssertTrue(pair.client.isHandshakeComplete)
    }

    // MARK: Data

    func testOneMebibyteRoundTripsBothWaysIncludingWritesBeforeHandshake() throws {
        let pair = Pair(
            client: TLSSession(context: try clientContext(), serverName: "localhost"),
            server: TLSSession(context: try serverContext()))
        var generator = SystemRandomNumberGenerator()
        let payload = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // Written before any handshake byte moved: the session must hold it and send it after the handshake.
        try pair.client.writePlaintext(payload)
        pair.client.startHandshake()
        try pair.pump()
        XCTAssertEqual(pair.receivedByServer, payload)
        try pair.server.writePlaintext(payload)
        try pair.pump()
        XCTAssertEqual(pair.receivedByClient, payload)
    }

    /// The server reads its ciphertext through `withBorrowedEncryptedInput` in odd-sized pieces that split
    /// records, and on odd rounds stops after one small read inside the borrow: the bytes must arrive complete
    /// and in order, and the caller's buffer is overwritten right after each call to prove that nothing still
    /// points into it (partial records live on in OpenSSL's own buffer or in the input BIO).
    func testBorrowedInputDeliversEveryByteWhateverIsLeftUnread() throws {
        let client = TLSSession(context: try clientContext(), serverName: "localhost")
        let server = TLSSession(context: try serverContext())
        var generator = SystemRandomNumberGenerator()
        let payload = (0..<(300 * 1024)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try client.writePlaintext(payload)
        client.startHandshake()
        var received: [UInt8] = []
        var scratch = [UInt8](repeating: 0, count: 64 * 1024)
        var plaintext = [UInt8](repeating: 0, count: 5000)
        var ignored = [UInt8](repeating: 0, count: 1024)
        var piece = 7
        var rounds = 0
        while received.count < payload.count && rounds < 100_000 {
            rounds += 1
            server.takeEncryptedOutput().withUnsafeBytes { client.feedEncrypted($0) }
            _ = ignored.withUnsafeMutableBytes { client.readPlaintext(into: $0) }  // advances the client handshake
            let toServer = client.takeEncryptedOutput()
            var offset = 0
            repeat {
                let end = min(toServer.count, offset + piece)
                let count = end - offset
                scratch.withUnsafeMutableBytes { buffer in
                    toServer.withUnsafeBytes { source in
                        if count > 0 { buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: count) }
                    }
                    server.withBorrowedEncryptedInput(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) {
                        // One read per borrow on odd rounds leaves records unread in the borrowed buffer.
                        for _ in 0..<(rounds % 2 == 1 ? 1 : 1000) {
                            let result = plaintext.withUnsafeMutableBytes { server.readPlaintext(into: $0) }
                            guard case .bytes(let read) = result else { break }
                            received += plaintext[0..<read]
                        }
                    }
                    buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
                }
                offset = end
                piece = piece % 20_000 * 3 + 1  // up to 60,001: within `scratch`
            } while offset < toServer.count
        }
        XCTAssertEqual(received.count, payload.count)
        XCTAssertTrue(received == payload, "plaintext differs from what the client sent")
    }

    func testShutdownDeliversClosedToPeer() throws {
        let pair = Pair(
            client: TLSSession(context: try clientContext(), serverName: "localhost"),
            server: TLSSession(context: try serverContext()))
        try pair.handshake()
        pair.server.shutdown()
        try pair.pump()
        XCTAssertTrue(pair.clientSawClose)
        XCTAssertThrowsError(try pair.server.writePlaintext([1]))
    }

    // MARK: Failures

    func testWrongCAFailsVerification() throws {
        let context = try TLSContext.client(caFile: try fixtures().otherCACertificate, insecure: false)
        let pair = Pair(
            client: TLSSession(context: context, serverName: "localhost"),
            server: TLSSession(context: try serverContext()))
        XCTAssertThrowsError(try pair.handshake()) { error in
            XCTAssertTrue("\(error)".contains("certificate verification"), "\(error)")
        }
        XCTAssertFalse(pair.client.isHandshakeComplete)
    }

    func testInsecureClientSkipsVerification() throws {
        let context = try TLSContext.client(caFile: try fixtures().otherCACertificate, insecure: true)
        let pair = Pair(
            client: TLSSession(context: context, serverName: "example.com"),
            server: TLSSession(context: try serverContext()))
        try pair.handshake()
    }

    func testHostnameMismatchFailsVerification() throws {
        let pair = Pair(
            client: TLSSession(context: try clientContext(), serverName: "example.com"),
            server: TLSSession(context: try serverContext()))
        XCTAssertThrowsError(try pair.handshake()) { error in
            XCTAssertTrue("\(error)".contains("hostname mismatch"), "\(error)")
        }
    }

    func testMismatchedKeyIsRefusedAtContextCreation() throws {
        let files = try fixtures()
        XCTAssertThrowsError(
            try TLSContext.server(certificatePath: files.serverCertificate, keyPath: files.unrelatedKey, mode: .tls12)
        ) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(files.unrelatedKey) && text.contains("does not match"), text)
        }
    }

    func testExpiredCertificateIsRefusedAtContextCreation() throws {
        let files = try fixtures()
        XCTAssertThrowsError(
            try TLSContext.server(certificatePath: files.expiredCertificate, keyPath: files.serverKey, mode: .tls13)
        ) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(files.expiredCertificate) && text.contains("expired"), text)
        }
    }

    func testMissingFilesAreNamed() throws {
        let files = try fixtures()
        let missing = files.directory + "/nope.pem"
        XCTAssertThrowsError(try TLSContext.server(certificatePath: missing, keyPath: files.serverKey, mode: .tls12)) {
            XCTAssertTrue("\($0)".contains(missing), "\($0)")
        }
        XCTAssertThrowsError(
            try TLSContext.server(certificatePath: files.serverCertificate, keyPath: missing, mode: .tls12)
        ) { XCTAssertTrue("\($0)".contains(missing), "\($0)") }
        XCTAssertThrowsError(try TLSContext.client(caFile: missing, insecure: false)) {
            XCTAssertTrue("\($0)".contains(missing), "\($0)")
        }
    }

    func testJunkAndPlainHTTPFailTheServerSessionWithoutCrashing() throws {
        let inputs: [[UInt8]] = [
            Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
            [0x16, 0x03, 0x01, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919) },
        ]
        for input in inputs {
            let server = TLSSession(context: try serverContext())
            input.withUnsafeBytes { server.feedEncrypted($0) }
            var buffer = [UInt8](repeating: 0, count: 1024)
            let result = buffer.withUnsafeMutableBytes { server.readPlaintext(into: $0) }
            guard case .failed(let error) = result else { return XCTFail("expected .failed, got \(result)") }
            XCTAssertFalse(error.description.isEmpty)
            _ = server.takeEncryptedOutput()  // may hold an alert; must not crash
            // The failure is sticky.
            guard case .failed = buffer.withUnsafeMutableBytes({ server.readPlaintext(into: $0) }) else {
                return XCTFail("failure should be sticky")
            }
            XCTAssertThrowsError(try server.writePlaintext([1, 2, 3]))
        }
    }

    // MARK: Threads

    func testContextsAndSessionsCanBeCreatedFromManyThreads() throws {
        let files = try fixtures()
        let client = try clientContext()
        let sharedServer = try serverContext()
        let failures = ManagedFailureCount()
        DispatchQueue.concurrentPerform(iterations: 8) { index in
            do {
                // Odd iterations reload (new context), even ones share one context across threads.
                let server =
                    index % 2 == 1
                    ? try TLSContext.server(
                        certificatePath: files.serverCertificate, keyPath: files.serverKey, mode: .tls12)
                    : sharedServer
                let pair = Pair(
                    client: TLSSession(context: client, serverName: "localhost"),
                    server: TLSSession(context: server))
                try pair.handshake()
                try pair.roundTrip(Array("thread \(index)".utf8))
            } catch {
                failures.record("\(error)")
            }
        }
        XCTAssertEqual(failures.messages, [])
    }
}

private final class ManagedFailureCount: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func record(_ message: String) { lock.withLock { stored.append(message) } }
    var messages: [String] { lock.withLock { stored } }
}

/// A client and a server session wired back to back in memory, as a connection would wire them to a socket.
private final class Pair {
    let client: TLSSession
    let server: TLSSession
    var receivedByServer: [UInt8] = []
    var receivedByClient: [UInt8] = []
    var clientSawClose = false
    var serverSawClose = false

    init(client: TLSSession, server: TLSSession) {
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

    func roundTrip(_ message: [UInt8]) throws {
        receivedByServer = []
        receivedByClient = []
        try client.writePlaintext(message)
        try pump()
        guard receivedByServer == message else { throw TLSError("server received \(receivedByServer.count) bytes") }
        try server.writePlaintext(message)
        try pump()
        guard receivedByClient == message else { throw TLSError("client received \(receivedByClient.count) bytes") }
    }

    /// Moves bytes in odd-sized pieces until neither side has anything to send; throws the first failure.
    func pump() throws {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var clientFailure: TLSError?
        var serverFailure: TLSError?
        while true {
            let toServer = client.takeEncryptedOutput()
            let toClient = server.takeEncryptedOutput()
            if toServer.isEmpty && toClient.isEmpty { break }
            feed(toServer, to: server)
            feed(toClient, to: client)
            drain(server, into: &receivedByServer, closed: &serverSawClose, failure: &serverFailure, buffer: &buffer)
            drain(client, into: &receivedByClient, closed: &clientSawClose, failure: &clientFailure, buffer: &buffer)
        }
        if let failure = clientFailure ?? serverFailure { throw failure }
    }

    private func feed(_ bytes: [UInt8], to session: TLSSession) {
        var offset = 0
        var piece = 1
        bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let end = min(raw.count, offset + piece)
                session.feedEncrypted(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                offset = end
                piece = piece * 3 + 1
            }
        }
    }

    private func drain(
        _ session: TLSSession, into received: inout [UInt8], closed: inout Bool, failure: inout TLSError?,
        buffer: inout [UInt8]
    ) {
        while true {
            let result = buffer.withUnsafeMutableBytes { session.readPlaintext(into: $0) }
            switch result {
            case .bytes(let count): received += buffer[0..<count]
            case .wantMore: return
            case .closed:
                closed = true
                return
            case .failed(let error):
                failure = failure ?? error
                return
            }
        }
    }
}
