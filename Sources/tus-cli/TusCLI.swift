import ArgumentParser
import TusClient
import TusCrypto
import TusCore
import TusHTTP1
import Glibc

/// Exit codes, documented in `--help` and the README: 0 ok, 1 usage, 2 network, 3 server/protocol, 4 local file.
let exitCodesHelp = """
    Exit codes:
      0  success
      1  usage error (bad arguments or URL)
      2  network error (unreachable server, connection lost, timeout, TLS failure)
      3  server or protocol error (error status, not a tus server, bad answer)
      4  local file error (cannot read/write, or the file changed during the upload)
    """

struct TusCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tus-cli",
        abstract: "A tus 1.0.0 resumable-upload client.",
        discussion: """
            One verb per protocol request (options, post, head, patch, delete), plus `upload`, which creates, \
            sends and resumes on its own, and `download`.

            `upload` remembers each upload under $XDG_CACHE_HOME/tus-cli (default ~/.cache/tus-cli), keyed by the \
            endpoint, the file's absolute path, size and first/last 64 KiB; running the same command again after a \
            crash or Ctrl-C continues where the server got to. A file changed since the upload began gets a new \
            upload; a file that changes while it is uploading stops the upload (exit 4).

            \(exitCodesHelp)
            """,
        subcommands: [Options.self, Post.self, Head.self, Patch.self, Delete.self, Upload.self, Download.self])
}

struct CommonOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Print request and response headers to stderr.")
    var verbose = false

    @Option(help: "Seconds to wait for a connection or for any progress of a request (0: forever).")
    var timeout: Double = 30

    @Option(name: .customLong("header"), help: "Extra request header 'Name: value' (repeatable), e.g. for auth.")
    var headers: [String] = []

    @Option(help: "CA certificates (PEM) to verify https servers with, instead of the system's.")
    var cacert: String?

    @Flag(help: "Do not verify the https server's certificate.")
    var insecure = false

    func makeClient() throws -> TusClient {
        var configuration = TusClient.Configuration()
        configuration.timeoutSeconds = timeout
        configuration.caFile = cacert
        configuration.insecure = insecure
        for header in headers {
            guard let colon = header.firstIndex(of: ":"), colon != header.startIndex else {
                throw TusClientError.usage("bad --header '\(header)': expected 'Name: value'")
            }
            let name = header[..<colon].trimmingWhitespace()
            let value = header[header.index(after: colon)...].trimmingWhitespace()
            configuration.headers.add(name, value)
        }
        if verbose { configuration.trace = { line in printError(line) } }
        return try TusClient(configuration: configuration)
    }
}

func printError(_ line: String) {
    writeStandardError(line + "\n")
}

/// write(2) rather than fputs(stderr): Swift 6 rejects the C global `stderr` as shared mutable state.
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if written <= 0 { return }
        bytes = bytes.dropFirst(written)
    }
}

extension Substring {
    func trimmingWhitespace() -> String {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s.removeFirst() }
        while let last = s.last, last == " " || last == "\t" { s.removeLast() }
        return String(s)
    }
}

func parseURL(_ text: String) throws -> TusURL {
    try TusURL(string: text)
}

/// "1048576", "64K", "5M", "1G", "8MiB" (binary multiples; TusCore's `ByteCount`, as every size flag).
func parseSize(_ text: String, option: String) throws -> Int64 {
    guard let size = try? ByteCount(parsing: text), size.bytes > 0 else {
        throw TusClientError.usage("bad \(option) '\(text)': expected a positive size like 1048576, 64K or 5M")
    }
    return size.bytes
}

func parseMetadata(_ pairs: [String]) throws -> [(key: String, value: String)] {
    try pairs.map { pair in
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard let key = parts.first, !key.isEmpty, !key.contains(" "), !key.contains(",") else {
            throw TusClientError.usage("bad --metadata '\(pair)': expected key=value")
        }
        return (key: String(key), value: parts.count > 1 ? String(parts[1]) : "")
    }
}

func parseChecksum(_ name: String?) throws -> DigestAlgorithm? {
    guard let name else { return nil }
    guard let algorithm = DigestAlgorithm(rawValue: name.lowercased()) else {
        throw TusClientError.usage("bad --checksum '\(name)': use sha1, md5, sha256 or sha512")
    }
    return algorithm
}

func fileSize(_ path: String) throws -> Int64 {
    var info = stat()
    guard stat(path, &info) == 0 else {
        throw TusClientError.localIO("\(path): \(String(cString: strerror(errno)))")
    }
    return Int64(info.st_size)
}

