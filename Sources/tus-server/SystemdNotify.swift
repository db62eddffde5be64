#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: the protocol is one datagram of `KEY=VALUE` lines to the AF_UNIX socket named
/// by `$NOTIFY_SOCKET` (a leading `@` means the abstract namespace), and linking a library for that would add a
/// dependency to every install for ten lines of code. With `Type=notify` (packaging/tus-server.service) systemd
/// then counts the service as started once the port is bound, not once the binary is executed.
///
/// Does nothing when the variable is unset (not started by systemd); a failure to send is ignored, as
/// sd_notify's callers do: readiness reporting must never stop the server.
func notifySystemd(_ state: String) {
    guard let path = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !path.isEmpty else { return }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count < capacity else { return }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count)

    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return }
    defer { close(fd) }
    let message = Array(state.utf8)
    _ = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
        }
    }
}
