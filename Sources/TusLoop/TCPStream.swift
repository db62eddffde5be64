internal import CLibuv
import Glibc

/// What one read produced; libuv's `nread == 0` (EAGAIN) is never delivered.
public enum ReadResult {
    /// `count` bytes were written at the start of the buffer the last `allocateReadBuffer` returned.
    case bytes(Int)
    case eof
    case error(UVError)
}

/// Receives reads without a closure allocation per read: libuv asks for memory (`uv_alloc_cb`) right before
/// each `read()` syscall and reports into it (`uv_read_cb`).
public protocol TCPStreamDelegate: AnyObject {
    /// The buffer must stay valid until the following `didRead`. Returning an empty buffer means "no memory now":
    /// the stream then stops reading (libuv would otherwise retry at once and spin); call `startReading()` again
    /// when memory is available. No `didRead` follows an empty buffer.
    func allocateReadBuffer(suggestedSize: Int) -> UnsafeMutableRawBufferPointer
    func didRead(_ result: ReadResult)
}

/// A connected `uv_tcp_t`. Loop thread only.
///
/// The stream holds its `delegate` strongly until it is closed: a connection object that owns the stream is
/// thereby kept alive exactly as long as its socket is open, without a registry; the close callback drops the
/// delegate and breaks the cycle.
public final class TCPStream: LoopOwnedHandle {
    public let loop: EventLoop
    let handle: UnsafeMutablePointer<uv_tcp_t>
    public var delegate: (any TCPStreamDelegate)?
    public private(set) var isReading = false
    private var closing = CloseWaiters()
    private var state: HandleState { closing.state }

