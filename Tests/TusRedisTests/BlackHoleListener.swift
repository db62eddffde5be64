import Glibc

/// A port on 127.0.0.1 where a TCP connect never completes: a listening socket with backlog 0 whose accept queue
/// is already full, so the kernel drops further SYNs (the client keeps retransmitting) until the socket closes.
/// Plays an unreachable host without leaving the loopback interface.
final class BlackHoleListener {
    let port: Int
    private let listening: Int32
    private let fillers: [Int32]

    init() {
        let listening = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listening = listening
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                _ = bind(listening, pointer, length)
                _ = getsockname(listening, pointer, &length)
            }
        }
        listen(listening, 0)
        port = Int(UInt16(bigEndian: address.sin_port))
        var fillers: [Int32] = []
        for _ in 0..<3 {
            let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            fillers.append(filler)
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = connect(filler, $0, length) }
            }
        }
        self.fillers = fillers
        usleep(50_000)
    }

    deinit {
        fillers.forEach { close($0) }
        close(listening)
    }
}
