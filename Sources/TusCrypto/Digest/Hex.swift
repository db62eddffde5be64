/// Hexadecimal text of bytes, written once for digests, upload ids, JSON escapes and percent-encoding.
/// (TusRedis keeps its own four lines for script names: it does not import TusCrypto, by design.)
public enum Hex {
    /// Lowercase hex of `bytes`, two digits a byte ("0a1b…").
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes { append(byte, to: &text) }
        return String(decoding: text, as: UTF8.self)
    }

    /// Appends the two hex digits of `byte` (lowercase unless asked).
    public static func append(_ byte: UInt8, to text: inout [UInt8], uppercase: Bool = false) {
        text.append(digit(byte >> 4, uppercase: uppercase))
        text.append(digit(byte & 0x0F, uppercase: uppercase))
    }

    static func digit(_ nibble: UInt8, uppercase: Bool = false) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : (uppercase ? UInt8(ascii: "A") : UInt8(ascii: "a")) + nibble - 10
    }
}
