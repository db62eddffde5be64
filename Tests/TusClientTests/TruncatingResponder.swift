import Foundation
import Glibc
import Synchronization

/// A server on 127.0.0.1 that answers every connection with a 200 promising 100 bytes, sends `sent` of them and
/// closes: a response that fails after part of its body arrived. Counts the connections it served.
final class TruncatingResponder: @unchecked Sendable {
    let port: Int
    private let listening: Int32
    private final class Count: Sendable { let value = Atomic<Int>(0) }
    private let served = Count()
    private let thread: Thread

    var connections: Int { served.value.load(ordering: .relaxed) }

    init(sent: Int = 5) {
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
        listen(listening, 16)
        port = Int(UInt16(bigEndian: address.sin_port))
        let served = self.served
        let response =
            Array("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".utf8) + Array(repeating: UInt8(65), count: sent)
        thread = Thread {
            while true {
                let client = accept(listening, nil, nil)
                guard client >= 0 else { return }
                served.value.add(1, ordering: .relaxed)
                var buffer = [UInt8](repeating: 0, count: 4096)
                _ = read(client, &buffer, buffer.count)
                _ = response.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                close(client)
            }
        }
        thread.start()
    }

    /// Stops accepting (the accept loop ends when the socket is shut down).
    func stop() {
        shutdown(listening, Int32(SHUT_RDWR))
        close(listening)
    }
}
