internal import CLibuv
import Glibc

/// What `stat` reports; seconds since the epoch.
public struct FileStatus: Sendable, Equatable {
    public var size: Int64
    public var mtimeSeconds: Int64

    public init(size: Int64, mtimeSeconds: Int64) {
        self.size = size
        self.mtimeSeconds = mtimeSeconds
    }
}

/// An open file whose I/O runs as `uv_fs_*` requests on libuv's threadpool, so a slow disk stalls no
/// connection of the loop. Completions run on the loop thread; call the methods there too.
///
/// In-flight requests retain the file. If the last reference goes without `close`, deinit closes the descriptor
/// synchronously (a safety net, not the intended path).
public final class AsyncFile {
    public struct OpenFlags: OptionSet, Sendable {
        public let rawValue: Int32

        public init(rawValue: Int32) {
            self.rawValue = rawValue
        }

        public static let readOnly = OpenFlags(rawValue: 1 << 0)
        public static let writeOnly = OpenFlags(rawValue: 1 << 1)
        public static let readWrite = OpenFlags(rawValue: 1 << 2)
        public static let create = OpenFlags(rawValue: 1 << 3)
        public static let exclusive = OpenFlags(rawValue: 1 << 4)
        public static let truncate = OpenFlags(rawValue: 1 << 5)
        public static let append = OpenFlags(rawValue: 1 << 6)

        var systemFlags: Int32 {
            var flags: Int32 = 0
            if contains(.readWrite) || (contains(.readOnly) && contains(.writeOnly)) {
                flags |= O_RDWR
            } else if contains(.writeOnly) {
                flags |= O_WRONLY
            }
            if contains(.create) { flags |= O_CREAT }
            if contains(.exclusive) { flags |= O_EXCL }
            if contains(.truncate) { flags |= O_TRUNC }
            if contains(.append) { flags |= O_APPEND }
            return flags  // libuv adds O_CLOEXEC
        }
    }

    public let loop: EventLoop
    public let descriptor: Int32
    public private(set) var isClosed = false
    /// `startWriteback` jobs on the threadpool; they use the descriptor number, so `close` waits for them.
    private var writebacksRunning = 0
    private var closeWhenIdle: (() -> Void)?

    init(loop: EventLoop, descriptor: Int32) {
        self.loop = loop
        self.descriptor = descriptor
    }

    deinit {
        if !isClosed {
            Glibc.close(descriptor)
        }
    }

    /// `uv_fs_open`.
    public static func open(
        loop: EventLoop, path: String, flags: OpenFlags, mode: Int32 = 0o644,
        _ completion: @escaping (Result<AsyncFile, UVError>) -> Void
    ) {
        loop.assertOnLoopThread()
        let failure = submitFileRequest(
            loop: loop, owner: nil,
            start: { uv_fs_open(loop.loop, $0, path, flags.systemFlags, mode, fileRequestCallback) },
            completion: { request in
                let result = request.pointee.result
                completion(
                    result < 0
                        ? .failure(UVError(code: Int32(result)))
                        : .success(AsyncFile(loop: loop, descriptor: Int32(result))))
            })
        if let failure { completion(.failure(failure)) }
    }

    /// Opens an existing file on the loop thread when the kernel can resolve `path` from its dentry cache
    /// (`openat2` with `RESOLVE_CACHED`, as io_uring opens inline), completing before this returns; otherwise
    /// (a lookup that would read the disk, an older kernel, any error) as `open` does, on the threadpool. A PATCH
    /// opens a file its POST made moments ago: at 1,024 uploads the threadpool crossing and the wait for the
    /// loop to take its completion were most of the time from headers to the splice's start
    /// (bench/results/2026-12-07-pstart). No `.create` or `.truncate`: those could block.
    public static func openCachedOnLoop(
        loop: EventLoop, path: String, flags: OpenFlags, _ completion: @escaping (Result<AsyncFile, UVError>) -> Void
    ) {
        loop.assertOnLoopThread()
        precondition(!flags.contains(.create) && !flags.contains(.truncate), "only lookups may run on the loop")
        let descriptor = CLibuv_open_cached(path, flags.systemFlags)
        if descriptor >= 0 { return completion(.success(AsyncFile(loop: loop, descriptor: descriptor))) }
        open(loop: loop, path: path, flags: flags, completion)
    }

