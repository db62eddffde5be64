internal import CLibuv
import Glibc
import Synchronization

/// Moves the next `count` bytes of a TCP stream into a file at a given offset without copying them through user
/// memory: socket → pipe with splice(2) on the loop thread, pipe → file with splice(2) on libuv's threadpool.
///
/// Why: a body read with recv() is copied twice by the kernel (socket buffer → our chunk, chunk → page cache), and
/// profiles of large uploads show ~96% of the server's CPU in the kernel. socket → pipe only moves references to the
/// socket buffer's pages (no copy, never blocks with `SPLICE_F_NONBLOCK`, so it is cheap enough for the loop);
/// pipe → file copies once into the page cache and may block on the disk, so it runs on the threadpool, like every
/// other file write. bench/results/2026-11-27 measured splice 1.44x faster than recv+pwrite.
///
/// Two pipes: the loop fills one while the threadpool drains the other, so network and disk overlap. At most one
/// drain runs at a time and drains go in order, so the file is a contiguous prefix at every moment (recovery relies
/// on "offset = data size"). When both pipes are busy the splicer stops watching the socket (backpressure) and
/// reports `.stalled(true)`; a finished drain resumes it.
///
/// A full pipe is queued for the threadpool even while the other one drains, and the threadpool job goes on to the
/// next queued pipe at once, reporting each finished drain to the loop without waiting for it (`EventLoop.execute`).
/// When the client sends faster than the disk takes (the socket always holds a pipe's worth), the writer thus
/// never waits for a loop <-> threadpool round trip between two pipes: with one drain per round trip it idled for
/// one wake-up per MiB, which kept a single upload at ~0.85x of nginx's read-then-write loop
/// (bench/results/2026-12-07-single). A job takes at most `drainsPerJob` pipes (a parameter), then yields its
/// thread to other file work and is queued again: with many uploads on a loop the caller passes 1, so that every
/// upload's pipes take turns on the threadpool as they did with one job per drain (a long job per upload made
/// 256 x 8 MiB 0.78x slower: uploads finished unevenly).
///
/// Readiness: libuv keeps owning the socket's epoll registration (`TCPStream.watchReadable`).
///
/// Events, on the loop thread and in order: `.received` (bytes taken from the socket into a pipe), `.written`
/// (bytes now in the file, contiguous from `offset`), `.stalled`, then exactly one `.ended`. After EOF or a read
/// error, whatever the pipes hold is still written before `.ended`; after `cancel()` only the drain in flight
/// completes (its bytes are reported as `.written`), since the threadpool cannot be interrupted. The file
/// descriptor must stay open until `.ended`.
public final class SocketFileSplicer {
    public enum Outcome: Equatable, Sendable {
        /// All `count` bytes are in the file.
        case complete
        /// The peer closed before `count` bytes came.
        case peerClosed
        case readFailed(UVError)
        /// Writing the file failed; bytes reported `.written` before it are intact.
        case writeFailed(UVError)
        case cancelled
    }

    public enum Event: Equatable, Sendable {
        case received(Int)
        case written(Int)
        /// True while both pipes wait for the disk and the socket is not read.
        case stalled(Bool)
        case ended(Outcome)
    }

    /// Requested pipe capacity (F_SETPIPE_SZ). 1 MiB is the default `/proc/sys/fs/pipe-max-size` for unprivileged
    /// processes; a refused size falls back to whatever the kernel gave (64 KiB by default).
    public static let preferredPipeCapacity = 1 << 20
    /// Below this a splice moves too little per call to pay for itself; such pipes make `init` throw.
    public static let minimumPipeCapacity = 64 << 10
    /// Pipes one threadpool job drains, by default, before it gives its thread back (libuv's pool is shared with
    /// all file I/O).
    public static let preferredDrainsPerJob = 16
    private let drainsPerJob: Int

    private final class Pipe {
        let readEnd: Int32
        let writeEnd: Int32
        let capacity: Int
        /// Bytes in the pipe (spliced in, not yet drained).
        var filled = 0
        /// Handed to the threadpool (queued or draining); the loop neither fills it nor queues it again.
        var isQueued = false

        init(readEnd: Int32, writeEnd: Int32, capacity: Int) {
            self.readEnd = readEnd
            self.writeEnd = writeEnd
            self.capacity = capacity
        }

