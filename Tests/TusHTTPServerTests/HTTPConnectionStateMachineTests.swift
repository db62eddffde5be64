@testable import TusHTTPServer
import XCTest

/// The connection's decisions without a socket or a sleep: every deadline is checked against a manual clock,
/// and every backpressure count against the actions the machine returns. The socket-level tests in
/// `HTTPServerTests` and `BodyRateTests` prove that `HTTPConnection` performs these actions end to end.
final class HTTPConnectionStateMachineTests: XCTestCase {
    typealias Machine = HTTPConnectionStateMachine

    /// Loop milliseconds, moved by hand.
    struct ManualClock {
        private(set) var now: UInt64 = 1_000
        mutating func advance(by milliseconds: UInt64) { now += milliseconds }
    }

    private func makeMachine(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in }) -> Machine {
        var configuration = HTTPServerConfiguration()
        configuration.headTimeoutMilliseconds = 1_000
        configuration.idleTimeoutMilliseconds = 5_000
        configuration.bodyTimeoutMilliseconds = 2_000
        configuration.minBodyBytesPerSecond = 0
        configuration.bodyRateWindowMilliseconds = 1_000
        configuration.maxOutstandingFragments = 4
        configure(&configuration)
        return Machine(limits: .init(configuration))
    }

    /// A started connection whose head arrived; the handler has it. Reading stops for a body or a close (and with
    /// TLS); a complete request on a kept-alive plain connection goes on reading.
    private func handling(
        _ machine: inout Machine, clock: ManualClock, keepAlive: Bool = true, hasBody: Bool = true, isTLS: Bool = false
    ) {
        XCTAssertEqual(machine.start(now: clock.now, isTLS: isTLS), .startReading)
        XCTAssertEqual(machine.step(buffered: true, at: clock.now), .parseHead)
        let (sequence, read) = machine.headReceived(keepAlive: keepAlive, hasBody: hasBody)
        XCTAssertEqual(sequence, 1)
        XCTAssertEqual(read, hasBody || !keepAlive || isTLS ? .stopReading : .none)
    }

    /// `expected` comes exactly `milliseconds` from now, and not a millisecond earlier.
    private func assertTick(
        _ machine: inout Machine, _ clock: inout ManualClock, after milliseconds: UInt64,
        is expected: Machine.TickAction, line: UInt = #line
    ) {
        clock.advance(by: milliseconds - 1)
        XCTAssertEqual(machine.tick(now: clock.now), .none, "a millisecond early", line: line)
        clock.advance(by: 1)
        XCTAssertEqual(machine.tick(now: clock.now), expected, line: line)
    }

    /// A started connection whose handler asked for the body; the socket reads it.
    private func readingBody(_ machine: inout Machine, clock: ManualClock) {
        handling(&machine, clock: clock)
        XCTAssertEqual(machine.readBodyRequested(now: clock.now), .startBody)
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.startReading))
    }

    private func rateLimited(_ bytesPerSecond: Int) -> (inout HTTPServerConfiguration) -> Void {
        { configuration in
            configuration.minBodyBytesPerSecond = bytesPerSecond
            configuration.bodyTimeoutMilliseconds = 10_000  // far away: only the rate can cut
        }
    }

    // MARK: Head and idle timeouts

    func testPlainConnectionIdlesUntilTheIdleTimeoutAndTimesOutOnce() {
        var clock = ManualClock()
        var machine = makeMachine()
        XCTAssertEqual(machine.start(now: clock.now, isTLS: false), .startReading)
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .awaitHead(.none))
        clock.advance(by: 4_999)
        XCTAssertEqual(machine.tick(now: clock.now), .none)
        clock.advance(by: 1)
        XCTAssertEqual(machine.tick(now: clock.now), .idleTimeout, "closed without a 408: no request had begun")
        clock.advance(by: 10_000)
        XCTAssertEqual(machine.tick(now: clock.now), .none, "a timeout fires once")
    }

    func testTLSHandshakeMustFinishWithinTheHeadTimeout() {
        var clock = ManualClock()
        var machine = makeMachine()
        XCTAssertEqual(machine.start(now: clock.now, isTLS: true), .startReading)
        clock.advance(by: 1_000)
        XCTAssertEqual(machine.tick(now: clock.now), .idleTimeout)
    }

    /// Slowloris: the head timeout runs from the head's first byte, and later bytes do not extend it.
    func testHeadTimeoutRunsFromTheFirstByteAndAnswers408() {
        var clock = ManualClock()
        var machine = makeMachine()
        _ = machine.start(now: clock.now, isTLS: false)
        clock.advance(by: 4_000)  // idle for a while, then a head starts trickling
        XCTAssertEqual(machine.step(buffered: true, at: clock.now), .parseHead)
        XCTAssertEqual(machine.phase, .readingHead(since: clock.now))
        XCTAssertEqual(machine.headIncomplete(), .none, "still reading")
        for _ in 0..<9 {
            clock.advance(by: 100)
            XCTAssertEqual(machine.step(buffered: true, at: clock.now), .parseHead)
            XCTAssertEqual(machine.tick(now: clock.now), .none)
        }
        assertTick(&machine, &clock, after: 100, is: .headTimeout)
        XCTAssertEqual(machine.requestFailed(), .stopReading)
        XCTAssertEqual(machine.phase, .responding)
        XCTAssertFalse(machine.responseStarted(closeRequested: true, expectsContinue: false,
            remainingBodyLength: nil, now: clock.now).keepAlive)
    }

    func testAHandlerMayTakeAsLongAsItLikes() {
        var clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        clock.advance(by: 1_000_000)
        XCTAssertEqual(machine.tick(now: clock.now), .none, "no deadline while the handler decides (locks, stores)")
    }

    // MARK: Keep-alive and pipelining

    func testPipelinedBytesWaitForTheResponseThenTheIdleTimeoutStartsAgain() {
        var clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock, hasBody: false)
        // The next request is already buffered: it waits, and reading stops until the exchange is over.
        XCTAssertEqual(machine.step(buffered: true, at: clock.now), .wait(.stopReading))
        XCTAssertEqual(machine.step(buffered: true, at: clock.now), .wait(.none))
        XCTAssertEqual(machine.readBodyRequested(now: clock.now), .endAtOnce)
        let (keepAlive, read) = machine.responseStarted(
            closeRequested: false, expectsContinue: false, remainingBodyLength: nil, now: clock.now)
        XCTAssertTrue(keepAlive)
        XCTAssertEqual(read, .none)
        clock.advance(by: 10)
        XCTAssertEqual(machine.responseSent(now: clock.now), .finishExchange)
        XCTAssertEqual(machine.exchangeFinished(now: clock.now), .readNextRequest)
        XCTAssertEqual(machine.deadline, clock.now + 5_000, "idle timeout between requests")
        XCTAssertEqual(machine.step(buffered: true, at: clock.now), .parseHead)
        XCTAssertEqual(machine.deadline, clock.now + 1_000, "the buffered head gets the head timeout")
        XCTAssertEqual(machine.headReceived(keepAlive: true, hasBody: false).sequence, 2)
    }

    /// No `uv_read_stop`/`uv_read_start` (two `epoll_ctl`) per bodiless request on a kept-alive plain connection.
    func testABodilessRequestKeepsTheSocketReadingThroughItsExchange() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock, hasBody: false)
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.none))
        XCTAssertTrue(machine.isReading)
        XCTAssertEqual(machine.readBodyRequested(now: clock.now), .endAtOnce)
        let (keepAlive, read) = machine.responseStarted(
            closeRequested: false, expectsContinue: false, remainingBodyLength: nil, now: clock.now)
        XCTAssertTrue(keepAlive)
        XCTAssertEqual(read, .none)
        XCTAssertEqual(machine.responseSent(now: clock.now), .finishExchange)
        XCTAssertEqual(machine.exchangeFinished(now: clock.now), .readNextRequest)
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .awaitHead(.none))
        XCTAssertTrue(machine.isReading)
    }

    /// TLS keeps the pause (what it would save is small beside the record work).
    func testABodilessRequestOverTLSStopsReading() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock, hasBody: false, isTLS: true)
        XCTAssertFalse(machine.isReading)
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.none))
    }

    /// The peer's end of the stream during a complete request: it gets its response (with `Connection: close`),
    /// then the connection closes; during a body, or between requests, the connection ends at once.
    func testPeerEndDuringACompleteRequestClosesAfterTheResponse() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock, hasBody: false)
        XCTAssertEqual(machine.peerEnded(), .closeAfterResponse(.stopReading))
        XCTAssertFalse(machine.isReading)
        XCTAssertFalse(machine.responseStarted(closeRequested: false, expectsContinue: false,
            remainingBodyLength: nil, now: clock.now).keepAlive)
        XCTAssertEqual(machine.responseSent(now: clock.now), .closeGracefully)

        var reading = makeMachine()
        readingBody(&reading, clock: clock)
        XCTAssertEqual(reading.peerEnded(), .close)

        var idle = makeMachine()
        _ = idle.start(now: clock.now, isTLS: false)
        XCTAssertEqual(idle.peerEnded(), .close)
    }

    func testConnectionCloseRequestClosesAfterTheResponse() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock, keepAlive: false, hasBody: false)
        XCTAssertFalse(machine.responseStarted(closeRequested: false, expectsContinue: false,
            remainingBodyLength: nil, now: clock.now).keepAlive)
        XCTAssertEqual(machine.responseSent(now: clock.now), .closeGracefully)
    }

    // MARK: Body timeout, minimum rate, backpressure

    func testBodyTimeoutRestartsWithEveryProgress() {
        var clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        XCTAssertEqual(machine.readBodyRequested(now: clock.now), .startBody)
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.startReading))
        clock.advance(by: 1_500)
        XCTAssertTrue(machine.bodyDataFramed(count: 3, now: clock.now))
        clock.advance(by: 1_999)
        XCTAssertEqual(machine.tick(now: clock.now), .none)
        machine.bodyNeedsMoreData(now: clock.now)  // a partial chunk header is progress too
        assertTick(&machine, &clock, after: 2_000, is: .bodyTimeout)
    }

    /// 10 bytes/s against a minimum of 1000: cut at the end of the first window, not before.
    func testTricklingBodyIsCutAtTheEndOfItsWindow() {
        var clock = ManualClock()
        var machine = makeMachine(rateLimited(1_000))
        readingBody(&machine, clock: clock)
        for _ in 0..<9 {
            clock.advance(by: 100)
            XCTAssertTrue(machine.bodyDataFramed(count: 1, now: clock.now))
            XCTAssertEqual(machine.tick(now: clock.now), .none)
        }
        clock.advance(by: 100)
        XCTAssertEqual(machine.tick(now: clock.now), .bodyTooSlow)
        XCTAssertEqual(machine.deadline, .max, "one verdict")
    }

    /// About 3000 bytes/s for three windows of 1 s, each above 1000 bytes: the body finishes.
    func testSlowButSufficientBodyFinishes() {
        var clock = ManualClock()
        var machine = makeMachine(rateLimited(1_000))
        readingBody(&machine, clock: clock)
        for _ in 0..<30 {
            clock.advance(by: 100)
            XCTAssertTrue(machine.bodyDataFramed(count: 300, now: clock.now))
            XCTAssertEqual(machine.tick(now: clock.now), .none)
        }
        XCTAssertEqual(machine.bodyEnded(), .deliverEnd(.stopReading))
        XCTAssertEqual(machine.phase, .awaitingResponse)
        clock.advance(by: 100_000)
        XCTAssertEqual(machine.tick(now: clock.now), .none, "the handler answers in its own time")
    }

    // MARK: Direct (spliced) bodies

    /// Earlier fragments must be done before the splicer starts, and nothing reads for the connection meanwhile.
    func testDirectBodyWaitsForOutstandingFragmentsThenStarts() {
        let clock = ManualClock()
        var machine = makeMachine()
        readingBody(&machine, clock: clock)
        XCTAssertEqual(machine.fragmentSent(), .none)
        XCTAssertEqual(
            machine.nextStep(hasBufferedBytes: false, bodyOwesEnd: false, prefersDirectBody: true, now: clock.now),
            .wait(.stopReading))
        XCTAssertTrue(machine.fragmentDone(sequence: 1))
        XCTAssertEqual(
            machine.nextStep(hasBufferedBytes: false, bodyOwesEnd: false, prefersDirectBody: true, now: clock.now),
            .startDirectBody(.none))
        machine.directBodyStarted(now: clock.now)
        XCTAssertEqual(
            machine.nextStep(hasBufferedBytes: false, bodyOwesEnd: false, prefersDirectBody: true, now: clock.now),
            .wait(.none), "the splicer owns the socket")
        machine.directBodyEnded()
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.startReading))
    }

    /// Buffered bytes go out as fragments first: no direct body while any are buffered.
    func testBufferedBytesAreFramedBeforeADirectBody() {
        let clock = ManualClock()
        var machine = makeMachine()
        readingBody(&machine, clock: clock)
        XCTAssertEqual(
            machine.nextStep(hasBufferedBytes: true, bodyOwesEnd: false, prefersDirectBody: true, now: clock.now),
            .decodeBody)
    }

    /// Spliced bytes count for the minimum rate like framed ones: a spliced trickle is cut.
    func testSplicedTrickleIsCutByTheRate() {
        var clock = ManualClock()
        var machine = makeMachine(rateLimited(1_000))
        readingBody(&machine, clock: clock)
        XCTAssertEqual(
            machine.nextStep(hasBufferedBytes: false, bodyOwesEnd: false, prefersDirectBody: true, now: clock.now),
            .startDirectBody(.stopReading))
        machine.directBodyStarted(now: clock.now)
        for _ in 0..<9 {
            clock.advance(by: 100)
            XCTAssertTrue(machine.bodyDataFramed(count: 1, now: clock.now))
            XCTAssertEqual(machine.tick(now: clock.now), .none)
        }
        clock.advance(by: 100)
        XCTAssertEqual(machine.tick(now: clock.now), .bodyTooSlow)
    }

    /// A splicer waiting for the disk is the server's stall, not the client's: the window starts afresh.
    func testDirectStallForTheDiskRestartsTheRateWindow() {
        var clock = ManualClock()
        var machine = makeMachine(rateLimited(1_000))
        readingBody(&machine, clock: clock)
        _ = machine.nextStep(hasBufferedBytes: false, bodyOwesEnd: false, prefersDirectBody: true, now: clock.now)
        machine.directBodyStarted(now: clock.now)
        machine.directBodyStalled(true)
        clock.advance(by: 3_000)
        XCTAssertEqual(machine.tick(now: clock.now), .none, "no rate verdict while the disk holds the body up")
        machine.directBodyStalled(false)
        XCTAssertTrue(machine.bodyDataFramed(count: 2_000, now: clock.now))
        clock.advance(by: 1_000)
        XCTAssertEqual(machine.tick(now: clock.now), .none)
    }

    func testZeroRateTurnsTheCheckOff() {
        var clock = ManualClock()
        var machine = makeMachine(rateLimited(0))
        readingBody(&machine, clock: clock)
        for _ in 0..<50 {  // 10 bytes/s for 5 s
            clock.advance(by: 100)
            _ = machine.bodyDataFramed(count: 1, now: clock.now)
            XCTAssertEqual(machine.tick(now: clock.now), .none)
        }
    }

    /// A window in which the server itself stopped reading (a slow disk) is not held against the client.
    func testWindowWithReadingStoppedStartsAfresh() {
        var clock = ManualClock()
        var machine = makeMachine(rateLimited(1_000))
        readingBody(&machine, clock: clock)
        _ = machine.bodyDataFramed(count: 10, now: clock.now)
        for expected: Machine.ReadAction in [.none, .none, .none, .stopReading] {
            XCTAssertEqual(machine.fragmentSent(), expected)
        }
        clock.advance(by: 1_500)
        XCTAssertEqual(machine.tick(now: clock.now), .none, "not reading: the window restarts here")
        for _ in 0..<2 { XCTAssertTrue(machine.fragmentDone(sequence: 1)) }
        XCTAssertTrue(machine.hasRoomToResume)
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.startReading))
        clock.advance(by: 999)
        XCTAssertEqual(machine.tick(now: clock.now), .none)
        clock.advance(by: 1)
        XCTAssertEqual(machine.tick(now: clock.now), .bodyTooSlow, "a full window of reading with 0 bytes")
    }

    /// Reading stops at `maxOutstandingFragments` and resumes at half; framing stops with it.
    func testBackpressureStopsAtTheLimitAndResumesAtHalf() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        _ = machine.readBodyRequested(now: clock.now)
        XCTAssertEqual(machine.step(buffered: true, at: clock.now), .decodeBody)
        XCTAssertFalse(machine.isReading, "buffered bytes are framed before the socket is read again")
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.startReading))
        for sent in 1...4 {
            XCTAssertTrue(machine.mayFrameBody)
            XCTAssertEqual(machine.fragmentSent(), sent == 4 ? .stopReading : .none)
        }
        XCTAssertFalse(machine.mayFrameBody, "tiny chunks must not bypass the limit")
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.none))
        XCTAssertTrue(machine.fragmentDone(sequence: 1))
        XCTAssertFalse(machine.hasRoomToResume, "3 outstanding")
        XCTAssertTrue(machine.mayFrameBody)
        XCTAssertTrue(machine.fragmentDone(sequence: 1))
        XCTAssertTrue(machine.hasRoomToResume, "2 outstanding: half")
        XCTAssertEqual(machine.step(buffered: false, at: clock.now), .wait(.startReading))
        XCTAssertEqual(machine.outstandingFragments, 2)
    }

    func testADoneFromAnEarlierRequestOnlyCounts() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        _ = machine.readBodyRequested(now: clock.now)
        _ = machine.fragmentSent()
        XCTAssertEqual(machine.bodyEnded(), .deliverEnd(.none))
        _ = machine.responseStarted(closeRequested: false, expectsContinue: false, remainingBodyLength: nil,
            now: clock.now)
        XCTAssertEqual(machine.responseSent(now: clock.now), .finishExchange)
        XCTAssertEqual(machine.exchangeFinished(now: clock.now), .readNextRequest)
        _ = machine.headReceived(keepAlive: true, hasBody: true)
        _ = machine.readBodyRequested(now: clock.now)
        XCTAssertFalse(machine.fragmentDone(sequence: 1), "the late done of request 1 resumes nothing")
        XCTAssertEqual(machine.outstandingFragments, 0)
    }

    // MARK: Responses: write deadline, 100-continue, unread bodies

    func testResponseWriteDeadlineRestartsWithEachPiece() {
        var clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock, hasBody: false)
        _ = machine.responseStarted(closeRequested: false, expectsContinue: false, remainingBodyLength: nil,
            now: clock.now)
        clock.advance(by: 1_500)
        machine.responseProgressed(now: clock.now)
        assertTick(&machine, &clock, after: 2_000, is: .responseWriteTimeout)
    }

    func testExpectContinueClientThatNeverGotTheContinueIsClosed() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        XCTAssertEqual(machine.responseRequested(), .proceed)
        let (keepAlive, _) = machine.responseStarted(
            closeRequested: false, expectsContinue: true, remainingBodyLength: 10, now: clock.now)
        XCTAssertFalse(keepAlive, "the client waits for 100 and would never send the body we mean to drain")
        XCTAssertEqual(machine.responseSent(now: clock.now), .closeGracefully)
    }

    func testSmallUnreadBodyIsDrainedAndTheConnectionKept() {
        var clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        XCTAssertTrue(machine.responseStarted(closeRequested: false, expectsContinue: false,
            remainingBodyLength: 64 * 1024, now: clock.now).keepAlive)
        clock.advance(by: 10)
        XCTAssertEqual(machine.responseSent(now: clock.now), .drainBody)
        XCTAssertEqual(machine.deadline, clock.now + 2_000, "draining has the body timeout")
        XCTAssertEqual(machine.step(buffered: true, at: clock.now), .decodeBody)
        XCTAssertFalse(machine.bodyDataFramed(count: 100, now: clock.now), "drained bytes go nowhere")
        XCTAssertEqual(machine.bodyEnded(), .finishExchange)
        XCTAssertEqual(machine.exchangeFinished(now: clock.now), .readNextRequest)
    }

    func testLargeOrChunkedUnreadBodyClosesTheConnection() {
        for remaining: Int64? in [64 * 1024 + 1, nil] {
            let clock = ManualClock()
            var machine = makeMachine()
            handling(&machine, clock: clock)
            XCTAssertFalse(machine.responseStarted(closeRequested: false, expectsContinue: false,
                remainingBodyLength: remaining, now: clock.now).keepAlive)
        }
    }

    func testAnswerDuringTheBodyStopsItThenOneResponseOnly() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        _ = machine.readBodyRequested(now: clock.now)
        XCTAssertEqual(machine.responseRequested(), .stopBodyFirst)
        XCTAssertTrue(machine.responseStarted(closeRequested: false, expectsContinue: true,
            remainingBodyLength: 100, now: clock.now).keepAlive, "the 100 went out, so the rest may be drained")
        XCTAssertEqual(machine.responseRequested(), .refuse)
        XCTAssertFalse(machine.mayFrameBody)
        XCTAssertEqual(machine.bodyFramingFailed(), .closeAfterResponse, "no second, parser-made response")
        XCTAssertEqual(machine.responseSent(now: clock.now), .closeGracefully)
    }

    /// A handler may answer from inside the body's last fragment: the end was framed already, so even a chunked
    /// body counts as read and the connection stays open.
    func testAnswerInsideTheLastFragmentKeepsTheConnection() {
        let clock = ManualClock()
        var machine = makeMachine()
        readingBody(&machine, clock: clock)
        machine.bodyEndFramed()
        XCTAssertEqual(machine.fragmentSent(), .none)
        XCTAssertEqual(machine.responseRequested(), .stopBodyFirst)
        XCTAssertTrue(machine.responseStarted(closeRequested: false, expectsContinue: false,
            remainingBodyLength: nil, now: clock.now).keepAlive)
        XCTAssertEqual(machine.bodyEnded(), .none, "the response is already going out")
        XCTAssertEqual(machine.phase, .responding)
        XCTAssertEqual(machine.responseSent(now: clock.now), .finishExchange)
    }

    func testFramingErrorsWhileReadingOrDraining() {
        let clock = ManualClock()
        var reading = makeMachine()
        handling(&reading, clock: clock)
        _ = reading.readBodyRequested(now: clock.now)
        XCTAssertEqual(reading.bodyFramingFailed(), .failRequest)

        var draining = makeMachine()
        handling(&draining, clock: clock)
        _ = draining.responseStarted(closeRequested: false, expectsContinue: false, remainingBodyLength: 5,
            now: clock.now)
        XCTAssertEqual(draining.responseSent(now: clock.now), .drainBody)
        XCTAssertEqual(draining.bodyFramingFailed(), .close)
    }

    // MARK: Shutdown and closing

    func testShutdownClosesIdleConnectionsAtOnceAndBusyOnesAfterTheirExchange() {
        let clock = ManualClock()
        var idle = makeMachine()
        _ = idle.start(now: clock.now, isTLS: false)
        XCTAssertTrue(idle.shutdownRequested())

        var busy = makeMachine()
        handling(&busy, clock: clock, hasBody: false)
        XCTAssertFalse(busy.shutdownRequested())
        XCTAssertFalse(busy.responseStarted(closeRequested: false, expectsContinue: false, remainingBodyLength: nil,
            now: clock.now).keepAlive, "Connection: close on the last response")
        XCTAssertEqual(busy.responseSent(now: clock.now), .closeGracefully)
    }

    func testShutdownDuringADrainClosesAfterIt() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        _ = machine.responseStarted(closeRequested: false, expectsContinue: false, remainingBodyLength: 5,
            now: clock.now)
        XCTAssertEqual(machine.responseSent(now: clock.now), .drainBody)
        XCTAssertFalse(machine.shutdownRequested())
        XCTAssertEqual(machine.bodyEnded(), .finishExchange)
        XCTAssertEqual(machine.exchangeFinished(now: clock.now), .closeGracefully)
    }

    func testGracefulCloseIsBoundedAndClosingIsIdempotent() {
        var clock = ManualClock()
        var machine = makeMachine()
        _ = machine.start(now: clock.now, isTLS: false)
        XCTAssertTrue(machine.closeGracefully(now: clock.now))
        XCTAssertFalse(machine.closeGracefully(now: clock.now))
        XCTAssertEqual(machine.step(buffered: true, at: clock.now), .wait(.none))
        clock.advance(by: 2_000)
        XCTAssertEqual(machine.tick(now: clock.now), .forceClose, "a peer that never lets the shutdown finish")
        XCTAssertTrue(machine.closeNow())
        XCTAssertFalse(machine.closeNow())
        XCTAssertFalse(machine.isReading)
        clock.advance(by: 100_000)
        XCTAssertEqual(machine.tick(now: clock.now), .none)
        XCTAssertEqual(machine.responseRequested(), .refuse)
        XCTAssertEqual(machine.readBodyRequested(now: clock.now), .ignore)
    }

    func testClosingWhileReadingABodyEndsTheBody() {
        let clock = ManualClock()
        var machine = makeMachine()
        handling(&machine, clock: clock)
        _ = machine.readBodyRequested(now: clock.now)
        XCTAssertTrue(machine.isReadingBody)
        XCTAssertTrue(machine.closeNow())
        XCTAssertFalse(machine.isReadingBody, "the loop's count of streaming bodies drops")
        XCTAssertEqual(machine.tick(now: clock.now), .none)
    }
}

extension HTTPConnectionStateMachine {
    /// `nextStep` for a buffer that holds no complete Content-Length body end.
    fileprivate mutating func step(buffered: Bool, at now: UInt64) -> ProcessStep {
        nextStep(hasBufferedBytes: buffered, bodyOwesEnd: false, now: now)
    }
}
