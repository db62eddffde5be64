import Glibc
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
    let value = RedisArgument("xxx")  // redis-benchmark's default 3-byte value
    let key = RedisArgument("key:__rand_int__")  // and its key without -r

    func runNextTest() {
        guard let test = remainingTests.popFirst() else {
            client.shutdown(on: loop) { loop.stop() }
            return
        }
        let command: [RedisArgument] = test == "set" ? ["SET", key, value] : ["GET", key]
        var sent = 0
        var completed = 0
        var failures = 0
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        func sendBatch() {
            let batch = min(options.pipeline, options.requests - sent)
            var outstanding = batch
            for _ in 0..<batch {
                client.send(command, on: loop) { result in
                    if case .failure = result { failures += 1 }
                    completed += 1
                    outstanding -= 1
                    guard outstanding == 0 else { return }
                    if sent < options.requests {
                        sendBatch()
                    } else {
                        var end = timespec()
                        clock_gettime(CLOCK_MONOTONIC, &end)
                        let seconds = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
                        print("\(test) \(Int(Double(completed) / seconds))")
                        if failures > 0 {
                            printError("\(test): \(failures) of \(completed) commands failed\n")
                            status = 1
                        }
                        runNextTest()
                    }
                }
            }
            sent += batch
        }
        sendBatch()
    }

    loop.schedule(afterMilliseconds: 0) { runNextTest() }
    loop.run()
    return status
}

/// stderr is a mutable C global that Swift 6 rejects; write(2) needs none.
func printError(_ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
}