    /// `uv_fs_write` with one `uv_buf_t` per buffer (pwritev). `owner` is retained until completion. Short writes
    /// are continued here, so the completion sees either the full byte count or an error.
    public func write(
        _ buffers: [UnsafeRawBufferPointer], at offset: Int64, owner: AnyObject?,
        _ completion: @escaping (Result<Int, UVError>) -> Void
    ) {
        loop.assertOnLoopThread()
        guard !isClosed else { return completion(.failure(.badFileDescriptor)) }
        let total = buffers.reduce(0) { $0 + $1.count }
        writeRemainder(of: buffers, total: total, written: 0, at: offset, owner: owner, completion)
    }

    private func writeRemainder(
        of buffers: [UnsafeRawBufferPointer], total: Int, written: Int, at offset: Int64, owner: AnyObject?,
        _ completion: @escaping (Result<Int, UVError>) -> Void
    ) {
        guard written < total else { return completion(.success(total)) }
        let remaining = Self.dropFirst(written, of: buffers)
        let failure = submitFileRequest(
            loop: loop, owner: owner,
            start: { request in
                Self.withUVBuffers(remaining) { bufs, count in
                    uv_fs_write(
                        loop.loop, request, descriptor, bufs, count, offset + Int64(written), fileRequestCallback)
                }
            },
            completion: { request in
                let result = request.pointee.result
                if result < 0 {
                    completion(.failure(UVError(code: Int32(result))))
                } else if result == 0 {
                    completion(.failure(.ioError))  // pwrite made no progress; retrying would spin
                } else {
                    self.writeRemainder(
                        of: buffers, total: total, written: written + result, at: offset, owner: owner, completion)
                }
            })
        if let failure { completion(.failure(failure)) }
    }

    /// Synchronous `uv_fs_write` on the calling (loop) thread: blocks the loop; kept so bench/ can compare it
    /// with the threadpool path.
    public func writeSynchronously(_ buffers: [UnsafeRawBufferPointer], at offset: Int64) -> Result<Int, UVError> {
        guard !isClosed else { return .failure(.badFileDescriptor) }
        let total = buffers.reduce(0) { $0 + $1.count }
        var written = 0
        while written < total {
            var request = uv_fs_t()
            let result = Self.withUVBuffers(Self.dropFirst(written, of: buffers)) { bufs, count in
                uv_fs_write(loop.loop, &request, descriptor, bufs, count, offset + Int64(written), nil)
            }
            uv_fs_req_cleanup(&request)
            guard result > 0 else { return .failure(result < 0 ? UVError(code: result) : .ioError) }
            written += Int(result)
        }
        return .success(total)
    }

    /// `uv_fs_read` into `buffer`; the count is 0 at end of file. `owner` is retained until completion.
    public func read(
        into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, owner: AnyObject?,
        _ completion: @escaping (Result<Int, UVError>) -> Void
    ) {
        loop.assertOnLoopThread()
        guard !isClosed else { return completion(.failure(.badFileDescriptor)) }
        var buf = uv_buf_t(base: buffer.baseAddress?.assumingMemoryBound(to: CChar.self), len: buffer.count)
        let failure = submitFileRequest(
            loop: loop, owner: owner,
            start: { uv_fs_read(loop.loop, $0, descriptor, &buf, 1, offset, fileRequestCallback) },
            completion: { request in
                let result = request.pointee.result
                completion(result < 0 ? .failure(UVError(code: Int32(result))) : .success(result))
            })
        if let failure { completion(.failure(failure)) }
    }

    /// `uv_fs_fdatasync`.
    public func datasync(_ completion: @escaping (UVError?) -> Void) {
        simpleRequest(completion) { uv_fs_fdatasync(self.loop.loop, $0, self.descriptor, fileRequestCallback) }
    }

