/// Header fields in arrival order. Names compare case-insensitively (one tus client sends `TUS-Resumable`);
/// lookups are linear because a request carries a few dozen fields at most and a scan beats hashing there.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Element = (name: String, value: String)
    public private(set) var fields: [Element]

    public init() { fields = [] }
    public init(_ fields: [Element]) { self.fields = fields }
    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { (name: $0.0, value: $0.1) }
    }

    public var count: Int { fields.count }
    public func makeIterator() -> IndexingIterator<[Element]> { fields.makeIterator() }

    /// The first value for `name`, or nil.
    public subscript(name: String) -> String? {
        for field in fields where field.name.equalsIgnoringASCIICase(name) { return field.value }
        return nil
    }

    /// Every value for `name`, in order (for repeated fields such as Content-Length).
    public func values(for name: String) -> [String] {
        fields.filter { $0.name.equalsIgnoringASCIICase(name) }.map(\.value)
    }

    public func contains(_ name: String) -> Bool { self[name] != nil }

    public mutating func add(_ name: String, _ value: String) { fields.append((name: name, value: value)) }

    /// Room for `count` fields without reallocating: a response passes through layers that each add one or two.
    public mutating func reserveCapacity(_ count: Int) { fields.reserveCapacity(count) }

    /// Replaces every field called `name` with one field.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        fields.append((name: name, value: value))
    }

    public mutating func remove(_ name: String) {
        // Looked for first: `removeAll` copies a shared array even when nothing matches, and responses are
        // passed down by value, so most `set`s would pay an allocation for a field that is not there.
        guard fields.contains(where: { $0.name.equalsIgnoringASCIICase(name) }) else { return }
        fields.removeAll { $0.name.equalsIgnoringASCIICase(name) }
    }
}

extension String {
    /// ASCII-only case folding: header names are tokens, so Unicode case rules would be wrong and slow.
    /// Over the strings' contiguous UTF-8 where they have it (native and small strings: every header name here):
    /// the generic UTF-8 views' zipped iteration was ~2 % of a POST's CPU, header lookups being its commonest call.
    public func equalsIgnoringASCIICase(_ other: String) -> Bool {
        let a = utf8, b = other.utf8
        guard a.count == b.count else { return false }
        let compared = a.withContiguousStorageIfAvailable { x in
            b.withContiguousStorageIfAvailable { y in Self.equalFolded(x, y) }
        }
        if let compared, let result = compared { return result }
        for (x, y) in zip(a, b) where x != y && Self.folded(x) != Self.folded(y) { return false }
        return true
    }

    @inline(__always)
    private static func folded(_ byte: UInt8) -> UInt8 { (byte >= 65 && byte <= 90) ? byte | 0x20 : byte }

    private static func equalFolded(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
        for index in 0..<x.count where x[index] != y[index] && folded(x[index]) != folded(y[index]) { return false }
        return true
    }
}
