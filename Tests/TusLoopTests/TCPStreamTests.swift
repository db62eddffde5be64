import Dispatch
import TusLoop
import TusTestSupport
import XCTest

/// Reads into one fixed buffer and hands each read to `onRead`, the shape a real connection uses.
final class CollectingDelegate: TCPStreamDelegate {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    var received: [UInt8] = []
    var readCount = 0
    var eofCount = 0
    var errors: [UVError] = []
    var onRead: (ReadResult) -> Void = { _ in }

    deinit {
        buffer.deallocate()
    }

    func allocateReadBuffer(suggestedSize: Int) -> UnsafeMutableRawBufferPointer {
        buffer
    }

    func didRead(_ result: ReadResult) {
        switch result {
        case .bytes(let count):
            readCount += 1
            received.append(contentsOf: buffer[..<count])
        case .eof:
            eofCount += 1
        case .error(let error):
            errors.append(error)
        }
        onRead(result)
    }
}

final class TCPStreamTests: XCTestCase {
    func testEchoRoundTripWithEOFBothWays() throws {
        let message = patternBytes(count: 100_000)
        var clientWriteCompletions = 0
        var serverWriteCompletions = 0
        var serverEOFs = 0
        var accepted = 0
        weak var weakServerStream: TCPStream?
        weak var weakClientStream: TCPStream?
        weak var weakListener: TCPListener?
        weak var weakServerDelegate: CollectingDelegate?
        let clientDelegate = CollectingDelegate()

        try withLoop { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            weakListener = listener
            XCTAssertGreaterThan(listener.localPort, 0)
            try listener.listen { stream in
                accepted += 1
                weakServerStream = stream
                XCTAssertNotNil(stream.remoteAddress?.hasPrefix("127.0.0.1:"))
                let echo = CollectingDelegate()
                weakServerDelegate = echo
                echo.onRead = { [unowned stream, unowned echo] result in
                    switch result {
                    case .bytes(let count):
                        let chunk = Array(echo.buffer[..<count])
                        stream.write(chunk) { error in
                            XCTAssertNil(error)
                            serverWriteCompletions += 1
                        }
                    case .eof:
                        serverEOFs += 1
                        stream.close()
                    case .error(let error):
                        XCTFail("server read error \(error)")
                        stream.close()
                    }
                }
                stream.delegate = echo  // the stream keeps its delegate alive until closed
                stream.setNoDelay(true)
                stream.startReading()
                listener.close()  // one connection is all this test needs
            }

            TCPStream.connect(loop: loop, host: "127.0.0.1", port: listener.localPort) { result in
                guard case .success(let client) = result else { return XCTFail("connect failed: \(result)") }
                weakClientStream = client
                client.delegate = clientDelegate
                client.setKeepAlive(true, delaySeconds: 30)
                clientDelegate.onRead = { [unowned client] result in
                    switch result {
                    case .bytes:
                        if clientDelegate.received.count == message.count {
                            client.shutdown { error in XCTAssertNil(error) }
                        }
                    case .eof:
                        client.close { finish() }
                    case .error(let error):
                        XCTFail("client read error \(error)")
                        client.close { finish() }
                    }
                }
                client.startReading()
                let half = message.count / 2
                client.write(Array(message[..<half])) { error in
                    XCTAssertNil(error)
                    clientWriteCompletions += 1
                }
                message.withUnsafeBytes { bytes in
                    // The array `message` outlives the loop run, so no owner is needed for this buffer.
                    client.write([UnsafeRawBufferPointer(rebasing: bytes[half...])], owner: nil) { error in
                        XCTAssertNil(error)
                        clientWriteCompletions += 1
                    }
                }
                XCTAssertGreaterThanOrEqual(client.writeQueueSize, 0)
            }
        }
        clientDelegate.onRead = { _ in }  // its closure captured the delegate itself
        XCTAssertEqual(accepted, 1)
        XCTAssertEqual(clientWriteCompletions, 2)
        XCTAssertGreaterThanOrEqual(serverWriteCompletions, 1)
        XCTAssertEqual(serverEOFs, 1)
        XCTAssertEqual(clientDelegate.eofCount, 1)
        XCTAssertEqual(clientDelegate.errors, [])
        XCTAssertEqual(clientDelegate.received, message)
        XCTAssertNil(weakServerStream)
        XCTAssertNil(weakClientStream)
        XCTAssertNil(weakListener)
        XCTAssertNil(weakServerDelegate)
    }

