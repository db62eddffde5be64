internal import CLibuv
import Glibc

/// A listening `uv_tcp_t`. Loop thread only.
///
/// libuv 1.44 has no `UV_TCP_REUSEPORT`, so the socket is created here (`socket`, `SO_REUSEADDR`,
/// optionally `SO_REUSEPORT`, `bind`) and handed to `uv_tcp_open`. With `reusePort`, one listener per loop on
/// the same port lets the kernel spread connections over the loops' threads.
public final class TCPListener: LoopOwnedHandle {
    public let loop: EventLoop
    let handle: UnsafeMutablePointer<uv_tcp_t>
    private let backlog: Int32
    private var onConnection: ((TCPStream) -> Void)?
    private var closing = CloseWaiters()
    private var state: HandleState { closing.state }

    /// Binds at once (so `localPort` is known and `addressInUse` is thrown here); accepting starts in `listen`.
    /// Port 0 lets the kernel pick; pass `localPort` to the other loops' listeners.
    public init(loop: EventLoop, host: String, port: Int, reusePort: Bool, backlog: Int32 = 1024) throws {
        loop.assertOnLoopThread()
        let address = try SocketAddress(host: host, port: port)
        let descriptor = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
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
        let handle = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        let initStatus = uv_tcp_init(loop.loop, handle)
        precondition(initStatus == 0, "uv_tcp_init failed: \(initStatus)")
        let openStatus = uv_tcp_open(handle, descriptor)
        guard openStatus == 0 else {
            Glibc.close(descriptor)
            uv_close(CLibuv_tcp_as_handle(handle), freeHandleOnClose)
            throw UVError(code: openStatus)
        }
        self.loop = loop
        self.handle = handle
        self.backlog = backlog
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    private static func enable(_ option: Int32, on descriptor: Int32) throws(UVError) {
        var one: Int32 = 1
        guard setsockopt(descriptor, SOL_SOCKET, option, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw UVError(code: -errno)
        }
    }

    /// `uv_tcp_getsockname`; 0 once closed.
    public var localPort: Int {
        guard state == .open else { return 0 }
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let port = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> Int32 in
                uv_tcp_getsockname(handle, address, &length) == 0 ? CLibuv_sockaddr_port(address) : 0
            }
        }
        return Int(max(port, 0))
    }

    /// `uv_listen`. `onConnection` gets every connection already `uv_accept`ed into a fresh, non-reading
    /// `TCPStream`. Failed accepts are skipped without a word: on EMFILE libuv's reserve-descriptor trick
    /// accepts and drops the waiting connections, so clients see a reset instead of hanging.
    public func listen(_ onConnection: @escaping (TCPStream) -> Void) throws {
        loop.assertOnLoopThread()
        guard state == .open else { throw UVError.badFileDescriptor }
        self.onConnection = onConnection
        let status = uv_listen(CLibuv_tcp_as_stream(handle), backlog, connectionCallback)
        guard status == 0 else {
            self.onConnection = nil
            throw UVError(code: status)
        }
    }

    fileprivate func accept() {
        let client = TCPStream(loop: loop)
        if uv_accept(CLibuv_tcp_as_stream(handle), client.stream) == 0, let onConnection {
            onConnection(client)
        } else {
            client.close()
        }
    }

    /// Stops accepting by closing the socket (libuv 1.44 cannot pause a listener); idempotent.
    public func close(_ completion: (() -> Void)? = nil) {
        loop.assertOnLoopThread()
        switch closing.requestClose(completion) {
        case .startClosing:
            uv_close(CLibuv_tcp_as_handle(handle), listenerClosed)
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
        onConnection = nil
        handle.deallocate()
        for completion in completions { completion() }
    }
}

private func connectionCallback(_ server: UnsafeMutablePointer<uv_stream_t>?, _ status: Int32) {
    guard status == 0 else { return }
    Unmanaged<TCPListener>.fromOpaque(server!.pointee.data).takeUnretainedValue().accept()
}

private func listenerClosed(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    Unmanaged<TCPListener>.fromOpaque(handle!.pointee.data).takeRetainedValue().didClose()
}
