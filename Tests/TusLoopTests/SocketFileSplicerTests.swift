import Foundation
import Glibc
import TusLoop
import TusTestSupport
import XCTest

/// Real TCP on 127.0.0.1 and a real temp file: the splicer must put exactly the sent bytes at the given offset,
/// leave what follows them in the socket, and end with the right outcome when the peer stops early.
final class SocketFileSplicerTests: XCTestCase {
    private enum ClientEnding { case keepOpen, close, reset }

    private struct Run {
        var events: [SocketFileSplicer.Event] = []
        var pipeCapacities: [Int] = []
        var drainJobs = 0
        var drains = 0
        var receivedTotal: Int { events.reduce(0) { if case .received(let n) = $1 { $0 + n } else { $0 } } }
        var writtenTotal: Int { events.reduce(0) { if case .written(let n) = $1 { $0 + n } else { $0 } } }
        var outcome: SocketFileSplicer.Outcome? {
            for event in events { if case .ended(let outcome) = event { return outcome } }
            return nil
        }
    }

    /// Sends `bytes` from a plain blocking socket on another thread, then ends as told.
    private func startClient(port: Int, bytes: [UInt8], pauseAfter: Int? = nil, ending: ClientEnding) -> Thread {
        let thread = Thread {
            guard let client = try? RawHTTPClient(port: port) else { return XCTFail("connect failed") }
            if let pauseAfter {
                client.send(Array(bytes[..<pauseAfter]))
                usleep(200_000)  // the splicer drains the pipes meanwhile, so the rest arrives in several rounds
                client.send(Array(bytes[pauseAfter...]))
            } else {
                client.send(bytes)
            }
            switch ending {
            case .keepOpen:
                _ = client.waitForClose()
            case .close:
                client.closeWrite()
                _ = client.waitForClose()
            case .reset:
                client.resetOnClose()
            }
        }
        thread.start()
        return thread
    }

    /// Accepts one connection and splices `count` bytes into `path` at `offset`; `afterEnd` runs once it ended,
    /// with the stream (still open), then the loop finishes when the stream is closed.
    private func splice(
        path: String, offset: Int64, count: Int64, send bytes: [UInt8], pauseAfter: Int? = nil,
        ending: ClientEnding, cancelAfter: Int? = nil, openFlags: Int32 = O_WRONLY,
        pipeCapacity: Int = SocketFileSplicer.preferredPipeCapacity,
        afterEnd: @escaping (TCPStream, @escaping () -> Void) -> Void = { $0.close($1) }
    ) throws -> Run {
        var run = Run()
        let file = open(path, openFlags)
        XCTAssertGreaterThanOrEqual(file, 0)
        defer { Glibc.close(file) }
        var splicer: SocketFileSplicer?
        try withLoop(timeoutMilliseconds: 20_000) { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            try listener.listen { stream in
                listener.close()
                do {
                    splicer = try SocketFileSplicer(
                        stream: stream, file: file, offset: offset, count: count, pipeCapacity: pipeCapacity
                    ) { event in
                        if run.pipeCapacities.isEmpty { run.pipeCapacities = splicer?.pipeCapacities ?? [] }
                        run.events.append(event)
                        if case .received = event, let cancelAfter, run.receivedTotal >= cancelAfter {
                            splicer?.cancel()
                        }
                        if case .ended = event {
                            run.drainJobs = splicer?.drainJobs ?? 0
                            run.drains = splicer?.drains ?? 0
                            splicer = nil
                            afterEnd(stream) { finish() }
                        }
                    }
                } catch {
                    XCTFail("splicer: \(error)")
                    stream.close { finish() }
                }
            }
            _ = startClient(port: listener.localPort, bytes: bytes, pauseAfter: pauseAfter, ending: ending)
        }
        return run
    }

