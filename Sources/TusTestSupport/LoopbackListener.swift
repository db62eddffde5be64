import Glibc
public import TusCore
public import TusHTTP1
public import TusHTTPServer

/// A listening TCP socket on 127.0.0.1 on a port the kernel picked, for tests that play the peer by hand (a scripted
/// HTTP server, a fake sentinel). The caller owns the descriptor and closes it.
public func listeningLoopbackSocket(backlog: Int32 = 16) -> (descriptor: Int32, port: Int) {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(descriptor >= 0, "socket: errno \(errno)")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
        }
    }
    precondition(bound && listen(descriptor, backlog) == 0, "bind/listen on 127.0.0.1: errno \(errno)")
    return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
}

/// Runs `body` against a one-loop `HTTPServer` on 127.0.0.1 (an ephemeral port) serving `handler`, and stops the
/// server after it, thrown or not: the conformance tables over a socket each need exactly this and nothing more.
public func withLoopbackServer(
    handler: any HTTPRequestHandler,
    loopWillStop: (@Sendable (_ executor: any LoopExecutor, _ done: @escaping () -> Void) -> Void)? = nil,
    _ body: (HTTPServer) throws -> Void
) throws {
    var configuration = HTTPServerConfiguration()
    configuration.host = "127.0.0.1"
    configuration.port = 0
    configuration.loops = 1
    let server = HTTPServer(configuration: configuration, handler: handler, loopWillStop: loopWillStop)
    try server.start()
    defer {
        server.shutdown()
        server.wait()
    }
    try body(server)
}
