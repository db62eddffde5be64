import Foundation
import XCTest

/// PEM files made at test time with the `openssl` command line tool (EC P-256 keys: fast to generate), in a
/// temp directory removed by `remove()`.
struct TestCertificates: Sendable {
    let directory: String
    var caCertificate: String { directory + "/ca.pem" }
    var otherCACertificate: String { directory + "/other-ca.pem" }
    /// Leaf for "localhost" and 127.0.0.1, signed by the CA, valid two days.
    var serverCertificate: String { directory + "/server.pem" }
    var serverKey: String { directory + "/server.key" }
    /// A key that belongs to no certificate.
    var unrelatedKey: String { directory + "/unrelated.key" }
    /// Same key as the server, notAfter one day in the past.
    var expiredCertificate: String { directory + "/expired.pem" }

    static func generate() throws -> TestCertificates {
        let directory = NSTemporaryDirectory() + "tus-crypto-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        let caExtensions = [
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]
        try run(
            ["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Tus Test CA"]
                + caExtensions, in: directory)
        try run(
            ["req", "-x509"] + ec + [
                "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj",
                "/CN=Other CA",
            ] + caExtensions, in: directory)
        try run(
            ["req", "-new"] + ec + [
                "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ], in: directory)
        try run(
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-out", "server.pem",
                "-days", "2", "-copy_extensions", "copy",
            ], in: directory)
        try run(
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-out", "expired.pem",
                "-days", "-1", "-copy_extensions", "copy",
            ], in: directory)
        try run(
            ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "unrelated.key"],
            in: directory)
        return certificates
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func run(_ arguments: [String], in directory: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let errorText = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(
                domain: "openssl", code: Int(process.terminationStatus),
                userInfo: [
                    NSLocalizedDescriptionKey: "openssl \(arguments.joined(separator: " ")): "
                        + String(decoding: errorText, as: UTF8.self)
                ])
        }
    }
}