    /// `writeAtOnce` hands the kernel what it takes now and nothing more: with bytes still queued by `write` it
    /// writes none (they would be overtaken), and a closed stream takes none.
    func testWriteAtOnceTakesWhatTheKernelTakesAndNeverOvertakesQueuedBytes() throws {
        let big = patternBytes(count: 32 << 20)  // more than loopback's socket buffers: most of it stays queued
        var atOnce: [Int] = []
        var writeErrors: [UVError?] = []
        let clientDelegate = CollectingDelegate()
        try withLoop { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            try listener.listen { stream in
                listener.close()
                atOnce.append(stream.writeAtOnce(Array("abc".utf8)))
                stream.write(big) { writeErrors.append($0) }
                atOnce.append(stream.writeAtOnce(Array("xyz".utf8)))
                stream.write(Array("xyz".utf8)) { error in
                    writeErrors.append(error)
                    stream.close()
                    atOnce.append(stream.writeAtOnce([1]))
                }
            }
            TCPStream.connect(loop: loop, host: "127.0.0.1", port: listener.localPort) { result in
                guard case .success(let client) = result else { return XCTFail("connect failed: \(result)") }
                client.delegate = clientDelegate
                clientDelegate.onRead = { [unowned client] result in
                    if case .bytes = result { return }
                    client.close { finish() }
                }
                client.startReading()
            }
        }
        clientDelegate.onRead = { _ in }
        XCTAssertEqual(atOnce, [3, 0, 0])
        XCTAssertEqual(writeErrors.map { $0 == nil }, [true, true])
        XCTAssertEqual(clientDelegate.eofCount, 1)
        XCTAssertTrue(clientDelegate.received == Array("abc".utf8) + big + Array("xyz".utf8), "bytes in order")
    }

    func testStopReadingStopsDeliveryUntilResumed() throws {
        let total = 1 << 20
        let payload = patternBytes(count: total, seed: 7)
        let serverDelegate = CollectingDelegate()
        var readsWhilePaused = 0
        var paused = false
        var clientWriteCompleted = 0

        try withLoop { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            var clientStream: TCPStream?
            try listener.listen { stream in
                listener.close()
                stream.delegate = serverDelegate
                serverDelegate.onRead = { [unowned stream] result in
                    if paused { readsWhilePaused += 1 }
                    guard case .bytes = result else { return XCTFail("unexpected \(result)") }
                    if serverDelegate.readCount == 1 {
                        stream.stopReading()
                        XCTAssertFalse(stream.isReading)
                        paused = true
                        loop.schedule(afterMilliseconds: 100) {
                            paused = false
                            stream.startReading()
                        }
                    }
                    if serverDelegate.received.count == total {
                        stream.close()
                        clientStream?.close { finish() }
                    }
                }
                stream.startReading()
                XCTAssertTrue(stream.isReading)
            }
            TCPStream.connect(loop: loop, host: "localhost", port: listener.localPort) { result in
                guard case .success(let client) = result else { return XCTFail("connect failed") }
                clientStream = client
                client.write(payload) { error in
                    XCTAssertNil(error)
                    clientWriteCompleted += 1
                }
            }
        }
        serverDelegate.onRead = { _ in }  // its closure captured the delegate itself
        XCTAssertEqual(readsWhilePaused, 0)
        XCTAssertGreaterThan(serverDelegate.readCount, 1)
        XCTAssertEqual(serverDelegate.received, payload)
        XCTAssertEqual(clientWriteCompleted, 1)
    }

    /// Regression: a delegate that stops reading from inside `allocateReadBuffer` (the HTTP connection does, when
    /// handing a full chunk to a busy writer) used to make libuv call a null read callback and crash.
    func testStopReadingFromInsideAllocateIsDeferredToAfterThatRead() throws {
        final class StoppingDelegate: TCPStreamDelegate {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
            unowned(unsafe) var stream: TCPStream?
            var received: [UInt8] = []
            var allocations = 0
            var readsAfterStop = 0
            var stopped = false
            deinit { buffer.deallocate() }
            func allocateReadBuffer(suggestedSize: Int) -> UnsafeMutableRawBufferPointer {
                allocations += 1
                if allocations == 2 {
                    stream?.stopReading()
                    stopped = true
                }
                return buffer
            }
            func didRead(_ result: ReadResult) {
                guard case .bytes(let count) = result else { return }
                if stopped && allocations > 2 { readsAfterStop += 1 }
                received.append(contentsOf: buffer[..<count])
            }
        }
        let total = 256 * 1024
        let payload = patternBytes(count: total, seed: 3)
        let delegate = StoppingDelegate()
        var wasReadingWhilePaused = true
        try withLoop { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            var clientStream: TCPStream?
            try listener.listen { stream in
                listener.close()
                delegate.stream = stream
                stream.delegate = delegate
                stream.startReading()
                loop.schedule(afterMilliseconds: 100) {
                    wasReadingWhilePaused = stream.isReading
                    XCTAssertEqual(delegate.allocations, 2, "no allocation while stopped")
                    stream.startReading()
                    func waitForAll() {
                        if delegate.received.count == total {
                            stream.close()
                            clientStream?.close { finish() }
                        } else {
                            loop.schedule(afterMilliseconds: 5) { waitForAll() }
                        }
                    }
                    waitForAll()
                }
            }
            TCPStream.connect(loop: loop, host: "127.0.0.1", port: listener.localPort) { result in
                guard case .success(let client) = result else { return XCTFail("connect failed") }
                clientStream = client
                client.write(payload) { XCTAssertNil($0) }
            }
        }
        XCTAssertFalse(wasReadingWhilePaused)
        XCTAssertEqual(delegate.received, payload)
    }

