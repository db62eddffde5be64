import ArgumentParser
import TusClient
import Glibc

// Exit codes are ours (see exitCodesHelp), not ArgumentParser's EX_USAGE (64): usage problems exit 1.
do {
    var command = try TusCLI.parseAsRoot()
    try command.run()
} catch let error as TusClientError {
    writeStandardError("tus-cli: error: \(error)\n")
    exit(error.exitCode)
} catch {
    let code = TusCLI.exitCode(for: error)
    if code == .success {
        TusCLI.exit(withError: error)  // --help, --version
    }
    let message = TusCLI.fullMessage(for: error)
    if !message.isEmpty { writeStandardError(message + "\n") }
    exit(code == .validationFailure ? 1 : code.rawValue)
}