    /// `uv_tcp_init`; the stream is connected later by `uv_accept` or `uv_tcp_connect`.
    init(loop: EventLoop) {
        self.loop = loop
        handle = .allocate(capacity: 1)
        let status = uv_tcp_init(loop.loop, handle)
        precondition(status == 0, "uv_tcp_init failed: \(status)")
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// `uv_tcp_init` + `uv_tcp_open` for a socket `TCPListener` accepted itself. On failure the descriptor is
    /// closed (with the handle), so the caller never has to.
    convenience init(loop: EventLoop, acceptedDescriptor: Int32) throws(UVError) {
        self.init(loop: loop)
        let status = uv_tcp_open(handle, acceptedDescriptor)
        guard status == 0 else {
            Glibc.close(acceptedDescriptor)
            close()
            throw UVError(code: status)
        }
    }

    var stream: UnsafeMutablePointer<uv_stream_t> { CLibuv_tcp_as_stream(handle) }

    public var isClosed: Bool { state != .open }

    /// `uv_read_start`. If libuv refuses (for instance after EOF: ENOTCONN), the delegate gets `.error` at once.
    public func startReading() {
        loop.assertOnLoopThread()
        guard state == .open, !isReading else { return }
        if stopAfterCurrentRead {
            // Stopped and restarted inside one allocate/read pair: libuv never stopped, so nothing to restart.
            stopAfterCurrentRead = false
            isReading = true
            return
        }
        let status = uv_read_start(stream, readAllocate, readCallback)
        if status == 0 {
            isReading = true
        } else {
            delegate?.didRead(.error(UVError(code: status)))
        }
    }

    /// `uv_read_stop`: no `allocateReadBuffer`/`didRead` until `startReading()`.
    ///
    /// Called from inside `allocateReadBuffer`, the stop is deferred until the read that buffer was allocated
    /// for has been delivered: libuv calls its read callback right after the alloc callback, and `uv_read_stop`
    /// clears that callback (libuv would then call a null pointer).
    public func stopReading() {
        loop.assertOnLoopThread()
        guard state == .open, isReading else { return }
        isReading = false
        if isAllocating {
            stopAfterCurrentRead = true
        } else {
            uv_read_stop(stream)
        }
    }

    /// True while the delegate's `allocateReadBuffer` runs (see `stopReading`).
    private var isAllocating = false
    private var stopAfterCurrentRead = false

    /// Whether reading may be handed over now (to `SocketFileSplicer`): not from inside `allocateReadBuffer`,
    /// where libuv is about to read into the buffer being returned.
    public var mayHandOverReading: Bool { !isAllocating }

    /// Set while a `SocketFileSplicer` owns the socket's input: libuv still watches the descriptor (it owns the
    /// epoll registration), but nothing is read. The alloc callback returns an empty buffer, which makes libuv
    /// call the read callback with `UV_ENOBUFS` without reading (libuv 1.44 `uv__read`: "User indicates it can't
    /// or won't handle the read"), and that callback reports readiness here. libuv's epoll is level-triggered,
    /// so the handler must either take the input or stop watching, or the loop spins.
    private var readinessHandler: (() -> Void)?

    /// Starts reporting readiness instead of reading (see `readinessHandler`). The delegate gets nothing until
    /// `stopWatchingReadable()`. Returns libuv's error if it refuses to watch (after EOF: ENOTCONN).
    func watchReadable(_ handler: @escaping () -> Void) -> UVError? {
        loop.assertOnLoopThread()
        precondition(!isAllocating, "readiness watching must not start inside allocateReadBuffer")
        guard state == .open else { return .cancelled }
        readinessHandler = handler
        if isReading { return nil }
        let status = uv_read_start(stream, readAllocate, readCallback)
        if status == 0 {
            isReading = true
            return nil
        }
        readinessHandler = nil
        return UVError(code: status)
    }

    /// Stops watching; the stream is left not reading (the delegate calls `startReading()` when it wants bytes).
    func stopWatchingReadable() {
        loop.assertOnLoopThread()
        guard readinessHandler != nil else { return }
        readinessHandler = nil
        stopReading()
    }

    var isWatchingReadable: Bool { readinessHandler != nil && isReading }

    /// `uv_fileno`: the socket's descriptor, for syscalls libuv has no wrapper for (splice, sendfile).
    public var descriptor: Int32 {
        var fd: uv_os_fd_t = -1
        uv_fileno(CLibuv_tcp_as_handle(handle), &fd)
        return fd
    }

    fileprivate func allocate(suggestedSize: Int) -> UnsafeMutableRawBufferPointer {
        if readinessHandler != nil { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        isAllocating = true
        defer { isAllocating = false }
        return delegate?.allocateReadBuffer(suggestedSize: suggestedSize)
            ?? UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    fileprivate func didRead(_ count: Int) {
        defer {
            if stopAfterCurrentRead {
                stopAfterCurrentRead = false
                if state == .open && !isReading { uv_read_stop(stream) }
            }
        }
        if let readinessHandler {
            // No bytes were read (the buffer was empty). EOF or an error (libuv's POLLHUP shortcut) means libuv
            // stopped watching; the handler's own splice then finds what is left, or the real EOF.
            if count < 0 && count != Int(UV_ENOBUFS.rawValue) {
                isReading = false
                uv_read_stop(stream)
            }
            readinessHandler()
            return
        }
        if count > 0 {
            delegate?.didRead(.bytes(count))
        } else if count == Int(UV_ENOBUFS.rawValue) {
            stopReading()
        } else if count < 0 {
            // libuv stops reading by itself on EOF and on errors.
            isReading = false
            uv_read_stop(stream)
            delegate?.didRead(count == Int(UV_EOF.rawValue) ? .eof : .error(UVError(code: Int32(count))))
        }
    }

    /// `uv_write`: writes `buffers` in order after earlier writes. The bytes are not copied; `owner` is retained
    /// until `completion`, which gets nil on success. On a closed stream, or if libuv refuses the write, the
    /// completion runs synchronously; an empty `buffers` completes synchronously with nil.
    public func write(_ buffers: [UnsafeRawBufferPointer], owner: AnyObject?, completion: @escaping (UVError?) -> Void) {
        loop.assertOnLoopThread()
        guard state == .open else {
            completion(.cancelled)
            return
        }
        guard !buffers.isEmpty else {
            completion(nil)
            return
        }
        let request = loop.dequeueWriteRequest()
        request.completion = completion
        request.owner = owner
        request.request.pointee.data = Unmanaged.passRetained(request).toOpaque()
        // libuv copies the uv_buf_t array (not the bytes), so a stack array is enough.
        let status = withUnsafeTemporaryAllocation(of: uv_buf_t.self, capacity: buffers.count) { bufs in
            for (index, buffer) in buffers.enumerated() {
                bufs.initializeElement(
                    at: index,
                    to: uv_buf_t(
                        base: UnsafeMutablePointer(mutating: buffer.baseAddress?.assumingMemoryBound(to: CChar.self)),
                        len: buffer.count))
            }
            return uv_write(request.request, stream, bufs.baseAddress, UInt32(buffers.count), writeCallback)
        }
        if status != 0 {
            Unmanaged<WriteRequest>.fromOpaque(request.request.pointee.data).release()
            loop.recycle(request)
            completion(UVError(code: status))
        }
    }

    /// `uv_try_write`: as much of `bytes` as the kernel takes now, nothing queued. Returns the count written; 0 when
    /// nothing was (closed, earlier writes still queued, a full socket buffer, or an error, which a following `write`
    /// of the rest reports). Why: a `write` that libuv completes at once still finishes on the next turn and then
    /// re-registers the socket with epoll (`uv__drain`: one `epoll_ctl` per response on a socket that also reads).
    public func writeAtOnce(_ bytes: [UInt8]) -> Int {
        loop.assertOnLoopThread()
        guard state == .open, !bytes.isEmpty else { return 0 }
        let written = bytes.withUnsafeBytes { raw in
            let base = UnsafeMutablePointer(mutating: raw.baseAddress?.assumingMemoryBound(to: CChar.self))
            var buffer = uv_buf_t(base: base, len: raw.count)
            return uv_try_write(stream, &buffer, 1)
        }
        return max(Int(written), 0)
    }

    /// Writes an array without copying it: the write retains the array's storage until completion.
    public func write(_ bytes: [UInt8], completion: @escaping (UVError?) -> Void) {
        let owner = ByteArrayOwner(bytes)
        // The pointer stays valid after withUnsafeBytes because `owner` keeps the (immutable) storage alive.
        let buffer = owner.bytes.withUnsafeBytes { $0 }
        write([buffer], owner: owner, completion: completion)
    }

    /// `uv_stream_get_write_queue_size`: bytes queued and not yet handed to the kernel.
    public var writeQueueSize: Int {
        state == .open ? uv_stream_get_write_queue_size(stream) : 0
    }

    /// `uv_shutdown`: half-close after queued writes. Synchronous failure completes synchronously.
    public func shutdown(_ completion: @escaping (UVError?) -> Void) {
        loop.assertOnLoopThread()
        guard state == .open else {
            completion(.cancelled)
            return
        }
        let request = ShutdownRequest(completion: completion)
        request.request.pointee.data = Unmanaged.passRetained(request).toOpaque()
        let status = uv_shutdown(request.request, stream, shutdownCallback)
        if status != 0 {
            Unmanaged<ShutdownRequest>.fromOpaque(request.request.pointee.data).release()
            completion(UVError(code: status))
        }
    }

    /// `uv_close`; idempotent. Pending writes complete with `.cancelled` first; then `completion` runs and
    /// the delegate is dropped. Calling it after the close finished runs `completion` at once.
    public func close(_ completion: (() -> Void)? = nil) {
        loop.assertOnLoopThread()
        switch closing.requestClose(completion) {
        case .startClosing:
            isReading = false
            readinessHandler = nil
            uv_close(CLibuv_tcp_as_handle(handle), streamClosed)
        case .alreadyClosing:
            break
        case .alreadyClosed:
            completion?()
        }
    }

    func closeForLoopShutdown() {
        close()
    }

    fileprivate func didClose() {
        let completions = closing.didClose()
        delegate = nil
        handle.deallocate()
        for completion in completions { completion() }
    }

    /// `uv_tcp_nodelay`.
    public func setNoDelay(_ on: Bool) {
        loop.assertOnLoopThread()
        guard state == .open else { return }
        uv_tcp_nodelay(handle, on ? 1 : 0)
    }

    /// `uv_tcp_keepalive`.
    public func setKeepAlive(_ on: Bool, delaySeconds: UInt32) {
        loop.assertOnLoopThread()
        guard state == .open else { return }
        uv_tcp_keepalive(handle, on ? 1 : 0, delaySeconds)
    }

    /// `uv_tcp_getpeername` as "127.0.0.1:54321" or "[::1]:54321"; nil when closed or unconnected.
    public var remoteAddress: String? {
        guard state == .open else { return nil }
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(handle, $0, &length) }
        }
        guard status == 0 else { return nil }
        return SocketAddress.describe(&storage)
    }
}

/// Pooled per loop (see `EventLoop.dequeueWriteRequest`).
final class WriteRequest {
    let request = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
    var completion: ((UVError?) -> Void)?
    var owner: AnyObject?

