import Glibc
import TusCore
import TusLoop
import TusRedis

struct BenchOptions {
    var host = "127.0.0.1"
    var port = 0
    var requests = 200_000
    var pipeline = 16
    var tests = ["set", "get"]
}

/// Runs each test on one loop (this thread): batches of `pipeline` commands, the next batch sent when the last
/// reply of the previous one arrived, as redis-benchmark does with `-P` and one client. Returns the exit status.
func runBench(_ options: BenchOptions) -> Int32 {
    guard let loop = try? EventLoop() else { return 1 }
    let client = RedisClient(
        configuration: RedisConfiguration(host: options.host, port: options.port),
        log: { printError("redis: \($0)\n") })
    var status: Int32 = 0
    var remainingTests = options.tests[...]

    func runNextTest() {
        guard let test = remainingTests.popFirst() else {
            client.shutdown(on: loop) { loop.stop() }
            return
        }
        let run = TestRun(test: test, client: client, loop: loop, options: options) { failures in
            if failures > 0 { status = 1 }
            runNextTest()
        }
        run.sendBatch()
    }

    loop.schedule(afterMilliseconds: 0) { runNextTest() }
    loop.run()
    return status
}

/// One test's counters in one object, so that each command's completion captures a single reference: the
/// harness should cost as little per command as a real caller's completion does.
private final class TestRun {
    let test: String
    let client: RedisClient
    let loop: EventLoop
    let options: BenchOptions
    let command: [RedisArgument]
    let finished: (_ failures: Int) -> Void
    var sent = 0
    var completed = 0
    var failures = 0
    var outstanding = 0
    var start = 0.0

    init(
        test: String, client: RedisClient, loop: EventLoop, options: BenchOptions,
        finished: @escaping (_ failures: Int) -> Void
    ) {
        self.test = test
        self.client = client
        self.loop = loop
        self.options = options
        self.finished = finished
        // redis-benchmark's defaults: key "key:__rand_int__" (no -r) and a 3-byte value.
        command = test == "set" ? ["SET", "key:__rand_int__", "xxx"] : ["GET", "key:__rand_int__"]
        start = MonotonicClock.seconds
    }

    func sendBatch() {
        let batch = min(options.pipeline, options.requests - sent)
        outstanding = batch
        sent += batch
        for _ in 0..<batch {
            client.send(command, on: loop) { [self] result in didComplete(result) }
        }
    }

    private func didComplete(_ result: Result<RESPValue, RedisError>) {
        if case .failure = result { failures += 1 }
        completed += 1
        outstanding -= 1
        guard outstanding == 0 else { return }
        if sent < options.requests { return sendBatch() }
        let seconds = MonotonicClock.seconds - start
        print("\(test) \(Int(Double(completed) / seconds))")
        if failures > 0 { printError("\(test): \(failures) of \(completed) commands failed\n") }
        finished(failures)
    }
}

/// stderr is a mutable C global that Swift 6 rejects; write(2) needs none.
func printError(_ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
}
