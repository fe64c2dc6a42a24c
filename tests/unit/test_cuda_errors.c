/* test_cuda_errors.c: the CUDA backend's error model, which needs no GPU
 * (so it runs in every CUDA build, CI included).
 *
 * Each library's raw statuses are classified as the checking macros do:
 * allocation failures -> AE_ENOMEM (the job fails, the worker lives), a
 * sticky device error (illegal address, launch failure, ECC, ...) ->
 * AE_EDEVICE and the context is marked broken, anything else ->
 * AE_EINTERNAL; the message names file:line and the call.  A broken
 * context refuses every later call with AE_EDEVICE without touching the
 * device.  Opening a device that is not there is AE_EUNSUPPORTED with a
 * reason, and where there is no GPU at all, creating a net on a context
 * with no device fails cleanly (nothing leaks under valgrind).
 *
 * Single-threaded; each test owns its detached context. */
#include "api/status.h"
#include "gpu/cuda/cuda_net.h"
#include "gpu/host/graph_build.h"
#include <check.h>
#include <cublas_api.h>
#include <cusolver_common.h>
#include <driver_types.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static ae_cuda_context *detached(void) {
  ae_cuda_context *ctx = NULL;
  ck_assert_int_eq(ae_cuda_context_detached(&ctx), 0);
  ck_assert_ptr_nonnull(ctx);
  ck_assert(!ae_cuda_context_broken(ctx));
  ck_assert_str_eq(ae_cuda_context_last_error(ctx), "");
  return ctx;
}

START_TEST(test_runtime_statuses) {
  ae_cuda_context *ctx = detached();
  ck_assert_int_eq(
      ae_cuda_classify_status(ctx, AE_CUDA_LIB_RUNTIME, cudaSuccess, "ok()"),
      0);
  ck_assert_str_eq(ae_cuda_context_last_error(ctx), "");
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_RUNTIME,
                                           cudaErrorMemoryAllocation,
                                           "cudaMalloc(&p, n)"),
                   AE_ENOMEM);
  ck_assert(!ae_cuda_context_broken(ctx));
  const char *msg = ae_cuda_context_last_error(ctx);
  ck_assert_ptr_nonnull(strstr(msg, "cudaMalloc(&p, n)"));
  ck_assert_ptr_nonnull(strstr(msg, ".cu:"));
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_RUNTIME,
                                           cudaErrorInvalidValue, "bad()"),
                   AE_EINTERNAL);
  ck_assert(!ae_cuda_context_broken(ctx));
  ck_assert_ptr_nonnull(strstr(ae_cuda_context_last_error(ctx), "bad()"));
  ae_cuda_context_close(ctx);
}
END_TEST

START_TEST(test_sticky_statuses) {
  static const int sticky[] = {cudaErrorIllegalAddress, cudaErrorLaunchFailure,
                               cudaErrorMisalignedAddress,
                               cudaErrorECCUncorrectable,
                               cudaErrorIllegalInstruction};
  for (size_t i = 0; i < sizeof(sticky) / sizeof(sticky[0]); i++) {
    ae_cuda_context *ctx = detached();
    ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_RUNTIME,
                                             sticky[i], "kernel launch"),
                     AE_EDEVICE);
    ck_assert(ae_cuda_context_broken(ctx));
    ae_cuda_context_close(ctx);
  }
}
END_TEST

START_TEST(test_library_statuses) {
  ae_cuda_context *ctx = detached();
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_CUBLAS,
                                           CUBLAS_STATUS_SUCCESS, "gemm"),
                   0);
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_CUBLAS,
                                           CUBLAS_STATUS_ALLOC_FAILED,
                                           "cublasCreate"),
                   AE_ENOMEM);
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_CUBLAS,
                                           CUBLAS_STATUS_INVALID_VALUE,
                                           "cublasSgemm"),
                   AE_EINTERNAL);
  ck_assert_ptr_nonnull(strstr(ae_cuda_context_last_error(ctx), "cublasSgemm"));
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_CUSOLVER,
                                           CUSOLVER_STATUS_SUCCESS, "potrf"),
                   0);
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_CUSOLVER,
                                           CUSOLVER_STATUS_ALLOC_FAILED,
                                           "cusolverDnCreate"),
                   AE_ENOMEM);
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_CUSOLVER,
                                           CUSOLVER_STATUS_INVALID_VALUE,
                                           "cusolverDnDpotrf"),
                   AE_EINTERNAL);
  /* No sticky runtime error is pending here, so an execution failure is
   * the job's, not the device's. */
  if (ae_cuda_device_count() == 0)
    ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_CUBLAS,
                                             CUBLAS_STATUS_EXECUTION_FAILED,
                                             "cublasDsyrk"),
                     AE_EINTERNAL);
  ck_assert(!ae_cuda_context_broken(ctx));
  ae_cuda_context_close(ctx);
}
END_TEST