    /// Starts writing `range`'s dirty pages to disk without waiting for them, and then, if `earlier` is given,
    /// waits until that range (normally the one started by the previous call) is on disk. A hint that makes a later
    /// `datasync` cheap, not a sync: no metadata, no device cache flush, no durability promise.
    ///
    /// Both `sync_file_range` calls (`SYNC_FILE_RANGE_WRITE`, then `WAIT_BEFORE | WRITE | WAIT_AFTER` on `earlier`)
    /// run in one `uv_queue_work` job, never on the loop thread: even `WRITE` blocks while the device queue is
    /// full. The wait reports a write-back error (EIO, ENOSPC) once per open file, as fdatasync would: the kernel
    /// advances the file's error cursor, so a `datasync` afterwards does not see it again, and the caller must
    /// treat an error here as that sync's. `notSupported` (ENOSYS) means the kernel has no such call. `close`
    /// while a write-back runs closes the descriptor only after it finished, so the job never sees a reused number.
    public func startWriteback(
        of range: Range<Int64>, waitingFor earlier: Range<Int64>?, _ completion: @escaping (UVError?) -> Void
    ) {
        loop.assertOnLoopThread()
        guard !isClosed else { return completion(.badFileDescriptor) }
        let descriptor = descriptor
        let status = WritebackStatus()
        writebacksRunning += 1
        loop.offload {
            var result = CLibuv_sync_file_range(
                descriptor, range.lowerBound, range.upperBound - range.lowerBound,
                UInt32(CLibuv_SYNC_FILE_RANGE_WRITE))
            if result == 0, let earlier {
                result = CLibuv_sync_file_range(
                    descriptor, earlier.lowerBound, earlier.upperBound - earlier.lowerBound,
                    UInt32(CLibuv_SYNC_FILE_RANGE_WAIT_BEFORE | CLibuv_SYNC_FILE_RANGE_WRITE
                        | CLibuv_SYNC_FILE_RANGE_WAIT_AFTER))
            }
            status.code = result
        } completion: { [self] in
            writebacksRunning -= 1
            if writebacksRunning == 0, let closeWhenIdle {
                self.closeWhenIdle = nil
                closeWhenIdle()
            }
            completion(status.code < 0 ? UVError(code: status.code) : nil)
        }
    }

    /// `uv_fs_fsync` (data and metadata); also what a directory needs after a rename inside it.
    public func sync(_ completion: @escaping (UVError?) -> Void) {
        simpleRequest(completion) { uv_fs_fsync(self.loop.loop, $0, self.descriptor, fileRequestCallback) }
    }

    /// `uv_fs_ftruncate`.
    public func truncate(to length: Int64, _ completion: @escaping (UVError?) -> Void) {
        simpleRequest(completion) { uv_fs_ftruncate(self.loop.loop, $0, self.descriptor, length, fileRequestCallback) }
    }

    /// `uv_fs_fstat`.
    public func stat(_ completion: @escaping (Result<FileStatus, UVError>) -> Void) {
        loop.assertOnLoopThread()
        guard !isClosed else { return completion(.failure(.badFileDescriptor)) }
        let failure = submitFileRequest(
            loop: loop, owner: self,
            start: { uv_fs_fstat(self.loop.loop, $0, self.descriptor, fileRequestCallback) },
            completion: { completion(fileStatus(of: $0)) })
        if let failure { completion(.failure(failure)) }
    }

    /// `uv_fs_close`; the descriptor is unusable from this call on (later calls fail with `.badFileDescriptor`).
    public func close(_ completion: ((UVError?) -> Void)? = nil) {
        loop.assertOnLoopThread()
        guard !isClosed else {
            completion?(.badFileDescriptor)
            return
        }
        isClosed = true
        guard writebacksRunning == 0 else {
            closeWhenIdle = { [self] in closeDescriptor(completion) }
            return
        }
        closeDescriptor(completion)
    }

    private func closeDescriptor(_ completion: ((UVError?) -> Void)?) {
        let failure = submitFileRequest(
            loop: loop, owner: nil,
            start: { uv_fs_close(self.loop.loop, $0, self.descriptor, fileRequestCallback) },
            completion: { completion?(statusError(of: $0)) })
        if let failure { completion?(failure) }
    }

