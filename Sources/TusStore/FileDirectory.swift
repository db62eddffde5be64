import Glibc
import TusLoop

/// What the file state and data stores share about their directory.
enum FileDirectory {
    /// fsync of the directory: what makes a rename, creation or unlink inside it durable. A no-op under `.none`.
    /// Open, fsync and close run as one threadpool job (`BlockingFileSystem`), not three `uv_fs` requests,
    /// grouped with concurrent ones (`DirectorySyncGroup`).
    static func sync(
        _ group: DirectorySyncGroup, policy: FsyncPolicy, loop: EventLoop, completion: @escaping (UVError?) -> Void
    ) {
        guard policy.syncsAtCommit else { return completion(nil) }
        loop.runBlocking({ group.sync()?.error }, completion: completion)
    }

    /// `directory/name` + `suffix` in one allocation (`+` chains grow the string once per piece: a creation built
    /// five strings for its two paths).
    static func path(_ directory: String, _ name: String, _ suffix: String = "") -> String {
        var path = ""
        path.reserveCapacity(directory.utf8.count + 1 + name.utf8.count + suffix.utf8.count)
        path += directory
        path += "/"
        path += name
        path += suffix
        return path
    }
}

/// Group commit of one directory's fsync, for threadpool jobs (it blocks).
///
/// One fsync of a directory makes durable every entry created, renamed or unlinked in it before the fsync
/// started, so concurrent creations need not each pay for one: a caller whose entry is already in place joins the
/// next fsync to start (not one already running, which may have started before its entry existed); the first of
/// that group to find the directory idle runs it for all, the others wait for its result. Under N concurrent
/// creations this costs about two fsyncs per round instead of N.
final class DirectorySyncGroup: @unchecked Sendable {
    let path: String
    /// `BlockingFileSystem.syncDirectory`, or a test's stand-in.
    private let syncer: @Sendable (String) -> BlockingFileSystem.Failure?
    private var runs = 0
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// All under `mutex`: the fsync running now, and the one the callers arriving meanwhile wait to start.
    private var running: Round?
    private var next: Round?

    private final class Round {
        var members = 0
        var done = false
        var failure: BlockingFileSystem.Failure?
    }

    init(
        path: String,
        syncer: @escaping @Sendable (String) -> BlockingFileSystem.Failure? = BlockingFileSystem.syncDirectory
    ) {
        self.path = path
        self.syncer = syncer
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Returns once an fsync of the directory that started after this call began has finished (its failure, if
    /// any, is every member's). Blocking: call it only inside a threadpool job.
    func sync() -> BlockingFileSystem.Failure? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let round: Round
        if let waiting = next {
            round = waiting
        } else if running == nil {
            round = Round()
        } else {
            round = Round()
            next = round
        }
        round.members += 1
        while !round.done {
            if running == nil {
                running = round
                if next === round { next = nil }
                runs += 1
                pthread_mutex_unlock(mutex)
                let failure = syncer(path)
                pthread_mutex_lock(mutex)
                round.failure = failure
                round.done = true
                running = nil
                pthread_cond_broadcast(condition)
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
        return round.failure
    }

    /// Callers waiting for the next fsync to start (tests).
    var waitingForNext: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return next?.members ?? 0
    }

    /// Directory fsyncs run so far (tests, diagnostics).
    var syncsRun: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return runs
    }
}

extension FileDirectory {
    /// Creates the directory (and its parents) if needed; synchronous, for start-up.
    static func ensureExists(_ directory: String) -> Bool {
        var path = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/", omittingEmptySubsequences: true) {
            path += "/" + component
            if mkdir(path, 0o755) != 0 && errno != EEXIST { return false }
        }
        var status = stat()
        return stat(directory, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }
}

extension UVError {
    /// ENOSPC, or EDQUOT (a quota; libuv 1.44 has no name for it, and Linux numbers it 122).
    var isOutOfSpace: Bool { self == .noSpaceLeft || code == -122 }
}
