@testable import TusHTTPServer
import XCTest

/// One HTTP/2 stream's lifecycle without a socket: the decisions `HTTP2Connection` acts on (who hears the body's
/// end, which bytes are kept, which window reopens, when an answer or a fetch is refused).
final class HTTP2StreamStateMachineTests: XCTestCase {
    typealias Machine = HTTP2StreamStateMachine

    func testBodyEndsOnceWhenThePeerEndedAndTheBufferDrained() {
        var machine = Machine()
        XCTAssertTrue(machine.keepsArrivingBytes, "bytes wait for the handler (bounded by the window)")
        XCTAssertFalse(machine.bufferDrained(), "nothing to end before the handler reads")
        XCTAssertEqual(machine.readBodyRequested(), .start)
        XCTAssertEqual(machine.readBodyRequested(), .refuse, "one reader")
        XCTAssertFalse(machine.bufferDrained(), "the peer has not ended the request")
        machine.remoteEnded()
        XCTAssertTrue(machine.bufferDrained(), "the sink hears bodyEnd")
        XCTAssertFalse(machine.bufferDrained(), "once")
        XCTAssertFalse(machine.bodyAborted(), "an ended body is not aborted afterwards")
        XCTAssertEqual(machine.responseRequested(), .respond(endsBody: false))
        XCTAssertEqual(machine.responseRequested(), .refuse, "one answer")
    }

    /// `stopBody` (a hook's StopUpload): nothing more is kept, the dropped bytes reopen only the connection window,
    /// and the late answer goes out without ending a body again.
    func testStoppedBodyDropsBytesKeepsItsWindowShutAndTakesTheLateAnswer() {
        var machine = Machine()
        XCTAssertEqual(machine.readBodyRequested(), .start)
        XCTAssertTrue(machine.reopensStreamWindow)
        XCTAssertEqual(machine.stopBodyRequested(), .stop)
        XCTAssertEqual(machine.stopBodyRequested(), .ignore, "once")
        XCTAssertFalse(machine.keepsArrivingBytes)
        XCTAssertFalse(machine.reopensStreamWindow, "the client is held at the stream window")
        machine.remoteEnded()
        XCTAssertFalse(machine.bufferDrained(), "the sink hears no end after the stop")
        XCTAssertEqual(machine.responseRequested(), .respond(endsBody: false))
        XCTAssertFalse(machine.reopensStreamWindow, "still shut until the reset")
        XCTAssertFalse(machine.acceptsInformational)
        XCTAssertEqual(machine.stopBodyRequested(), .ignore, "nothing to stop after the answer")
    }

    /// An answer before the body's end (413, lock takeover) lets the sink go; what still comes is dropped and
    /// reopens both windows (the stream is reset once the answer is out).
    func testAnswerBeforeTheBodyEndsLetsTheSinkGo() {
        var machine = Machine()
        XCTAssertTrue(machine.acceptsInformational)
        XCTAssertEqual(machine.readBodyRequested(), .start)
        XCTAssertEqual(machine.responseRequested(), .respond(endsBody: true))
        XCTAssertFalse(machine.keepsArrivingBytes)
        XCTAssertTrue(machine.reopensStreamWindow)
        XCTAssertFalse(machine.acceptsInformational, "no 1xx after the final answer")
        XCTAssertEqual(machine.readBodyRequested(), .refuse)
        XCTAssertEqual(machine.stopBodyRequested(), .ignore)
    }

    /// A stream nghttp2 closed (reset by the peer, or by us) refuses what the handler still asks; a reading sink
    /// hears the abort once.
    func testClosedStreamRefusesLateCallsAndAbortsItsReaderOnce() {
        var machine = Machine()
        XCTAssertEqual(machine.readBodyRequested(), .start)
        machine.closed()
        XCTAssertTrue(machine.bodyAborted(), "the reading sink hears bodyAborted")
        XCTAssertFalse(machine.bodyAborted(), "once")
        XCTAssertEqual(machine.responseRequested(), .refuse)
        XCTAssertTrue(machine.hasResponded, "a later answer is ignored by the exchange too")
        XCTAssertFalse(machine.acceptsInformational)
        XCTAssertEqual(machine.stopBodyRequested(), .ignore)

        var waiting = Machine()
        waiting.closed()
        XCTAssertEqual(waiting.readBodyRequested(), .refuse, "a handler reading a reset stream's body hears the abort")
        XCTAssertFalse(waiting.bodyAborted(), "no sink was reading")
    }

    func testWorkListAndResponseFetchesAreOneAtATime() {
        var machine = Machine()
        XCTAssertTrue(machine.enqueue())
        XCTAssertFalse(machine.enqueue(), "queued once")
        machine.dequeued()
        XCTAssertTrue(machine.enqueue())

        XCTAssertFalse(machine.startFetch(), "nghttp2 has not asked for bytes")
        machine.responseBytesWanted()
        XCTAssertTrue(machine.startFetch())
        machine.responseBytesWanted()
        XCTAssertFalse(machine.startFetch(), "one fetch at a time")
        machine.fetchCompleted()
        XCTAssertTrue(machine.startFetch(), "the wish made meanwhile is served next")
        machine.fetchCompleted()
        XCTAssertFalse(machine.startFetch())
    }
}
