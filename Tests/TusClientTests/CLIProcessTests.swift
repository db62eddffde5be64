import Foundation
import Glibc
import XCTest

@testable import TusClient

/// Locates a product binary built next to the test bundle (`.build-xxx/debug/`), falling back to any
/// `.build*/debug` under the package root (found from this file's path).
func builtProduct(_ name: String) -> String? {
    var candidates: [String] = []
    let argument0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    // The runner is `.build-x/debug/<package>PackageTests.xctest` (a file on Linux).
    candidates.append(argument0.deletingLastPathComponent().appendingPathComponent(name).path)
    if let executable = Bundle.main.executableURL {
        candidates.append(executable.deletingLastPathComponent().appendingPathComponent(name).path)
    }
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        candidates.append(URL(fileURLWithPath: bundle.bundlePath).deletingLastPathComponent().appendingPathComponent(name).path)
    }
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    if let entries = try? FileManager.default.contentsOfDirectory(atPath: packageRoot.path) {
        for entry in entries.sorted() where entry.hasPrefix(".build") {
            candidates.append(packageRoot.appendingPathComponent("\(entry)/debug/\(name)").path)
        }
    }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// A spawned process with its stdout/stderr going to files (pipes could fill and block it).
final class SpawnedProcess {
    let process = Process()
    let outputPath: String
    let errorPath: String

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], logDirectory: String) throws {
        let tag = UUID().uuidString.prefix(8)
        outputPath = "\(logDirectory)/\(tag).out"
        errorPath = "\(logDirectory)/\(tag).err"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var errorOutput: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    @discardableResult
    func wait(seconds: Double = 60) -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            XCTFail("process \(process.executableURL!.lastPathComponent) did not finish in \(seconds) s: \(errorOutput)")
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }
}

final class CLIProcessTests: XCTestCase {
    var cli: String!
    var serverBinary: String!
    var directory: String!
    var servers: [SpawnedProcess] = []

    override func setUpWithError() throws {
        guard let cli = builtProduct("tus-cli"), let server = builtProduct("tus-server") else {
            throw XCTSkip(
                "tus-cli/tus-server binaries not found next to the test bundle; build them first "
                    + "(swift build --product tus-cli; swift build --product tus-server)")
        }
        self.cli = cli
        self.serverBinary = server
        directory = makeTemporaryDirectory()
    }

    override func tearDown() {
        for server in servers {
            server.signal(SIGTERM)
            server.wait(seconds: 10)
        }
        if let directory { removeTree(directory) }
    }

