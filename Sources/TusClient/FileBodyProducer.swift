public import TusCore
import TusHTTP1
public import TusLoop
public import TusCrypto

/// Streams `length` bytes of an open file from `offset`, reading the next piece only when the connection asks
/// for it, through one reused buffer: memory stays at `bufferSize` whatever the file size.
public final class FileBodyProducer: HTTPBodyProducer {
    public let file: AsyncFile
    private var position: Int64
    private let end: Int64
    private let chunk: ByteChunk
    /// Called with each fragment's size once read (progress reporting; the bytes are then being sent).
    public var onRead: ((Int) -> Void)?
    /// Fed with every byte read, e.g. to compute a checksum of what was sent.
    public var digest: StreamingDigest?

    public init(file: AsyncFile, offset: Int64, length: Int64, bufferSize: Int = 256 * 1024) {
        self.file = file
        self.position = offset
        self.end = offset + length
        self.chunk = ByteChunk(capacity: bufferSize)
    }

    public func nextFragment(_ deliver: @escaping (Result<BodyFragment?, any Error>) -> Void) {
        guard position < end else { return deliver(.success(nil)) }
        let want = Int(min(Int64(chunk.capacity), end - position))
        let buffer = UnsafeMutableRawBufferPointer(start: chunk.base, count: want)
        file.read(into: buffer, at: position, owner: chunk) { [self] result in
            switch result {
            case .failure(let error):
                deliver(.failure(error))
            case .success(0):
                deliver(.failure(FileChangedError(message: "file ended early at byte \(position)")))
            case .success(let count):
                position += Int64(count)
                let fragment = BodyFragment(chunk: chunk, range: 0..<count)
                digest?.update(fragment.bytes)
                onRead?(count)
                deliver(.success(fragment))
            }
        }
    }
}

/// The local file no longer matches what the upload was started with.
public struct FileChangedError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