        static func make(capacity requested: Int) -> Result<Pipe, UVError> {
            var fds: [Int32] = [-1, -1]
            guard CLibuv_pipe_nonblocking_cloexec(&fds) == 0 else { return .failure(UVError(code: -errno)) }
            _ = CLibuv_set_pipe_size(fds[1], Int32(requested))
            let capacity = Int(CLibuv_pipe_size(fds[1]))
            // An unprivileged user past /proc/sys/fs/pipe-user-pages-soft gets two-page pipes: a splice per 8 KiB
            // costs more than the copy it saves, so the caller reads the body instead.
            guard capacity >= SocketFileSplicer.minimumPipeCapacity else {
                Glibc.close(fds[0])
                Glibc.close(fds[1])
                return .failure(.noBufferSpace)
            }
            return .success(Pipe(readEnd: fds[0], writeEnd: fds[1], capacity: capacity))
        }

        func close() {
            Glibc.close(readEnd)
            Glibc.close(writeEnd)
        }
    }

    /// One pipe's bytes for the threadpool: `count` of them, to the file at `offset`.
    private struct Drain: Sendable {
        let pipeIndex: Int
        let readEnd: Int32
        let count: Int
        let offset: Int64
    }

    /// Pipes queued for the threadpool in the order they were filled, and whether a job is taking them. Shared by
    /// the loop (which queues) and the job (which takes), under `DrainShared.queue`'s lock.
    private struct DrainQueue {
        var drains: [Drain] = []
        var isJobRunning = false
        /// A drain failed: the job writes nothing more (a later pipe would leave a hole) and gives queued ones back.
        var hasFailed = false
    }

    /// What a threadpool job may touch: the queue and the file.
    private final class DrainShared: Sendable {
        let queue = Mutex(DrainQueue())
        let file: Int32
        init(file: Int32) { self.file = file }
    }

    /// The splicer carried through the threadpool, used again only back on its loop (`EventLoop.execute`).
    private struct LoopBound: @unchecked Sendable {
        let splicer: SocketFileSplicer
    }

    /// Set by a job that stopped at `drainsPerJob` (written there, read after `offload`'s completion).
    private final class JobEnd: @unchecked Sendable {
        var isBudgetSpent = false
    }

    public let loop: EventLoop
    /// What the kernel granted each pipe (it rounds a request up to a power of two of pages).
    public var pipeCapacities: [Int] { pipes.map(\.capacity) }
    /// Threadpool jobs started so far, and pipes drained: fewer jobs than drains means a job went on to a queued
    /// pipe without a round trip through the loop (tests, diagnostics).
    public private(set) var drainJobs = 0
    public private(set) var drains = 0
    private let stream: TCPStream
    private let socket: Int32
    private let file: Int32
    private let onEvent: (Event) -> Void
    private var pipes: [Pipe]
    /// The pipe the loop fills (the other one may be draining).
    private var filling = 0
    /// Pipes queued or draining (loop-side count: each comes back through `drained`).
    private var queuedPipes = 0
    private var isDraining: Bool { queuedPipes > 0 }
    /// Where the next queued pipe's bytes go in the file (ahead of `fileOffset` by what is queued).
    private var queueOffset: Int64
    private let shared: DrainShared
    /// Bytes still to take from the socket.
    private var remainingToReceive: Int64
    /// Where the next drained byte goes in the file.
    private var fileOffset: Int64
    /// Why reading stopped early (EOF, read error); the pipes are still written out.
    private var readEnding: Outcome?
    private var writeFailure: UVError?
    private var isCancelled = false
    private var isStalled = false
    private var hasEnded = false

    /// Creates the pipes and starts taking bytes from `stream`, which must not be reading for its delegate and must
    /// have nothing buffered by the caller that belongs before these bytes. Throws when the pipes cannot be made
    /// (EMFILE); nothing was read then.
    public init(
        stream: TCPStream, file: Int32, offset: Int64, count: Int64,
        pipeCapacity: Int = SocketFileSplicer.preferredPipeCapacity,
        drainsPerJob: Int = SocketFileSplicer.preferredDrainsPerJob, onEvent: @escaping (Event) -> Void
    ) throws(UVError) {
        stream.loop.assertOnLoopThread()
        precondition(count > 0 && stream.mayHandOverReading)
        loop = stream.loop
        self.stream = stream
        socket = stream.descriptor
        self.file = file
        shared = DrainShared(file: file)
        self.drainsPerJob = max(1, drainsPerJob)
        fileOffset = offset
        queueOffset = offset
        remainingToReceive = count
        self.onEvent = onEvent
        var made: [Pipe] = []
        for _ in 0..<2 {
            switch Pipe.make(capacity: max(pipeCapacity, SocketFileSplicer.minimumPipeCapacity)) {
            case .success(let pipe): made.append(pipe)
            case .failure(let error):
                for pipe in made { pipe.close() }
                throw error
            }
        }
        pipes = made
        stream.stopReading()
        watch()
    }

