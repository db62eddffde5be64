#ifndef CLIBUV_SHIM_H
#define CLIBUV_SHIM_H
#include <uv.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <stdint.h>

/* Swift sees libuv's handle "subclasses" as unrelated structs. These casts spare every call site a
   withMemoryRebound; they can go once Swift imports C struct-prefix inheritance (it does not today). */
static inline uv_stream_t *CLibuv_tcp_as_stream(uv_tcp_t *t) { return (uv_stream_t *)t; }
static inline uv_handle_t *CLibuv_tcp_as_handle(uv_tcp_t *t) { return (uv_handle_t *)t; }
static inline uv_handle_t *CLibuv_timer_as_handle(uv_timer_t *t) { return (uv_handle_t *)t; }
static inline uv_handle_t *CLibuv_signal_as_handle(uv_signal_t *t) { return (uv_handle_t *)t; }
static inline uv_handle_t *CLibuv_async_as_handle(uv_async_t *t) { return (uv_handle_t *)t; }
static inline uv_handle_t *CLibuv_stream_as_handle(uv_stream_t *t) { return (uv_handle_t *)t; }
static inline uv_handle_t *CLibuv_poll_as_handle(uv_poll_t *t) { return (uv_handle_t *)t; }

/* The port sits in family-specific structs; reading it in Swift takes two withMemoryRebound blocks per call site. */
static inline int CLibuv_sockaddr_port(const struct sockaddr *address) {
    if (address->sa_family == AF_INET) return ntohs(((const struct sockaddr_in *)address)->sin_port);
    if (address->sa_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
    return -1;
}
/* pthread_setname_np is a GNU extension Swift's Glibc module does not expose (uv_thread_setname needs libuv 1.50). */
static inline void CLibuv_set_current_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

/* accept4 is a GNU extension Swift's Glibc module does not expose (it is declared only under _GNU_SOURCE); the
   raw syscall gives a non-blocking, close-on-exec socket in one call instead of accept + two fcntl calls. */
static inline int CLibuv_accept4_nonblocking_cloexec(int listening) {
    return (int)syscall(SYS_accept4, listening, (struct sockaddr *)0, (socklen_t *)0, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

/* splice(2), pipe2(2) and F_SETPIPE_SZ are GNU extensions Swift's Glibc module does not expose (declared only under
   _GNU_SOURCE), and fcntl is variadic; raw syscalls give SocketFileSplicer the socket -> pipe -> file path. */
static inline long CLibuv_splice(int in, long long *in_offset, int out, long long *out_offset, size_t length,
                                 unsigned int flags) {
    return syscall(SYS_splice, in, in_offset, out, out_offset, length, flags);
}
static inline int CLibuv_pipe_nonblocking_cloexec(int fds[2]) {
    return (int)syscall(SYS_pipe2, fds, O_NONBLOCK | O_CLOEXEC);
}
/* F_SETPIPE_SZ (1031) / F_GETPIPE_SZ (1032): the kernel rounds up to a power of two of pages. */
static inline int CLibuv_set_pipe_size(int fd, int size) { return (int)syscall(SYS_fcntl, fd, 1031, size); }
static inline int CLibuv_pipe_size(int fd) { return (int)syscall(SYS_fcntl, fd, 1032, 0); }
#define CLIBUV_SPLICE_F_MOVE 1u
#define CLIBUV_SPLICE_F_NONBLOCK 2u

/* openat2(2) with RESOLVE_CACHED (Linux 5.12+): opens only when every path component is in the dentry cache, else
   fails with EAGAIN instead of reading the disk; io_uring opens inline the same way. No O_CREAT or O_TRUNC (the kernel
   refuses them with RESOLVE_CACHED). Returns the descriptor (close-on-exec) or -errno; -ENOSYS on older kernels. */
static inline int CLibuv_open_cached(const char *path, int flags) {
    struct { uint64_t flags, mode, resolve; } how = { (uint64_t)(flags | O_CLOEXEC), 0, 0x20 /* RESOLVE_CACHED */ };
    long result = syscall(437 /* SYS_openat2 */, AT_FDCWD, path, &how, sizeof how);
    return result < 0 ? -errno : (int)result;
}

/* sync_file_range is a GNU extension Swift's Glibc module does not expose (declared only under _GNU_SOURCE, as
   accept4 above), so the raw syscall, with the flag values of the kernel ABI (include/uapi/linux/fs.h). Blocks
   (WRITE too, when the device queue is full): call it on the threadpool only. Returns 0 or -errno, as libuv does,
   retrying EINTR. */
#define CLibuv_SYNC_FILE_RANGE_WAIT_BEFORE 1
#define CLibuv_SYNC_FILE_RANGE_WRITE 2
#define CLibuv_SYNC_FILE_RANGE_WAIT_AFTER 4
static inline int CLibuv_sync_file_range(int fd, int64_t offset, int64_t length, unsigned int flags) {
    long result;
    do {
        result = syscall(SYS_sync_file_range, fd, offset, length, flags);
    } while (result == -1 && errno == EINTR);
    return result == -1 ? -errno : 0;
}

/* mallopt, M_ARENA_MAX and malloc_trim live in <malloc.h>, which Swift's Glibc module does not include. */
#include <malloc.h>
static inline int CLibuv_set_malloc_arena_max(int count) { return mallopt(M_ARENA_MAX, count); }
static inline void CLibuv_malloc_trim(void) { (void)malloc_trim(0); }

#endif