    private func simpleRequest(
        _ completion: @escaping (UVError?) -> Void, start: (UnsafeMutablePointer<uv_fs_t>) -> Int32
    ) {
        loop.assertOnLoopThread()
        guard !isClosed else { return completion(.badFileDescriptor) }
        let failure = submitFileRequest(
            loop: loop, owner: self, start: start, completion: { completion(statusError(of: $0)) })
        if let failure { completion(failure) }
    }

    private static func dropFirst(_ count: Int, of buffers: [UnsafeRawBufferPointer]) -> [UnsafeRawBufferPointer] {
        guard count > 0 else { return buffers.filter { $0.count > 0 } }
        var skip = count
        var rest: [UnsafeRawBufferPointer] = []
        for buffer in buffers {
            if skip >= buffer.count {
                skip -= buffer.count
            } else {
                rest.append(UnsafeRawBufferPointer(rebasing: buffer[skip...]))
                skip = 0
            }
        }
        return rest
    }

    /// libuv copies the uv_buf_t array into the request, so a stack array is enough.
    private static func withUVBuffers<Result>(
        _ buffers: [UnsafeRawBufferPointer], _ body: (UnsafePointer<uv_buf_t>, UInt32) -> Result
    ) -> Result {
        withUnsafeTemporaryAllocation(of: uv_buf_t.self, capacity: max(buffers.count, 1)) { bufs in
            for (index, buffer) in buffers.enumerated() {
                bufs.initializeElement(
                    at: index,
                    to: uv_buf_t(
                        base: UnsafeMutablePointer(mutating: buffer.baseAddress?.assumingMemoryBound(to: CChar.self)),
                        len: buffer.count))
            }
            return body(UnsafePointer(bufs.baseAddress!), UInt32(buffers.count))
        }
    }
}

/// Carries a write-back's result from the worker thread to the completion; libuv orders the two (the work
/// happens-before the completion), so no lock is needed.
private final class WritebackStatus: @unchecked Sendable {
    var code: Int32 = 0
}

/// `uv_fs_*` path operations, run on the threadpool; completions on the loop thread.
public enum FileSystem {
    /// `uv_fs_rename` (atomic within one file system).
    public static func rename(loop: EventLoop, from: String, to: String, _ completion: @escaping (UVError?) -> Void) {
        pathRequest(loop: loop, completion) { uv_fs_rename(loop.loop, $0, from, to, fileRequestCallback) }
    }

    /// `uv_fs_link`: a second name for the same inode. What lets a final upload keep its partials' bytes
    /// without copying them, whatever later happens to the partials' own names.
    public static func link(loop: EventLoop, from: String, to: String, _ completion: @escaping (UVError?) -> Void) {
        pathRequest(loop: loop, completion) { uv_fs_link(loop.loop, $0, from, to, fileRequestCallback) }
    }

    /// `uv_fs_unlink`.
    public static func unlink(loop: EventLoop, path: String, _ completion: @escaping (UVError?) -> Void) {
        pathRequest(loop: loop, completion) { uv_fs_unlink(loop.loop, $0, path, fileRequestCallback) }
    }

    /// `uv_fs_mkdir`; an existing directory gives `.alreadyExists`.
    public static func mkdir(
        loop: EventLoop, path: String, mode: Int32 = 0o755, _ completion: @escaping (UVError?) -> Void
    ) {
        pathRequest(loop: loop, completion) { uv_fs_mkdir(loop.loop, $0, path, mode, fileRequestCallback) }
    }

    /// `uv_fs_stat`.
    public static func stat(
        loop: EventLoop, path: String, _ completion: @escaping (Result<FileStatus, UVError>) -> Void
    ) {
        loop.assertOnLoopThread()
        let failure = submitFileRequest(
            loop: loop, owner: nil,
            start: { uv_fs_stat(loop.loop, $0, path, fileRequestCallback) },
            completion: { completion(fileStatus(of: $0)) })
        if let failure { completion(.failure(failure)) }
    }

