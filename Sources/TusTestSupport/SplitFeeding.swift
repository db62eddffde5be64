public import TusHTTP1

// Every parser test runs its input in one piece, split at every byte boundary, in every chunk size and one byte
// at a time, and demands the same outcome (llhttp scan, picohttpparser test_chunked_per_byte, NIO
// ByteToMessageDecoderVerifier). Each call gets a fresh allocation of exactly the bytes it may read, so an
// over-read runs off the end of a heap block, which ASan reports.

/// The outcome of one input under several ways of cutting it into reads.
public struct SplitFeedingReport<Outcome: Equatable>: CustomStringConvertible {
    /// The outcome with the input given in one piece.
    public let outcome: Outcome
    /// Feeding strategies whose outcome differed from `outcome`, described. Empty for a correct codec.
    public let disagreements: [String]

    public var isConsistent: Bool { disagreements.isEmpty }
    public var description: String {
        isConsistent ? "\(outcome)" : "\(outcome); disagreements: \(disagreements.prefix(5).joined(separator: "; "))"
    }
}

/// Where reads end, as cumulative offsets (each strategy ends at `count`).
public func splitStrategies(count: Int, exhaustive: Bool = true) -> [(name: String, ends: [Int])] {
    var strategies: [(name: String, ends: [Int])] = [("whole", [count])]
    guard count > 1 else { return strategies }
    strategies.append(("one byte at a time", Array(1...count)))
    if exhaustive {
        for k in 1..<count { strategies.append(("split at \(k)", [k, count])) }
        for size in 2..<count {
            strategies.append(("chunks of \(size)", Array(stride(from: size, to: count, by: size)) + [count]))
        }
    } else {
        strategies.append(("split at \(count / 2)", [count / 2, count]))
    }
    return strategies
}

/// Runs `body` on a heap copy of `bytes` whose allocation ends exactly where the bytes do.
public func withExactAllocation<R>(_ bytes: ArraySlice<UInt8>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    defer { memory.deallocate() }
    memory.copyBytes(from: bytes)
    return body(UnsafeRawBufferPointer(memory))
}

// MARK: - Request heads

/// Feeds a fresh `RequestHeadParser` the growing prefixes ending at `ends` (the caller-keeps-everything
/// contract) and returns the first result that is not `.needMoreData`, or `.needMoreData`.
public func parseHead(_ bytes: [UInt8], ends: [Int], limits: HTTPParserLimits = .init()) -> HeadParseResult {
    var parser = RequestHeadParser(limits: limits)
    var result = HeadParseResult.needMoreData
    for end in ends {
        result = withExactAllocation(bytes[0..<end]) { parser.parse($0) }
        if result != .needMoreData { return result }
    }
    return result
}

public func parseHeadSplitEverywhere(
    _ bytes: [UInt8], limits: HTTPParserLimits = .init(), exhaustive: Bool = true
) -> SplitFeedingReport<HeadParseResult> {
    let strategies = splitStrategies(count: bytes.count, exhaustive: exhaustive)
    let whole = parseHead(bytes, ends: strategies[0].ends, limits: limits)
    var disagreements: [String] = []
    for strategy in strategies.dropFirst() {
        let result = parseHead(bytes, ends: strategy.ends, limits: limits)
        if result != whole { disagreements.append("\(strategy.name): \(result)") }
    }
    return SplitFeedingReport(outcome: whole, disagreements: disagreements)
}

// MARK: - Bodies

public enum BodyDecodeOutcome: Equatable, CustomStringConvertible, Sendable {
    /// The body ended after `consumed` bytes of the input; the rest belongs to the next request.
    case complete(body: [UInt8], trailers: HTTPHeaders, consumed: Int)
    /// The input ran out before the body ended.
    case incomplete(body: [UInt8])
    case failure(HTTPParseError, bodyBefore: [UInt8])
    /// The decoder broke its own API contract (bad range, no progress, unconsumed bytes on needMoreData).
    case contractViolation(String)

    public var description: String {
        switch self {
        case .complete(let body, let trailers, let consumed):
            "complete(\(body.count) body bytes, trailers: \(trailers.fields), consumed: \(consumed))"
        case .incomplete(let body): "incomplete(\(body.count) body bytes)"
        case .failure(let error, let body): "failure(\(error), after \(body.count) body bytes)"
        case .contractViolation(let what): "contractViolation(\(what))"
        }
    }
}

/// Feeds a fresh `BodyDecoder` the pieces of `bytes` ending at `ends`, each piece as its own allocation and
/// dropped once consumed (the decoder promises the caller never has to keep bytes).
public func decodeBody(
    _ bytes: [UInt8], framing: BodyFraming, ends: [Int], limits: HTTPParserLimits = .init()
) -> BodyDecodeOutcome {
    var decoder = BodyDecoder(framing: framing, limits: limits)
    var body: [UInt8] = []
    var pieceStart = 0
    for end in ends {
        let outcome: BodyDecodeOutcome? = withExactAllocation(bytes[pieceStart..<end]) { piece in
            var offset = 0
            var calls = 0
            while true {
                calls += 1
                if calls > piece.count + 3 { return .contractViolation("no progress at \(pieceStart + offset)") }
                let rest = UnsafeRawBufferPointer(rebasing: piece[offset...])
                let (event, consumed) = decoder.next(rest)
                guard consumed >= 0, consumed <= rest.count else {
                    return .contractViolation("consumed \(consumed) of \(rest.count)")
                }
                switch event {
                case .data(let range):
                    guard !range.isEmpty, range.lowerBound >= 0, range.upperBound == consumed else {
                        return .contractViolation("data range \(range) with consumed \(consumed)")
                    }
                    body.append(contentsOf: rest[range])
                case .needMoreData:
                    guard consumed == rest.count else {
                        return .contractViolation("needMoreData with \(rest.count - consumed) bytes unconsumed")
                    }
                    return nil
                case .end(let trailers):
                    guard decoder.isComplete else { return .contractViolation("end but not isComplete") }
                    return .complete(body: body, trailers: trailers, consumed: pieceStart + offset + consumed)
                case .failure(let error):
                    return .failure(error, bodyBefore: body)
                }
                offset += consumed
            }
        }
        if let outcome { return outcome }
        pieceStart = end
    }
    return .incomplete(body: body)
}

public func decodeBodySplitEverywhere(
    _ bytes: [UInt8], framing: BodyFraming, limits: HTTPParserLimits = .init(), exhaustive: Bool = true
) -> SplitFeedingReport<BodyDecodeOutcome> {
    let strategies = splitStrategies(count: bytes.count, exhaustive: exhaustive)
    let whole = decodeBody(bytes, framing: framing, ends: strategies[0].ends, limits: limits)
    var disagreements: [String] = []
    for strategy in strategies.dropFirst() {
        let result = decodeBody(bytes, framing: framing, ends: strategy.ends, limits: limits)
        if result != whole { disagreements.append("\(strategy.name): \(result)") }
    }
    return SplitFeedingReport(outcome: whole, disagreements: disagreements)
}