/* After a sticky error every call fails fast with AE_EDEVICE. */
START_TEST(test_broken_context_refuses) {
  ae_cuda_context *ctx = detached();
  ck_assert_int_eq(ae_cuda_classify_status(ctx, AE_CUDA_LIB_RUNTIME,
                                           cudaErrorIllegalAddress,
                                           "cudaStreamSynchronize"),
                   AE_EDEVICE);
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 3, 0, 0);
  int o = ae_gb_linear(&g, x, 2, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, o), 0);
  ae_cuda_net *n = NULL;
  ck_assert_int_eq(ae_cuda_net_create(ctx, &g, 4, &n), AE_EDEVICE);
  ck_assert_ptr_null(n);
  double a[4] = {2.0, 0.0, 0.0, 1.0}, w[2], y[2] = {1.0, 1.0}, q, jit;
  ck_assert_int_eq(ae_cuda_sym_eigvals(ctx, a, 2, w), AE_EDEVICE);
  ck_assert_int_eq(ae_cuda_kernel_quadratic(ctx, a, 2, y, 1, &q, &jit),
                   AE_EDEVICE);
  ck_assert(isnan(q));
  ck_assert_int_eq(ae_cuda_context_sync(ctx), AE_EDEVICE);
  ck_assert_int_eq(ae_cuda_timer_start(ctx), AE_EDEVICE);
  /* Bad arguments are still the caller's: AE_EINVAL before anything. */
  ck_assert_int_eq(ae_cuda_net_create(ctx, &g, 0, &n), AE_EINVAL);
  ck_assert_int_eq(ae_cuda_sym_eigvals(ctx, a, 0, w), AE_EINVAL);
  ae_gb_free(&g);
  ae_cuda_context_close(ctx);
}
END_TEST

START_TEST(test_no_such_device) {
  ae_cuda_context *ctx = NULL;
  char err[256];
  int count = ae_cuda_device_count();
  ck_assert_int_ge(count, 0);
  ck_assert_int_eq(ae_cuda_context_open(count, &ctx, err, sizeof(err)),
                   AE_EUNSUPPORTED);
  ck_assert_ptr_null(ctx);
  ck_assert(strlen(err) > 0);
  ck_assert_int_eq(ae_cuda_context_open(-1, &ctx, err, sizeof(err)),
                   AE_EUNSUPPORTED);
}
END_TEST

/* Without a GPU, a net on a device-less context fails at its allocation,
 * with a device error code and a message, and frees what it had made. */
START_TEST(test_create_without_device) {
  if (ae_cuda_device_count() > 0) return; /* a GPU would serve it */
  ae_cuda_context *ctx = detached();
  ae_graph g;
  ae_gb_begin(&g);
  int x = ae_gb_input(&g, 2, 5, 5);
  int c = ae_gb_conv(&g, x, 3, 3, 1, 1, 1.0);
  int b = ae_gb_bn(&g, c);
  int r = ae_gb_act(&g, b, AE_ACT_RELU, 0.0);
  int p = ae_gb_gap(&g, r);
  int o = ae_gb_linear(&g, p, 2, 1, 1.0);
  ck_assert_int_eq(ae_gb_finish(&g, o), 0);
  ae_cuda_net *n = NULL;
  int rc = ae_cuda_net_create(ctx, &g, 4, &n);
  ck_assert_msg(rc == AE_EINTERNAL || rc == AE_EDEVICE || rc == AE_ENOMEM,
                "create without a device returned %d", rc);
  ck_assert_ptr_null(n);
  ck_assert(strlen(ae_cuda_context_last_error(ctx)) > 0);
  ck_assert_uint_eq(ae_cuda_context_memory_used(ctx), 0);
  ae_gb_free(&g);
  ae_cuda_context_close(ctx);
}
END_TEST

static Suite *cuda_errors_suite(void) {
  Suite *s = suite_create("cuda_errors");
  TCase *tc = tcase_create("errors");
  tcase_add_test(tc, test_runtime_statuses);
  tcase_add_test(tc, test_sticky_statuses);
  tcase_add_test(tc, test_library_statuses);
  tcase_add_test(tc, test_broken_context_refuses);
  tcase_add_test(tc, test_no_such_device);
  tcase_add_test(tc, test_create_without_device);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(cuda_errors_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
