internal import CLibuv
import Glibc
import TusCore

/// What the owner of a listener hears about running out of descriptors: once when an episode starts, once when
/// it ends, never per failed accept.
public enum AcceptPause: Sendable {
    /// `accept` failed with `error` (EMFILE, ENFILE, ENOBUFS or ENOMEM). Accepting is paused; the connection
    /// that was waiting was accepted on the reserve descriptor and dropped, so its client sees a reset.
    case began(UVError)
    /// A connection was accepted again after `milliseconds`; `droppedConnections` were reset meanwhile.
    case ended(milliseconds: UInt64, droppedConnections: Int)
}

/// A listening socket, accepted from by this wrapper itself. Loop thread only.
///
/// libuv 1.44 has no `UV_TCP_REUSEPORT`, so the socket is created here (`socket`, `SO_REUSEADDR`, optionally
/// `SO_REUSEPORT`, `bind`, `listen`). With `reusePort`, one listener per loop on the same port lets the kernel
/// spread connections over the loops' threads.
///
/// Why not `uv_listen`: libuv's accept loop (`uv__server_io`) only returns to epoll on EAGAIN. On EMFILE it
/// relies on one reserve descriptor per loop (`uv__emfile_trick`: close it, accept-and-close, reopen it). With
/// several loops (or the threadpool) in one process, another thread takes the freed descriptor before it is
/// reopened; from then on every accept fails with EMFILE, the connection callback is called with the error and
/// libuv retries at once, forever. The loop never polls again, so the closes that would free descriptors are
/// never processed: 200% CPU, no requests served, no shutdown. Here the accept loop is ours (a `uv_poll_t`
/// on the socket): on exhaustion we drop the waiting connection on our own reserve descriptor, stop polling, and
/// try again after a back-off or as soon as the owner reports a closed connection (`resumeAccepting`).
public final class TCPListener: LoopOwnedHandle {
    public let loop: EventLoop
    let handle: UnsafeMutablePointer<uv_poll_t>
    private let descriptor: Int32
    private let backlog: Int32
    private var onConnection: ((TCPStream) -> Void)?
    private var onPause: ((AcceptPause) -> Void)?
    private var closing = CloseWaiters()
    private var state: HandleState { closing.state }

    /// Held open only to be closed when descriptors run out, so that the waiting connection can be accepted and
    /// dropped (its client gets a reset instead of hanging in the backlog). -1 while it could not be reopened.
    private var reserveDescriptor: Int32 = -1
    private var isPolling = false
    private var retryTimer: Timer?
    private var pause: (since: UInt64, failures: Int, dropped: Int)?

    /// Retries while descriptors are exhausted: soon enough that a freed descriptor is used soon, rare enough
    /// that a server stuck at its limit spends next to no CPU on retrying.
    static let retryBackoff = Backoff(initialMilliseconds: 50, maximumMilliseconds: 1_000)
    /// Accepts per readiness callback; the socket stays readable (level-triggered), so the rest come on the next
    /// iteration, after the loop has served its connections' reads and closes.
    static let acceptsPerWakeup = 128

    /// Binds at once (so `localPort` is known and `addressInUse` is thrown here); accepting starts in `listen`.
    /// Port 0 lets the kernel pick; pass `localPort` to the other loops' listeners.
    public init(loop: EventLoop, host: String, port: Int, reusePort: Bool, backlog: Int32 = 1024) throws {
        loop.assertOnLoopThread()
        let address = try SocketAddress(host: host, port: port)
        let descriptor = socket(
            address.family,
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw UVError(code: -errno) }
        do {
            try Self.enable(SO_REUSEADDR, on: descriptor)
            if reusePort {
                try Self.enable(SO_REUSEPORT, on: descriptor)
            }
            guard address.withSockaddr({ Glibc.bind(descriptor, $0, address.length) }) == 0 else {
                throw UVError(code: -errno)
            }
        } catch {
            Glibc.close(descriptor)
            throw error
        }
        let handle = UnsafeMutablePointer<uv_poll_t>.allocate(capacity: 1)
        let initStatus = uv_poll_init_socket(loop.loop, handle, descriptor)
        guard initStatus == 0 else {
            Glibc.close(descriptor)
            handle.deallocate()
            throw UVError(code: initStatus)
        }
        self.loop = loop
        self.handle = handle
        self.descriptor = descriptor
        self.backlog = backlog
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        reopenReserve()
    }

    private static func enable(_ option: Int32, on descriptor: Int32) throws(UVError) {
        var one: Int32 = 1
        guard setsockopt(descriptor, SOL_SOCKET, option, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw UVError(code: -errno)
        }
    }

