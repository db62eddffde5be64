internal import CLibuv

/// A `uv_signal_t`: `callback` runs on the loop thread (not in the signal handler) with the signal number.
/// An open watcher keeps its loop running; close it when shutting down.
public final class SignalWatcher: LoopOwnedHandle {
    public let loop: EventLoop
    let handle: UnsafeMutablePointer<uv_signal_t>
    private var callback: ((Int32) -> Void)?
    private var state = HandleState.open

    /// `uv_signal_init` + `uv_signal_start`.
    public init(loop: EventLoop, signal: Int32, _ callback: @escaping (Int32) -> Void) throws {
        loop.assertOnLoopThread()
        let handle = UnsafeMutablePointer<uv_signal_t>.allocate(capacity: 1)
        let initStatus = uv_signal_init(loop.loop, handle)
        guard initStatus == 0 else {
            handle.deallocate()  // a failed init registers nothing with the loop
            throw UVError(code: initStatus)
        }
        let startStatus = uv_signal_start(handle, signalCallback, signal)
        guard startStatus == 0 else {
            uv_close(CLibuv_signal_as_handle(handle), freeHandleOnClose)
            throw UVError(code: startStatus)
        }
        self.loop = loop
        self.handle = handle
        self.callback = callback
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// `uv_close`; idempotent.
    public func close() {
        loop.assertOnLoopThread()
        guard state == .open else { return }
        state = .closing
        uv_close(CLibuv_signal_as_handle(handle), signalClosed)
    }

    func closeForLoopShutdown() {
        close()
    }

    fileprivate func deliver(_ signal: Int32) {
        callback?(signal)
    }

    fileprivate func didClose() {
        state = .closed
        callback = nil
        handle.deallocate()
    }
}

private func signalCallback(_ handle: UnsafeMutablePointer<uv_signal_t>?, _ signal: Int32) {
    Unmanaged<SignalWatcher>.fromOpaque(handle!.pointee.data).takeUnretainedValue().deliver(signal)
}

private func signalClosed(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    Unmanaged<SignalWatcher>.fromOpaque(handle!.pointee.data).takeRetainedValue().didClose()
}
