import TusCore
import TusHTTP1
import TusProtocol
import TusS3Store
import TusTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The part-streaming machinery (S3DataStore + S3PartWriter) on a real loop with real spill files, against the
/// in-memory `FakeS3`: no sockets. Part size 5 MiB, as S3's minimum.
final class S3PartWriterTests: XCTestCase {
    let part = 5 << 20
    var driver: LoopDriver!
    var spill: String!

    override func setUpWithError() throws {
        driver = try LoopDriver()
        var template = Array("/tmp/s3-writer-XXXXXX".utf8CString)
        spill = String(cString: mkdtemp(&template)!)
    }

    override func tearDown() {
        XCTAssertEqual(driver.shutDown(), 0, "the loop had to close handles itself")
        _ = system("rm -rf '\(spill!)'")
    }

    func makeStore(concurrency: Int = 2) throws -> (FakeS3, S3DataStore) {
        let fake = try FakeS3(concurrency: concurrency, spill: spill)
        return (fake, try S3DataStore(client: fake))
    }

    /// The S3 store offers what it has code for: reading, truncation and (S3DataStore+Concatenation) concatenation.
    func testComposedStoreOffersWhatTheDataStoreImplements() throws {
        let (_, data) = try makeStore()
        let store = ComposedUploadStore(state: MemoryStateStore(), data: data)
        XCTAssertEqual(store.capabilities, .all)
        XCTAssertTrue(TusHandler(store: store).extensions.contains("concatenation-unfinished"))
    }

