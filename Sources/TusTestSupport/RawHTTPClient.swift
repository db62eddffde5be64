#if canImport(Glibc)
import Glibc
#endif

/// A blocking HTTP/1.1 client over a plain POSIX socket, for tests that need exact bytes on the wire
/// (pipelining, malformed input, half-sent bodies) — things a real client library would refuse to do.
public final class RawHTTPClient {
    public struct Response: CustomStringConvertible {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]
        public func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
        public var bodyText: String { String(decoding: body, as: UTF8.self) }
        public var description: String { "\(status) \(headers) \(bodyText.prefix(200))" }
    }

    public enum ClientError: Error { case connectFailed(Int32), timeout, closed, malformed(String) }

    private let fd: Int32
    private var buffer: [UInt8] = []
    public private(set) var isClosedByPeer = false

    public init(port: Int, host: String = "127.0.0.1", timeoutSeconds: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 {
            let error = errno
            Glibc.close(fd)
            throw ClientError.connectFailed(error)
        }
    }

    deinit { Glibc.close(fd) }

    /// Sends everything; returns false if the peer closed or reset first.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    @discardableResult
    public func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    public func closeWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Makes the coming close (deinit) send RST instead of FIN: a client that dies rather than finishes.
    public func resetOnClose() {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 {
            isClosedByPeer = true
            throw ClientError.closed
        }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { throw ClientError.timeout }
            isClosedByPeer = true
            throw ClientError.closed
        }
        buffer.append(contentsOf: chunk[0..<n])
    }

    /// Reads one response. `forHead` means no body follows whatever Content-Length says.
    public func readResponse(forHead: Bool = false) throws -> Response {
        var headEnd: Int?
        while headEnd == nil {
            headEnd = findHeadEnd()
            if headEnd == nil { try fill() }
        }
        let headBytes = buffer[0..<headEnd!]
        buffer.removeFirst(headEnd! + 4)
        let lines = String(decoding: headBytes, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw ClientError.malformed(String(lines[0])) }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].drop { $0 == " " }
            headers.append((name, String(value)))
        }
        var response = Response(status: status, headers: headers, body: [])
        if status < 200 || status == 204 || status == 304 || forHead { return response }
        if let length = response.header("Content-Length").flatMap(Int.init) {
            while buffer.count < length { try fill() }
            response.body = Array(buffer[0..<length])
            buffer.removeFirst(length)
        } else if response.header("Connection")?.lowercased() == "close" {
            while true {
                do { try fill() } catch ClientError.closed { break }
            }
            response.body = buffer
            buffer.removeAll()
        }
        return response
    }

    /// True when the server closed the connection (reads EOF) within the socket timeout.
    public func waitForClose() -> Bool {
        while true {
            do { try fill() } catch ClientError.closed { return true } catch { return false }
        }
    }

    private func findHeadEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4)
        where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }
}