    /// Stops reading; the drain in flight (if any) finishes and is reported, then `.ended(.cancelled)` (at once when
    /// nothing is in flight). Idempotent; nothing happens after `.ended`.
    public func cancel() {
        loop.assertOnLoopThread()
        guard !hasEnded, !isCancelled else { return }
        isCancelled = true
        stream.stopWatchingReadable()
        // Only the drain in flight goes on; queued pipes come back unwritten.
        let unstarted = shared.queue.withLock { queue in
            let drains = queue.drains
            queue.drains.removeAll()
            return drains
        }
        for drain in unstarted { drained(pipes[drain.pipeIndex], written: 0, error: 0) }
        endIfIdle()
    }

    // MARK: Loop side: socket → pipe

    private func watch() {
        guard !hasEnded, readEnding == nil, writeFailure == nil, !isCancelled, remainingToReceive > 0 else { return }
        if stream.isWatchingReadable { return }
        if let error = stream.watchReadable({ [weak self] in self?.receive() }) {
            // libuv saw EOF already (its POLLHUP shortcut) and will not watch again: take what is left directly.
            if error == .notConnected { return receive(afterLibuvEOF: true) }
            readEnding = .readFailed(error)
            endIfIdle()
        }
    }

    private func stall(_ stalled: Bool) {
        guard stalled != isStalled else { return }
        isStalled = stalled
        onEvent(.stalled(stalled))
    }

    /// Takes what the socket has, into the filling pipe, until the socket is empty, the pipes are full, or the
    /// body is complete.
    private func receive(afterLibuvEOF: Bool = false) {
        guard !hasEnded, !isCancelled, readEnding == nil, writeFailure == nil else { return }
        while remainingToReceive > 0 {
            let pipe = pipes[filling]
            // A queued pipe is the threadpool's until it comes back drained.
            let room = pipe.isQueued ? 0 : min(Int64(pipe.capacity - pipe.filled), remainingToReceive)
            if room <= 0 {
                // Both pipes are busy: wait for the disk, and let the socket's buffer push back on the peer.
                stream.stopWatchingReadable()
                stall(true)
                return
            }
            let moved = CLibuv_splice(
                socket, nil, pipe.writeEnd, nil, Int(room), CLIBUV_SPLICE_F_MOVE | CLIBUV_SPLICE_F_NONBLOCK)
            if moved > 0 {
                pipe.filled += moved
                remainingToReceive -= Int64(moved)
                onEvent(.received(moved))
                if hasEnded || isCancelled { return }
                if pipe.filled == pipe.capacity || remainingToReceive == 0 { queue(filling) }
                drainIfIdle()
                continue
            }
            if moved == 0 {
                readEnding = .peerClosed
                break
            }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN {
                // Either the socket is empty, or the pipe has no free slot (a pipe counts pages, not bytes, and
                // small socket buffers take a slot each). An empty pipe cannot be full, so then the socket is.
                if pipe.filled > 0 && isDraining {
                    // No free slot (a slot per small socket buffer): as full as this pipe gets.
                    queue(filling)
                    stream.stopWatchingReadable()
                    stall(true)
                    return
                }
                if pipe.filled > 0 {
                    drainIfIdle()
                    continue
                }
                if afterLibuvEOF {
                    // After a hang-up the socket holds data or EOF, never nothing; do not spin on a broken promise.
                    readEnding = .readFailed(.notConnected)
                    break
                }
                stall(false)
                watch()
                return
            }
            readEnding = .readFailed(UVError(code: -error))
            break
        }
        stream.stopWatchingReadable()
        endIfIdle()
    }

    // MARK: Threadpool side: pipe → file

    /// Starts writing out whatever the pipes hold when nothing is being written (the loop fills the other pipe
    /// meanwhile).
    private func drainIfIdle() {
        guard !isDraining, writeFailure == nil, !hasEnded else { return }
        if pipes[filling].filled > 0 {
            queue(filling)
        } else if pipes[1 - filling].filled > 0 && !pipes[1 - filling].isQueued {
            queue(1 - filling)
        }
    }