    /// Distinct bytes at every offset of the first 64 KiB, then the block again with a different stamp per
    /// block, so a misplaced block or byte shows (generated fast: debug builds are slow per element).
    func bytes(_ count: Int, seed: UInt8 = 7) -> [UInt8] {
        let block = (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ $0 >> 8) }
        var result: [UInt8] = []
        result.reserveCapacity(count)
        var index = 0
        while result.count < count {
            var copy = block[0..<min(block.count, count - result.count)]
            copy[copy.startIndex] = UInt8(truncatingIfNeeded: index)
            result += copy
            index += 1
        }
        return result
    }

    /// Opens a writer at `offset`, writes `data` in fragments of `fragment` bytes (all issued at once, as a fast
    /// client does), waits for every write, then `finish`; returns what finish reported.
    func append(
        _ store: S3DataStore, id: String, at offset: Int64, length: Int64?, _ data: ArraySlice<UInt8>,
        fragment: Int = 256 << 10
    ) -> Result<Int64, StoreError> {
        driver.run { [driver] done in
            store.openWriter(id: id, at: offset, length: length, on: driver!.executor) { opened in
                guard case .success(let writer) = opened else {
                    if case .failure(let error) = opened { done(.failure(error)) }
                    return
                }
                var pending = 0
                var failed: StoreError?
                let finishIfIdle = {
                    guard pending == 0 else { return }
                    if let failed {
                        writer.finish { _ in
                            writer.close()
                            done(.failure(failed))
                        }
                        return
                    }
                    writer.finish { result in
                        writer.close()
                        done(result)
                    }
                }
                var start = data.startIndex
                while start < data.endIndex {
                    let end = min(start + fragment, data.endIndex)
                    pending += 1
                    writer.write(BodyFragment(copying: Array(data[start..<end]))) { result in
                        if case .failure(let error) = result { failed = error }
                        pending -= 1
                        finishIfIdle()
                    }
                    start = end
                }
                finishIfIdle()
            }
        }
    }

    func create(_ store: S3DataStore, _ id: String) {
        let error: StoreError? = driver.run { [driver] done in store.create(id: id, on: driver!.executor, completion: done) }
        XCTAssertNil(error)
    }

    func testLayout() {
        let layout = S3PartLayout(partSize: 10)
        XCTAssertEqual(layout.partNumber(at: 0), 1)
        XCTAssertEqual(layout.partNumber(at: 9), 1)
        XCTAssertEqual(layout.partNumber(at: 10), 2)
        XCTAssertEqual(layout.tail(at: 23), 3)
        XCTAssertEqual(layout.length(ofPart: 3, uploadLength: 25), 5)
        XCTAssertEqual(layout.length(ofPart: 3, uploadLength: nil), 10)
        XCTAssertEqual(layout.partCount(uploadLength: 25), 3)
        XCTAssertEqual(layout.partCount(uploadLength: 20), 2)
        let listed = [S3Part(number: 2, etag: "b", size: 10), S3Part(number: 1, etag: "a", size: 10),
                      S3Part(number: 3, etag: "c", size: 5), S3Part(number: 4, etag: "stale", size: 10)]
        XCTAssertEqual(layout.completeParts(listed, uploadLength: 25)?.map(\.etag), ["a", "b", "c"])
        XCTAssertNil(layout.completeParts(listed, uploadLength: 30), "part 3 is short for a 30-byte upload")
        XCTAssertNil(layout.completeParts(Array(listed.dropFirst()), uploadLength: 25), "part 1 is missing")
    }

    func testPatchesEndingInsidePartsKeepTheirTailAndTheUploadCompletes() throws {
        let (fake, store) = try makeStore()
        let data = bytes(2 * part + 2 * (1 << 20) + 7)
        let length = Int64(data.count)
        create(store, "abc")

        // First PATCH: 7 MiB = part 1 + 2 MiB of part 2, which go to the incomplete-part object.
        XCTAssertEqual(try append(store, id: "abc", at: 0, length: length, data[0..<(7 << 20)]).get(), 7 << 20)
        let uploadID = try XCTUnwrap(fake.uploads.keys.first)
        XCTAssertEqual(fake.uploads[uploadID]?.parts.keys.sorted(), [1])
        XCTAssertEqual(fake.uploads[uploadID]?.parts[1], Array(data[0..<part]))
        XCTAssertEqual(fake.objects["abc.part.2"], Array(data[part..<(7 << 20)]))

        // Second PATCH, 1 byte: still inside part 2; the object grows.
        XCTAssertEqual(try append(store, id: "abc", at: 7 << 20, length: length, data[(7 << 20)..<((7 << 20) + 1)]).get(),
                       (7 << 20) + 1)
        XCTAssertEqual(fake.objects["abc.part.2"], Array(data[part..<((7 << 20) + 1)]))

        // Last PATCH: the rest; part 2 starts again from the object, part 3 is the short last part.
        let end = try append(store, id: "abc", at: (7 << 20) + 1, length: length, data[((7 << 20) + 1)...]).get()
        XCTAssertEqual(end, length)
        XCTAssertEqual(fake.objects["abc"], data, "the finished object is the upload")
        XCTAssertTrue(fake.uploads.isEmpty, "the multipart upload is completed")
        XCTAssertEqual(fake.objects.keys.sorted(), ["abc"], "incomplete-part objects are deleted at completion")
        XCTAssertEqual(try FileManagerless.list(spill), [], "no spill file is left")

        // An unfinished upload cannot be read (its parts are not readable in S3): openReader says so up front.
        create(store, "unfinished")
        let unfinished: StoreError? = driver.run { [driver] done in
            store.openReader(id: "unfinished", on: driver!.executor) { opened in
                if case .failure(let error) = opened { return done(error) }
                done(nil)
            }
        }
        XCTAssertEqual(unfinished, .notFound)

        // Ranged reads stream the object.
        let read: Result<[UInt8], StoreError> = driver.run { [driver] done in
            store.openReader(id: "abc", on: driver!.executor) { opened in
                guard case .success(let reader) = opened else { return done(.failure(.io("open"))) }
                reader.read(at: 1000, maxLength: 300) { first in
                    guard case .success(let a) = first else { return done(.failure(.io("read"))) }
                    reader.read(at: 1000 + Int64(a.count), maxLength: 100) { second in
                        reader.close()
                        guard case .success(let b) = second else { return done(.failure(.io("read"))) }
                        done(.success(a.array + b.array))
                    }
                }
            }
        }
        XCTAssertEqual(try read.get(), Array(data[1000..<(1000 + (try read.get()).count)]))
        XCTAssertGreaterThan(try read.get().count, 300)
    }

    /// A confirmed part's spill file is written again by a later part (no file created and unlinked per part);
    /// none is left once the writer is closed. Writes go one after the other, as a connection sends them.
    func testSpillFilesAreReusedAcrossParts() throws {
        let (fake, store) = try makeStore(concurrency: 1)
        let data = bytes(8 * part)
        create(store, "reuse")
        var seen = Set<String>()
        let fragment = 1 << 20
        let end: Result<Int64, StoreError> = driver.run { [driver, spill] done in
            store.openWriter(id: "reuse", at: 0, length: Int64(data.count), on: driver!.executor) { opened in
                guard case .success(let writer) = opened else { return done(.failure(.io("open"))) }
                func write(from start: Int) {
                    guard start < data.count else {
                        return writer.finish { result in
                            writer.close()
                            done(result)
                        }
                    }
                    let piece = Array(data[start..<min(start + fragment, data.count)])
                    writer.write(BodyFragment(copying: piece)) { result in
                        seen.formUnion((try? FileManagerless.list(spill!)) ?? [])
                        guard case .success = result else { return done(result) }
                        write(from: start + piece.count)
                    }
                }
                write(from: 0)
            }
        }
        XCTAssertEqual(try end.get(), Int64(data.count))
        XCTAssertEqual(fake.objects["reuse"], data, "the reused files carried every part's own bytes")
        XCTAssertLessThanOrEqual(seen.count, 4, "8 parts went through at most 4 files: \(seen.sorted())")
        XCTAssertEqual(try FileManagerless.list(spill), [], "no spill file is left")
    }

    func testDeferredLengthDeclaredOnAPartBoundaryOfTheTail() throws {
        let (fake, store) = try makeStore()
        let data = bytes(part + 3 * (1 << 20))
        create(store, "def")
        XCTAssertEqual(try append(store, id: "def", at: 0, length: nil, data[...]).get(), Int64(data.count))
        XCTAssertNotNil(fake.objects["def.part.2"])
        // A PATCH with no bytes declares the length: the tail becomes the last part and the upload completes.
        XCTAssertEqual(try append(store, id: "def", at: Int64(data.count), length: Int64(data.count), []).get(),
                       Int64(data.count))
        XCTAssertEqual(fake.objects["def"], data)
        XCTAssertTrue(fake.uploads.isEmpty)
    }

    func testAFailedPartFailsTheWritesAndStoresNothingPastWhatS3Holds() throws {
        let (fake, store) = try makeStore(concurrency: 1)
        let data = bytes(2 * part + 100)
        create(store, "g")
        // The first UploadPart fails (at this level retries are spent: S3Client does them).
        fake.failingPartAttempts = 1
        let failed = append(store, id: "g", at: 0, length: Int64(data.count), data[...])
        XCTAssertThrowsError(try failed.get(), "the writes that could not be stored fail")
        let upload = try XCTUnwrap(fake.uploads.values.first { $0.key == "g" })
        XCTAssertTrue(upload.parts.isEmpty)
        XCTAssertNil(fake.objects["g.part.1"], "no incomplete-part object for bytes behind a failed part")
        // The next writer starts again at 0 and finishes the upload.
        XCTAssertEqual(try append(store, id: "g", at: 0, length: Int64(data.count), data[...]).get(), Int64(data.count))
        XCTAssertEqual(fake.objects["g"], data)
    }

    func testBackpressureHoldsWritesWhileS3IsStalled() throws {
        let (fake, store) = try makeStore(concurrency: 1)
        let data = bytes(6 * part)
        create(store, "bp")
        fake.stallsParts = true
        let fragment = 1 << 20
        // Issue every write at once; count the completions while S3 takes nothing.
        let completedWhileStalled: Int = driver.run { [driver] done in
            store.openWriter(id: "bp", at: 0, length: Int64(data.count), on: driver!.executor) { opened in
                guard case .success(let writer) = opened else { return done(-1) }
                var completed = 0
                var all = 0
                for start in stride(from: 0, to: data.count, by: fragment) {
                    writer.write(BodyFragment(copying: Array(data[start..<(start + fragment)]))) { result in
                        if case .success = result { completed += fragment }
                        all += fragment
                        if all == data.count {
                            writer.finish { _ in writer.close() }
                        }
                    }
                }
                // Wait until the completions stop coming (S3 takes nothing), then let S3 go.
                var last = -1
                var steady = 0
                func check() {
                    steady = completed == last && completed > 0 ? steady + 1 : 0
                    last = completed
                    if steady >= 3 {
                        done(completed)
                        fake.resumeStalled()
                        return
                    }
                    _ = driver!.loop.schedule(afterMilliseconds: 200) { check() }
                }
                check()
            }
        }
        // At most (concurrency + 1) parts may wait on disk for S3; everything else is held back.
        XCTAssertLessThanOrEqual(completedWhileStalled, 2 * part)
        XCTAssertGreaterThan(completedWhileStalled, 0)
        let finished: Bool = driver.run { done in
            func poll() {
                if fake.objects["bp"] != nil { return done(true) }
                _ = self.driver.loop.schedule(afterMilliseconds: 20) { poll() }
            }
            poll()
        }
        XCTAssertTrue(finished)
        XCTAssertEqual(fake.objects["bp"], data)
    }

    func testRollbackLeavesTheBucketAsItWas() throws {
        let (fake, store) = try makeStore()
        let data = bytes(part + 1000)
        create(store, "rb")
        XCTAssertEqual(try append(store, id: "rb", at: 0, length: Int64(data.count), data[0..<(1 << 20)]).get(), 1 << 20)
        let before = fake.objects["rb.part.1"]
        let rolledBack: StoreError?? = driver.run { [driver] done in
            store.openTruncatableWriter(id: "rb", at: 1 << 20, length: Int64(data.count), on: driver!.executor) {
                opened in
                guard case .success(let writer) = opened else { return done(nil) }
                writer.write(BodyFragment(copying: Array(repeating: 0xEE, count: 2 << 20))) { _ in
                    writer.truncate(to: 1 << 20) { error in
                        writer.close()
                        done(.some(error))
                    }
                }
            }
        }
        XCTAssertEqual(rolledBack, .some(nil))
        XCTAssertEqual(fake.objects["rb.part.1"], before, "the incomplete-part object is untouched")
        XCTAssertEqual(try append(store, id: "rb", at: 1 << 20, length: Int64(data.count), data[(1 << 20)...]).get(),
                       Int64(data.count))
        XCTAssertEqual(fake.objects["rb"], data)
    }

    func testRemoveAbortsAndDeletesEverything() throws {
        let (fake, store) = try makeStore()
        create(store, "rm")
        XCTAssertEqual(try append(store, id: "rm", at: 0, length: nil, bytes(part + 10)[...]).get(), Int64(part + 10))
        XCTAssertFalse(fake.objects.isEmpty)
        let error: StoreError? = driver.run { [driver] done in store.remove(id: "rm", on: driver!.executor, completion: done) }
        XCTAssertNil(error)
        XCTAssertTrue(fake.objects.isEmpty)
        XCTAssertTrue(fake.uploads.isEmpty)
    }
}

/// Directory listing without Foundation.
enum FileManagerless {
    static func list(_ path: String) throws -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
