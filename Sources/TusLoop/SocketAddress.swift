internal import CLibuv
import Glibc

/// An IPv4/IPv6 socket address parsed from a literal (or "localhost", which means 127.0.0.1: no resolver on
/// the loop thread).
struct SocketAddress {
    private var storage = sockaddr_storage()
    let family: Int32
    let length: socklen_t

    init(host: String, port: Int) throws(UVError) {
        guard (0...65535).contains(port) else { throw .invalidArgument }
        let literal = host == "localhost" ? "127.0.0.1" : host
        if literal.contains(":") {
            var address = sockaddr_in6()
            let status = uv_ip6_addr(literal, Int32(port), &address)
            guard status == 0 else { throw UVError(code: status) }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
            family = AF_INET6
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            var address = sockaddr_in()
            let status = uv_ip4_addr(literal, Int32(port), &address)
            guard status == 0 else { throw UVError(code: status) }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
            family = AF_INET
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
    }

    /// The address if `host` is an IPv4/IPv6 literal, nil for a name (including "localhost") that needs the
    /// resolver.
    static func literal(host: String, port: Int) -> SocketAddress? {
        guard host != "localhost" else { return nil }
        return try? SocketAddress(host: host, port: port)
    }

    /// Copies an address libuv or getaddrinfo produced; nil for a family other than IPv4/IPv6.
    init?(copying address: UnsafePointer<sockaddr>) {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        case AF_INET6:
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        default:
            return nil
        }
        family = Int32(address.pointee.sa_family)
        let size = Int(length)
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: size)) }
    }

    /// "127.0.0.1" / "::1": the host part only, as a literal `TCPStream.connect` accepts.
    var hostLiteral: String? {
        withSockaddr { address -> String? in
            var name = [CChar](repeating: 0, count: 64)
            guard uv_ip_name(address, &name, name.count) == 0 else { return nil }
            return name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
    }

    func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>) -> Result) -> Result {
        withUnsafePointer(to: storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
    }

    /// "127.0.0.1:8080" / "[::1]:8080" for a sockaddr filled in by getsockname/getpeername.
    static func describe(_ storage: inout sockaddr_storage) -> String? {
        withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> String? in
                var name = [CChar](repeating: 0, count: 64)
                guard uv_ip_name(address, &name, name.count) == 0 else { return nil }
                let host = name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                let port = CLibuv_sockaddr_port(address)
                return address.pointee.sa_family == sa_family_t(AF_INET6) ? "[\(host)]:\(port)" : "\(host):\(port)"
            }
        }
    }
}
