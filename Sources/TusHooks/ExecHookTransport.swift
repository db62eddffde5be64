public import TusCore
public import TusHTTP1
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `--hooks-dir DIR`: the hook for an event is the executable `DIR/<event name>` (as tusd's file hooks). It
/// gets the JSON request on stdin and answers with a JSON response on stdout (empty = no changes); a non-zero
/// exit status is a failure. Events without an executable are skipped. As in tusd (`pkg/hooks/file`), it runs in
/// `DIR` with the server's environment plus `TUS_ID`, `TUS_SIZE` and `TUS_OFFSET`.
///
/// The process runs from a worker-thread job (`LoopExecutor.offload`): `posix_spawn`, then one `poll` loop
/// that feeds stdin and drains stdout together (a large payload cannot deadlock against a large answer), and a
/// hard timeout after which the child is killed. The loop only sees the completion. The price: each running
/// hook holds one of libuv's worker threads (shared with file I/O) for as long as it runs, so slow executables
/// should be made fast or moved behind `--hooks-http`.
public final class ExecHookTransport: HookTransport {
    public let directory: String
    public let timeoutMilliseconds: Int

    public init(directory: String, timeoutMilliseconds: Int) {
        self.directory = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    private func path(_ type: String) -> String { directory + "/" + type }

    /// Checked per call (cheap `access`), so hooks can be added and removed while the server runs.
    public func handles(_ type: String) -> Bool { access(path(type), X_OK) == 0 }

    public func invoke(
        _ type: String, payload: [UInt8], subject: HookSubject, forwardedHeaders: HTTPHeaders, retrySafe: Bool,
        on executor: any LoopExecutor, completion: @escaping (Result<[UInt8], HookFailure>) -> Void
    ) {
        let outcome = Mutex<Result<[UInt8], HookFailure>>(.failure(HookFailure("not run")))
        let path = path(type)
        let directory = directory
        let timeout = timeoutMilliseconds
        let environment = [
            "TUS_ID": subject.id, "TUS_SIZE": String(subject.size), "TUS_OFFSET": String(subject.offset),
        ]
        executor.offload({
            let result = Self.run(
                path, input: payload, environment: environment, workingDirectory: directory,
                timeoutMilliseconds: timeout)
            outcome.withLock { $0 = result }
        }, completion: { completion(outcome.withLock { $0 }) })
    }

    /// Blocking; worker thread only. `environment` is added to the server's own (replacing variables of the same
    /// name, as Go's `exec.Cmd` does with duplicates).
    static func run(
        _ path: String, input: [UInt8], environment: [String: String] = [:], workingDirectory: String? = nil,
        timeoutMilliseconds: Int
    ) -> Result<[UInt8], HookFailure> {
        var stdinPipe: [Int32] = [-1, -1]
        var stdoutPipe: [Int32] = [-1, -1]
        // pipe2(O_CLOEXEC) is not visible from Swift's Glibc module; the flag is set right after instead.
        guard makePipe(&stdinPipe) else { return .failure(HookFailure("pipe: \(errnoText())")) }
        guard makePipe(&stdoutPipe) else {
            close(stdinPipe[0])
            close(stdinPipe[1])
            return .failure(HookFailure("pipe: \(errnoText())"))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        if let workingDirectory, let addChdir = Self.addChdir {
            _ = workingDirectory.withCString { addChdir(&actions, $0) }
        }
        var pid: pid_t = 0
        var envp = Self.childEnvironment(adding: environment)
        defer { for entry in envp { free(entry) } }
        let spawned: Int32 = path.withCString { cPath in
            var argv: [UnsafeMutablePointer<CChar>?] = [strdup(cPath), nil]
            defer { free(argv[0]) }
            return posix_spawn(&pid, cPath, &actions, nil, &argv, &envp)
        }
        close(stdinPipe[0])
        close(stdoutPipe[1])
        guard spawned == 0 else {
            close(stdinPipe[1])
            close(stdoutPipe[0])
            return .failure(HookFailure("cannot run \(path): \(String(cString: strerror(spawned)))"))
        }
        var output: [UInt8] = []
        var written = 0
        var writeFD = stdinPipe[1]
        let readFD = stdoutPipe[0]
        _ = fcntl(writeFD, F_SETFL, fcntl(writeFD, F_GETFL) | O_NONBLOCK)
        if input.isEmpty {
            close(writeFD)
            writeFD = -1
        }
        let deadline = Int(MonotonicClock.milliseconds) + timeoutMilliseconds
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        readLoop: while true {
            let remaining = deadline - Int(MonotonicClock.milliseconds)
            if remaining <= 0 {
                timedOut = true
                break
            }
            var fds = [pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)]
            if writeFD >= 0 { fds.append(pollfd(fd: writeFD, events: Int16(POLLOUT), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 1000)))
            if ready < 0 && errno != EINTR { break }
            if fds.count > 1, fds[1].revents != 0 {
                let n = input[written...].withUnsafeBytes { write(writeFD, $0.baseAddress, $0.count) }
                if n > 0 { written += n }
                if n < 0 && errno != EAGAIN || written == input.count {
                    close(writeFD)
                    writeFD = -1
                }
            }
            if fds[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
                if n > 0 {
                    output += buffer[0..<n]
                    if output.count > 1 << 20 { break }
                } else if n == 0 || errno != EINTR && errno != EAGAIN {
                    break readLoop
                }
            }
        }
        if writeFD >= 0 { close(writeFD) }
        close(readFD)
        var status: Int32 = 0
        // A child that closed stdout may still be running: it gets what is left of the timeout, then SIGKILL.
        while !timedOut {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid || (reaped < 0 && errno != EINTR) { break }
            if Int(MonotonicClock.milliseconds) >= deadline { timedOut = true } else { usleep(1000) }
        }
        if timedOut {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        if timedOut { return .failure(HookFailure("\(path) timed out after \(timeoutMilliseconds) ms")) }
        // WIFEXITED / WEXITSTATUS are macros; the bit layout is Linux's.
        let exited = status & 0x7F == 0
        let code = (status >> 8) & 0xFF
        guard exited else { return .failure(HookFailure("\(path) killed by signal \(status & 0x7F)")) }
        guard code == 0 else {
            return .failure(HookFailure("\(path) exited with \(code)"))
        }
        return .success(output)
    }

    /// The server's environment without the names in `added`, then `added`; NULL-terminated, each entry `strdup`ed.
    private static func childEnvironment(adding added: [String: String]) -> [UnsafeMutablePointer<CChar>?] {
        var entries: [UnsafeMutablePointer<CChar>?] = []
        var cursor = environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            let name = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
            if let name, added[name] == nil { entries.append(strdup(entry)) }
            cursor += 1
        }
        for (name, value) in added.sorted(by: { $0.key < $1.key }) { entries.append(strdup(name + "=" + value)) }
        entries.append(nil)
        return entries
    }

    /// glibc's `posix_spawn_file_actions_addchdir_np` (2.29+), looked up at run time because Swift's Glibc module
    /// does not import it (it is declared under `__USE_GNU`). Delete once it is visible from Swift.
    private typealias AddChdir = @convention(c) (
        UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>
    ) -> Int32
    private static let addChdir: AddChdir? = dlsym(nil, "posix_spawn_file_actions_addchdir_np").map {
        unsafeBitCast($0, to: AddChdir.self)
    }

    private static func makePipe(_ fds: inout [Int32]) -> Bool {
        guard pipe(&fds) == 0 else { return false }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return true
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}
