/// Where the plaintext of an HTTP/2 connection stands in its frame sequence: inside the client preface, a frame
/// header, a DATA payload or another frame's payload. It follows the same bytes nghttp2 is fed, doing per frame only
/// what it takes to find the next boundary (no decoding, no validation: nghttp2 rejects what is malformed).
///
/// Why: a TLS connection decides where each record's plaintext lands (`HTTP2Connection.allocatePlaintextBuffer`).
/// Knowing how many DATA payload bytes come next lets it decrypt them into a body chunk, back to back with the
/// previous frame's, and everything else into a small side buffer; one stream's payloads then form one contiguous
/// range that goes to the file writer without a copy, as an HTTP/1.1 body does.
struct HTTP2FrameCursor: Equatable {
    static let prefaceLength = 24  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (RFC 9113 §3.4)
    static let headerLength = 9

    enum Position: Equatable {
        case preface(remaining: Int)
        /// `collected` header bytes seen so far.
        case header(collected: Int)
        case payload(remaining: Int, isData: Bool)
    }

    private(set) var position = Position.preface(remaining: Self.prefaceLength)
    /// The first four header bytes seen of the current frame (length and type), most significant first.
    private var partialHeader: UInt32 = 0

    init() {}

    /// DATA payload bytes (pad length and padding included) that come next; 0 when the next byte is not one.
    var dataBytesAhead: Int {
        if case .payload(let remaining, true) = position { return remaining }
        return 0
    }

    /// How many bytes from here are certainly not DATA payload: the rest of the preface or of a non-DATA frame,
    /// and the header after it; the rest of a header otherwise (its type decides what follows). 0 inside DATA.
    var controlBytesAhead: Int {
        switch position {
        case .preface(let remaining): remaining + Self.headerLength
        case .header(let collected): Self.headerLength - collected
        case .payload(let remaining, false): remaining + Self.headerLength
        case .payload(_, true): 0
        }
    }

    /// Moves past `bytes`, the next bytes of the connection.
    mutating func advance(over bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            switch position {
            case .preface(let remaining):
                let step = min(remaining, bytes.count - offset)
                offset += step
                position = remaining == step ? .header(collected: 0) : .preface(remaining: remaining - step)
            case .payload(let remaining, let isData):
                let step = min(remaining, bytes.count - offset)
                offset += step
                position =
                    remaining == step ? .header(collected: 0) : .payload(remaining: remaining - step, isData: isData)
            case .header(var collected):
                while collected < Self.headerLength && offset < bytes.count {
                    if collected < 4 { partialHeader = partialHeader << 8 | UInt32(bytes[offset]) }
                    collected += 1
                    offset += 1
                }
                guard collected == Self.headerLength else {
                    position = .header(collected: collected)
                    continue
                }
                let length = Int(partialHeader >> 8)
                let isData = partialHeader & 0xff == UInt32(HTTP2FrameHeader.Kind.data.rawValue)
                partialHeader = 0
                position = length == 0 ? .header(collected: 0) : .payload(remaining: length, isData: isData)
            }
        }
    }
}
