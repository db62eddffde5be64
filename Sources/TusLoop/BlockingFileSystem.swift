import Glibc

/// Plain blocking file calls, for use inside ONE threadpool job (`EventLoop.runBlocking`).
///
/// Why it exists: a `uv_fs_*` request per call costs a loop -> worker -> loop crossing (a condition-variable
/// wake, an eventfd write and two context switches). Writing an upload record is open, write, maybe fdatasync,
/// close, rename, maybe a directory fsync: six crossings as separate requests, which the profile of POST showed
/// as half of the server's CPU in the scheduler. Chained here they are one crossing.
///
/// Every call reports failure as a `UVError` (libuv's codes are the negative errno on Unix), so callers keep
/// one error type. Never call these on a loop thread.
public enum BlockingFileSystem {
    /// A failed step: which call, on which path, and why.
    public struct Failure: Error, Sendable {
        public let operation: String
        public let path: String
        public let error: UVError
    }

    /// Creates (or truncates) `path`, writes `bytes`, fdatasyncs it when `sync` is set, and closes it.
    /// With `exclusive`, an existing file is an `.alreadyExists` failure and is left alone.
    public static func writeFile(
        _ path: String, bytes: [UInt8], exclusive: Bool = false, sync: Bool
    ) -> Failure? {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC)
        let descriptor = retryingInterrupts { open(path, flags, 0o644) }
        guard descriptor >= 0 else { return failure("open", path) }
        defer { close(descriptor) }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                retryingInterrupts { pwrite(descriptor, buffer.baseAddress! + written, buffer.count - written, off_t(written)) }
            }
            if count == 0 { return Failure(operation: "write", path: path, error: .ioError) }
            guard count > 0 else { return failure("write", path) }
            written += count
        }
        if sync, retryingInterrupts({ fdatasync(descriptor) }) != 0 { return failure("fdatasync", path) }
        return nil
    }

    /// `rename(2)`: atomic within one file system.
    public static func rename(_ from: String, to: String) -> Failure? {
        Glibc.rename(from, to) == 0 ? nil : failure("rename", from)
    }

    /// `unlink(2)`; a missing file is not a failure.
    public static func unlink(_ path: String) -> Failure? {
        Glibc.unlink(path) == 0 || errno == ENOENT ? nil : failure("unlink", path)
    }

    /// fsync of a directory: what makes a creation, rename or unlink inside it durable.
    public static func syncDirectory(_ path: String) -> Failure? {
        let descriptor = retryingInterrupts { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard descriptor >= 0 else { return failure("open", path) }
        defer { close(descriptor) }
        return retryingInterrupts({ fsync(descriptor) }) == 0 ? nil : failure("fsync", path)
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
