import TusClient
import TusHTTP1
import TusLoop
import TusTestSupport
import XCTest

@testable import TusS3Store

/// The part body producer on a real spill file: it follows the file as it grows, and reads the next buffer while
/// the connection is still sending the last one.
final class TailFollowingProducerTests: XCTestCase {
    var driver: LoopDriver!
    var path: String!

    override func setUpWithError() throws {
        driver = try LoopDriver()
        path = NSTemporaryDirectory() + "tail-producer-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: path)
        XCTAssertEqual(driver.shutDown(), 0, "the loop had to close handles itself")
    }

    func testStreamsTheGrowingFileAndReadsAheadWhileAFragmentIsSent() throws {
        let length = 1 << 20 + 12345
        let content = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(content)))
        let part = S3PartStream(number: 1, start: 0, length: Int64(length), path: path)
        part.spilled = 600_000  // the rest "arrives" later
        final class Collected: @unchecked Sendable {
            var bytes: [UInt8] = []
            var synchronousDeliveries = 0
            var parkedAt: Int?
        }
        let collected = Collected()
        let outcome: Result<Void, any Error> = driver.run { done in
            AsyncFile.open(loop: self.driver.loop, path: self.path, flags: .readOnly) { opened in
                guard case .success(let file) = opened else { return done(.failure(opened.failureError!)) }
                part.file = file
                let producer = TailFollowingProducer(part: part)
                func ask() {
                    var returned = false
                    producer.nextFragment { result in
                        if !returned { collected.synchronousDeliveries += 1 }
                        switch result {
                        case .failure(let error):
                            file.close()
                            done(.failure(error))
                        case .success(nil):
                            file.close()
                            done(.success(()))
                        case .success(let fragment?):
                            collected.bytes += Array(fragment.bytes)
                            // As if the socket took 50 ms to take the fragment: time for the next read.
                            _ = self.driver.loop.schedule(afterMilliseconds: 50) { ask() }
                        }
                    }
                    returned = true
                    if part.parked != nil, collected.parkedAt == nil {
                        collected.parkedAt = collected.bytes.count
                        part.spilled = Int64(length)
                        part.wakeProducer()
                    }
                }
                ask()
            }
        }
        try outcome.get()
        XCTAssertEqual(collected.parkedAt, 600_000, "waited at the end of what was spilled")
        XCTAssertEqual(collected.bytes.count, length)
        XCTAssertTrue(collected.bytes == content, "the fragments are the file, in order")
        XCTAssertGreaterThanOrEqual(collected.synchronousDeliveries, 3, "later fragments were read ahead")
    }

    /// For sendfile: the producer offers what was spilled as a file range, waits at its end until more is
    /// spilled, and ends at the part's length; nothing is read into memory.
    func testOffersTheSpilledBytesAsFileRegionsAndWaitsForMore() throws {
        let length = 300_000
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(count: length)))
        let part = S3PartStream(number: 2, start: 5 << 20, length: Int64(length), path: path)
        part.spilled = 100_000
        final class Seen: @unchecked Sendable { var regions: [(offset: Int64, count: Int)] = [] }
        let seen = Seen()
        let outcome: Result<Void, any Error> = driver.run { done in
            AsyncFile.open(loop: self.driver.loop, path: self.path, flags: .readOnly) { opened in
                guard case .success(let file) = opened else { return done(.failure(opened.failureError!)) }
                part.file = file
                let producer = TailFollowingProducer(part: part)
                var answered = false
                producer.nextFileRegion { region in
                    XCTAssertEqual(region?.descriptor, file.descriptor)
                    seen.regions.append((region!.offset, region!.count))
                    // The connection sent 60_000 of them, then asks again.
                    producer.didSendFileRegionBytes(60_000)
                    producer.nextFileRegion { region in
                        seen.regions.append((region!.offset, region!.count))
                        producer.didSendFileRegionBytes(region!.count)
                        producer.nextFileRegion { region in
                            answered = true
                            seen.regions.append((region!.offset, region!.count))
                            producer.didSendFileRegionBytes(region!.count)
                            producer.nextFileRegion { region in
                                XCTAssertNil(region, "the part's length was sent: the rest is nextFragment's end")
                                file.close()
                                done(.success(()))
                            }
                        }
                        XCTAssertFalse(answered, "caught up with the spill: it waits")
                        XCTAssertNotNil(part.parked)
                        part.spilled = Int64(length)
                        part.wakeProducer()
                    }
                }
            }
        }
        try outcome.get()
        XCTAssertEqual(seen.regions.map(\.offset), [0, 60_000, 100_000])
        XCTAssertEqual(seen.regions.map(\.count), [100_000, 40_000, 200_000])
    }
}

extension Result {
    fileprivate var failureError: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
