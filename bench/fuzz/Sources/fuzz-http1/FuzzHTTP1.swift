import TusHTTP1

/// One fuzz input: the parser must never crash, hang or read out of bounds, and feeding the same bytes in two
/// pieces must give the same head as feeding them whole (the split point comes from the first input byte).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var whole = RequestHeadParser()
    let wholeResult = whole.parse(bytes)

    if size > 1 {
        let split = Int(bytes[0]) % size
        var pieces = RequestHeadParser()
        _ = pieces.parse(UnsafeRawBufferPointer(rebasing: bytes[0..<split]))
        let piecesResult = pieces.parse(bytes)
        switch (wholeResult, piecesResult) {
        case (.head(let a, let consumedA), .head(let b, let consumedB)):
            precondition(a == b && consumedA == consumedB, "split changed the parsed head")
        case (.failure(let a), .failure(let b)):
            precondition(a.status == b.status, "split changed the error")
        case (.needMoreData, .needMoreData):
            break
        default:
            preconditionFailure("split changed the outcome: \(wholeResult) vs \(piecesResult)")
        }
    }

    if case .head(let head, let consumed) = wholeResult, head.bodyFraming.hasBody {
        var decoder = BodyDecoder(framing: head.bodyFraming)
        var rest = UnsafeRawBufferPointer(rebasing: bytes[consumed...])
        var rounds = 0
        while true {
            rounds += 1
            precondition(rounds <= size + 2, "decoder made no progress")
            let (event, used) = decoder.next(rest)
            precondition(used >= 0 && used <= rest.count, "consumed out of range")
            if case .data(let range) = event {
                precondition(range.lowerBound >= 0 && range.upperBound <= rest.count, "data range out of bounds")
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[used...])
            switch event {
            case .data: continue
            case .needMoreData, .end, .failure: return 0
            }
        }
    }
    return 0
}

// SwiftPM links executables with `main` renamed to `<module>_main`; hand that entry point to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32

@_cdecl("fuzz_http1_main")
public func fuzzMain(
    _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> Int32 {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { fuzzOneInput($0, $1) }
}