    /// Hands a pipe to the threadpool: behind the one draining, if any, so the job takes it without a round trip
    /// through the loop. The loop fills the other pipe, if that one is free.
    private func queue(_ index: Int) {
        let pipe = pipes[index]
        guard !pipe.isQueued, pipe.filled > 0, writeFailure == nil, !isCancelled, !hasEnded else { return }
        pipe.isQueued = true
        queuedPipes += 1
        let drain = Drain(pipeIndex: index, readEnd: pipe.readEnd, count: pipe.filled, offset: queueOffset)
        queueOffset += Int64(pipe.filled)
        if index == filling && !pipes[1 - filling].isQueued { filling = 1 - filling }
        let accepted = shared.queue.withLock { queue -> Bool? in
            if queue.hasFailed { return nil }
            queue.drains.append(drain)
            if queue.isJobRunning { return false }
            queue.isJobRunning = true
            return true
        }
        guard let startsJob = accepted else {
            // The job failed a write and takes nothing more; the loop hears of the failure from it.
            pipe.isQueued = false
            queuedPipes -= 1
            queueOffset -= Int64(drain.count)
            return
        }
        if startsJob { startJob() }
    }

    /// One threadpool job: drains queued pipes in order until none is left or `drainsPerJob` were taken. Each
    /// drain is reported to the loop as it finishes; the job does not wait for the loop to hear of it.
    private func startJob() {
        drainJobs += 1
        let shared = self.shared
        let loop = self.loop
        let me = LoopBound(splicer: self)
        let end = JobEnd()
        let budget = drainsPerJob
        loop.offload({
            for _ in 0..<budget {
                let next: Drain? = shared.queue.withLock { queue in
                    if queue.drains.isEmpty || queue.hasFailed {
                        queue.isJobRunning = false
                        return nil
                    }
                    return queue.drains.removeFirst()
                }
                guard let drain = next else { return }
                let (written, error) = SocketFileSplicer.write(drain, to: shared.file)
                let givenBack: [Drain] = error == 0 ? [] : shared.queue.withLock { queue in
                    queue.hasFailed = true
                    let rest = queue.drains
                    queue.drains.removeAll()
                    return rest
                }
                loop.execute {
                    let splicer = me.splicer
                    splicer.drained(splicer.pipes[drain.pipeIndex], written: written, error: error)
                    for unwritten in givenBack {
                        splicer.drained(splicer.pipes[unwritten.pipeIndex], written: 0, error: 0)
                    }
                }
            }
            // The budget is spent: queue the job again, behind other file work, if pipes are still queued.
            end.isBudgetSpent = shared.queue.withLock { queue in
                if queue.drains.isEmpty || queue.hasFailed {
                    queue.isJobRunning = false
                    return false
                }
                return true
            }
        }, completion: { [self] in
            if end.isBudgetSpent { startJob() }
        })
    }

    /// Blocking splice of a queued pipe's bytes into the file; on the threadpool.
    private static func write(_ drain: Drain, to file: Int32) -> (written: Int, error: Int32) {
        var position = drain.offset
        var written = 0
        while written < drain.count {
            let moved = CLibuv_splice(drain.readEnd, nil, file, &position, drain.count - written, CLIBUV_SPLICE_F_MOVE)
            if moved > 0 {
                written += moved
            } else if moved < 0 && errno == EINTR {
                continue
            } else {
                // 0 cannot happen with bytes in the pipe; treat it as the I/O error it would be.
                return (written, moved < 0 ? errno : EIO)
            }
        }
        return (written, 0)
    }

    private func drained(_ pipe: Pipe, written: Int, error: Int32) {
        if written > 0 { drains += 1 }
        pipe.isQueued = false
        queuedPipes -= 1
        pipe.filled -= written
        fileOffset += Int64(written)
        if written > 0 { onEvent(.written(written)) }
        if error != 0 {
            writeFailure = UVError(code: -error)
            stream.stopWatchingReadable()
        }
        if isCancelled || writeFailure != nil { return endIfIdle() }
        // A drained pipe is empty: the loop fills it next if the pipe it was filling went to the threadpool.
        if pipes[filling].isQueued { filling = 1 - filling }
        drainIfIdle()
        if readEnding != nil { return endIfIdle() }
        if remainingToReceive == 0 { return endIfIdle() }
        if isStalled {
            stall(false)
            // Drain the socket's backlog now rather than wait a loop turn for readiness.
            receive(afterLibuvEOF: false)
        }
    }

    private func endIfIdle() {
        guard !hasEnded, !isDraining else { return }
        let outcome: Outcome
        if let writeFailure {
            outcome = .writeFailed(writeFailure)
        } else if isCancelled {
            outcome = .cancelled
        } else if pipes.contains(where: { $0.filled > 0 }) {
            return drainIfIdle()
        } else if let readEnding {
            outcome = readEnding
        } else if remainingToReceive == 0 {
            outcome = .complete
        } else {
            return
        }
        hasEnded = true
        stream.stopWatchingReadable()
        for pipe in pipes { pipe.close() }
        onEvent(.ended(outcome))
    }
}