    private func temporaryFile(prefix: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "splicer-\(UUID().uuidString)"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(prefix)))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func contents(_ path: String) -> [UInt8] {
        Array(FileManager.default.contents(atPath: path) ?? Data())
    }

    func testExactBytesLandAtTheOffsetAndWhatFollowsStaysInTheSocket() throws {
        let prefix = [UInt8](repeating: 0xEE, count: 1000)
        let body = patternBytes(count: 3 << 20 + 123, seed: 3)
        let trailer = Array("NEXT REQUEST".utf8)
        let path = try temporaryFile(prefix: prefix)
        var afterBody: [UInt8] = []
        let run = try splice(
            path: path, offset: Int64(prefix.count), count: Int64(body.count), send: body + trailer,
            pauseAfter: body.count / 3, ending: .close
        ) { stream, done in
            // The bytes after the body are still in the socket, for the connection to read normally.
            let reader = CollectingDelegate()
            reader.onRead = { [unowned stream, unowned reader] result in
                if case .bytes = result { return }
                afterBody = reader.received
                stream.close(done)
            }
            stream.delegate = reader
            stream.startReading()
        }
        XCTAssertEqual(run.outcome, .complete)
        XCTAssertEqual(run.receivedTotal, body.count)
        XCTAssertEqual(run.writtenTotal, body.count)
        XCTAssertEqual(afterBody, trailer)
        let file = contents(path)
        XCTAssertEqual(file.count, prefix.count + body.count)
        XCTAssertTrue(file == prefix + body, "file bytes differ")
    }

    /// Many spliced uploads on a loop get smaller pipes (the body memory budget); bytes stay exact with them.
    func testSmallPipesFromTheBudgetStillDeliverExactBytes() throws {
        let body = patternBytes(count: 2 << 20 + 77, seed: 5)
        let path = try temporaryFile(prefix: [])
        let run = try splice(
            path: path, offset: 0, count: Int64(body.count), send: body, ending: .close, pipeCapacity: 128 << 10)
        XCTAssertEqual(run.outcome, .complete)
        XCTAssertEqual(run.pipeCapacities, [128 << 10, 128 << 10])
        XCTAssertTrue(contents(path) == body, "file bytes differ")
    }

    /// A client that sends faster than the file takes keeps a full pipe queued behind the draining one: the
    /// threadpool job goes on to it without a round trip through the loop, so there are fewer jobs than drains
    /// (one job per drain was the ~0.85x-of-nginx single upload of issue 19). Bytes stay exact across the queue.
    func testAQueuedPipeIsDrainedByTheRunningJob() throws {
        let body = patternBytes(count: 24 << 20 + 5, seed: 21)
        let path = try temporaryFile(prefix: [])
        let run = try splice(
            path: path, offset: 0, count: Int64(body.count), send: body, ending: .close, pipeCapacity: 64 << 10)
        XCTAssertEqual(run.outcome, .complete)
        XCTAssertEqual(run.writtenTotal, body.count)
        XCTAssertGreaterThanOrEqual(run.drains, body.count / (64 << 10))
        XCTAssertLessThan(run.drainJobs, run.drains, "every drain took a job of its own")
        XCTAssertTrue(contents(path) == body, "file bytes differ")
    }

    func testEOFMidBodyWritesWhatCameThenReportsThePeerClosed() throws {
        let body = patternBytes(count: 2 << 20, seed: 5)
        let sent = 1_234_567
        let path = try temporaryFile(prefix: [])
        let run = try splice(
            path: path, offset: 0, count: Int64(body.count), send: Array(body[..<sent]), ending: .close)
        XCTAssertEqual(run.outcome, .peerClosed)
        XCTAssertEqual(run.writtenTotal, sent)
        XCTAssertTrue(contents(path) == Array(body[..<sent]), "file holds exactly what was sent")
    }

    func testPeerResetEndsWithAContiguousPrefixInTheFile() throws {
        let body = patternBytes(count: 2 << 20, seed: 9)
        let path = try temporaryFile(prefix: [])
        let run = try splice(
            path: path, offset: 0, count: Int64(body.count), send: Array(body[..<700_000]), ending: .reset)
        guard let outcome = run.outcome else { return XCTFail("no end") }
        switch outcome {
        case .readFailed, .peerClosed: break
        default: XCTFail("unexpected outcome \(outcome)")
        }
        XCTAssertLessThanOrEqual(run.writtenTotal, 700_000)
        XCTAssertEqual(run.writtenTotal, run.receivedTotal, "what was taken from the socket is written before the end")
        XCTAssertTrue(contents(path) == Array(body[..<run.writtenTotal]), "file is an exact prefix")
    }

    /// A file that refuses the bytes (here: opened read-only, EBADF) ends the splicer with the write error, after
    /// which it reads nothing more.
    func testWriteFailureEndsWithTheError() throws {
        let body = patternBytes(count: 2 << 20, seed: 13)
        let path = try temporaryFile(prefix: [])
        let run = try splice(
            path: path, offset: 0, count: Int64(body.count), send: body, ending: .keepOpen, openFlags: O_RDONLY)
        XCTAssertEqual(run.outcome, .writeFailed(.badFileDescriptor))
        XCTAssertEqual(run.writtenTotal, 0)
        XCTAssertLessThan(run.receivedTotal, body.count, "reading stopped at the failure")
        XCTAssertEqual(contents(path), [])
    }

    func testCancelStopsReadingAndReportsOnlyWrittenBytes() throws {
        let body = patternBytes(count: 4 << 20, seed: 11)
        let path = try temporaryFile(prefix: [])
        let run = try splice(
            path: path, offset: 0, count: Int64(body.count), send: body, ending: .keepOpen, cancelAfter: 1 << 20)
        XCTAssertEqual(run.outcome, .cancelled)
        XCTAssertLessThan(run.receivedTotal, body.count)
        XCTAssertTrue(contents(path) == Array(body[..<run.writtenTotal]), "file is an exact prefix of the body")
        if case .ended = run.events.last {} else { XCTFail("nothing after the end") }
    }
}