    func testConnectionRefusedCompletesOnceWithError() throws {
        var results: [Result<TCPStream, UVError>] = []
        try withLoop { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            let port = listener.localPort
            listener.close {
                TCPStream.connect(loop: loop, host: "127.0.0.1", port: port) { result in
                    results.append(result)
                    loop.schedule(afterMilliseconds: 1) { finish() }
                }
            }
        }
        XCTAssertEqual(results.count, 1)
        guard case .failure(let error) = results.first else { return XCTFail("expected failure") }
        XCTAssertEqual(error, .connectionRefused)
    }

    func testBadAddressFailsSynchronouslyAndWriteAfterCloseIsCancelled() throws {
        var connectErrors: [UVError] = []
        var writeErrors: [UVError?] = []
        try withLoop { loop, finish in
            TCPStream.connect(loop: loop, host: "127.0.0.1", port: 70000) { result in
                if case .failure(let error) = result { connectErrors.append(error) }
            }
            XCTAssertEqual(connectErrors, [.invalidArgument])
            XCTAssertThrowsError(try TCPListener(loop: loop, host: "127.0.0.1", port: 70000, reusePort: false))

            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            try listener.listen { $0.close() }
            TCPStream.connect(loop: loop, host: "127.0.0.1", port: listener.localPort) { result in
                guard case .success(let client) = result else { return XCTFail("connect failed") }
                client.close {
                    XCTAssertTrue(client.isClosed)
                    XCTAssertNil(client.remoteAddress)
                    client.write([1, 2, 3]) { writeErrors.append($0) }
                    client.close { listener.close { finish() } }  // idempotent, completion still runs
                }
            }
        }
        XCTAssertEqual(writeErrors, [.cancelled])
    }

    func testListenersShareAPortWithReusePortAcrossLoops() throws {
        let first = try EventLoop()
        let second = try EventLoop()
        let firstListener = try TCPListener(loop: first, host: "127.0.0.1", port: 0, reusePort: true)
        let port = firstListener.localPort
        let secondListener = try TCPListener(loop: second, host: "127.0.0.1", port: port, reusePort: true)
        XCTAssertEqual(secondListener.localPort, port)

        let accepted = Recorder<Int>()
        try firstListener.listen { stream in
            accepted.append(1)
            stream.close()
        }
        try secondListener.listen { stream in
            accepted.append(2)
            stream.close()
        }
        // Once the port is listening, a socket without SO_REUSEPORT cannot join it.
        do {
            let intruder = try TCPListener(loop: second, host: "127.0.0.1", port: port, reusePort: false)
            intruder.close()
            XCTFail("bind without reusePort succeeded on a listening port")
        } catch {
            XCTAssertEqual(error as? UVError, .addressInUse)
        }
        first.runOnNewThread(name: "reuseport-1")
        second.runOnNewThread(name: "reuseport-2")

        // A third loop acts as client: both listeners must accept connections made to the shared port.
        let connections = 16
        let client = try EventLoop()
        var connected = 0
        for _ in 0..<connections {
            TCPStream.connect(loop: client, host: "127.0.0.1", port: port) { result in
                guard case .success(let stream) = result else { return XCTFail("connect failed \(result)") }
                connected += 1
                stream.close()
                if connected == connections { client.stop() }
            }
        }
        client.run()
        XCTAssertEqual(connected, connections)

        // Accepts happen asynchronously on the server loops: wait briefly for all of them.
        for _ in 0..<200 where accepted.all.count < connections {
            usleep(5000)
        }
        XCTAssertEqual(accepted.all.count, connections)

        for (loop, listener) in [(first, firstListener), (second, secondListener)] {
            nonisolated(unsafe) let listener = listener
            loop.execute {
                listener.close()
                loop.stop()
            }
        }
        first.join()
        second.join()
        XCTAssertEqual(first.handlesClosedAtShutdown + second.handlesClosedAtShutdown, 0)
    }
}
