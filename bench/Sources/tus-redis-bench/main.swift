// tus-redis-bench: TusRedis's pipelined GET/SET rate from one event loop, shaped like
// `redis-benchmark -P <pipeline> -c 1 -n <requests> -t get,set` so that bench/run-redis-client can put the two
// side by side against the same redis-server in the same run. Prints one line per test: "<test> <requests/s>".
//
//   tus-redis-bench --port 6379 [--host 127.0.0.1] [--requests 200000] [--pipeline 16] [--tests get,set]
import Glibc

var options = BenchOptions()
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else {
        printError("missing value for \(flag)\n")
        exit(2)
    }
    switch flag {
    case "--host": options.host = value
    case "--port": options.port = Int(value) ?? 0
    case "--requests": options.requests = Int(value) ?? 0
    case "--pipeline": options.pipeline = Int(value) ?? 0
    case "--tests": options.tests = value.split(separator: ",").map(String.init)
    default:
        printError("unknown option \(flag)\n")
        exit(2)
    }
}
guard options.port > 0, options.requests > 0, options.pipeline > 0 else {
    printError("usage: tus-redis-bench --port P [--host H] [--requests N] [--pipeline P] [--tests get,set]\n")
    exit(2)
}
exit(runBench(options))
