import Dispatch
import Glibc
import TusLoop
import TusTestSupport
import XCTest

final class EventLoopTests: XCTestCase {
    func testTimersFireInOrderAndStoppedTimersDoNot() throws {
        var fired: [String] = []
        weak var weakOneShot: LoopTimer?
        weak var weakRepeating: LoopTimer?
        weak var weakStopped: LoopTimer?
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 30) { fired.append("30") }
            weakOneShot = loop.schedule(afterMilliseconds: 10) { fired.append("10") }
            loop.schedule(afterMilliseconds: 20) { fired.append("20") }

            let stopped = loop.schedule(afterMilliseconds: 5) { fired.append("stopped") }
            weakStopped = stopped
            stopped.stop()

            let repeating = LoopTimer(loop: loop)
            weakRepeating = repeating
            var ticks = 0
            repeating.start(afterMilliseconds: 1, repeatMilliseconds: 5) {
                ticks += 1
                if ticks == 3 {
                    fired.append("tick3")
                    repeating.close()
                }
            }
            // A loaded machine can delay the repeating timer's ticks past 60 ms (each repeat is due 5 ms after it
            // ran), so the check waits for the third tick instead of racing it.
            func checkHandlesOnceTicked(afterMilliseconds delay: UInt64) {
                loop.schedule(afterMilliseconds: delay) {
                    guard ticks >= 3 else { return checkHandlesOnceTicked(afterMilliseconds: 10) }
                    XCTAssertEqual(loop.liveHandleCount, 2, "the watchdog and this one-shot")
                    finish()
                }
            }
            checkHandlesOnceTicked(afterMilliseconds: 60)
        }
        XCTAssertEqual(fired.filter { $0 != "tick3" }, ["10", "20", "30"])
        XCTAssertEqual(fired.filter { $0 == "tick3" }.count, 1)
        XCTAssertNil(weakOneShot)
        XCTAssertNil(weakRepeating)
        XCTAssertNil(weakStopped)
    }

    func testNowAdvances() throws {
        try withLoop { loop, finish in
            let start = loop.nowMilliseconds
            loop.schedule(afterMilliseconds: 20) {
                XCTAssertGreaterThanOrEqual(loop.nowMilliseconds - start, 20)
                finish()
            }
        }
    }

    func testExecuteFromOtherThreadsRunsOnLoopThreadInOrder() throws {
        let loop = try EventLoop()
        XCTAssertNil(EventLoop.current)
        XCTAssertFalse(loop.inLoop)
        loop.runOnNewThread(name: "tus-loop-test")
        let seen = Recorder<Int>()
        let offLoop = Recorder<Int>()
        let submitters = 2
        let perSubmitter = 500
        let group = DispatchGroup()
        for submitter in 0..<submitters {
            DispatchQueue.global().async(group: group) {
                for index in 0..<perSubmitter {
                    let value = submitter * perSubmitter + index
                    loop.execute {
                        if EventLoop.current !== loop || !loop.inLoop { offLoop.append(value) }
                        seen.append(value)
                    }
                }
            }
        }
        group.wait()
        loop.execute { loop.stop() }
        loop.join()
        XCTAssertEqual(offLoop.all, [])
        let values = seen.all
        XCTAssertEqual(values.count, submitters * perSubmitter)
        for submitter in 0..<submitters {
            let own = values.filter { $0 / perSubmitter == submitter }
            XCTAssertEqual(own, Array(submitter * perSubmitter..<(submitter + 1) * perSubmitter), "per-thread order")
        }
        XCTAssertEqual(loop.handlesClosedAtShutdown, 0)
        XCTAssertEqual(loop.liveHandleCount, 0)
        XCTAssertNil(EventLoop.current)
    }

    func testStopWaitsForOpenActiveHandles() throws {
        var timerFired = false
        try withLoop { loop, finish in
            loop.schedule(afterMilliseconds: 30) { timerFired = true }
            finish()  // stop before the timer: run() must still wait for it
        }
        XCTAssertTrue(timerFired)
    }

    func testLoopClosesForgottenInactiveHandles() throws {
        let loop = try EventLoop()
        weak var weakTimer: LoopTimer?
        do {
            let forgotten = LoopTimer(loop: loop)  // never started, never closed
            weakTimer = forgotten
        }
        loop.stop()
        loop.run()
        XCTAssertEqual(loop.handlesClosedAtShutdown, 1)
        XCTAssertNil(weakTimer)
    }

    func testRaiseOpenFileLimit() {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let raised = raiseOpenFileLimit()
        XCTAssertGreaterThanOrEqual(raised, Int(limit.rlim_cur))
    }
}