extension TusCLI {
    struct Options: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "OPTIONS: show the server's tus versions, extensions, max size and checksum algorithms.",
            usage: "tus-cli options <url> [<options>]",
            discussion: exitCodesHelp)
        @Argument(help: "The tus endpoint, e.g. http://127.0.0.1:1080/files/") var url: String
        @OptionGroup var common: CommonOptions

        func run() throws {
            let url = try parseURL(url)
            let client = try common.makeClient()
            let capabilities = try client.options(url)
            print("Tus-Version: \(capabilities.versions.joined(separator: ","))")
            print("Tus-Extension: \(capabilities.extensions.joined(separator: ","))")
            if let maxSize = capabilities.maxSize { print("Tus-Max-Size: \(maxSize)") }
            if !capabilities.checksumAlgorithms.isEmpty {
                print("Tus-Checksum-Algorithm: \(capabilities.checksumAlgorithms.joined(separator: ","))")
            }
        }
    }

    struct Post: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "POST: create an upload (with --file, also send the file's bytes: creation-with-upload).",
            usage: "tus-cli post <url> (--length <length> | --defer-length) [<options>]",
            discussion: "Prints the upload URL, then the server's Upload-Offset.\n\n" + exitCodesHelp)
        @Argument(help: "The tus endpoint.") var url: String
        @Option(help: "Upload-Length in bytes.") var length: Int64?
        @Flag(help: "Create with Upload-Defer-Length: 1 (declare the length in a later PATCH).") var deferLength = false
        @Option(help: "Upload-Metadata pair key=value (repeatable).") var metadata: [String] = []
        @Option(help: "Send this file's bytes in the POST body.") var file: String?
        @OptionGroup var common: CommonOptions

        func validate() throws {
            guard (length != nil) != deferLength else { throw ValidationError("give exactly one of --length and --defer-length") }
        }

        func run() throws {
            let url = try parseURL(url)
            let client = try common.makeClient()
            var range: FileRange? = nil
            if let file {
                let size = try fileSize(file)
                range = FileRange(path: file, offset: 0, length: min(size, length ?? size))
            }
            let created = try client.create(at: url, length: length, metadata: try parseMetadata(metadata), upload: range)
            print(created.url)
            print("Upload-Offset: \(created.offset)")
        }
    }

    struct Head: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "HEAD: show an upload's offset, length and metadata.",
            usage: "tus-cli head <url> [<options>]",
            discussion: exitCodesHelp)
        @Argument(help: "The upload URL.") var url: String
        @OptionGroup var common: CommonOptions

        func run() throws {
            let url = try parseURL(url)
            let status = try common.makeClient().head(url)
            print("Upload-Offset: \(status.offset)")
            print("Upload-Length: \(status.length.map(String.init) ?? "deferred")")
            if let metadata = status.metadata { print("Upload-Metadata: \(metadata)") }
        }
    }

    struct Patch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "PATCH: send bytes of a file, starting at --offset (of the file and of the upload).",
            usage: "tus-cli patch <url> --offset <offset> --file <file> [<options>]",
            discussion: "Prints the new Upload-Offset.\n\n" + exitCodesHelp)
        @Argument(help: "The upload URL.") var url: String
        @Option(help: "Upload-Offset: where the upload stands (HEAD tells); also where to read the file.") var offset: Int64
        @Option(help: "The file to read.") var file: String
        @Option(help: "How many bytes to send (default: the rest of the file).") var length: Int64?
        @Option(help: "Upload-Checksum algorithm: sha1, md5, sha256 or sha512.") var checksum: String?
        @Option(help: "Declare Upload-Length on an upload created with --defer-length.") var uploadLength: Int64?
        @OptionGroup var common: CommonOptions

        func run() throws {
            let url = try parseURL(url)
            let algorithm = try parseChecksum(checksum)
            let size = try fileSize(file)
            guard offset >= 0, offset <= size else {
                throw TusClientError.usage("--offset \(offset) is outside the file (\(size) bytes)")
            }
            let count = min(length ?? (size - offset), size - offset)
            let newOffset = try common.makeClient().patch(
                url, offset: offset, range: FileRange(path: file, offset: offset, length: count), checksum: algorithm,
                declareLength: uploadLength)
            print("Upload-Offset: \(newOffset)")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "DELETE: terminate an upload.",
            usage: "tus-cli delete <url> [<options>]",
            discussion: exitCodesHelp)
        @Argument(help: "The upload URL.") var url: String
        @OptionGroup var common: CommonOptions

        func run() throws {
            try common.makeClient().delete(try parseURL(url))
        }
    }

    struct Upload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a file (create, send, resume, retry) and print the upload URL.",
            discussion: """
                Sends metadata filename and filetype (guessed from the extension). Run the same command again after \
                a crash or Ctrl-C to continue the same upload. Network errors, 5xx, 409 and 423 are retried with \
                backoff (then HEAD and continue); --retries bounds consecutive failures.

                --protocol ietf speaks Resumable Uploads for HTTP (the IETF draft) instead of tus 1.0.0: the file \
                goes in the creation request (or its first --chunk-size bytes, the rest in appends), the upload URL \
                comes from the 104 before the body is sent, and filename and filetype travel as Content-Disposition \
                and Content-Type. Resuming and retrying work as for tus.

                \(exitCodesHelp)
                """)
        @Argument(help: "The file to upload.") var file: String
        @Argument(help: "The tus endpoint, e.g. http://127.0.0.1:1080/files/") var url: String
        @Option(help: "Send in PATCHes of this size (e.g. 5M); default: one PATCH.") var chunkSize: String?
        @Option(help: "Upload-Checksum per PATCH: sha1, md5, sha256 or sha512.") var checksum: String?
        @Option(help: "Retries after consecutive failures.") var retries = 5
        @Option(help: .hidden) var retryDelayMs: UInt64 = 500
        @Flag(help: "Start a new upload even if one for this file is remembered.") var noResume = false
        @Option(help: "Extra Upload-Metadata pair key=value (repeatable).") var metadata: [String] = []
        @Flag(name: .shortAndLong, help: "No progress output.") var quiet = false
        @Option(
            help: """
                Send the file as N partial uploads over N connections at once, then join them into one final upload                 (the server must offer the concatenation extension).
                """)
        var parallel = 1
        @Option(name: .customLong("protocol"), help: "tus (tus 1.0.0) or ietf (Resumable Uploads for HTTP).")
        var uploadProtocol = "tus"
        @Option(help: "Upload-Draft-Interop-Version for --protocol ietf, 3 to 9 (default: 9, the latest).")
        var interop: Int?
        @OptionGroup var common: CommonOptions

        func validate() throws {
            guard parallel >= 1 else { throw ValidationError("--parallel must be at least 1") }
            guard ["tus", "ietf"].contains(uploadProtocol) else {
                throw ValidationError("--protocol must be tus or ietf")
            }
            guard uploadProtocol == "ietf" else {
                if interop != nil { throw ValidationError("--interop needs --protocol ietf") }
                return
            }
            if let interop, ResumableUploadDraft(interop) == nil {
                let versions = ResumableUploadDraft.supportedVersions
                throw ValidationError(
                    "--interop \(interop) is not supported: \(versions.lowerBound) to \(versions.upperBound)")
            }
            if parallel > 1 { throw ValidationError("--parallel needs --protocol tus (concatenation is tus's)") }
            if checksum != nil { throw ValidationError("--checksum needs --protocol tus (Upload-Checksum is tus's)") }
            for pair in metadata where !pair.hasPrefix("filename=") && !pair.hasPrefix("filetype=") {
                throw ValidationError("--protocol ietf sends only filename and filetype metadata, not '\(pair)'")
            }
        }

        func run() throws {
            let url = try parseURL(url)
            var options = UploadOptions()
            options.chunkSize = try chunkSize.map { try parseSize($0, option: "--chunk-size") }
            options.checksum = try parseChecksum(checksum)
            options.retries = max(0, retries)
            options.retryDelayMilliseconds = retryDelayMs
            options.resume = !noResume
            options.metadata = try parseMetadata(metadata)
            if uploadProtocol == "ietf" {
                options.uploadProtocol = .ietf(interop.flatMap(ResumableUploadDraft.init) ?? .latest)
            }
            let client = try common.makeClient()
            let uploader = Uploader(client: client, options: options)
            let meter = ProgressMeter(isTerminal: isatty(2) == 1, isQuiet: quiet)
            uploader.onProgress = { meter.update($0) }
            uploader.onMessage = { message in
                meter.clearLine()
                if !quiet { printError(message) }
            }
            let uploadURL =
                parallel > 1
                ? try uploader.uploadInParallel(file: file, to: url, parts: parallel)
                : try uploader.upload(file: file, to: url)
            meter.finish()
            print(uploadURL)
        }
    }

    struct Download: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "GET an upload's bytes into a file, resuming with Range if the file partially exists.",
            usage: "tus-cli download <url> --output <output> [<options>]",
            discussion: exitCodesHelp)
        @Argument(help: "The upload URL.") var url: String
        @Option(name: .shortAndLong, help: "The file to write.") var output: String
        @Flag(help: "Rewrite the file from the start instead of resuming.") var noResume = false
        @OptionGroup var common: CommonOptions

        func run() throws {
            let url = try parseURL(url)
            let size = try common.makeClient().download(url, to: output, resume: !noResume)
            printError("\(output): \(size) bytes")
        }
    }
}
