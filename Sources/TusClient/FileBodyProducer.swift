public import TusCore
import TusHTTP1
public import TusLoop
public import TusCrypto

/// A body whose bytes sit in a file: a plain-TCP `HTTPClientConnection` sends them with sendfile(2), page cache
/// to socket, instead of reading each fragment into a buffer on the threadpool and writing that (one kernel copy
/// and two thread hops per fragment fewer; the S3 store's part uploads spent a fifth of the server's CPU on the
/// read-back, bench/results/2026-12-07-s3speed). Over TLS the connection only calls `nextFragment`; a producer
/// must serve both calls, in any alternation, in body order.
public protocol FileRegionBodyProducer: HTTPBodyProducer {
    /// Calls `ready` with the next bytes as a file range (now, or once they exist), or with nil when they have to
    /// come from `nextFragment` (a read already under way, a digest that must see them, the end of the body).
    /// Being asked tells the producer that its bytes go by sendfile, so it need not read ahead for `nextFragment`.
    func nextFileRegion(_ ready: @escaping (FileRegion?) -> Void)
    /// The first `count` bytes of the region given last were sent (the connection may send a region in pieces).
    func didSendFileRegionBytes(_ count: Int)
}

/// Bytes `offset..<offset + count` of an open file. The descriptor must stay open until the producer is asked
/// again or dropped.
public struct FileRegion: Sendable {
    public let descriptor: Int32
    public let offset: Int64
    public let count: Int

    public init(descriptor: Int32, offset: Int64, count: Int) {
        self.descriptor = descriptor
        self.offset = offset
        self.count = count
    }
}

/// Streams `length` bytes of an open file from `offset`, reading the next piece only when the connection asks
/// for it, through one reused buffer: memory stays at `bufferSize` whatever the file size. Without a `digest`
/// a plain-TCP connection sends the file with sendfile(2) instead (`FileRegionBodyProducer`); the file is then
/// read by the kernel on the loop thread, which may wait for the disk when the file is not cached: a cost tus-cli
/// (its own loop, one file) accepts for the copy it saves.
public final class FileBodyProducer: FileRegionBodyProducer {
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

    public func nextFileRegion(_ ready: @escaping (FileRegion?) -> Void) {
        guard digest == nil, !file.isClosed, position < end else { return ready(nil) }
        ready(FileRegion(descriptor: file.descriptor, offset: position, count: Int(end - position)))
    }

    public func didSendFileRegionBytes(_ count: Int) {
        position += Int64(count)
        onRead?(count)
    }
}

/// The local file no longer matches what the upload was started with.
public struct FileChangedError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
