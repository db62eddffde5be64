import Foundation
import Glibc
import Synchronization
import TusTestSupport

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
        let (listening, port) = listeningLoopbackSocket()
        self.listening = listening
        self.port = port
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
