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
