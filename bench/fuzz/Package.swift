// swift-tools-version:6.0
// libFuzzer target for the HTTP/1.1 request parser and body decoder. A separate package (like ../writer) so the
// sanitizer build never touches the product build; TusHTTP1 and TusCore are symlinks to the main package's sources.
//   swift build -c debug --scratch-path ../../.build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//   ../../.build-fuzz/debug/fuzz-http1 -max_total_time=60 corpus/
import PackageDescription

let package = Package(
    name: "fuzz-http1",
    targets: [
        .target(
            name: "TusCore",
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("InternalImportsByDefault"),
            ]),
        .target(
            name: "TusHTTP1", dependencies: ["TusCore"],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("InternalImportsByDefault"),
            ]),
        .executableTarget(name: "fuzz-http1", dependencies: ["TusHTTP1"]),
    ]
)
