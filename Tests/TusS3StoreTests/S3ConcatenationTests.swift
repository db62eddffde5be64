import TusCore
import TusHTTP1
import TusProtocol
import TusS3Store
import TusTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The plan of a final's parts (pure), and the S3 store's `concatenate` against the in-memory `FakeS3`: copies,
/// streamed parts, their mix, and the interrupted assemblies a crash leaves.
final class S3ConcatenationPlanTests: XCTestCase {
    let MiB: Int64 = 1 << 20

    private func plan(_ lengths: [Int64], partSize: Int64 = 8 << 20) -> S3ConcatenationPlan? {
        S3ConcatenationPlan(
            sources: lengths.enumerated().map { (key: "p\($0.offset)", length: $0.element) }, streamPartSize: partSize)
    }

    func testBigPartialsAreCopiedWholeWithoutStreaming() throws {
        let plan = try XCTUnwrap(plan([256 * MiB, 256 * MiB, 256 * MiB, 256 * MiB]))
        XCTAssertEqual(plan.parts.count, 4)
        XCTAssertEqual(plan.parts.reduce(0) { $0 + $1.streamedBytes }, 0)
        XCTAssertEqual(plan.parts[2], .copy(.init(key: "p2", range: 0..<(256 * MiB))))
    }

    func testAPartialAboveTheCopySizeIsCopiedInNearEqualPieces() throws {
        let plan = try XCTUnwrap(plan([600 * MiB, 1]))
        XCTAssertEqual(plan.sizes, [200 * MiB, 200 * MiB, 200 * MiB, 1])
        XCTAssertEqual(plan.parts.reduce(0) { $0 + $1.streamedBytes }, 0, "a small last partial is copied too")
    }

    func testSmallPartialsAreStreamedAsOnePart() throws {
        let plan = try XCTUnwrap(plan([5, 6, 1024]))
        XCTAssertEqual(plan.parts, [.stream([.init(key: "p0", range: 0..<5), .init(key: "p1", range: 0..<6), .init(key: "p2", range: 0..<1024)])])
    }

    func testSmallPartialsBorrowTheHeadOfTheNextBigOne() throws {
        let plan = try XCTUnwrap(plan([MiB, 20 * MiB]))
        XCTAssertEqual(
            plan.parts,
            [
                .stream([.init(key: "p0", range: 0..<MiB), .init(key: "p1", range: 0..<(4 * MiB))]),
                .copy(.init(key: "p1", range: (4 * MiB)..<(20 * MiB))),
            ])
    }

    func testEmptyAndTooManyParts() {
        XCTAssertEqual(plan([0, 0])?.parts, [])
        XCTAssertNil(plan(Array(repeating: 5 * MiB, count: 10_001)))
        XCTAssertNotNil(plan(Array(repeating: 5 * MiB, count: 10_000)))
    }

    /// Every random list (limits scaled down: minimum 5, stream parts 8, copies up to 20, parts up to 40): the
    /// pieces are the sources' bytes in order; every part but the last reaches the minimum and none passes the
    /// maximum; a copy is one range of one source; only sources below the minimum (and at most the minimum per run
    /// of them) are streamed, and nothing at all when every source but the last is big enough.
    func testRandomListsKeepS3sRules() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<3000 {
            let count = Int.random(in: 1...9, using: &generator)
            let lengths = (0..<count).map { _ in Int64.random(in: 0...(round % 2 == 0 ? 12 : 90), using: &generator) }
            let sources = lengths.enumerated().map { (key: "k\($0.offset)", length: $0.element) }
            let plan = try XCTUnwrap(
                S3ConcatenationPlan(
                    sources: sources, streamPartSize: 8, minimumPartSize: 5, maximumPartSize: 40, maximumCopySize: 20))
            var covered: [String] = []
            for part in plan.parts {
                switch part {
                case .copy(let piece):
                    XCTAssertLessThanOrEqual(piece.range.count, 20)
                    covered += piece.range.map { "\(piece.key):\($0)" }
                case .stream(let pieces):
                    covered += pieces.flatMap { piece in piece.range.map { "\(piece.key):\($0)" } }
                }
            }
            let expected = sources.flatMap { source in (0..<source.length).map { "\(source.key):\($0)" } }
            XCTAssertEqual(covered, expected, "\(lengths)")
            for (index, size) in plan.sizes.enumerated() {
                XCTAssertLessThanOrEqual(size, 40, "\(lengths)")
                XCTAssertGreaterThan(size, 0, "\(lengths)")
                if index < plan.parts.count - 1 { XCTAssertGreaterThanOrEqual(size, 5, "\(lengths)") }
            }
            let nonEmpty = lengths.filter { $0 > 0 }
            let streamed = plan.parts.reduce(0) { $0 + $1.streamedBytes }
            if nonEmpty.dropLast().allSatisfy({ $0 >= 5 }) { XCTAssertEqual(streamed, 0, "\(lengths)") }
            var bound: Int64 = 0
            var inRun = false
            for length in nonEmpty {
                if length < 5 {
                    bound += length + (inRun ? 0 : 5)
                    inRun = true
                } else {
                    inRun = false
                }
            }
            XCTAssertLessThanOrEqual(streamed, bound + 10, "\(lengths)")
        }
    }
}

