@testable import TusHTTPServer
import XCTest

/// The HTTP/2 connection's abuse decisions without a socket or a sleep (issue 21 §1): each case the interop suite
/// attacks end to end (`Tests/interop/test_http2_abuse.py`) is decided here against a manual clock.
final class HTTP2ConnectionStateMachineTests: XCTestCase {
    typealias Machine = HTTP2ConnectionStateMachine
    typealias Frame = HTTP2FrameHeader

    private let start: UInt64 = 1_000

    private func makeMachine(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in }) -> Machine {
        var configuration = HTTPServerConfiguration()
        configuration.headTimeoutMilliseconds = 3_000
        configuration.idleTimeoutMilliseconds = 5_000
        configuration.parserLimits.maxHeadBytes = 16 * 1024
        configuration.parserLimits.maxTrailerBytes = 1024
        configuration.parserLimits.maxHeaderCount = 100
        configure(&configuration)
        return Machine(limits: .init(configuration), now: start)
    }

    private func frame(_ kind: Frame.Kind, length: Int = 0, flags: UInt8 = 0, stream: Int32 = 1) -> Frame {
        Frame(type: kind.rawValue, flags: flags, length: length, streamID: stream)
    }

    private func isClose(_ verdict: Machine.FrameVerdict, _ code: HTTP2ErrorCode) -> Bool {
        if case .close(code, _) = verdict { true } else { false }
    }

    // MARK: HPACK bomb

    /// The bomb: one 4 KB table entry referenced 10,000 times. The head is answered 431 (fields are
    /// discarded past the limit), decoding stops at twice the limit, and the fourth such block ends the connection.
    func testHPACKBombStopsAtTwiceTheLimitAndTheFourthBlockClosesTheConnection() {
        var machine = makeMachine()
        for block in 0..<4 {
            let id = Int32(1 + 2 * block)
            XCTAssertEqual(machine.requestStreamOpened(id, now: start), .accept)
            var verdicts: [Machine.FieldVerdict] = []
            for _ in 0..<10_000 {
                let verdict = machine.fieldReceived(id, bytes: 4_006)
                verdicts.append(verdict)
                if verdict != .store && verdict != .discard { break }
            }
            if block < 3 {
                // 16 KiB / 4,038 bytes per field: 4 stored, then discarded up to 32 KiB, then stopped.
                XCTAssertEqual(Array(verdicts.prefix(4)), [.store, .store, .store, .store])
                XCTAssertEqual(verdicts[4], .discard, "the field that crosses the limit")
                XCTAssertEqual(verdicts.last, .stopBlock)
                XCTAssertEqual(verdicts.count, 9, "nothing decoded past twice the limit")
                XCTAssertTrue(machine.isHeadOversized(id))
            } else {
                guard case .close(.enhanceYourCalm, _) = verdicts.last else {
                    return XCTFail("the fourth oversized block ends the connection: \(verdicts.suffix(2))")
                }
                XCTAssertEqual(verdicts.count, 5, "stopped at the field that crossed the limit")
            }
            machine.streamClosed(id, now: start)
        }
    }

    /// An honest big head (one 20 KB field) is answered 431: decoded to its end, nothing kept.
    func testOneOversizedFieldIsDiscardedForA431AndTheConnectionLives() {
        var machine = makeMachine()
        XCTAssertEqual(machine.requestStreamOpened(1, now: start), .accept)
        XCTAssertEqual(machine.fieldReceived(1, bytes: 10), .store)
        XCTAssertEqual(machine.fieldReceived(1, bytes: 20 * 1024), .discard)
        XCTAssertEqual(machine.fieldReceived(1, bytes: 10), .discard)
        XCTAssertTrue(machine.isHeadOversized(1))
        XCTAssertEqual(machine.requestStreamOpened(3, now: start), .accept)
        XCTAssertEqual(machine.fieldReceived(3, bytes: 10), .store)
        XCTAssertFalse(machine.isHeadOversized(3))
    }

    /// Many tiny fields: the count limit (not the byte limit; pseudo-header fields not counted) makes the head
    /// oversized, and twice it stops.
    func testFieldCountLimitAnswers431AndStopsAtTwiceTheCount() {
        var machine = makeMachine()
        XCTAssertEqual(machine.requestStreamOpened(1, now: start), .accept)
        for _ in 0..<4 { XCTAssertEqual(machine.fieldReceived(1, bytes: 10, isPseudo: true), .store) }
        for _ in 0..<100 { XCTAssertEqual(machine.fieldReceived(1, bytes: 2), .store) }
        for _ in 0..<100 { XCTAssertEqual(machine.fieldReceived(1, bytes: 2), .discard) }
        XCTAssertEqual(machine.fieldReceived(1, bytes: 2), .stopBlock)
    }

    /// A trailer section has no answer to give: it stops at the limit; counted afresh from the head.
    func testOversizedTrailersStopAtTheLimit() {
        var machine = makeMachine()
        XCTAssertEqual(machine.requestStreamOpened(1, now: start), .accept)
        XCTAssertEqual(machine.fieldReceived(1, bytes: 8_000), .store)
        machine.trailersBegan(1)
        XCTAssertEqual(machine.fieldReceived(1, bytes: 900), .store)
        XCTAssertEqual(machine.fieldReceived(1, bytes: 900), .stopBlock)
        XCTAssertFalse(machine.isHeadOversized(1), "the head itself was fine")
    }

    // MARK: Floods

    /// CVE-2019-9518: frames that move nothing. 1,000 are tolerated, the next closes; each kind counts.
    func testEachKindOfEmptyFrameCountsTowardTheFloodBudget() {
        let floods: [(String, Frame)] = [
            ("empty DATA", frame(.data)),
            ("empty HEADERS", frame(.headers)),
            ("empty CONTINUATION", frame(.continuation)),
            ("PRIORITY", frame(.priority, length: 5)),
            ("WINDOW_UPDATE", frame(.windowUpdate, length: 4, stream: 0)),
            ("PING", frame(.ping, length: 8, stream: 0)),
            ("SETTINGS", frame(.settings, stream: 0)),
            ("unknown type", Frame(type: 0xfa, length: 3, streamID: 0)),
        ]
        for (name, flood) in floods {
            var machine = makeMachine()
            for index in 0..<1_000 {
                XCTAssertEqual(machine.frameReceived(flood, now: start), .proceed, "\(name) #\(index)")
            }
            XCTAssertTrue(isClose(machine.frameReceived(flood, now: start), .enhanceYourCalm), name)
        }
    }

    /// Progress earns room: a request head, DATA with payload or END_STREAM, and DATA frames we send (the
    /// WINDOW_UPDATEs that answer a download are not a flood).
    func testProgressEarnsRoomForControlFrames() {
        var machine = makeMachine()
        let windowUpdate = frame(.windowUpdate, length: 4, stream: 0)
        XCTAssertEqual(machine.frameReceived(frame(.headers, length: 30), now: start), .proceed)
        XCTAssertEqual(machine.frameReceived(frame(.data, length: 1), now: start), .proceed)
        XCTAssertEqual(machine.frameReceived(frame(.data, flags: HTTP2FrameHeader.endStream), now: start), .proceed)
        XCTAssertEqual(machine.productiveFrames, 3)
        XCTAssertEqual(machine.unproductiveFrames, 0)
        // A 100,000-frame download: two WINDOW_UPDATEs per DATA frame sent is fine.
        for _ in 0..<100_000 {
            machine.dataFrameSent()
            XCTAssertEqual(machine.frameReceived(windowUpdate, now: start), .proceed)
            XCTAssertEqual(machine.frameReceived(windowUpdate, now: start), .proceed)
        }
        // The budget is what progress earned plus 1,000: then the flood is detected.
        let room = 1_000 + machine.productiveFrames * 2 - machine.unproductiveFrames
        for _ in 0..<room { XCTAssertEqual(machine.frameReceived(windowUpdate, now: start), .proceed) }
        XCTAssertTrue(isClose(machine.frameReceived(windowUpdate, now: start), .enhanceYourCalm))
    }

    // MARK: Rapid reset

    /// CVE-2023-44487: a burst of 100 resets, then 33 a second; beyond, ENHANCE_YOUR_CALM (nghttp2 said
    /// INTERNAL_ERROR). The clock refills the bucket.
    func testResetsBeyondTheBurstAndRateAreAnsweredEnhanceYourCalm() {
        var machine = makeMachine()
        let reset = frame(.rstStream, length: 4)
        var now = start
        for _ in 0..<100 {
            XCTAssertEqual(machine.requestStreamOpened(1, now: now), .accept)
            XCTAssertEqual(machine.frameReceived(reset, now: now), .proceed)
            machine.streamClosed(1, now: now)
        }
        XCTAssertTrue(isClose(machine.frameReceived(reset, now: now), .enhanceYourCalm))
        now += 1_000  // 33 more
        var machine2 = makeMachine()
        for _ in 0..<100 { XCTAssertEqual(machine2.frameReceived(reset, now: start), .proceed) }
        for _ in 0..<33 { XCTAssertEqual(machine2.frameReceived(reset, now: now), .proceed) }
        XCTAssertTrue(isClose(machine2.frameReceived(reset, now: now), .enhanceYourCalm))
        // A browser cancelling a few streams a second never runs out.
        var browser = makeMachine()
        for second in 0..<600 {
            for _ in 0..<30 {
                let at = start + UInt64(second) * 1_000
                XCTAssertEqual(browser.frameReceived(frame(.headers, length: 20), now: at), .proceed)
                XCTAssertEqual(browser.frameReceived(reset, now: at), .proceed)
            }
        }
    }

    // MARK: Streams beyond the maximum

    /// The 101st concurrent stream is refused (REFUSED_STREAM by the connection), not the connection; refused
    /// streams do not count, and a closed stream makes room.
    func testStreamsBeyondTheMaximumAreRefusedAndTheOthersCarryOn() {
        var machine = makeMachine()
        for index in 0..<100 { XCTAssertEqual(machine.requestStreamOpened(Int32(1 + 2 * index), now: start), .accept) }
        XCTAssertEqual(machine.requestStreamOpened(201, now: start), .refuse)
        XCTAssertEqual(machine.requestStreamOpened(203, now: start), .refuse)
        XCTAssertTrue(machine.isRefused(201))
        XCTAssertEqual(machine.fieldReceived(201, bytes: 10), .discard, "a refused stream's fields are not kept")
        machine.streamClosed(201, now: start)
        machine.streamClosed(203, now: start)
        XCTAssertEqual(machine.admittedStreamCount, 100)
        XCTAssertEqual(machine.requestStreamOpened(205, now: start), .refuse)
        machine.streamClosed(205, now: start)
        machine.streamClosed(1, now: start)
        XCTAssertEqual(machine.requestStreamOpened(207, now: start), .accept)
    }

    // MARK: Deadlines

    /// The preface and SETTINGS follow the head timeout (it was a fixed 10 s).
    func testPrefaceAndSettingsMustArriveWithinTheHeadTimeout() {
        var silent = makeMachine()
        XCTAssertEqual(silent.tick(now: start + 2_999), .none)
        guard case .terminate(.settingsTimeout, _) = silent.tick(now: start + 3_000) else {
            return XCTFail("GOAWAY SETTINGS_TIMEOUT at the head timeout")
        }
        // The peer's SETTINGS came, our acknowledgement did not: the same.
        var unacknowledged = makeMachine()
        unacknowledged.settingsReceived(isAcknowledgement: false)
        guard case .terminate(.settingsTimeout, _) = unacknowledged.tick(now: start + 3_000) else {
            return XCTFail("GOAWAY SETTINGS_TIMEOUT without an acknowledgement")
        }
        // Both: no preface deadline any more; the idle timeout (5 s without a stream) still applies.
        var good = makeMachine()
        good.settingsReceived(isAcknowledgement: false)
        good.settingsReceived(isAcknowledgement: true)
        XCTAssertEqual(good.prefaceDeadline, .max)
        XCTAssertEqual(good.tick(now: start + 4_999), .none)
        XCTAssertEqual(good.tick(now: start + 5_000), .terminate(.noError, reason: "idle"))
    }

    /// The idle timeout runs only while no stream is open, from when the last one closed.
    func testIdleTimeoutRunsFromTheLastStreamsClose() {
        var machine = makeMachine()
        machine.settingsReceived(isAcknowledgement: false)
        machine.settingsReceived(isAcknowledgement: true)
        XCTAssertEqual(machine.requestStreamOpened(1, now: start + 1_000), .accept)
        XCTAssertEqual(machine.deadline, .max)
        XCTAssertEqual(machine.tick(now: start + 60_000), .none)
        machine.streamClosed(1, now: start + 60_000)
        XCTAssertEqual(machine.deadline, start + 65_000)
        XCTAssertEqual(machine.tick(now: start + 64_999), .none)
        XCTAssertEqual(machine.tick(now: start + 65_000), .terminate(.noError, reason: "idle"))
    }

    // MARK: Stream progress

    private func expired(
        _ machine: inout Machine, at now: UInt64, holding: Set<Int32> = [], windowsOpen: Set<Int32> = []
    ) -> [Int32: Machine.StreamTimeout] {
        let list = machine.expiredStreams(
            now: now, isHoldingBodyBack: { holding.contains($0) }, peerLetsUsSend: { windowsOpen.contains($0) })
        return Dictionary(uniqueKeysWithValues: list)
    }

    /// A body that stops: reset after the body timeout from its last bytes, once; other streams are untouched.
    func testStalledBodyIsReportedOnceAfterTheBodyTimeout() {
        var machine = makeMachine { $0.bodyTimeoutMilliseconds = 2_000; $0.minBodyBytesPerSecond = 0 }
        XCTAssertEqual(machine.requestStreamOpened(1, now: start), .accept)
        XCTAssertEqual(machine.requestStreamOpened(3, now: start), .accept)
        machine.bodyReceived(1, byteCount: 100, now: start)  // before readBody: not progress of a read
        machine.bodyReadStarted(1, now: start + 100)
        machine.bodyReceived(1, byteCount: 100, now: start + 1_000)
        XCTAssertEqual(expired(&machine, at: start + 2_999), [:])
        XCTAssertEqual(expired(&machine, at: start + 3_000), [1: .bodyStalled])
        XCTAssertEqual(expired(&machine, at: start + 9_000), [:], "reported once")
        // A body that ended has no deadline.
        machine.bodyReadStarted(3, now: start)
        machine.bodyFinished(3)
        XCTAssertEqual(expired(&machine, at: start + 60_000), [:])
    }

    /// HTTP/1.1's minimum rate per stream: a trickle is cut at the end of its window, unless the server held the
    /// body back (then the window starts afresh).
    func testTricklingBodyIsCutAtTheEndOfItsRateWindowUnlessTheServerHeldItBack() {
        var machine = makeMachine {
            $0.bodyTimeoutMilliseconds = 60_000
            $0.minBodyBytesPerSecond = 100
            $0.bodyRateWindowMilliseconds = 1_000
        }
        XCTAssertEqual(machine.requestStreamOpened(1, now: start), .accept)
        machine.bodyReadStarted(1, now: start)
        machine.bodyReceived(1, byteCount: 99, now: start + 500)
        XCTAssertEqual(expired(&machine, at: start + 1_000, holding: [1]), [:], "held back: a fresh window")
        machine.bodyReceived(1, byteCount: 100, now: start + 1_500)
        XCTAssertEqual(expired(&machine, at: start + 2_000), [:], "100 bytes in the window: fast enough")
        machine.bodyReceived(1, byteCount: 99, now: start + 2_500)
        XCTAssertEqual(expired(&machine, at: start + 2_999), [:])
        XCTAssertEqual(expired(&machine, at: start + 3_000), [1: .bodyTooSlow])
    }

    /// A download whose client keeps its window shut is reset after the body timeout; when the window is open the
    /// wait is ours and the deadline moves; each whole piece sent moves it too.
    func testStalledResponseIsResetOnlyWhileThePeersWindowIsShut() {
        var machine = makeMachine { $0.bodyTimeoutMilliseconds = 2_000 }
        XCTAssertEqual(machine.requestStreamOpened(1, now: start), .accept)
        machine.responseProgressed(1, now: start)
        machine.responseProgressed(1, now: start + 1_000)
        XCTAssertEqual(expired(&machine, at: start + 2_999), [:])
        XCTAssertEqual(expired(&machine, at: start + 3_000, windowsOpen: [1]), [:], "our own output is slow")
        XCTAssertEqual(expired(&machine, at: start + 4_999), [:])
        XCTAssertEqual(expired(&machine, at: start + 5_000), [1: .responseStalled])
        machine.responseFinished(1)
        XCTAssertEqual(expired(&machine, at: start + 60_000), [:])
    }

    /// A handler that stopped the body (a hook's StopUpload) owes its answer within the body timeout, as a stopped
    /// read on HTTP/1.1 is cut after that long without bytes: past it the stream is reported once (the connection
    /// resets it, and its close frees the slot). An answer in time owes nothing.
    func testStoppedStreamWithoutAnAnswerIsGivenUpAfterTheBodyTimeout() {
        var machine = makeMachine {
            $0.bodyTimeoutMilliseconds = 2_000
            $0.minBodyBytesPerSecond = 0
            $0.http2.maxConcurrentStreams = 1
        }
        XCTAssertEqual(machine.requestStreamOpened(1, now: start), .accept)
        machine.bodyReadStarted(1, now: start)
        machine.bodyReceived(1, byteCount: 100, now: start + 500)
        machine.bodyStopped(1, now: start + 1_000)
        XCTAssertEqual(expired(&machine, at: start + 2_999), [:], "the body deadline ended with the stop")
        machine.bodyReceived(1, byteCount: 100, now: start + 2_999)  // in flight before the stop: not progress
        XCTAssertEqual(expired(&machine, at: start + 3_000), [1: .unanswered])
        XCTAssertEqual(expired(&machine, at: start + 9_000), [:], "reported once")
        XCTAssertEqual(machine.admittedStreamCount, 1, "the slot is held until the reset closes the stream")
        machine.streamClosed(1, now: start + 9_000)
        XCTAssertEqual(machine.requestStreamOpened(3, now: start + 9_000), .accept)
        machine.bodyReadStarted(3, now: start + 9_000)
        machine.bodyStopped(3, now: start + 9_000)
        machine.responseStarted(3)
        machine.responseFinished(3)
        XCTAssertEqual(expired(&machine, at: start + 60_000), [:], "answered in time")
    }
}
