/// The one rule for upload ids, applied by the handler to every request path and by the stores to every name
/// they turn into a file or key.
public enum UploadID {
    /// `[A-Za-z0-9_-]{1,128}`: rules out `..`, `/` and every %-encoding before a store sees the id.
    /// Inlinable so that callers in other modules get it specialized for their string type: unspecialized, each
    /// byte went through the generic UTF-8 view's witnesses, and the file stores' two checks per creation were 5 %
    /// of a POST's CPU (bench/results/2026-12-07-creation2).
    @inlinable
    public static func isValid(_ id: some StringProtocol) -> Bool {
        let utf8 = id.utf8
        guard (1...128).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default: false
            }
        }
    }
}
