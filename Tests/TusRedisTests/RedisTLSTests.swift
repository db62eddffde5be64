import TusLoop
import TusRedis
import TusTestSupport
import XCTest

/// `rediss://` against a real redis-server serving TLS (Debian's is built with it): the client trusts the test CA,
/// checks the certificate against the host name, and presents a client certificate when Redis asks for one
/// (`tls-auth-clients yes`, Redis's default). The plain port stays open only so the harness can PING.
final class RedisTLSTests: XCTestCase {
    private static let certificates: Result<TestCertificates, any Error> = Result { try TestCertificates.generate() }

    override class func tearDown() {
        if case .success(let certificates) = certificates { certificates.remove() }
    }

    private func tlsServer(requiresClientCertificate: Bool) throws -> (RedisServerProcess, tlsPort: Int) {
        let files = try Self.certificates.get()
        let tlsPort = RedisServerProcess.freePort()
        let server = try RedisServerProcess(extraArguments: [
            "--tls-port", String(tlsPort), "--tls-cert-file", files.serverCertificate, "--tls-key-file",
            files.serverKey, "--tls-ca-cert-file", files.caCertificate, "--tls-auth-clients",
            requiresClientCertificate ? "yes" : "no",
        ])
        return (server, tlsPort)
    }

    private func run(_ client: RedisClient, _ commands: [[RedisArgument]]) throws -> [Result<RESPValue, RedisError>] {
        var results: [Result<RESPValue, RedisError>] = []
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 0) {
                client.sendSequence(commands, on: loop) { collected in
                    results = collected
                    client.shutdown(on: loop) { finish() }
                }
            }
        }
        return results
    }

    func testCommandsRoundTripOverTLSWithAClientCertificate() throws {
        let files = try Self.certificates.get()
        let (server, tlsPort) = try tlsServer(requiresClientCertificate: true)
        var configuration = try RedisConfiguration(url: "rediss://localhost:\(tlsPort)/2")
        configuration.tls = RedisTLSOptions(
            caFile: files.caCertificate, certificateFile: files.serverCertificate, keyFile: files.serverKey)
        let value = patternBytes(count: 200_000)  // several TLS records each way
        let results = try run(
            RedisClient(configuration: configuration), [["SET", "k", RedisArgument(value)], ["GET", "k"], ["CLIENT", "INFO"]])
        XCTAssertEqual(results.count, 3)
        guard results.count == 3 else { return }
        XCTAssertEqual(results[0], .success(.simpleString("OK")))
        XCTAssertEqual(results[1], .success(.bulkString(value)))
        // SELECT 2 went over the same TLS connection before the commands.
        guard case .success(.bulkString(let info)) = results[2] else { return XCTFail("\(results[2])") }
        XCTAssertTrue(String(decoding: info, as: UTF8.self).contains(" db=2 "), String(decoding: info, as: UTF8.self))
        withExtendedLifetime(server) {}
    }

    func testWithoutTheClientCertificateRedisRefusesAndTheLogSaysTLS() throws {
        let files = try Self.certificates.get()
        let (server, tlsPort) = try tlsServer(requiresClientCertificate: true)
        var configuration = try RedisConfiguration(url: "rediss://localhost:\(tlsPort)")
        configuration.tls = RedisTLSOptions(caFile: files.caCertificate)
        let log = Recorder<String>()
        let results = try run(RedisClient(configuration: configuration, log: { log.append($0) }), [["PING"]])
        XCTAssertEqual(results.count, 1)
        if let first = results.first, case .success = first { XCTFail("PING succeeded without a client certificate") }
        XCTAssertTrue(log.all.contains { $0.contains("TLS") }, "\(log.all)")
        withExtendedLifetime(server) {}
    }

    func testAnUntrustedServerCertificateFailsCommandsWithTheReason() throws {
        let files = try Self.certificates.get()
        let (server, tlsPort) = try tlsServer(requiresClientCertificate: false)
        var configuration = try RedisConfiguration(url: "rediss://localhost:\(tlsPort)")
        configuration.tls = RedisTLSOptions(caFile: files.otherCACertificate)
        let log = Recorder<String>()
        let results = try run(RedisClient(configuration: configuration, log: { log.append($0) }), [["PING"]])
        XCTAssertEqual(results.count, 1)
        if let first = results.first, case .success = first { XCTFail("PING succeeded with an untrusted certificate") }
        XCTAssertTrue(log.all.contains { $0.contains("certificate verification") }, "\(log.all)")
        withExtendedLifetime(server) {}
    }

    func testAMissingCAFileIsReportedByMakeContext() {
        XCTAssertThrowsError(try RedisTLSOptions(caFile: "/nonexistent/ca.pem").makeContext()) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/ca.pem"), "\(error)")
        }
        XCTAssertThrowsError(try RedisTLSOptions(certificateFile: "/nonexistent/client.pem").makeContext())
    }
}
