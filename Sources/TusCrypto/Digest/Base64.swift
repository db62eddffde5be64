/// Base64 for `Upload-Checksum` and `Upload-Metadata` values. Written in Swift rather than over
/// `EVP_DecodeBlock`, because that one ignores whitespace, accepts missing padding in places and does not
/// report trailing bits: tus values must be rejected when they are not exactly RFC 4648 §4.
public enum Base64 {
    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// 0...63 for alphabet bytes, 0xFF for everything else (including "=").
    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// Standard alphabet, with padding.
    public static func encode(_ bytes: [UInt8]) -> String {
        var output = [UInt8]()
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            output.append(alphabet[Int(value >> 18 & 0x3F)])
            output.append(alphabet[Int(value >> 12 & 0x3F)])
            output.append(alphabet[Int(value >> 6 & 0x3F)])
            output.append(alphabet[Int(value & 0x3F)])
            index += 3
        }
        let remaining = bytes.count - index
        if remaining == 1 {
            let value = UInt32(bytes[index]) << 16
            output.append(alphabet[Int(value >> 18 & 0x3F)])
            output.append(alphabet[Int(value >> 12 & 0x3F)])
            output.append(UInt8(ascii: "="))
            output.append(UInt8(ascii: "="))
        } else if remaining == 2 {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            output.append(alphabet[Int(value >> 18 & 0x3F)])
            output.append(alphabet[Int(value >> 12 & 0x3F)])
            output.append(alphabet[Int(value >> 6 & 0x3F)])
            output.append(UInt8(ascii: "="))
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Strict standard-alphabet base64 (RFC 4648 §4) with correct padding; nil for anything else
    /// (whitespace, URL alphabet, missing or extra padding, non-zero trailing bits), so that two different
    /// strings never decode to the same checksum.
    public static func decode(_ string: Substring) -> [UInt8]? {
        var utf8 = string.utf8
        if let result = utf8.withContiguousStorageIfAvailable({ decode(bytes: $0) }) { return result }
        // Bridged or non-contiguous strings: make them contiguous once.
        var copy = String(string)
        copy.makeContiguousUTF8()
        utf8 = Substring(copy).utf8
        return utf8.withContiguousStorageIfAvailable { decode(bytes: $0) } ?? nil
    }

    public static func decode(_ string: String) -> [UInt8]? {
        decode(Substring(string))
    }

    private static func decode(bytes input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let count = input.count
        guard count % 4 == 0 else { return nil }
        if count == 0 { return [] }
        var padding = 0
        if input[count - 1] == UInt8(ascii: "=") {
            padding = input[count - 2] == UInt8(ascii: "=") ? 2 : 1
        }
        var output = [UInt8]()
        output.reserveCapacity(count / 4 * 3 - padding)
        let table = decodeTable
        let fullQuads = padding == 0 ? count / 4 : count / 4 - 1
        var index = 0
        for _ in 0..<fullQuads {
            let a = table[Int(input[index])]
            let b = table[Int(input[index + 1])]
            let c = table[Int(input[index + 2])]
            let d = table[Int(input[index + 3])]
            guard (a | b | c | d) & 0xC0 == 0 else { return nil }
            let value = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
            output.append(UInt8(truncatingIfNeeded: value >> 16))
            output.append(UInt8(truncatingIfNeeded: value >> 8))
            output.append(UInt8(truncatingIfNeeded: value))
            index += 4
        }
        if padding == 2 {
            let a = table[Int(input[index])]
            let b = table[Int(input[index + 1])]
            guard (a | b) & 0xC0 == 0, b & 0x0F == 0 else { return nil }
            output.append(a << 2 | b >> 4)
        } else if padding == 1 {
            let a = table[Int(input[index])]
            let b = table[Int(input[index + 1])]
            let c = table[Int(input[index + 2])]
            guard (a | b | c) & 0xC0 == 0, c & 0x03 == 0 else { return nil }
            output.append(a << 2 | b >> 4)
            output.append((b & 0x0F) << 4 | c >> 2)
        }
        return output
    }
}
