// swift-tools-version:6.0
// Layers, each importing only the one below it (see docs/ARCHITECTURE.md):
//   TusCore (pure: LoopExecutor, ByteChunk/BodyFragment, MonotonicClock, Backoff, LoopLocal, ByteCount) <- every module
//   CLibuv <- TusLoop <- TusHTTPServer <- executables
//   TusHTTP1 (pure) <- TusProtocol <- TusStore <- executables
//   COpenSSL <- TusCrypto
//   TusLoop + TusCrypto <- TusTransport (SecureStream: plaintext over TCP, with or without TLS) <- TusHTTPServer,
//     TusClient, TusRedis
//   CNghttp2 <- TusHTTPServer (HTTP/2 framing, HPACK, flow control)
//   TusLoop + TusTransport <- TusRedis (RESP2 client for shared cluster state, plain or TLS)
//   TusProtocol <- TusOperations (request ids, health, metrics, bearer auth) <- tus-server
//   TusProtocol + TusClient <- TusHooks (tusd-compatible HTTP and exec hooks) <- tus-server
//   TusProtocol + TusClient <- TusS3Store (S3 data and state stores over HTTPClientConnection, SigV4; no other store)
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "tus-server",
    products: [
        .executable(name: "tus-server", targets: ["tus-server"]),
        .executable(name: "tus-cli", targets: ["tus-cli"]),
        .executable(name: "tus-bench", targets: ["tus-bench"]),
        .executable(name: "tus-redis-bench", targets: ["tus-redis-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibuv", path: "CModules/CLibuv", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(
            name: "COpenSSL", path: "CModules/COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .target(name: "COpenSSLShims", dependencies: ["COpenSSL"], path: "CModules/COpenSSLShims"),
        .systemLibrary(
            name: "CNghttp2", path: "CModules/CNghttp2", pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]),

        .target(name: "TusCore", swiftSettings: strict),
        .target(name: "TusLoop", dependencies: ["TusCore", "CLibuv"], swiftSettings: strict),
        .target(name: "TusCrypto", dependencies: ["COpenSSL", "COpenSSLShims"], swiftSettings: strict),
        .target(name: "TusHTTP1", dependencies: ["TusCore"], swiftSettings: strict),
        .target(name: "TusTransport", dependencies: ["TusLoop", "TusCrypto"], swiftSettings: strict),
        .target(
            name: "TusHTTPServer",
            dependencies: ["TusCore", "TusLoop", "TusHTTP1", "TusCrypto", "TusTransport", "CNghttp2"],
            swiftSettings: strict),
        .target(name: "TusProtocol", dependencies: ["TusCore", "TusHTTP1", "TusCrypto"], swiftSettings: strict),
        .target(
            name: "TusStore", dependencies: ["TusCore", "TusProtocol", "TusLoop", "TusCrypto"], swiftSettings: strict),
        .target(
            name: "TusRedis", dependencies: ["TusCore", "TusLoop", "TusCrypto", "TusTransport"], swiftSettings: strict),
        .target(
            name: "TusRedisStore", dependencies: ["TusCore", "TusProtocol", "TusRedis", "TusLoop", "TusCrypto"],
            swiftSettings: strict),
        .target(
            name: "TusClient", dependencies: ["TusCore", "TusHTTP1", "TusLoop", "TusCrypto", "TusTransport"],
            swiftSettings: strict),
        .target(
            name: "TusHooks", dependencies: ["TusCore", "TusProtocol", "TusHTTP1", "TusClient", "TusLoop", "TusCrypto"],
            swiftSettings: strict),
        .target(
            name: "TusOperations", dependencies: ["TusCore", "TusHTTP1", "TusProtocol", "TusCrypto"],
            swiftSettings: strict),
        .target(
            name: "TusS3Store",
            dependencies: ["TusCore", "TusProtocol", "TusClient", "TusCrypto", "TusLoop", "TusHTTP1"],
            swiftSettings: strict),
        .target(
            name: "TusTestSupport", dependencies: ["TusCore", "TusHTTP1", "TusProtocol", "TusLoop", "TusHTTPServer"],
            swiftSettings: strict),

        .executableTarget(
            name: "tus-server",
            dependencies: [
                "TusCore", "TusLoop", "TusHTTPServer", "TusProtocol", "TusStore", "TusRedis", "TusRedisStore",
                "TusOperations", "TusHooks", "TusS3Store",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "tus-cli",
            dependencies: [
                "TusCore", "TusClient", "TusLoop", "TusHTTP1", "TusCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "tus-bench",
            dependencies: [
                "TusCore", "TusClient", "TusLoop", "TusHTTP1", "TusCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "bench/Sources/tus-bench",
            swiftSettings: strict),

        .executableTarget(
            name: "tus-redis-bench", dependencies: ["TusCore", "TusRedis", "TusLoop"],
            path: "bench/Sources/tus-redis-bench",
            swiftSettings: strict),

        .testTarget(name: "TusCoreTests", dependencies: ["TusCore"]),
        .testTarget(name: "TusHTTP1Tests", dependencies: ["TusHTTP1", "TusTestSupport"]),
        .testTarget(name: "TusLoopTests", dependencies: ["TusLoop", "TusTestSupport"]),
        .testTarget(name: "TusCryptoTests", dependencies: ["TusCrypto"]),
        .testTarget(
            name: "TusTransportTests", dependencies: ["TusTransport", "TusCrypto", "TusLoop", "TusTestSupport"]),
        .testTarget(
            name: "TusS3StoreTests",
            dependencies: [
                "TusCore", "TusS3Store", "TusCrypto", "TusProtocol", "TusClient", "TusHTTP1", "TusLoop", "TusStore",
                "TusTestSupport",
            ]),
        .testTarget(name: "TusRedisTests", dependencies: ["TusRedis", "TusLoop", "TusCrypto", "TusTestSupport"]),
        .testTarget(
            name: "TusRedisStoreTests",
            dependencies: [
                "TusCore", "TusRedisStore", "TusRedis", "TusStore", "TusProtocol", "TusHTTPServer", "TusHTTP1",
                "TusLoop",
                "TusTestSupport",
            ]),
        .testTarget(
            name: "TusHooksTests", dependencies: ["TusCore", "TusHooks", "TusProtocol", "TusHTTP1", "TusTestSupport"]),
        .testTarget(
            name: "TusOperationsTests",
            dependencies: ["TusOperations", "TusProtocol", "TusHTTP1", "TusCrypto", "TusHTTPServer", "TusTestSupport"]),
        .testTarget(name: "TusProtocolTests", dependencies: ["TusCore", "TusProtocol", "TusHTTP1", "TusTestSupport"]),
        .testTarget(
            name: "TusStoreTests",
            dependencies: ["TusCore", "TusStore", "TusProtocol", "TusLoop", "TusHTTPServer", "TusTestSupport"]),
        .testTarget(
            name: "TusHTTPServerTests",
            dependencies: ["TusCore", "TusHTTPServer", "TusHTTP1", "TusLoop", "TusCrypto", "TusTestSupport"]),
        .testTarget(
            name: "TusClientTests",
            dependencies: ["TusCore", "TusClient", "TusHTTPServer", "TusProtocol", "TusLoop", "TusTestSupport"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "TusCore", "TusTestSupport", "TusHTTPServer", "TusProtocol", "TusStore", "TusHTTP1", "TusLoop",
            ]),
    ]
)
