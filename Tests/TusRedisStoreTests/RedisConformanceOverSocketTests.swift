import Foundation
import Synchronization
import TusHTTPServer
import TusLoop
import TusProtocol
import TusRedis
import TusRedisStore
import TusStore
import TusTestSupport
import XCTest

/// The draft and tus conformance tables through a real socket, with records in a real redis-server (bytes in files,
/// as `tus-server --redis` composes them): the completion state and digests a draft upload keeps between requests
/// live in Redis here, so a row that passes on the file store and fails here is a Redis state store bug.
final class RedisConformanceOverSocketTests: XCTestCase {
    private func withServer(_ body: (Int) throws -> Void) throws {
        let redis: RedisServerProcess
        do {
            redis = try RedisServerProcess()
        } catch RedisServerProcess.StartError.notInstalled {
            throw XCTSkip("redis-server is not installed")
        }
        defer { redis.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "redis-conformance-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let client = RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: redis.port))
        let keys = RedisKeys(prefix: "conformance:")
        let store = ComposedUploadStore(
            state: RedisStateStore(client: client, keys: keys),
            data: try FileDataStore(directory: directory.path, fsync: .none))
        // The Redis store moves an offset only for the holder of the upload's lease in Redis.
        let locker = RedisLocker(client: client, keys: keys)
        let handler = TusHandler(
            configuration: TusConfiguration(maxSize: ConformanceSettings.maxSize), store: store, locker: locker)
        try withLoopbackServer(
            handler: handler, loopWillStop: { executor, done in client.shutdown(on: executor.eventLoop, done) }
        ) { server in
            let subscribed = DispatchSemaphore(value: 0)
            let outcome = Mutex<Result<Void, RedisError>?>(nil)
            let executor = try XCTUnwrap(server.executors.first)
            executor.execute {
                locker.start(on: executor) { result in
                    outcome.withLock { $0 = result }
                    subscribed.signal()
                }
            }
            XCTAssertEqual(subscribed.wait(timeout: .now() + 10), .success)
            XCTAssertNoThrow(try outcome.withLock { $0 }?.get())
            try body(server.port)
        }
    }

    func testEveryDraftRowOverASocketWithTheRedisStore() throws {
        try withServer { port in
            let failures = DraftConformanceRunner(transport: SocketDraftConformanceTransport(port: port)).run()
            XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
        }
    }

    func testEveryTusRowOverASocketWithTheRedisStore() throws {
        try withServer { port in
            let failures = ConformanceRunner(transport: SocketConformanceTransport(port: port)).run()
            XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
        }
    }
}
