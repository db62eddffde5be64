// swift-tools-version:6.0
// A separate package so that the file-writer benchmark never slows the main build. TusLoop and CLibuv are
// symlinks to the main package's sources: the main package exports no library product to depend on.
import PackageDescription

let package = Package(
    name: "writer-bench",
    targets: [
        .systemLibrary(name: "CLibuv", path: "CModules/CLibuv", pkgConfig: "libuv"),
        .target(
            name: "TusLoop", dependencies: ["CLibuv"],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("InternalImportsByDefault"),
            ]),
        .executableTarget(name: "writer-bench", dependencies: ["TusLoop"]),
    ]
)
