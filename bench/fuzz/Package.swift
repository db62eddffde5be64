// swift-tools-version:6.0
// libFuzzer target for the HTTP/1.1 request parser and body decoder. A separate package (like ../writer) so the
// sanitizer build never touches the product build; TusHTTP1 is a symlink to the main package's sources.
//   swift build -c debug --scratch-path ../../.build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//   ../../.build-fuzz/debug/fuzz-http1 -max_total_time=60 corpus/
import PackageDescription

let package = Package(
    name: "fuzz-http1",
    targets: [
        .target(
            name: "TusHTTP1",
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("InternalImportsByDefault"),
            ]),
        .executableTarget(name: "fuzz-http1", dependencies: ["TusHTTP1"]),
    ]
)
