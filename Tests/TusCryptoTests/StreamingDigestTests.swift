import Foundation
import TusCrypto
import XCTest

final class StreamingDigestTests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    private func digestHex(_ algorithm: DigestAlgorithm, _ text: String) -> String {
        hex(StreamingDigest.digest(algorithm, of: Array(text.utf8)))
    }

    func testKnownAnswersEmptyInput() {
        XCTAssertEqual(digestHex(.sha1, ""), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(digestHex(.md5, ""), "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(digestHex(.sha256, ""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(
            digestHex(.sha512, ""),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                + "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")
    }

    func testKnownAnswersABC() {
        XCTAssertEqual(digestHex(.sha1, "abc"), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(digestHex(.md5, "abc"), "900150983cd24fb0d6963f7d28e17f72")
        XCTAssertEqual(digestHex(.sha256, "abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(
            digestHex(.sha512, "abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                + "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
    }

    /// The example from the tus checksum extension.
    func testTusSpecExampleSHA1OfHelloWorld() {
        let digest = StreamingDigest.digest(.sha1, of: Array("hello world".utf8))
        XCTAssertEqual(Base64.encode(digest), "Kq5sNclPz7QV2+lfQIuc6R7oRu0=")
    }

    func testDigestLengthMatchesOutput() {
        for algorithm in DigestAlgorithm.allCases {
            XCTAssertEqual(StreamingDigest.digest(algorithm, of: [1, 2, 3]).count, algorithm.digestLength)
            XCTAssertEqual(DigestAlgorithm(rawValue: algorithm.rawValue), algorithm)
        }
        XCTAssertNil(DigestAlgorithm(rawValue: "SHA1"), "tus algorithm names are lowercase")
    }

    func testUnevenIncrementalUpdatesEqualOneShot() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<100_003).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let pieceSizes = [0, 1, 2, 63, 64, 65, 127, 1000, 4096, 7, 33_333]
        for algorithm in DigestAlgorithm.allCases {
            let expected = StreamingDigest.digest(algorithm, of: data)
            let digest = StreamingDigest(algorithm)
            var offset = 0
            var pieceIndex = 0
            data.withUnsafeBytes { raw in
                while offset < raw.count {
                    let size = min(pieceSizes[pieceIndex % pieceSizes.count], raw.count - offset)
                    digest.update(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + size]))
                    offset += size
                    pieceIndex += 1
                }
            }
            XCTAssertEqual(digest.finalize(), expected, "\(algorithm)")
        }
    }

    /// Hashing a range read back from a file (a spliced body) equals hashing the same bytes in memory, across
    /// read-buffer boundaries and from an offset inside the file.
    func testUpdateReadingFromAFileRangeMatchesInMemoryHashing() throws {
        let bytes = (0..<(700 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        let path = NSTemporaryDirectory() + "digest-range-\(UUID().uuidString)"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let descriptor = open(path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        defer { close(descriptor) }
        for (offset, count) in [(0, bytes.count), (1, 65_536), (12_345, 300_001), (bytes.count - 10, 10)] {
            for algorithm in [DigestAlgorithm.sha1, .sha256] {
                let digest = StreamingDigest(algorithm)
                try digest.update(readingFrom: descriptor, offset: Int64(offset), count: Int64(count))
                let expected = StreamingDigest.digest(algorithm, of: Array(bytes[offset..<(offset + count)]))
                XCTAssertEqual(digest.finalize(), expected, "\(algorithm) of \(offset)+\(count)")
            }
        }
    }

    /// A range past the file's end (a file truncated meanwhile) is an error, not zeros or a wrong digest.
    func testUpdateReadingPastTheEndOfAFileFails() throws {
        let path = NSTemporaryDirectory() + "digest-short-\(UUID().uuidString)"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(count: 1000)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let descriptor = open(path, O_RDONLY)
        defer { close(descriptor) }
        XCTAssertThrowsError(
            try StreamingDigest(.sha1).update(readingFrom: descriptor, offset: 500, count: 1000)
        ) { XCTAssertEqual($0 as? StreamingDigest.FileReadError, .endOfFile) }
        let directory = open(NSTemporaryDirectory(), O_RDONLY | O_DIRECTORY)
        defer { close(directory) }
        XCTAssertThrowsError(
            try StreamingDigest(.sha1).update(readingFrom: directory, offset: 0, count: 10)
        ) { XCTAssertEqual($0 as? StreamingDigest.FileReadError, .failed(errorNumber: EISDIR)) }
    }
}