    /// `getsockname`; 0 once closed.
    public var localPort: Int {
        guard state == .open else { return 0 }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let port = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> Int32 in
                getsockname(descriptor, address, &length) == 0 ? CLibuv_sockaddr_port(address) : 0
            }
        }
        return Int(max(port, 0))
    }

    /// `listen` + `uv_poll_start`. `onConnection` gets every accepted connection as a fresh, non-reading
    /// `TCPStream`. `onPause` hears when descriptors run out and when accepting works again.
    public func listen(
        onPause: @escaping (AcceptPause) -> Void = { _ in }, _ onConnection: @escaping (TCPStream) -> Void
    ) throws {
        loop.assertOnLoopThread()
        guard state == .open else { throw UVError.badFileDescriptor }
        guard Glibc.listen(descriptor, backlog) == 0 else { throw UVError(code: -errno) }
        self.onConnection = onConnection
        self.onPause = onPause
        try startPolling()
    }

    private func startPolling() throws(UVError) {
        guard !isPolling else { return }
        let status = uv_poll_start(handle, Int32(UV_READABLE.rawValue), pollCallback)
        guard status == 0 else { throw UVError(code: status) }
        isPolling = true
    }

    private func stopPolling() {
        guard isPolling else { return }
        uv_poll_stop(handle)
        isPolling = false
    }

    /// While accepting is paused for want of descriptors, tries again now; otherwise does nothing. The owner
    /// calls it when one of its connections closed (a descriptor came free).
    public func resumeAccepting() {
        loop.assertOnLoopThread()
        guard state == .open, pause != nil, onConnection != nil else { return }
        retryTimer?.stop()
        try? startPolling()
    }

    fileprivate func acceptWaitingConnections() {
        guard state == .open else { return }
        for _ in 0..<Self.acceptsPerWakeup {
            let accepted = CLibuv_accept4_nonblocking_cloexec(descriptor)
            if accepted >= 0 {
                endPauseIfAny()
                deliver(accepted)
                // The callback may have closed the listener.
                guard state == .open else { return }
                continue
            }
            let error = errno
            switch error {
            case EAGAIN, EWOULDBLOCK:
                return
            case EINTR, ECONNABORTED, EPROTO, EPERM, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
                EOPNOTSUPP, ENETUNREACH:
                // The connection died in the queue, or a network error was passed on: skip it.
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                pauseAccepting(UVError(code: -error))
                return
            default:
                // EBADF, EFAULT, EINVAL, ENOTSOCK: our socket is not what we think it is.
                preconditionFailure("accept4 on the listening socket failed: \(UVError(code: -error))")
            }
        }
    }

    private func deliver(_ accepted: Int32) {
        guard let onConnection else {
            Glibc.close(accepted)
            return
        }
        do {
            onConnection(try TCPStream(loop: loop, acceptedDescriptor: accepted))
        } catch {
            // uv_tcp_open refused the descriptor (it is closed by then); the client sees a reset.
        }
    }

    private func pauseAccepting(_ error: UVError) {
        stopPolling()
        let dropped = dropWaitingConnections()
        let now = loop.nowMilliseconds
        if let previous = pause {
            pause = (previous.since, previous.failures + 1, previous.dropped + dropped)
        } else {
            pause = (now, 1, dropped)
            onPause?(.began(error))
        }
        let backoff = Self.retryBackoff.delay(afterFailures: pause!.failures)
        let timer = retryTimer ?? Timer(loop: loop)
        retryTimer = timer
        timer.start(afterMilliseconds: backoff) { [unowned self] in
            guard self.state == .open else { return }
            try? self.startPolling()
        }
    }

    /// The reserve trick: with one descriptor freed, accept the waiting connections and close them at once.
    /// Another thread of the process may take the freed descriptor first; then nothing is dropped this time and
    /// the reserve is reopened on a later attempt.
    private func dropWaitingConnections() -> Int {
        guard reserveDescriptor >= 0 else {
            reopenReserve()
            return 0
        }
        Glibc.close(reserveDescriptor)
        reserveDescriptor = -1
        var dropped = 0
        while dropped < Int(backlog) {
            let accepted = CLibuv_accept4_nonblocking_cloexec(descriptor)
            if accepted < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break
            }
            Glibc.close(accepted)
            dropped += 1
        }
        reopenReserve()
        return dropped
    }

    private func reopenReserve() {
        guard reserveDescriptor < 0 else { return }
        reserveDescriptor = open("/dev/null", O_RDONLY | O_CLOEXEC)
    }

    private func endPauseIfAny() {
        guard let ended = pause else { return }
        pause = nil
        retryTimer?.stop()
        reopenReserve()
        onPause?(.ended(milliseconds: loop.nowMilliseconds - ended.since, droppedConnections: ended.dropped))
    }

    /// Stops accepting and closes the socket (connections still in its backlog are reset); idempotent.
    public func close(_ completion: (() -> Void)? = nil) {
        loop.assertOnLoopThread()
        switch closing.requestClose(completion) {
        case .startClosing:
            retryTimer?.close()
            retryTimer = nil
            isPolling = false
            uv_close(CLibuv_poll_as_handle(handle), listenerClosed)
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
        // uv_poll does not own the descriptor; libuv stopped watching it in uv_close.
        Glibc.close(descriptor)
        if reserveDescriptor >= 0 {
            Glibc.close(reserveDescriptor)
            reserveDescriptor = -1
        }
        let completions = closing.didClose()
        onConnection = nil
        onPause = nil
        handle.deallocate()
        for completion in completions { completion() }
    }
}

private func pollCallback(_ handle: UnsafeMutablePointer<uv_poll_t>?, _ status: Int32, _ events: Int32) {
    // A poll error (status < 0) on a listening socket still leaves accept to report what is wrong.
    Unmanaged<TCPListener>.fromOpaque(handle!.pointee.data).takeUnretainedValue().acceptWaitingConnections()
}

private func listenerClosed(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    Unmanaged<TCPListener>.fromOpaque(handle!.pointee.data).takeRetainedValue().didClose()
}