final class S3ConcatenationTests: XCTestCase {
    let part = 5 << 20
    var driver: LoopDriver!
    var spill: String!

    override func setUpWithError() throws {
        driver = try LoopDriver()
        var template = Array("/tmp/s3-concat-XXXXXX".utf8CString)
        spill = String(cString: mkdtemp(&template)!)
    }

    override func tearDown() {
        XCTAssertEqual(driver.shutDown(), 0, "the loop had to close handles itself")
        _ = system("rm -rf '\(spill!)'")
    }

    private func makeStore() throws -> (FakeS3, S3DataStore) {
        let fake = try FakeS3(concurrency: 3, spill: spill)
        return (fake, try S3DataStore(client: fake))
    }

    private func bytes(_ count: Int, seed: UInt8) -> [UInt8] {
        let block = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count { result += block.prefix(count - result.count) }
        return result
    }

    /// Partials are finished objects; the final is a created upload (its multipart upload, as at its POST).
    private func prepare(_ fake: FakeS3, _ store: S3DataStore, partials: [[UInt8]]) {
        for (index, data) in partials.enumerated() { fake.objects["p\(index)"] = data }
        let created: StoreError? = driver.run { done in store.create(id: "f", on: self.driver.executor, completion: done) }
        XCTAssertNil(created)
    }

    private func concatenate(_ store: S3DataStore, _ ids: [String], _ lengths: [Int]) -> StoreError? {
        driver.run { done in
            store.concatenate(
                id: "f", parts: ids, lengths: lengths.map(Int64.init), on: self.driver.executor, completion: done)
        }
    }

    private func read(_ store: S3DataStore, _ id: String, length: Int) throws -> [UInt8] {
        let opened: Result<any UploadReader, StoreError> = driver.run { done in
            store.openReader(id: id, on: self.driver.executor, completion: done)
        }
        let reader = try opened.get()
        var result: [UInt8] = []
        while result.count < length {
            let fragment: Result<BodyFragment, StoreError> = driver.run { done in
                reader.read(at: Int64(result.count), maxLength: 1 << 20, completion: done)
            }
            result += try fragment.get().array
        }
        // A reader belongs to its loop (closing cancels its request there), as in the server.
        driver.run { done in reader.close(); done(()) } as Void
        return result
    }

    private func check(_ partials: [[UInt8]], order: [Int], expectCopies: Int? = nil) throws {
        let (fake, store) = try makeStore()
        prepare(fake, store, partials: partials)
        XCTAssertNil(concatenate(store, order.map { "p\($0)" }, order.map { partials[$0].count }))
        let expected = order.flatMap { partials[$0] }
        XCTAssertEqual(fake.objects["f"]?.count, expected.count)
        XCTAssertTrue(fake.objects["f"] == expected, "the final's object is the partials' bytes in order")
        XCTAssertEqual(try read(store, "f", length: expected.count).count, expected.count)
        XCTAssertTrue(fake.uploads.isEmpty, "the final's multipart upload is completed")
        if let expectCopies { XCTAssertEqual(fake.copies, expectCopies) }
        for (index, data) in partials.enumerated() { XCTAssertEqual(fake.objects["p\(index)"], data, "partials untouched") }
    }

    func testBigPartialsAreCopiedInsideS3() throws {
        try check([bytes(part, seed: 1), bytes(part + 3, seed: 2), bytes(3, seed: 3)], order: [0, 1, 2], expectCopies: 3)
    }

    /// A copy answers only when it is done, so it gets a longer no-progress deadline than `--s3-timeout`.
    func testCopiesMayStaySilentLongerThanStreamingRequests() throws {
        let (fake, store) = try makeStore()
        prepare(fake, store, partials: [bytes(part, seed: 1), bytes(part, seed: 2)])
        XCTAssertNil(concatenate(store, ["p0", "p1"], [part, part]))
        XCTAssertEqual(fake.copyTimeouts, [8 * 15_000, 8 * 15_000])
    }

