@testable import TusHTTPServer
import XCTest

/// The cursor that steers TLS plaintext (DATA payloads into the receive chunk, the rest aside) must agree with the
/// frame layout at every byte, however the bytes are split (STYLE §12: every split point).
final class HTTP2FrameCursorTests: XCTestCase {
    private func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 1, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags,
                UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)]
            + payload
    }

    /// Preface, SETTINGS, HEADERS, DATA, an empty DATA, a padded DATA, an unknown frame type, a 70 KiB DATA (a
    /// length over 16 bits), WINDOW_UPDATE; and for each byte whether it is DATA payload.
    private func connectionBytes() -> (bytes: [UInt8], isPayload: [Bool]) {
        var bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        var isPayload = [Bool](repeating: false, count: bytes.count)
        func add(_ type: UInt8, _ payload: [UInt8], flags: UInt8 = 0) {
            bytes += frame(type: type, flags: flags, payload: payload)
            isPayload += [Bool](repeating: false, count: 9) + [Bool](repeating: type == 0, count: payload.count)
        }
        add(0x4, [0, 4, 0, 0x40, 0, 0])
        add(0x1, [0x82, 0x87, 0x84], flags: 0x4)
        add(0x0, (0..<300).map { UInt8(truncatingIfNeeded: $0) })
        add(0x0, [])
        add(0x0, [2, 0xaa, 0xbb, 0, 0], flags: 0x8)
        add(0xfa, [1, 2, 3])
        add(0x0, [UInt8](repeating: 7, count: 70 * 1024))
        add(0x8, [0, 0, 0x10, 0])
        return (bytes, isPayload)
    }

    func testEveryByteIsClassifiedAsTheFrameLayoutSaysAtEverySplitPoint() {
        let (bytes, isPayload) = connectionBytes()
        bytes.withUnsafeBytes { all in
            for split in 0...bytes.count {
                var cursor = HTTP2FrameCursor()
                cursor.advance(over: UnsafeRawBufferPointer(rebasing: all[0..<split]))
                cursor.advance(over: UnsafeRawBufferPointer(rebasing: all[split...]))
                XCTAssertEqual(cursor.position, .header(collected: 0), "split at \(split)")
            }
            // One byte at a time: before each byte, the cursor says whether it is payload and how far that goes.
            var cursor = HTTP2FrameCursor()
            var previousAhead = 0
            for index in 0..<bytes.count {
                let ahead = cursor.dataBytesAhead
                XCTAssertEqual(ahead > 0, isPayload[index], "byte \(index)")
                if ahead > 0 {
                    if previousAhead > 0 {
                        XCTAssertEqual(ahead, previousAhead - 1, "byte \(index)")
                    } else {
                        XCTAssertTrue(isPayload[index..<(index + ahead)].allSatisfy { $0 }, "byte \(index)")
                    }
                    XCTAssertTrue(index + ahead == bytes.count || !isPayload[index + ahead], "byte \(index)")
                    XCTAssertEqual(cursor.controlBytesAhead, 0)
                } else {
                    let control = cursor.controlBytesAhead
                    XCTAssertGreaterThan(control, 0, "byte \(index)")
                    let end = min(bytes.count, index + control)
                    XCTAssertTrue(isPayload[index..<end].allSatisfy { !$0 }, "control bytes at \(index) reach payload")
                }
                previousAhead = ahead
                cursor.advance(over: UnsafeRawBufferPointer(rebasing: all[index..<(index + 1)]))
            }
        }
    }

    /// Steered reads as `HTTP2Connection` makes them (each no longer than the cursor allows) end exactly at every
    /// payload's boundaries: a read never holds payload and control bytes together.
    func testReadsLimitedByTheCursorNeverMixPayloadAndControlBytes() {
        let (bytes, isPayload) = connectionBytes()
        bytes.withUnsafeBytes { all in
            for limit in [1, 5, 9, 16, 100, 16 * 1024, 1 << 20] {
                var cursor = HTTP2FrameCursor()
                var offset = 0
                while offset < bytes.count {
                    let ahead = cursor.dataBytesAhead
                    let count = min(limit, bytes.count - offset, ahead > 0 ? ahead : cursor.controlBytesAhead)
                    let kinds = Set(isPayload[offset..<(offset + count)])
                    XCTAssertEqual(kinds, [ahead > 0], "limit \(limit), read at \(offset)")
                    cursor.advance(over: UnsafeRawBufferPointer(rebasing: all[offset..<(offset + count)]))
                    offset += count
                }
            }
        }
    }
}
