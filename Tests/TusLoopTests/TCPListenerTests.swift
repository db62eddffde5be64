import Foundation
import TusLoop
import TusTestSupport
import XCTest

/// Running out of descriptors while accepting: the listener pauses (reported once), resets the waiting clients on
/// its reserve descriptor instead of leaving them hanging, and accepts again once descriptors are back.
///
/// The soft RLIMIT_NOFILE is lowered for the duration of the test (SwiftPM's parallel runner gives each test its
/// own process; a serial run gets the limit back in `defer`).
final class TCPListenerTests: XCTestCase {
    private func connectedClient(port: Int) -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        XCTAssertEqual(status, 0, "the kernel completes the handshake from the listen backlog")
        return descriptor
    }

    /// A soft limit that leaves exactly two free descriptor numbers below it (three if the directory listing's
    /// own descriptor left a hole).
    private func limitLeavingTwoDescriptors() throws -> rlim_t {
        let open = Set(try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap { Int32($0) })
        var free: [Int32] = []
        var number: Int32 = 0
        while free.count < 2 {
            if !open.contains(number) { free.append(number) }
            number += 1
        }
        return rlim_t(free[1] + 1)
    }

    func testRunningOutOfDescriptorsPausesOnceResetsWaitingClientsAndResumes() throws {
        var saved = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &saved)
        var clients: [Int32] = []
        defer {
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &saved)
            for client in clients { close(client) }
        }
        var events: [String] = []
        var accepted: [TCPStream] = []
        var acceptedBeforePause = 0
        var dropped = -1

        try withLoop(timeoutMilliseconds: 10_000) { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            let port = listener.localPort
            try listener.listen(onPause: { pause in
                switch pause {
                case .began(let error):
                    events.append("began \(error == .tooManyOpenFiles ? "EMFILE" : "\(error)")")
                    acceptedBeforePause = accepted.count
                    // Descriptors come back; one more client arrives and is accepted after the back-off.
                    setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &saved)
                    clients.append(self.connectedClient(port: port))
                case .ended(_, let droppedConnections):
                    events.append("ended")
                    dropped = droppedConnections
                }
            }) { stream in
                accepted.append(stream)
                if events == ["began EMFILE", "ended"] {
                    listener.close()
                    for stream in accepted { stream.close() }
                    finish()
                }
            }
            for _ in 0..<6 { clients.append(connectedClient(port: port)) }
            var low = saved
            low.rlim_cur = try limitLeavingTwoDescriptors()
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &low)
        }

        XCTAssertEqual(events, ["began EMFILE", "ended"], "one report per episode, not one per failed accept")
        XCTAssertGreaterThanOrEqual(acceptedBeforePause, 1, "accepts worked until descriptors ran out")
        XCTAssertEqual(acceptedBeforePause + dropped, 6, "every other waiting client was reset, none left hanging")
        XCTAssertEqual(accepted.count, acceptedBeforePause + 1, "the client after the episode was accepted")
        // No client is left hanging: the accepted ones were closed (EOF), the others reset.
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        for client in clients {
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var byte: UInt8 = 0
            let count = recv(client, &byte, 1, 0)
            let failure = count < 0 ? errno : 0
            XCTAssertTrue(count == 0 || failure == ECONNRESET, "a client was left waiting: \(count), errno \(failure)")
        }
    }
}