    deinit {
        request.deallocate()
    }
}

private final class ShutdownRequest {
    let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
    let completion: (UVError?) -> Void

    init(completion: @escaping (UVError?) -> Void) {
        self.completion = completion
    }

    deinit {
        request.deallocate()
    }
}

private final class ByteArrayOwner {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }
}

private func readAllocate(
    _ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggestedSize: Int, _ buf: UnsafeMutablePointer<uv_buf_t>?
) {
    let stream = Unmanaged<TCPStream>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
    let buffer = stream.allocate(suggestedSize: suggestedSize)
    buf!.pointee = uv_buf_t(base: buffer.baseAddress?.assumingMemoryBound(to: CChar.self), len: buffer.count)
}

private func readCallback(_ handle: UnsafeMutablePointer<uv_stream_t>?, _ count: Int, _ buf: UnsafePointer<uv_buf_t>?) {
    Unmanaged<TCPStream>.fromOpaque(handle!.pointee.data).takeUnretainedValue().didRead(count)
}

private func writeCallback(_ req: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    let request = Unmanaged<WriteRequest>.fromOpaque(req!.pointee.data).takeRetainedValue()
    let completion = request.completion!
    let owner = request.owner
    EventLoop.from(req!.pointee.handle.pointee.loop).recycle(request)
    // The bytes must outlive the completion: it may still look at them (e.g. to count what was sent).
    withExtendedLifetime(owner) { completion(uvError(status)) }
}

private func shutdownCallback(_ req: UnsafeMutablePointer<uv_shutdown_t>?, _ status: Int32) {
    Unmanaged<ShutdownRequest>.fromOpaque(req!.pointee.data).takeRetainedValue().completion(uvError(status))
}

private func streamClosed(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    Unmanaged<TCPStream>.fromOpaque(handle!.pointee.data).takeRetainedValue().didClose()
}
