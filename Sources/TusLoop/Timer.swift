internal import CLibuv

/// A `uv_timer_t`. Loop thread only. Open until `close()`; the callback is dropped in the close callback.
public final class Timer: LoopOwnedHandle {
    public let loop: EventLoop
    let handle: UnsafeMutablePointer<uv_timer_t>
    private var callback: (() -> Void)?
    private var state = HandleState.open
    /// Set by `EventLoop.schedule`: such a timer is a one-shot that cleans up after itself.
    var closesAfterFiring = false

    /// `uv_timer_init`.
    public init(loop: EventLoop) {
        loop.assertOnLoopThread()
        self.loop = loop
        handle = .allocate(capacity: 1)
        let status = uv_timer_init(loop.loop, handle)
        precondition(status == 0, "uv_timer_init failed: \(status)")
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// `uv_timer_start`; restarting replaces the callback. No-op once closed.
    public func start(afterMilliseconds delay: UInt64, repeatMilliseconds: UInt64 = 0, _ callback: @escaping () -> Void) {
        loop.assertOnLoopThread()
        guard state == .open else { return }
        self.callback = callback
        let status = uv_timer_start(handle, timerCallback, delay, repeatMilliseconds)
        precondition(status == 0, "uv_timer_start failed: \(status)")
    }

    /// `uv_timer_stop`. A timer from `EventLoop.schedule` is closed instead, since nobody would restart it.
    public func stop() {
        loop.assertOnLoopThread()
        guard state == .open else { return }
        if closesAfterFiring {
            close()
        } else {
            uv_timer_stop(handle)
        }
    }

    public var isActive: Bool {
        state == .open && uv_is_active(CLibuv_timer_as_handle(handle)) != 0
    }

    /// `uv_close`; idempotent.
    public func close() {
        loop.assertOnLoopThread()
        guard state == .open else { return }
        state = .closing
        uv_close(CLibuv_timer_as_handle(handle), timerClosed)
    }

    func closeForLoopShutdown() {
        close()
    }

    fileprivate func fire() {
        guard let callback else { return }
        if closesAfterFiring {
            close()
        }
        callback()
    }

    fileprivate func didClose() {
        state = .closed
        callback = nil
        handle.deallocate()
    }
}

private func timerCallback(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    Unmanaged<Timer>.fromOpaque(handle!.pointee.data).takeUnretainedValue().fire()
}

private func timerClosed(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    Unmanaged<Timer>.fromOpaque(handle!.pointee.data).takeRetainedValue().didClose()
}

/// `Timer` clashes with Foundation's `Timer` in any file that also imports Foundation (XCTest re-exports it);
/// such files can write `LoopTimer` (or `TusLoop.Timer`).
public typealias LoopTimer = Timer
