/// TusLoop: the only module that talks to libuv. Everything above it sees Swift types only.
///
/// Ownership rules (libuv design.rst; every type in this module follows them):
///
/// 1. Every Swift handle object (`Timer`, `SignalWatcher`, `TCPStream`, `TCPListener`) is retained by its own
///    uv handle, `Unmanaged.passRetained(self)` in `handle->data`, from init until its close callback. A handle
///    therefore stays alive while libuv can still call into it, even if nobody else holds it; the object is
///    released only when the close callback has run. Dropping your last reference does *not* close a handle:
///    call `close()`. Callbacks and delegates stored in a handle are dropped in its close callback, which breaks
///    any reference cycle through them.
/// 2. The memory of a uv handle is freed only in (or after) its close callback; a request's memory (write,
///    shutdown, connect, fs) only after its callback ran.
/// 3. If a libuv call that takes a callback fails synchronously, libuv never runs that callback. The wrapper then
///    releases what it retained for the callback and reports the error at once: the Swift completion is called
///    exactly once, synchronously (before the method returns) in that case, otherwise later on the loop thread.
/// 4. Every method except `EventLoop.execute(_:)` and `EventLoop.stop()` must be called on the loop's thread
///    (or before the loop runs). Debug builds check this with an assertion; release builds do not pay for it.
/// 5. At the end of `EventLoop.run()`, handles still open but inactive are closed by the loop itself (and counted
///    in `EventLoop.handlesClosedAtShutdown`, which tests expect to be zero).
///
/// Errors the peer or the file system can cause come back as `UVError` values; they are data, not crashes.

internal import CLibuv

/// A libuv error: `code` is libuv's negative errno (`UV_E*`).
public struct UVError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let code: Int32

    public init(code: Int32) {
        self.code = code
    }

    /// `"ECONNRESET: connection reset by peer"`, from `uv_err_name` and `uv_strerror`.
    public var description: String {
        String(cString: uv_err_name(code)) + ": " + String(cString: uv_strerror(code))
    }

    public static let eof = UVError(code: UV_EOF.rawValue)
    public static let connectionReset = UVError(code: UV_ECONNRESET.rawValue)
    public static let connectionRefused = UVError(code: UV_ECONNREFUSED.rawValue)
    public static let brokenPipe = UVError(code: UV_EPIPE.rawValue)
    public static let cancelled = UVError(code: UV_ECANCELED.rawValue)
    public static let notFound = UVError(code: UV_ENOENT.rawValue)
    public static let alreadyExists = UVError(code: UV_EEXIST.rawValue)
    public static let addressInUse = UVError(code: UV_EADDRINUSE.rawValue)
    public static let invalidArgument = UVError(code: UV_EINVAL.rawValue)
    public static let badFileDescriptor = UVError(code: UV_EBADF.rawValue)
    public static let noBufferSpace = UVError(code: UV_ENOBUFS.rawValue)
    public static let noSpaceLeft = UVError(code: UV_ENOSPC.rawValue)
    public static let tooManyOpenFiles = UVError(code: UV_EMFILE.rawValue)
    public static let notConnected = UVError(code: UV_ENOTCONN.rawValue)
    public static let timedOut = UVError(code: UV_ETIMEDOUT.rawValue)
    public static let permissionDenied = UVError(code: UV_EACCES.rawValue)
    public static let ioError = UVError(code: UV_EIO.rawValue)
    /// ENOSYS: the kernel lacks the system call (`sync_file_range` under some emulators).
    public static let notSupported = UVError(code: UV_ENOSYS.rawValue)
    public static let isDirectory = UVError(code: UV_EISDIR.rawValue)
    public static let notDirectory = UVError(code: UV_ENOTDIR.rawValue)
    public static let directoryNotEmpty = UVError(code: UV_ENOTEMPTY.rawValue)
}

/// `nil` for libuv's "0 = success", an error otherwise.
@inline(__always)
func uvError(_ status: Int32) -> UVError? {
    status == 0 ? nil : UVError(code: status)
}

/// Lifecycle of a handle wrapper; `handle` memory is valid only in `.open` and `.closing`.
enum HandleState {
    case open, closing, closed
}

/// The close sequence of a handle whose `close` takes a completion: the state plus whoever waits for the close
/// callback. Shared so that every handle type closes the same way (idempotent, completions in call order).
struct CloseWaiters {
    private(set) var state = HandleState.open
    private var completions: [() -> Void] = []

    enum Request {
        /// Call `uv_close` now.
        case startClosing
        /// A close is already under way; the completion will run with the others.
        case alreadyClosing
        /// Closed long ago: run the completion now.
        case alreadyClosed
    }

    mutating func requestClose(_ completion: (() -> Void)?) -> Request {
        switch state {
        case .open:
            if let completion { completions.append(completion) }
            state = .closing
            return .startClosing
        case .closing:
            if let completion { completions.append(completion) }
            return .alreadyClosing
        case .closed:
            return .alreadyClosed
        }
    }

    /// Marks the handle closed and hands back the completions to run (outside any access to this value).
    mutating func didClose() -> [() -> Void] {
        state = .closed
        defer { completions = [] }
        return completions
    }
}

/// Lets the loop close handles their owners forgot (rule 5) without knowing their types: `handle->data` of every
/// handle holds an object conforming to this.
protocol LoopOwnedHandle: AnyObject {
    func closeForLoopShutdown()
}

/// Frees handles whose init succeeded but whose setup failed before a Swift owner took them over.
func freeHandleOnClose(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    handle?.deallocate()
}
