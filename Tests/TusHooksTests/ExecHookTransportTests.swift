import Foundation
import TusProtocol
import TusTestSupport
import XCTest

@testable import TusHooks

/// The executable runner on its own (the interop suite drives it through the server).
final class ExecHookTransportTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "tus-exec-hooks-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func script(_ name: String, _ body: String) throws -> String {
        let path = directory + "/" + name
        try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        return path
    }

    func testStdinGoesInAndStdoutComesBack() throws {
        let path = try script("echo", "cat")
        let large = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)  // larger than a pipe buffer both ways
        let result = ExecHookTransport.run(path, input: large, timeoutMilliseconds: 10_000)
        XCTAssertEqual(try result.get(), large)
        XCTAssertTrue(ExecHookTransport(directory: directory, timeoutMilliseconds: 1000).handles("echo"))
        XCTAssertFalse(ExecHookTransport(directory: directory, timeoutMilliseconds: 1000).handles("missing"))
    }

    func testExitStatusAndTimeout() throws {
        let failing = try script("fail", "cat >/dev/null; exit 3")
        guard case .failure(let failure) = ExecHookTransport.run(failing, input: Array("{}".utf8), timeoutMilliseconds: 5000)
        else { return XCTFail("exit 3 is a failure") }
        XCTAssertTrue(failure.description.contains("exited with 3"), failure.description)

        let slow = try script("slow", "sleep 10")
        let started = Date()
        guard case .failure(let timeout) = ExecHookTransport.run(slow, input: [], timeoutMilliseconds: 200) else {
            return XCTFail("a hook past its timeout fails")
        }
        XCTAssertTrue(timeout.description.contains("timed out"), timeout.description)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "killed, not waited for")

        let closesEarly = try script("daemonish", "exec 1>&-; sleep 10")
        guard case .failure = ExecHookTransport.run(closesEarly, input: [], timeoutMilliseconds: 300) else {
            return XCTFail("closing stdout does not end the timeout")
        }
    }

    /// tusd's file hooks (`pkg/hooks/file`): the server's environment plus TUS_ID, TUS_SIZE, TUS_OFFSET, and the
    /// hooks directory as working directory. A stale TUS_ID in the server's own environment is replaced, not doubled.
    func testHookGetsTusdsEnvironmentInItsDirectory() throws {
        _ = try script(
            "post-receive",
            #"cat >/dev/null; printf '%s|%s|%s|%s|%s|%s' "$TUS_ID" "$TUS_SIZE" "$TUS_OFFSET" "$(pwd -P)" "#
                + #""$(env | grep -c '^TUS_ID=')" "$TUS_TEST_INHERITED""#)
        setenv("TUS_ID", "stale", 1)
        setenv("TUS_TEST_INHERITED", "kept", 1)
        defer {
            unsetenv("TUS_ID")
            unsetenv("TUS_TEST_INHERITED")
        }
        let executor = ManualExecutor()
        let transport = ExecHookTransport(directory: directory + "/", timeoutMilliseconds: 10_000)
        var output: [UInt8]?
        transport.invoke(
            "post-receive", payload: Array("{}".utf8), subject: HookSubject(id: "abc", size: 10, offset: 4),
            forwardedHeaders: [:], retrySafe: true, on: executor
        ) { output = try? $0.get() }
        executor.runPending()
        let resolved = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        XCTAssertEqual(output.map { String(decoding: $0, as: UTF8.self) }, "abc|10|4|\(resolved)|1|kept")
    }
}
