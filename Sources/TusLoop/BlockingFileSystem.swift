import Glibc
import Synchronization

/// Plain blocking file calls, for use inside ONE threadpool job (`EventLoop.runBlocking`).
///
/// Why it exists: a `uv_fs_*` request per call costs a loop -> worker -> loop crossing (a condition-variable
/// wake, an eventfd write and two context switches). Writing an upload record is open, write, maybe fdatasync,
/// close, rename, maybe a directory fsync: six crossings as separate requests, which the profile of POST showed
/// as half of the server's CPU in the scheduler. Chained here they are one crossing.
///
/// Every call reports failure as a `UVError` (libuv's codes are the negative errno on Unix), so callers keep
/// one error type. Never call these on a loop thread. Startup recovery calls them too (on the starting thread), so
/// that `injectedFault` can fail any step of recovery or of a record write in tests.
public enum BlockingFileSystem {
    /// A failed step: which call, on which path, and why.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let operation: String
        public let path: String
        public let error: UVError

        public var description: String { "\(operation) \(path): \(error)" }
    }

    /// Creates (or truncates) `path`, writes `bytes`, fdatasyncs it when `sync` is set, and closes it.
    /// With `exclusive`, an existing file is an `.alreadyExists` failure and is left alone.
    public static func writeFile(
        _ path: String, bytes: [UInt8], exclusive: Bool = false, sync: Bool
    ) -> Failure? {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC)
        if let injected = injected("open", path) { return injected }
        // `withCString`: a native string is already NUL-terminated, where the implicit conversion inside a closure
        // copied the path into a new array (an allocation per file created).
        let descriptor = path.withCString { cPath in retryingInterrupts { open(cPath, flags, 0o644) } }
        guard descriptor >= 0 else { return failure("open", path) }
        defer { close(descriptor) }
        var written = 0
        while written < bytes.count {
            if let injected = injected("write", path) { return injected }
            let count = bytes.withUnsafeBytes { buffer in
                retryingInterrupts { pwrite(descriptor, buffer.baseAddress! + written, buffer.count - written, off_t(written)) }
            }
            if count == 0 { return Failure(operation: "write", path: path, error: .ioError) }
            guard count > 0 else { return failure("write", path) }
            written += count
        }
        return sync ? datasync(descriptor, path) : nil
    }

    /// A new empty file at `path` (mode 0644 less the umask), never opened: `mknod(2)` of a regular file, which is
    /// the creation `open(O_CREAT | O_EXCL)` makes without the open file, its descriptor and the close that
    /// follows (an upload's data file at creation; ~3 % of a POST's CPU on tmpfs, bench/results/2026-12-07-post).
    /// An existing file is an `.alreadyExists` failure and is left alone. Nothing is synced: the caller's
    /// directory sync makes the entry durable.
    public static func createEmptyFile(_ path: String) -> Failure? {
        if let injected = injected("mknod", path) { return injected }
        let result = path.withCString { cPath in retryingInterrupts { mknod(cPath, S_IFREG | 0o644, 0) } }
        guard result == 0 else { return failure("mknod", path) }
        return nil
    }

    /// The whole of a (small) file: a record. `.notFound` when it does not exist.
    public static func readFile(_ path: String) -> Result<[UInt8], Failure> {
        if let injected = injected("open", path) { return .failure(injected) }
        let descriptor = retryingInterrupts { open(path, O_RDONLY | O_CLOEXEC) }
        guard descriptor >= 0 else { return .failure(failure("open", path)) }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let injected = injected("read", path) { return .failure(injected) }
            let count = chunk.withUnsafeMutableBytes { buffer in
                retryingInterrupts { read(descriptor, buffer.baseAddress!, buffer.count) }
            }
            guard count >= 0 else { return .failure(failure("read", path)) }
            if count == 0 { return .success(bytes) }
            bytes += chunk[..<count]
        }
    }

    /// `stat(2)`'s size; `.notFound` when the file does not exist.
    public static func size(of path: String) -> Result<Int64, Failure> {
        if let injected = injected("stat", path) { return .failure(injected) }
        var status = stat()
        guard stat(path, &status) == 0 else { return .failure(failure("stat", path)) }
        return .success(Int64(status.st_size))
    }

    /// Cuts `path` to `length` bytes and fdatasyncs it when `sync` is set.
    public static func truncate(_ path: String, to length: Int64, sync: Bool) -> Failure? {
        if let injected = injected("open", path) { return injected }
        let descriptor = retryingInterrupts { open(path, O_WRONLY | O_CLOEXEC) }
        guard descriptor >= 0 else { return failure("open", path) }
        defer { close(descriptor) }
        if let injected = injected("ftruncate", path) { return injected }
        guard retryingInterrupts({ ftruncate(descriptor, off_t(length)) }) == 0 else {
            return failure("ftruncate", path)
        }
        return sync ? datasync(descriptor, path) : nil
    }

    /// `rename(2)`: atomic within one file system.
    public static func rename(_ from: String, to: String) -> Failure? {
        if let injected = injected("rename", from) { return injected }
        return Glibc.rename(from, to) == 0 ? nil : failure("rename", from)
    }

    /// `unlink(2)`; a missing file is not a failure.
    public static func unlink(_ path: String) -> Failure? {
        if let injected = injected("unlink", path) { return injected }
        return Glibc.unlink(path) == 0 || errno == ENOENT ? nil : failure("unlink", path)
    }

    /// Opens (creating it if needed) `path` for appending: every write lands at the end, so writers of one log
    /// never overwrite each other. The caller closes the descriptor.
    public static func openForAppending(_ path: String) -> Result<Int32, Failure> {
        if let injected = injected("open", path) { return .failure(injected) }
        let descriptor = retryingInterrupts { open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644) }
        return descriptor >= 0 ? .success(descriptor) : .failure(failure("open", path))
    }

    /// Writes all of `bytes` to `descriptor` (opened by `openForAppending`; `path` names it in failures). A failure
    /// may leave part of `bytes` written.
    public static func append(_ bytes: [UInt8], to descriptor: Int32, path: String) -> Failure? {
        var written = 0
        while written < bytes.count {
            if let injected = injected("write", path) { return injected }
            let count = bytes.withUnsafeBytes { buffer in
                retryingInterrupts { write(descriptor, buffer.baseAddress! + written, buffer.count - written) }
            }
            if count == 0 { return Failure(operation: "write", path: path, error: .ioError) }
            guard count > 0 else { return failure("write", path) }
            written += count
        }
        return nil
    }

    /// fdatasync of the file at `path` (whatever descriptor wrote it: the page cache is the file's).
    public static func syncFile(_ path: String) -> Failure? {
        if let injected = injected("open", path) { return injected }
        let descriptor = retryingInterrupts { open(path, O_WRONLY | O_CLOEXEC) }
        guard descriptor >= 0 else { return failure("open", path) }
        defer { close(descriptor) }
        return datasync(descriptor, path)
    }

    /// fsync of a directory: what makes a creation, rename or unlink inside it durable.
    public static func syncDirectory(_ path: String) -> Failure? {
        if let injected = injected("open", path) { return injected }
        let descriptor = retryingInterrupts { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard descriptor >= 0 else { return failure("open", path) }
        defer { close(descriptor) }
        if let injected = injected("fsync", path) { return injected }
        return retryingInterrupts({ fsync(descriptor) }) == 0 ? nil : failure("fsync", path)
    }

    private static func datasync(_ descriptor: Int32, _ path: String) -> Failure? {
        if let injected = injected("fdatasync", path) { return injected }
        return retryingInterrupts({ fdatasync(descriptor) }) == 0 ? nil : failure("fdatasync", path)
    }

    // MARK: fault injection (tests only)

    /// Tests only (`@testable import TusLoop`): called with each step's operation ("open", "read", "write",
    /// "fdatasync", "stat", "ftruncate", "rename", "unlink", "fsync") and path before the call is made; an error
    /// returned fails that step as if the system call had returned it. ENOSPC and EIO cannot be produced on demand
    /// by a real file system at one chosen step, and every failure path of recovery and of a record write needs a
    /// test. The atomic flag keeps the lock off the path when no test injects.
    static func injectFaults(_ fault: (@Sendable (_ operation: String, _ path: String) -> UVError?)?) {
        faults.withLock { $0 = fault }
        isInjecting.store(fault != nil, ordering: .releasing)
    }

    private static let faults = Mutex<(@Sendable (String, String) -> UVError?)?>(nil)
    private static let isInjecting = Atomic<Bool>(false)

    private static func injected(_ operation: String, _ path: String) -> Failure? {
        guard isInjecting.load(ordering: .acquiring),
            let error = faults.withLock({ $0 })?(operation, path)
        else { return nil }
        return Failure(operation: operation, path: path, error: error)
    }

    private static func failure(_ operation: String, _ path: String) -> Failure {
        Failure(operation: operation, path: path, error: UVError(code: -errno))
    }

    private static func retryingInterrupts<T: BinaryInteger>(_ call: () -> T) -> T {
        while true {
            let result = call()
            if result >= 0 || errno != EINTR { return result }
        }
    }
}

extension EventLoop {
    /// Runs blocking `work` on libuv's threadpool and hands its result to `completion` on this loop's thread:
    /// several blocking calls for the price of one crossing (see `BlockingFileSystem`).
    public func runBlocking<Result: Sendable>(
        _ work: @escaping @Sendable () -> Result, completion: @escaping (Result) -> Void
    ) {
        let box = ResultBox<Result>()
        offload({ box.value = work() }, completion: { completion(box.value!) })
    }
}

/// Written on the worker, read on the loop after libuv's work -> completion ordering (a happens-before edge).
private final class ResultBox<Value: Sendable>: @unchecked Sendable {
    var value: Value?
}
