/// An http(s) URL as the client needs it: where to connect and what to put in the request line.
public struct TusURL: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var isTLS: Bool
    public var host: String
    public var port: Int
    /// Path and query, starting with "/".
    public var path: String

    public init(isTLS: Bool, host: String, port: Int, path: String) {
        self.isTLS = isTLS
        self.host = host
        self.port = port
        self.path = path
    }

    /// Parses "http://host[:port]/path?query" (also "https", IPv6 as "[::1]"). No user-info, no fragment.
    public init(string: String) throws(TusClientError) {
        let lower = string.lowercased()
        let rest: Substring
        if lower.hasPrefix("http://") {
            isTLS = false
            rest = string.dropFirst(7)
        } else if lower.hasPrefix("https://") {
            isTLS = true
            rest = string.dropFirst(8)
        } else {
            throw .usage("bad URL '\(string)': expected http:// or https://")
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var pathPart = String(rest[authorityEnd...])
        if let hash = pathPart.firstIndex(of: "#") { pathPart = String(pathPart[..<hash]) }
        if pathPart.isEmpty || pathPart.hasPrefix("?") { pathPart = "/" + pathPart }
        guard !authority.isEmpty, !authority.contains("@") else { throw .usage("bad URL '\(string)': no host") }
        var hostPart: Substring
        var portPart: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .usage("bad URL '\(string)': bad IPv6 host") }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { portPart = after.dropFirst() } else if !after.isEmpty {
                throw .usage("bad URL '\(string)'")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        } else {
            hostPart = authority
        }
        guard !hostPart.isEmpty,
            hostPart.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "_" })
        else { throw .usage("bad URL '\(string)': bad host") }
        host = String(hostPart)
        if let portPart {
            guard let value = Int(portPart), (1...65535).contains(value) else {
                throw .usage("bad URL '\(string)': bad port")
            }
            port = value
        } else {
            port = isTLS ? 443 : 80
        }
        guard pathPart.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw .usage("bad URL '\(string)': path must be ASCII without spaces")
        }
        path = pathPart
    }

    /// Resolves a `Location` value: absolute URL, absolute path, or a path relative to this URL's directory.
    public func resolving(_ reference: String) throws(TusClientError) -> TusURL {
        let lower = reference.lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") { return try TusURL(string: reference) }
        var copy = self
        if reference.hasPrefix("//") { return try TusURL(string: (isTLS ? "https:" : "http:") + reference) }
        if reference.hasPrefix("/") {
            copy.path = reference
        } else {
            let base = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
            let directory = base.hasSuffix("/") ? base : String(base[...(base.lastIndex(of: "/") ?? base.startIndex)])
            copy.path = directory + reference
        }
        return copy
    }

    public var authority: String {
        let hostText = host.contains(":") ? "[\(host)]" : host
        let isDefaultPort = port == (isTLS ? 443 : 80)
        return isDefaultPort ? hostText : "\(hostText):\(port)"
    }

    public var description: String { "\(isTLS ? "https" : "http")://\(authority)\(path)" }
}
