internal import CLibuv
import Glibc

extension TCPStream {
    /// Opens an outbound connection: `uv_tcp_connect` to an IPv4/IPv6 literal directly, or to the addresses
    /// `uv_getaddrinfo` finds for a name (resolved on libuv's threadpool, so a slow DNS server never stalls the
    /// loop), tried in the resolver's order until one accepts.
    ///
    /// `timeoutMilliseconds` (0 = none) bounds resolution and connecting together: when it passes, the socket is
    /// closed and the completion gets `.timedOut`. A resolver lookup cannot be interrupted once a worker thread
    /// runs it, so it finishes in the background and its answer is dropped.
    ///
    /// The completion runs exactly once on the loop thread; synchronously (before `connect` returns) only when
    /// libuv refuses to start (a bad port, an unusable literal): rule 3 of the module's ownership rules. On
    /// failure no stream is left open.
    public static func connect(
        loop: EventLoop, host: String, port: Int, timeoutMilliseconds: UInt64 = 0,
        _ completion: @escaping (Result<TCPStream, UVError>) -> Void
    ) {
        loop.assertOnLoopThread()
        guard (0...65535).contains(port) else {
            completion(.failure(.invalidArgument))
            return
        }
        let attempt = ConnectAttempt(loop: loop, completion: completion)
        if let address = SocketAddress.literal(host: host, port: port) {
            attempt.addresses = [address]
            attempt.connectToNextAddress()
        } else {
            loop.resolveAddresses(host: host, port: port) { [attempt] result in
                guard !attempt.isFinished else { return }
                switch result {
                case .success(let addresses):
                    attempt.addresses = addresses
                    attempt.connectToNextAddress()
                case .failure(let error):
                    attempt.finish(.failure(error))
                }
            }
        }
        if timeoutMilliseconds > 0 && !attempt.isFinished {
            attempt.timer = loop.schedule(afterMilliseconds: timeoutMilliseconds) { [attempt] in
                attempt.timer = nil
                // The connect callback then reports ECANCELED, which the finished attempt ignores.
                attempt.stream?.close()
                attempt.finish(.failure(.timedOut))
            }
        }
    }
}

extension UVError {
    /// True for the resolver's errors (`UV_EAI_*`): the name did not resolve, as opposed to a refused connection.
    public var isResolverError: Bool {
        (UV_EAI_PROTOCOL.rawValue...UV_EAI_ADDRFAMILY.rawValue).contains(code)
    }
}

extension EventLoop {
    /// `uv_getaddrinfo` on libuv's threadpool: the IPv4/IPv6 literals `host` resolves to, in the resolver's
    /// order, without duplicates. Loop thread only; the completion runs once on the loop thread (synchronously if
    /// libuv refuses the request). The threadpool is shared with file I/O, so a resolver stuck on an unreachable
    /// DNS server holds one of its threads for the resolver's own timeout.
    public func resolve(host: String, _ completion: @escaping (Result<[String], UVError>) -> Void) {
        resolveAddresses(host: host, port: 0) { result in
            completion(
                result.map { addresses in
                    var literals: [String] = []
                    for literal in addresses.compactMap(\.hostLiteral) where !literals.contains(literal) {
                        literals.append(literal)
                    }
                    return literals
                })
        }
    }

    func resolveAddresses(host: String, port: Int, _ completion: @escaping (Result<[SocketAddress], UVError>) -> Void) {
        assertOnLoopThread()
        let request = ResolveRequest(completion: completion)
        request.request.pointee.data = Unmanaged.passRetained(request).toOpaque()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        let status = uv_getaddrinfo(loop, request.request, resolveCallback, host, String(port), &hints)
        if status != 0 {
            Unmanaged<ResolveRequest>.fromOpaque(request.request.pointee.data).release()
            completion(.failure(UVError(code: status)))
        }
    }
}

/// One `connect` call: the addresses still to try, the socket being connected and the deadline timer. Whatever
/// finishes first (a connection, the last failure, the timer) completes it; later callbacks see `isFinished`.
private final class ConnectAttempt {
    let loop: EventLoop
    private let completion: (Result<TCPStream, UVError>) -> Void
    var addresses: [SocketAddress] = []
    private var nextAddressIndex = 0
    private var lastError = UVError.connectionRefused
    var stream: TCPStream?
    var timer: Timer?
    private(set) var isFinished = false

    init(loop: EventLoop, completion: @escaping (Result<TCPStream, UVError>) -> Void) {
        self.loop = loop
        self.completion = completion
    }

    func connectToNextAddress() {
        while nextAddressIndex < addresses.count {
            let address = addresses[nextAddressIndex]
            nextAddressIndex += 1
            let candidate = TCPStream(loop: loop)
            let request = ConnectRequest(attempt: self, stream: candidate)
            request.request.pointee.data = Unmanaged.passRetained(request).toOpaque()
            let status = address.withSockaddr {
                uv_tcp_connect(request.request, candidate.handle, $0, connectCallback)
            }
            if status == 0 {
                stream = candidate
                return
            }
            Unmanaged<ConnectRequest>.fromOpaque(request.request.pointee.data).release()
            candidate.close()
            lastError = UVError(code: status)
        }
        finish(.failure(lastError))
    }

    func didConnect(_ candidate: TCPStream, status: Int32) {
        guard !isFinished else {
            candidate.close()
            return
        }
        stream = nil
        if status == 0 {
            finish(.success(candidate))
        } else {
            candidate.close()
            lastError = UVError(code: status)
            connectToNextAddress()
        }
    }

    func finish(_ result: Result<TCPStream, UVError>) {
        guard !isFinished else { return }
        isFinished = true
        timer?.stop()
        timer = nil
        completion(result)
    }
}

private final class ConnectRequest {
    let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
    let attempt: ConnectAttempt
    let stream: TCPStream

    init(attempt: ConnectAttempt, stream: TCPStream) {
        self.attempt = attempt
        self.stream = stream
    }

    deinit {
        request.deallocate()
    }
}

private final class ResolveRequest {
    let request = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
    let completion: (Result<[SocketAddress], UVError>) -> Void

    init(completion: @escaping (Result<[SocketAddress], UVError>) -> Void) {
        self.completion = completion
    }

    deinit {
        request.deallocate()
    }
}

private func connectCallback(_ req: UnsafeMutablePointer<uv_connect_t>?, _ status: Int32) {
    let request = Unmanaged<ConnectRequest>.fromOpaque(req!.pointee.data).takeRetainedValue()
    request.attempt.didConnect(request.stream, status: status)
}

private func resolveCallback(
    _ req: UnsafeMutablePointer<uv_getaddrinfo_t>?, _ status: Int32, _ list: UnsafeMutablePointer<addrinfo>?
) {
    let request = Unmanaged<ResolveRequest>.fromOpaque(req!.pointee.data).takeRetainedValue()
    defer { uv_freeaddrinfo(list) }
    guard status == 0 else {
        request.completion(.failure(UVError(code: status)))
        return
    }
    var addresses: [SocketAddress] = []
    var entry = list
    while let current = entry {
        if let raw = current.pointee.ai_addr, let address = SocketAddress(copying: raw) {
            addresses.append(address)
        }
        entry = current.pointee.ai_next
    }
    request.completion(addresses.isEmpty ? .failure(UVError(code: UV_EAI_NODATA.rawValue)) : .success(addresses))
}
