import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// The composer's checkpoints for a shared state store (`.durableCheckpoints`), on the memory twin with that policy
/// and virtual time: what another instance's HEAD would see while a PATCH streams or stalls.
final class ComposedUploadStoreTests: TusTestCase {
    override func setUp() {
        super.setUp()
        let shared = MemoryStateStore(progressPolicy: .durableCheckpoints(bytes: 64, milliseconds: 1000))
        configure(store: MemoryUploadStore(state: shared, data: MemoryDataStore()))
    }

    func startPatch(_ path: String, length: Int64) -> FakeExchange {
        client.start(
            .PATCH, path, headers: ["Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"],
            framing: .contentLength(length))
    }

    func testAStalledBodyIsCheckpointedWithinTheInterval() {
        let path = createUpload(length: 100)
        let exchange = startPatch(path, length: 100)
        exchange.deliver(Array(repeating: 1, count: 10))
        client.executor.runPending()
        XCTAssertEqual(offset(path), 0, "below the byte mark: not yet")
        client.executor.advance(byMilliseconds: 999)
        XCTAssertEqual(offset(path), 0)
        client.executor.advance(byMilliseconds: 1)
        XCTAssertEqual(offset(path), 10, "the body stalled, the clock did not")
        XCTAssertEqual(client.executor.activeTimerCount, 0, "everything recorded: no timer until more bytes come")

        exchange.deliver(Array(repeating: 2, count: 70))
        client.executor.runPending()
        XCTAssertEqual(offset(path), 80, "crossing the byte mark checkpoints at once")
        exchange.deliver(Array(repeating: 3, count: 5))
        client.executor.runPending()
        XCTAssertEqual(client.executor.activeTimerCount, 1)
        exchange.deliver(Array(repeating: 4, count: 5))
        exchange.endBody()
        client.executor.runPending()
        XCTAssertEqual(exchange.status, 204)
        XCTAssertEqual(offset(path), 90)
        XCTAssertEqual(client.executor.activeTimerCount, 0, "the commit stops the timer")
    }

    func testTheTimerOutlivesNoRequest() {
        let path = createUpload(length: 100)
        let exchange = startPatch(path, length: 100)
        exchange.deliver(Array(repeating: 1, count: 10))
        client.executor.runPending()
        exchange.abortBody(.clientClosed)
        client.executor.runPending()
        XCTAssertEqual(offset(path), 10, "committed at the abort")
        XCTAssertEqual(client.executor.activeTimerCount, 0)
    }
}
