/// Where body bytes may be written without passing through the connection's memory: an open file and the offset
/// of the next body byte in it, for at most `maxCount` bytes.
public struct DirectBodyTarget: Sendable, Equatable {
    public var descriptor: Int32
    public var offset: Int64
    public var maxCount: Int64
    /// The descriptor may also be read (pread), so bytes written through it can be read back, e.g. to hash a
    /// checksummed body from the page cache.
    public var isReadable: Bool

    public init(descriptor: Int32, offset: Int64, maxCount: Int64, isReadable: Bool = false) {
        self.descriptor = descriptor
        self.offset = offset
        self.maxCount = maxCount
        self.isReadable = isReadable
    }
}
