/* gemm_probe.h: a unit test's values by the im2col + GEMM path, for the
 * tests that hold the direct convolution's float32 paths to it
 * (test_net_ntk, test_net_grad).
 *
 * The direct path's switch (AE_CONV_DIRECT) is read once per process, so
 * the GEMM path runs in this program again: gemm_probe_read forks, sets
 * AE_CONV_DIRECT=0, executes /proc/self/exe with `probe_arg` (the test's
 * main prints the values there, one "%a" per line) and reads `count`
 * values back exactly.  Check asserts; call from a test, on its thread.
 * Not under valgrind (the exec would escape it). */
#ifndef AE_TESTS_GEMM_PROBE_H
#define AE_TESTS_GEMM_PROBE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void gemm_probe_read(const char *name, const char *probe_arg,
                            double *out, size_t count) {
  int fd[2];
  ck_assert_int_eq(pipe(fd), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], 1);
    setenv("AE_CONV_DIRECT", "0", 1);
    execl("/proc/self/exe", name, probe_arg, (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  FILE *f = fdopen(fd[0], "r");
  ck_assert_ptr_nonnull(f);
  for (size_t i = 0; i < count; i++)
    ck_assert_int_eq(fscanf(f, "%la", &out[i]), 1);
  fclose(f);
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

#endif