    /// `uv_fs_scandir`: the names in a directory (without "." and ".."), unsorted.
    public static func listDirectory(
        loop: EventLoop, path: String, _ completion: @escaping (Result<[String], UVError>) -> Void
    ) {
        loop.assertOnLoopThread()
        let failure = submitFileRequest(
            loop: loop, owner: nil,
            start: { uv_fs_scandir(loop.loop, $0, path, 0, fileRequestCallback) },
            completion: { request in
                let result = request.pointee.result
                guard result >= 0 else { return completion(.failure(UVError(code: Int32(result)))) }
                var names: [String] = []
                var entry = uv_dirent_t()
                while uv_fs_scandir_next(request, &entry) == 0 {
                    names.append(String(cString: entry.name))
                }
                completion(.success(names))
            })
        if let failure { completion(.failure(failure)) }
    }

    private static func pathRequest(
        loop: EventLoop, _ completion: @escaping (UVError?) -> Void,
        start: (UnsafeMutablePointer<uv_fs_t>) -> Int32
    ) {
        loop.assertOnLoopThread()
        let failure = submitFileRequest(
            loop: loop, owner: nil, start: start, completion: { completion(statusError(of: $0)) })
        if let failure { completion(failure) }
    }
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit (each connection and open upload costs a descriptor);
/// returns the soft limit in effect afterwards.
public func raiseOpenFileLimit() -> Int {
    var limit = rlimit()
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    guard getrlimit(resource, &limit) == 0 else { return 0 }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(resource, &raised) == 0 {
            limit = raised
        }
    }
    return limit.rlim_cur > rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
}

// MARK: request plumbing

/// Keeps a request's Swift state (and `owner`, usually the bytes being written) alive until its callback.
private final class FileRequest {
    let request: UnsafeMutablePointer<uv_fs_t>
    let completion: (UnsafeMutablePointer<uv_fs_t>) -> Void
    let owner: AnyObject?

    init(owner: AnyObject?, completion: @escaping (UnsafeMutablePointer<uv_fs_t>) -> Void) {
        request = .allocate(capacity: 1)
        request.initialize(to: uv_fs_t())  // zeroed, so uv_fs_req_cleanup is safe whatever libuv filled in
        self.owner = owner
        self.completion = completion
    }

    deinit {
        uv_fs_req_cleanup(request)
        request.deallocate()
    }
}

/// Starts a request; returns the synchronous failure (then no callback will come and nothing stays retained).
private func submitFileRequest(
    loop: EventLoop, owner: AnyObject?, start: (UnsafeMutablePointer<uv_fs_t>) -> Int32,
    completion: @escaping (UnsafeMutablePointer<uv_fs_t>) -> Void
) -> UVError? {
    let fileRequest = FileRequest(owner: owner, completion: completion)
    let status = start(fileRequest.request)
    guard status >= 0 else { return UVError(code: status) }
    // Set after start: the callback cannot run before we return to the loop.
    fileRequest.request.pointee.data = Unmanaged.passRetained(fileRequest).toOpaque()
    return nil
}

private func fileRequestCallback(_ request: UnsafeMutablePointer<uv_fs_t>?) {
    // Released (and uv_fs_req_cleanup'ed in deinit) after the completion read the result.
    let fileRequest = Unmanaged<FileRequest>.fromOpaque(request!.pointee.data).takeRetainedValue()
    fileRequest.completion(fileRequest.request)
}

private func statusError(of request: UnsafeMutablePointer<uv_fs_t>) -> UVError? {
    let result = request.pointee.result
    return result < 0 ? UVError(code: Int32(result)) : nil
}

private func fileStatus(of request: UnsafeMutablePointer<uv_fs_t>) -> Result<FileStatus, UVError> {
    let result = request.pointee.result
    guard result >= 0 else { return .failure(UVError(code: Int32(result))) }
    let stat = request.pointee.statbuf
    return .success(FileStatus(size: Int64(stat.st_size), mtimeSeconds: Int64(stat.st_mtim.tv_sec)))
}
