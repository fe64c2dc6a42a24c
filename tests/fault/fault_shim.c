/* fault_shim.c: an LD_PRELOAD library that makes writes to one folder fail
 * on demand, for the store fault tests (issue 14 item 8).
 *
 * write, pwrite, pwrite64, writev, fsync, fdatasync, ftruncate and
 * fallocate (what SQLite calls to write and sync its database, WAL and
 * journal, and what the daemon's write probe calls) fail with the errno
 * named in the file $AE_FAULT_FILE ("ENOSPC", "EIO" or "EROFS"; empty or
 * missing: no fault) when the descriptor is a file under $AE_FAULT_DIR.
 * Every other descriptor (the log, sockets) is left alone.  The control
 * file is read on every call, so a test toggles the fault by rewriting it.
 *
 * Threads: any; the shim keeps no state but the resolved functions, which
 * each thread may resolve again harmlessly. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* The errno the control file asks for, or 0. */
static int fault_wanted(void) {
  const char *control = getenv("AE_FAULT_FILE");
  if (!control) return 0;
  int fd = open(control, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32] = {0};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  if (!strncmp(buf, "ENOSPC", 6)) return ENOSPC;
  if (!strncmp(buf, "EIO", 3)) return EIO;
  if (!strncmp(buf, "EROFS", 5)) return EROFS;
  return 0;
}

/* The errno to fail fd's call with, or 0 to let it through. */
static int fault_for(int fd) {
  const char *dir = getenv("AE_FAULT_DIR");
  if (!dir || !*dir) return 0;
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = '\0';
  size_t len = strlen(dir);
  if (strncmp(path, dir, len) || (path[len] != '/' && path[len] != '\0'))
    return 0;
  return fault_wanted();
}

/* The next definition of name (libc's, or a sanitizer's interceptor). */
#define REAL(name, ret, args)                                                  \
  static ret(*real_##name) args;                                               \
  if (!real_##name) real_##name = (ret(*) args)dlsym(RTLD_NEXT, #name)

#define FAIL_IF_FAULT(fd)                                                      \
  do {                                                                         \
    int fault = fault_for(fd);                                                 \
    if (fault) {                                                               \
      errno = fault;                                                           \
      return -1;                                                               \
    }                                                                          \
  } while (0)

ssize_t write(int fd, const void *buf, size_t count) {
  REAL(write, ssize_t, (int, const void *, size_t));
  FAIL_IF_FAULT(fd);
  return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
  REAL(pwrite, ssize_t, (int, const void *, size_t, off_t));
  FAIL_IF_FAULT(fd);
  return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
  REAL(pwrite64, ssize_t, (int, const void *, size_t, off64_t));
  FAIL_IF_FAULT(fd);
  return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  REAL(writev, ssize_t, (int, const struct iovec *, int));
  FAIL_IF_FAULT(fd);
  return real_writev(fd, iov, iovcnt);
}

int fsync(int fd) {
  REAL(fsync, int, (int));
  FAIL_IF_FAULT(fd);
  return real_fsync(fd);
}

int fdatasync(int fd) {
  REAL(fdatasync, int, (int));
  FAIL_IF_FAULT(fd);
  return real_fdatasync(fd);
}

int ftruncate(int fd, off_t length) {
  REAL(ftruncate, int, (int, off_t));
  FAIL_IF_FAULT(fd);
  return real_ftruncate(fd, length);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
  REAL(fallocate, int, (int, int, off_t, off_t));
  FAIL_IF_FAULT(fd);
  return real_fallocate(fd, mode, offset, len);
}