    func testSmallPartialsAreStreamedAndMayRepeat() throws {
        try check([bytes(3, seed: 1), bytes(1 << 20, seed: 2), bytes(7, seed: 3)], order: [0, 1, 2, 0, 2], expectCopies: 0)
    }

    func testMixedPartialsCopyWhatTheyCanAndStreamTheRest() throws {
        try check(
            [bytes(1 << 20, seed: 1), bytes(2 * part, seed: 2), bytes(2 << 20, seed: 3), bytes(part, seed: 4)],
            order: [0, 1, 2, 3], expectCopies: 2)
    }

    func testEmptyPartialsMakeAnEmptyObject() throws {
        try check([[], []], order: [0, 1], expectCopies: 0)
    }

    /// A crash after `CompleteMultipartUpload` but before the record: the next attempt finds the object and is done.
    func testAnAssembledFinalIsNotAssembledAgain() throws {
        let (fake, store) = try makeStore()
        let partials = [bytes(part, seed: 1), bytes(9, seed: 2)]
        prepare(fake, store, partials: partials)
        XCTAssertNil(concatenate(store, ["p0", "p1"], [part, 9]))
        let requests = fake.log.count
        fake.objects["p0"] = nil
        XCTAssertNil(concatenate(store, ["p0", "p1"], [part, 9]), "done, though a partial was terminated since")
        XCTAssertEqual(fake.log.count, requests + 1, "one HEAD")
        XCTAssertTrue(fake.objects["f"] == partials[0] + partials[1])
    }

    /// A crash in the middle of an assembly leaves parts, maybe stale ones (another plan, another attempt): the next
    /// attempt uploads every part again and completes with exactly the plan's parts.
    func testAnInterruptedAssemblyIsFinishedByTheNextAttempt() throws {
        let (fake, store) = try makeStore()
        let partials = [bytes(part, seed: 1), bytes(part, seed: 2)]
        prepare(fake, store, partials: partials)
        let uploadID = try XCTUnwrap(fake.uploads.first?.key)
        fake.uploads[uploadID]!.parts = [1: bytes(part, seed: 9), 2: [1, 2, 3], 7: bytes(100, seed: 5)]
        XCTAssertNil(concatenate(store, ["p0", "p1"], [part, part]))
        XCTAssertTrue(fake.objects["f"] == partials[0] + partials[1])
    }

    /// The final's multipart upload is gone (aborted from outside, or a crash after an abort): a new one is made.
    func testAMissingMultipartUploadIsMadeAgain() throws {
        let (fake, restartedStore) = try makeStore()
        let partials = [bytes(part, seed: 1), bytes(4, seed: 2)]
        prepare(fake, restartedStore, partials: partials)
        fake.uploads.removeAll()
        let store = try S3DataStore(client: fake)  // no cached upload id, as after a restart
        XCTAssertNil(concatenate(store, ["p0", "p1"], [part, 4]))
        XCTAssertTrue(fake.objects["f"] == partials[0] + partials[1])
    }

    func testAMissingOrAlteredPartialIsNeverAssembled() throws {
        let (fake, store) = try makeStore()
        prepare(fake, store, partials: [bytes(part, seed: 1), bytes(4, seed: 2)])
        fake.objects["p1"] = nil
        XCTAssertEqual(concatenate(store, ["p0", "p1"], [part, 4]), .gone)
        fake.objects["p1"] = bytes(5, seed: 2)
        guard case .io = concatenate(store, ["p0", "p1"], [part, 4]) else { return XCTFail("a wrong size must fail") }
        XCTAssertNil(fake.objects["f"], "nothing completed")
        XCTAssertEqual(fake.copies, 0, "checked before any copy")
    }

    /// A part that fails (after the transport's own retries) fails the attempt as `unavailable` (503, the client
    /// tries again); the next attempt uploads the parts again from their sources and completes.
    func testAFailedStreamedPartFailsTheAttemptAndTheNextOneCompletes() throws {
        let (fake, store) = try makeStore()
        let partials = [bytes(3 << 20, seed: 1), bytes(3 << 20, seed: 2)]
        prepare(fake, store, partials: partials)
        fake.failingPartAttempts = 1
        guard case .unavailable = concatenate(store, ["p0", "p1"], [3 << 20, 3 << 20]) else {
            return XCTFail("a failed part is a 503")
        }
        XCTAssertNil(fake.objects["f"])
        XCTAssertNil(concatenate(store, ["p0", "p1"], [3 << 20, 3 << 20]))
        XCTAssertTrue(fake.objects["f"] == partials[0] + partials[1])
    }
}
