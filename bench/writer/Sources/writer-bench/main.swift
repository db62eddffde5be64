// Compares ways to get body bytes from the loop into files: libuv's threadpool (`AsyncFile.write`, what the
// server uses) against a synchronous pwrite on the loop thread, each with one chunk per call or with 4 chunks
// coalesced into one pwritev. W concurrent writers each write N bytes sequentially (one call in flight per
// writer, like FileUploadWriter). A 1 ms repeating timer on the same loop measures the worst lateness: that is
// how long any other connection of the loop would have waited (the "never stalls other connections" criterion).
//
// Usage: writer-bench --dir DIR [--bytes-per-writer N] [--writers 1,8,64] [--chunks 65536,262144,1048576]
//                     [--modes pool,pool-batch4,sync,sync-batch4] [--repeat 3]
// Prints one JSON object per configuration (median of the repeats).
import Glibc
import TusLoop

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

struct Options {
    var dir = "/tmp"
    var bytesPerWriter = 64 << 20
    var writers = [1, 8, 64]
    var chunks = [65_536, 262_144, 1_048_576]
    var modes = ["pool", "pool-batch4", "sync", "sync-batch4"]
    var repeats = 3
    var totalBytesCap = 1 << 30

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        func ints(_ text: String?) -> [Int] { (text ?? "").split(separator: ",").compactMap { Int($0) } }
        while let flag = iterator.next() {
            switch flag {
            case "--dir": dir = iterator.next() ?? dir
            case "--bytes-per-writer": bytesPerWriter = Int(iterator.next() ?? "") ?? bytesPerWriter
            case "--total-bytes-cap": totalBytesCap = Int(iterator.next() ?? "") ?? totalBytesCap
            case "--writers": writers = ints(iterator.next())
            case "--chunks": chunks = ints(iterator.next())
            case "--modes": modes = (iterator.next() ?? "").split(separator: ",").map(String.init)
            case "--repeat": repeats = Int(iterator.next() ?? "") ?? repeats
            default:
                print("unknown flag \(flag)")
                exit(2)
            }
        }
    }
}

/// The bytes every write sends: generated once, never read from disk.
final class Payload {
    let base: UnsafeMutableRawPointer
    let count: Int

    init(count: Int) {
        self.count = count
        base = .allocate(byteCount: count, alignment: 4096)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let words = base.bindMemory(to: UInt64.self, capacity: count / 8)
        for index in 0..<(count / 8) {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            words[index] = state
        }
    }

    deinit { base.deallocate() }
}

struct Measurement {
    var seconds: Double
    var maxStallMilliseconds: Double
    var errors: Int
}

final class Run {
    let loop: EventLoop
    let mode: String
    let chunk: Int
    let batch: Int
    let writers: Int
    let bytesPerWriter: Int
    let payload: Payload
    var files: [AsyncFile] = []
    var finished = 0
    var errors = 0
    var lastTick = 0.0
    var maxStall = 0.0
    var ticker: LoopTimer?
    var start = 0.0
    var end = 0.0

    init(loop: EventLoop, mode: String, chunk: Int, writers: Int, bytesPerWriter: Int, payload: Payload) {
        self.loop = loop
        self.mode = mode
        self.chunk = chunk
        self.batch = mode.hasSuffix("batch4") ? 4 : 1
        self.writers = writers
        self.bytesPerWriter = bytesPerWriter
        self.payload = payload
    }

    func begin(paths: [String]) {
        var opened = 0
        for path in paths {
            AsyncFile.open(loop: loop, path: path, flags: [.writeOnly, .create, .truncate]) { result in
                switch result {
                case .success(let file): self.files.append(file)
                case .failure: self.errors += 1
                }
                opened += 1
                if opened == paths.count { self.startWriting() }
            }
        }
    }

    func startWriting() {
        let ticker = LoopTimer(loop: loop)
        self.ticker = ticker
        start = monotonicSeconds()
        lastTick = start
        ticker.start(afterMilliseconds: 1, repeatMilliseconds: 1) { [unowned self] in
            let now = monotonicSeconds()
            maxStall = max(maxStall, now - lastTick - 0.001)
            lastTick = now
        }
        for file in files { writeNext(file, offset: 0) }
    }