    /// Starts tus-server and returns its endpoint (from the one line it prints once bound).
    func startServer(_ arguments: [String]) throws -> String {
        let server = try SpawnedProcess(serverBinary, arguments + ["--host", "127.0.0.1", "--loops", "1"], logDirectory: directory)
        servers.append(server)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let line = server.output
            if let range = line.range(of: "listening on ") {
                let url = line[range.upperBound...].split(separator: "\n").first.map(String.init) ?? ""
                if url.hasSuffix("/") { return url }
            }
            guard server.process.isRunning else { break }
            usleep(10_000)
        }
        throw XCTSkip("tus-server did not start: \(server.errorOutput)")
    }

    func runCLI(_ arguments: [String], seconds: Double = 60) throws -> (status: Int32, output: String, error: String) {
        let process = try SpawnedProcess(
            cli, arguments, environment: ["XDG_CACHE_HOME": directory + "/cache"], logDirectory: directory)
        let status = process.wait(seconds: seconds)
        return (status, process.output, process.errorOutput)
    }

    /// Polls HEAD until the upload's offset passes `minimum`; returns the URL read from the resume record.
    func waitForProgress(minimum: Int64, client: TusClient, process: SpawnedProcess) throws -> TusURL? {
        let records = directory + "/cache/tus-cli/uploads"
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, process.process.isRunning {
            if let name = (try? FileManager.default.contentsOfDirectory(atPath: records))?.first(where: { !$0.contains(".tmp") }),
                let text = try? String(contentsOfFile: records + "/" + name, encoding: .utf8),
                let url = try? TusURL(string: text.trimmingCharacters(in: .whitespacesAndNewlines)),
                let status = try? client.head(url), status.offset >= minimum
            {
                return url
            }
            usleep(5_000)
        }
        return nil
    }

    func testUploadKilledMidwayResumesTheSameUpload() throws {
        let endpoint = try startServer(["--port", "0", "--store", "memory", "--upload-dir", directory + "/up"])
        let path = directory + "/big.bin"
        let size = 12 * 1024 * 1024
        let bytes = writeRandomFile(path, size: size)
        let client = try TusClient()
        defer { client.shutdown() }

        let first = try SpawnedProcess(
            cli, ["upload", path, endpoint, "--chunk-size", "16K"],
            environment: ["XDG_CACHE_HOME": directory + "/cache"], logDirectory: directory)
        let url = try XCTUnwrap(
            try waitForProgress(minimum: 64 * 1024, client: client, process: first), "no progress: \(first.errorOutput)")
        first.signal(SIGKILL)
        first.wait()
        let offsetAtKill = try client.head(url).offset
        XCTAssertLessThan(offsetAtKill, Int64(size), "the upload finished before it could be killed; make it slower")

        let second = try runCLI(["upload", path, endpoint, "--chunk-size", "1M"])
        XCTAssertEqual(second.status, 0, second.error)
        XCTAssertEqual(second.output.trimmingCharacters(in: .whitespacesAndNewlines), url.description, "a second upload was created")
        XCTAssertTrue(second.error.contains("resuming"), second.error)

        let downloaded = directory + "/downloaded.bin"
        XCTAssertEqual(try client.download(url, to: downloaded), Int64(size))
        XCTAssertTrue(readFile(downloaded) == bytes, "stored bytes differ from the file")
    }

    func testUploadRetriesAcrossAServerRestart() throws {
        let uploads = directory + "/up"
        let endpoint = try startServer(["--port", "0", "--upload-dir", uploads, "--fsync", "none"])
        let port = try XCTUnwrap(TusURL(string: endpoint).port)
        let path = directory + "/big.bin"
        let size = 8 * 1024 * 1024
        let bytes = writeRandomFile(path, size: size, seed: 7)
        let client = try TusClient()
        defer { client.shutdown() }

        let upload = try SpawnedProcess(
            cli, ["upload", path, endpoint, "--chunk-size", "32K", "--retries", "20", "--retry-delay-ms", "100"],
            environment: ["XDG_CACHE_HOME": directory + "/cache"], logDirectory: directory)
        let url = try XCTUnwrap(try waitForProgress(minimum: 64 * 1024, client: client, process: upload))
        servers[0].signal(SIGTERM)
        XCTAssertEqual(servers[0].wait(seconds: 15), 0)
        servers.removeAll()
        usleep(300_000)  // let the client hit the closed port at least once
        _ = try startServer(["--port", String(port), "--upload-dir", uploads, "--fsync", "none"])

        XCTAssertEqual(upload.wait(), 0, upload.errorOutput)
        XCTAssertEqual(upload.output.trimmingCharacters(in: .whitespacesAndNewlines), url.description)
        XCTAssertTrue(upload.errorOutput.contains("retry"), upload.errorOutput)
        let downloaded = directory + "/downloaded.bin"
        XCTAssertEqual(try client.download(url, to: downloaded), Int64(size))
        XCTAssertTrue(readFile(downloaded) == bytes, "stored bytes differ from the file")
    }

    func testVerbsAndExitCodes() throws {
        let endpoint = try startServer(["--port", "0", "--store", "memory", "--upload-dir", directory + "/up"])
        let path = directory + "/small.txt"
        let bytes = writeRandomFile(path, size: 5000)

        let options = try runCLI(["options", endpoint])
        XCTAssertEqual(options.status, 0, options.error)
        XCTAssertTrue(options.output.contains("Tus-Version: 1.0.0"), options.output)

        let post = try runCLI(["post", endpoint, "--length", "5000", "--metadata", "filename=small.txt", "-v"])
        XCTAssertEqual(post.status, 0, post.error)
        XCTAssertTrue(post.error.contains("> POST /files/ HTTP/1.1"), post.error)
        XCTAssertTrue(post.error.contains("< HTTP/1.1 201"), post.error)
        let url = try XCTUnwrap(post.output.split(separator: "\n").first.map(String.init))

        let patch = try runCLI(["patch", url, "--offset", "0", "--file", path, "--length", "2000", "--checksum", "sha256"])
        XCTAssertEqual(patch.status, 0, patch.error)
        XCTAssertTrue(patch.output.contains("Upload-Offset: 2000"), patch.output)
        let conflict = try runCLI(["patch", url, "--offset", "0", "--file", path])
        XCTAssertEqual(conflict.status, 3, conflict.error)
        let rest = try runCLI(["patch", url, "--offset", "2000", "--file", path])
        XCTAssertEqual(rest.status, 0, rest.error)

        let head = try runCLI(["head", url])
        XCTAssertTrue(head.output.contains("Upload-Offset: 5000"), head.output)

        let downloaded = directory + "/downloaded.txt"
        _ = FileManager.default.createFile(atPath: downloaded, contents: Data(bytes[0..<1234]))
        let download = try runCLI(["download", url, "-o", downloaded])
        XCTAssertEqual(download.status, 0, download.error)
        XCTAssertTrue(readFile(downloaded) == bytes)

        XCTAssertEqual(try runCLI(["delete", url]).status, 0)
        XCTAssertEqual(try runCLI(["head", url]).status, 3)

        XCTAssertEqual(try runCLI(["head", "not-a-url"]).status, 1)
        XCTAssertEqual(try runCLI(["post", endpoint]).status, 1, "neither --length nor --defer-length")
        XCTAssertEqual(try runCLI(["options", "http://127.0.0.1:1/files/"]).status, 2)
        XCTAssertEqual(try runCLI(["upload", directory + "/missing.bin", endpoint]).status, 4)
        let help = try runCLI(["--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.output.contains("Exit codes"), help.output)
    }

    func testProtocolIETFArgumentsAreCheckedBeforeAnyRequest() throws {
        let path = directory + "/small.bin"
        _ = writeRandomFile(path, size: 100)
        let endpoint = "http://127.0.0.1:1/files/"
        for arguments in [
            ["--protocol", "ietf", "--interop", "2"], ["--protocol", "ietf", "--interop", "10"], ["--interop", "9"],
            ["--protocol", "http3"], ["--protocol", "ietf", "--parallel", "2"],
            ["--protocol", "ietf", "--checksum", "sha1"], ["--protocol", "ietf", "--metadata", "owner=me"],
        ] {
            let result = try runCLI(["upload", path, endpoint] + arguments)
            XCTAssertEqual(result.status, 1, "\(arguments): \(result.error)")
        }
        // Valid arguments reach the network (nothing listens on port 1): exit 2.
        let unreachable = try runCLI(
            ["upload", path, endpoint, "--protocol", "ietf", "--interop", "3", "--retries", "0"])
        XCTAssertEqual(unreachable.status, 2, unreachable.error)
    }

    /// Needs a tus-server that serves the draft (issue 22); one that does not answers the probe without a 104.
    func testIETFUploadKilledMidwayResumesTheSameUpload() throws {
        let endpoint = try startServer(["--port", "0", "--store", "memory", "--upload-dir", directory + "/up"])
        let client = try TusClient()
        defer { client.shutdown() }
        let probe = try? client.createResumableUpload(
            at: try TusURL(string: endpoint), body: nil, complete: true, length: 0)
        guard let probe, probe.informationalCount > 0 else {
            throw XCTSkip("this tus-server does not serve Resumable Uploads for HTTP")
        }
        let path = directory + "/big.bin"
        let size = 12 * 1024 * 1024
        let bytes = writeRandomFile(path, size: size, seed: 3)
        let first = try SpawnedProcess(
            cli, ["upload", path, endpoint, "--protocol", "ietf", "--interop", "6", "--chunk-size", "16K"],
            environment: ["XDG_CACHE_HOME": directory + "/cache"], logDirectory: directory)
        let draft = ResumableUploadDraft(6)!
        let records = directory + "/cache/tus-cli/uploads"
        var url: TusURL? = nil
        let deadline = Date().addingTimeInterval(20)
        while url == nil, Date() < deadline, first.process.isRunning {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: records)) ?? []
            if let name = names.first(where: { !$0.contains(".tmp") }),
                let text = try? String(contentsOfFile: records + "/" + name, encoding: .utf8),
                let candidate = try? TusURL(string: text.trimmingCharacters(in: .whitespacesAndNewlines)),
                let state = try? client.resumableUploadState(candidate, draft: draft), state.offset >= 64 * 1024
            {
                url = candidate
            }
            usleep(5_000)
        }
        first.signal(SIGKILL)
        first.wait()
        let uploadURL = try XCTUnwrap(url, "no progress: \(first.errorOutput)")
        XCTAssertLessThan(try client.resumableUploadState(uploadURL, draft: draft).offset, Int64(size))

        let second = try runCLI(
            ["upload", path, endpoint, "--protocol", "ietf", "--interop", "6", "--chunk-size", "1M"])
        XCTAssertEqual(second.status, 0, second.error)
        XCTAssertEqual(second.output.trimmingCharacters(in: .whitespacesAndNewlines), uploadURL.description)
        XCTAssertTrue(second.error.contains("resuming"), second.error)
        let state = try client.resumableUploadState(uploadURL, draft: draft)
        XCTAssertTrue(state.isComplete)
        let downloaded = directory + "/downloaded.bin"
        XCTAssertEqual(try client.download(uploadURL, to: downloaded), Int64(size))
        XCTAssertTrue(readFile(downloaded) == bytes, "stored bytes differ from the file")

        // -v shows the 104 ahead of the final response.
        let small = directory + "/small.txt"
        _ = writeRandomFile(small, size: 1000)
        let traced = try runCLI(["upload", small, endpoint, "--protocol", "ietf", "-v", "-q"])
        XCTAssertEqual(traced.status, 0, traced.error)
        let lines = traced.error.split(separator: "\n")
        let interim = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("< HTTP/1.1 104") }, traced.error)
        let final = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("< HTTP/1.1 201") }, traced.error)
        XCTAssertLessThan(interim, final)
        XCTAssertTrue(traced.error.contains("> Upload-Draft-Interop-Version: 9"), traced.error)
    }
}
