/// The holder's side of a lock: remembers a release request that arrives before the request is ready to
/// act on it (e.g. while its writer is still being opened), and forwards later ones. Loop thread only.
final class LockHolder {
    private(set) var isReleaseRequested = false
    var onReleaseRequested: (() -> Void)?

    func requestRelease() {
        guard !isReleaseRequested else { return }
        isReleaseRequested = true
        onReleaseRequested?()
    }
}