    /// The buffers of one call: `batch` chunks taken from the payload at staggered places.
    func buffers(at offset: Int) -> [UnsafeRawBufferPointer] {
        (0..<batch).map { index in
            let start = ((offset / chunk + index) * 4096) % (payload.count - chunk)
            return UnsafeRawBufferPointer(start: payload.base + start, count: chunk)
        }
    }

    func writeNext(_ file: AsyncFile, offset: Int) {
        guard offset < bytesPerWriter else { return writerDone(file) }
        let buffers = buffers(at: offset)
        let size = batch * chunk
        if mode.hasPrefix("pool") {
            file.write(buffers, at: Int64(offset), owner: nil) { result in
                if case .failure = result { self.errors += 1 }
                self.writeNext(file, offset: offset + size)
            }
        } else {
            // Synchronous pwrite, then yield to the loop so the timer and the other writers interleave.
            if case .failure = file.writeSynchronously(buffers, at: Int64(offset)) { errors += 1 }
            loop.schedule(afterMilliseconds: 0) { self.writeNext(file, offset: offset + size) }
        }
    }

    func writerDone(_ file: AsyncFile) {
        finished += 1
        guard finished == files.count else { return }
        end = monotonicSeconds()
        ticker?.close()
        ticker = nil
        var closed = 0
        for file in files {
            file.close { _ in
                closed += 1
                if closed == self.files.count { self.files = []; self.loop.stop() }
            }
        }
    }
}

func measure(options: Options, mode: String, chunk: Int, writers: Int, payload: Payload) -> Measurement {
    let loop = try! EventLoop()
    let bytesPerWriter = min(options.bytesPerWriter, options.totalBytesCap / writers)
    let run = Run(
        loop: loop, mode: mode, chunk: chunk, writers: writers, bytesPerWriter: bytesPerWriter, payload: payload)
    let paths = (0..<writers).map { "\(options.dir)/writer-bench-\(getpid())-\($0)" }
    run.begin(paths: paths)
    loop.run()
    for path in paths { unlink(path) }
    return Measurement(seconds: run.end - run.start, maxStallMilliseconds: run.maxStall * 1000, errors: run.errors)
}

let options = Options(CommandLine.arguments)
let payload = Payload(count: 8 << 20)
for writers in options.writers {
    for chunk in options.chunks {
        for mode in options.modes {
            let bytesPerWriter = min(options.bytesPerWriter, options.totalBytesCap / writers)
            let alignedBytes = bytesPerWriter / (chunk * 4) * (chunk * 4)
            var samples: [Measurement] = []
            for _ in 0..<options.repeats {
                var tuned = options
                tuned.bytesPerWriter = alignedBytes
                samples.append(measure(options: tuned, mode: mode, chunk: chunk, writers: writers, payload: payload))
            }
            let seconds = samples.map(\.seconds).sorted()[samples.count / 2]
            let stall = samples.map(\.maxStallMilliseconds).sorted()[samples.count / 2]
            let worstStall = samples.map(\.maxStallMilliseconds).max() ?? 0
            let total = Double(alignedBytes * writers)
            let mbps = total / seconds / 1e6
            print(
                "{\"mode\":\"\(mode)\",\"chunk\":\(chunk),\"writers\":\(writers),\"bytes\":\(Int(total)),"
                    + "\"median_seconds\":\(rounded(seconds, 4)),\"MBps\":\(rounded(mbps, 1)),"
                    + "\"median_max_stall_ms\":\(rounded(stall, 2)),\"worst_max_stall_ms\":\(rounded(worstStall, 2)),"
                    + "\"errors\":\(samples.reduce(0) { $0 + $1.errors }),\"repeats\":\(samples.count)}")
            fflush(nil)
        }
    }
}

func rounded(_ value: Double, _ places: Int) -> Double {
    let scale = pow(10.0, Double(places))
    return (value * scale).rounded() / scale
}
