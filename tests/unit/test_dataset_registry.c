/* test_dataset_registry.c: the dataset registry (gpu/dataset.c) on the
 * CIFAR-10 sample, on small gzip'd IDX files written here, and on malformed
 * inputs (truncated, bad magic, absurd sizes, bad specs).  Single-threaded;
 * every test frees what it loads. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "api/error.h"
#include "api/status.h"
#include "gpu/dataset.h"

static char cifar_dir[4096];
static char tmp_dir[] = "/tmp/ae_test_dataset_XXXXXX";

static void find_cifar(void) {
  const char *shared = getenv("AE_SHARED_DATA");
  if (shared && shared[0])
    snprintf(cifar_dir, sizeof cifar_dir, "%s/cifar10", shared);
  else
    snprintf(cifar_dir, sizeof cifar_dir, "%s/../shared/data/cifar10",
             AE_SRCDIR);
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void write_bytes(const char *path, const void *b, size_t n, int gz) {
  if (gz) {
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, b, (unsigned)n), (int)n);
    gzclose(g);
  } else {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
  }
}

/* An IDX header for uint8 data of the given dims. */
static size_t idx_header(unsigned char *h, int nd, const int *dims) {
  h[0] = h[1] = 0;
  h[2] = 0x08;
  h[3] = (unsigned char)nd;
  for (int k = 0; k < nd; k++) {
    unsigned d = (unsigned)dims[k];
    h[4 + 4 * k] = (unsigned char)(d >> 24);
    h[5 + 4 * k] = (unsigned char)(d >> 16);
    h[6 + 4 * k] = (unsigned char)(d >> 8);
    h[7 + 4 * k] = (unsigned char)d;
  }
  return 4 + 4 * (size_t)nd;
}

/* Writes a small Fashion-MNIST-like pair: n images 28x28, labels i % 7. */
static void write_idx_pair(const char *dir, const char *prefix, int n) {
  char path[4200];
  size_t per = 28 * 28;
  unsigned char *buf = malloc(16 + n * per);
  ck_assert_ptr_nonnull(buf);
  int dims[3] = {n, 28, 28};
  size_t h = idx_header(buf, 3, dims);
  for (size_t i = 0; i < n * per; i++)
    buf[h + i] = (unsigned char)(i * 7);
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
  write_bytes(path, buf, h + n * per, 1);
  int ldims[1] = {n};
  h = idx_header(buf, 1, ldims);
  for (int i = 0; i < n; i++)
    buf[h + i] = (unsigned char)(i % 7);
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  write_bytes(path, buf, h + n, 1);
  free(buf);
}

/* Mean and standard deviation of channel c over the whole dataset. */
static void channel_stats(const ae_dataset *d, int c, double *mean,
                          double *sd) {
  long long plane = (long long)d->shape[1] * d->shape[2];
  double s = 0, s2 = 0;
  for (long long i = 0; i < d->size; i++) {
    const float *v = d->x + (i * d->shape[0] + c) * plane;
    for (long long k = 0; k < plane; k++) {
      s += v[k];
      s2 += (double)v[k] * v[k];
    }
  }
  double n = (double)d->size * plane;
  *mean = s / n;
  *sd = sqrt(s2 / n - *mean * *mean);
}

/* The CIFAR-10 sample of ../shared is not in a fresh clone. */
static int have_cifar(void) {
  if (access(cifar_dir, R_OK) == 0) return 1;
  fprintf(stderr, "no CIFAR-10 sample at %s: skipped\n", cifar_dir);
  return 0;
}

START_TEST(test_cifar_folder_uses_train_pair) {
  if (!have_cifar()) return;
  ae_dataset_registry r;
  ae_error p = AE_ERROR_INIT;
  char spec[9000];
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, &p), 0);
  snprintf(spec, sizeof spec, "cifar10=%s", cifar_dir);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), 0);
  const ae_dataset *d = ae_dataset_find(&r, "cifar10");
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(d->size, 4660);
  ck_assert_int_eq(d->rank, 3);
  ck_assert_int_eq(d->shape[0], 3);
  ck_assert_int_eq(d->shape[1], 32);
  ck_assert_int_eq(d->shape[2], 32);
  ck_assert_int_eq(d->num_classes, 10);
  ck_assert_str_eq(d->format, "raw-u8");
  ck_assert_str_eq(d->split, "train");
  /* Labels are the train labels file, byte for byte. */
  char path[4300];
  size_t n;
  snprintf(path, sizeof path, "%s/cifar10_train_4660_labels_u8.bin", cifar_dir);
  unsigned char *lab = slurp(path, &n);
  ck_assert_ptr_nonnull(lab);
  ck_assert_uint_eq(n, 4660);
  ck_assert_int_eq(memcmp(lab, d->y, n), 0);
  free(lab);
  for (int c = 0; c < 3; c++) {
    double mean, sd;
    channel_stats(d, c, &mean, &sd);
    ck_assert_double_eq_tol(mean, 0.0, 1e-4);
    ck_assert_double_eq_tol(sd, 1.0, 1e-4);
  }
  ae_catalog cat = ae_dataset_registry_catalog(&r);
  ck_assert_uint_eq(cat.n, 1);
  ck_assert_str_eq(cat.sets[0].name, "cifar10");
  ck_assert_int_eq(cat.sets[0].size, 4660);
  ck_assert_int_eq(cat.sets[0].num_classes, 10);
  ck_assert_ptr_null(ae_dataset_find(&r, "synthetic"));
  ae_dataset_registry_free(&r);
  ae_error_clear(&p);
}
END_TEST

START_TEST(test_cifar_test_file_labels_and_pixels) {
  if (!have_cifar()) return;
  ae_dataset_registry r;
  ae_error p = AE_ERROR_INIT;
  char spec[9000], path[4300];
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, &p), 0);
  snprintf(path, sizeof path, "%s/cifar10_test_846_u8_nchw.bin", cifar_dir);
  snprintf(spec, sizeof spec, "c10test=%s,shape=3x32x32", path);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), 0);
  const ae_dataset *d = ae_dataset_find(&r, "c10test");
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(d->size, 846);
  /* The README's first test labels. */
  static const int first[16] = {3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8};
  for (int i = 0; i < 16; i++)
    ck_assert_int_eq(d->y[i], first[i]);
  /* Pixel (sample 5, channel 2, pixel 100): (raw - mean) / sd of its
   * channel, with mean and sd computed here from the raw bytes. */
  size_t n;
  unsigned char *raw = slurp(path, &n);
  ck_assert_ptr_nonnull(raw);
  ck_assert_uint_eq(n, 846u * 3072u);
  double s = 0, s2 = 0;
  for (size_t i = 0; i < 846; i++)
    for (size_t k = 0; k < 1024; k++) {
      double v = raw[i * 3072 + 2048 + k];
      s += v;
      s2 += v * v;
    }
  double cnt = 846.0 * 1024;
  double mean = s / cnt, sd = sqrt(s2 / cnt - mean * mean);
  size_t at = 5 * 3072 + 2048 + 100;
  ck_assert_double_eq_tol(d->x[at], (raw[at] - mean) / sd, 1e-4);
  /* On [0,1] pixels the blue mean is near the README's full-set 0.4465. */
  ck_assert_double_eq_tol(mean / 255.0, 0.4465, 0.03);
  free(raw);
  /* A second registration under the same name is refused. */
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ck_assert_int_eq(r.n, 1);
  ae_dataset_registry_free(&r);
  ae_error_clear(&p);
}
END_TEST

START_TEST(test_idx_parse) {
  unsigned char buf[64];
  int dims[4], nd;
  const uint8_t *data;
  int d3[3] = {2, 2, 3};
  size_t h = idx_header(buf, 3, d3);
  for (int i = 0; i < 12; i++)
    buf[h + i] = (unsigned char)i;
  ck_assert_int_eq(ae_idx_parse(buf, h + 12, &nd, dims, &data, NULL), 0);
  ck_assert_int_eq(nd, 3);
  ck_assert_int_eq(dims[0], 2);
  ck_assert_int_eq(dims[2], 3);
  ck_assert_ptr_eq(data, buf + h);
  /* Truncated data, extra data, short header. */
  ck_assert_int_eq(ae_idx_parse(buf, h + 11, &nd, dims, &data, NULL),
                   AE_EINVAL);
  ck_assert_int_eq(ae_idx_parse(buf, h + 13, &nd, dims, &data, NULL),
                   AE_EINVAL);
  ck_assert_int_eq(ae_idx_parse(buf, 7, &nd, dims, &data, NULL), AE_EINVAL);
  ck_assert_int_eq(ae_idx_parse(buf, 3, &nd, dims, &data, NULL), AE_EINVAL);
  /* Bad magic: nonzero lead byte, float type, rank 0 or 9. */
  buf[0] = 1;
  ck_assert_int_eq(ae_idx_parse(buf, h + 12, &nd, dims, &data, NULL),
                   AE_EINVAL);
  buf[0] = 0;
  buf[2] = 0x0d;
  ck_assert_int_eq(ae_idx_parse(buf, h + 12, &nd, dims, &data, NULL),
                   AE_EINVAL);
  buf[2] = 0x08;
  buf[3] = 0;
  ck_assert_int_eq(ae_idx_parse(buf, h + 12, &nd, dims, &data, NULL),
                   AE_EINVAL);
  buf[3] = 9;
  ck_assert_int_eq(ae_idx_parse(buf, h + 12, &nd, dims, &data, NULL),
                   AE_EINVAL);
  /* Absurd dimensions are refused before any size is trusted. */
  int huge[3] = {0x7fffffff, 0x7fffffff, 0x7fffffff};
  h = idx_header(buf, 3, huge);
  ck_assert_int_eq(ae_idx_parse(buf, h + 12, &nd, dims, &data, NULL),
                   AE_EINVAL);
  int zero[1] = {0};
  h = idx_header(buf, 1, zero);
  ck_assert_int_eq(ae_idx_parse(buf, h, &nd, dims, &data, NULL), AE_EINVAL);
}
END_TEST

START_TEST(test_gz_idx_folder_and_autodetect) {
  write_idx_pair(tmp_dir, "train", 5);
  write_idx_pair(tmp_dir, "t10k", 3);
  ae_dataset_registry r;
  ae_error p = AE_ERROR_INIT;
  setenv("ARCHEVAL_FASHION_MNIST", tmp_dir, 1);
  ck_assert_int_eq(ae_dataset_registry_init(&r, 1, &p), 0);
  unsetenv("ARCHEVAL_FASHION_MNIST");
  const ae_dataset *d = ae_dataset_find(&r, "fashion-mnist");
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(d->size, 5); /* the train files of the folder */
  ck_assert_int_eq(d->rank, 3);
  ck_assert_int_eq(d->shape[0], 1);
  ck_assert_int_eq(d->shape[1], 28);
  ck_assert_int_eq(d->num_classes, 5); /* labels 0..4: max + 1 */
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(d->y[i], i % 7);
  double mean, sd;
  channel_stats(d, 0, &mean, &sd);
  ck_assert_double_eq_tol(mean, 0.0, 1e-5);
  ck_assert_double_eq_tol(sd, 1.0, 1e-5);
  /* The t10k file by name, as a file spec; labels beside it. */
  char spec[9000];
  snprintf(spec, sizeof spec, "fm-test=%s/t10k-images-idx3-ubyte.gz", tmp_dir);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), 0);
  d = ae_dataset_find(&r, "fm-test");
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(d->size, 3);
  ck_assert_int_eq(d->num_classes, 3);
  /* A flat shape is accepted when it matches. */
  snprintf(spec, sizeof spec, "fm-flat=%s/t10k-images-idx3-ubyte.gz,shape=784",
           tmp_dir);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), 0);
  d = ae_dataset_find(&r, "fm-flat");
  ck_assert_int_eq(d->rank, 1);
  ck_assert_int_eq(d->shape[0], 784);
  ck_assert_int_eq(r.n, 3);
  ae_dataset_registry_free(&r);
  ae_error_clear(&p);
  /* An empty folder: no fashion-mnist, still 0. */
  setenv("ARCHEVAL_FASHION_MNIST", "/nonexistent-ae-dir", 1);
  ck_assert_int_eq(ae_dataset_registry_init(&r, 1, &p), 0);
  unsetenv("ARCHEVAL_FASHION_MNIST");
  ck_assert_uint_eq(r.n, 0);
  ae_dataset_registry_free(&r);
}
END_TEST

START_TEST(test_malformed_files) {
  char path[4300], lpath[4300], spec[9000];
  ae_dataset_registry r;
  ae_error p = AE_ERROR_INIT;
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, &p), 0);
  /* Raw images whose size is not a multiple of the label count. */
  size_t n = 2 * 3072 + 5;
  unsigned char *buf = calloc(n, 1);
  ck_assert_ptr_nonnull(buf);
  snprintf(path, sizeof path, "%s/bad_u8_nchw.bin", tmp_dir);
  snprintf(lpath, sizeof lpath, "%s/bad_labels_u8.bin", tmp_dir);
  write_bytes(path, buf, n, 0);
  write_bytes(lpath, buf, 2, 0);
  snprintf(spec, sizeof spec, "bad=%s", path);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ck_assert_int_eq(p.code, AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(p.reason, "bad_u8_nchw.bin"));
  ae_error_clear(&p);
  /* Right multiple but a shape that disagrees with the sample size. */
  write_bytes(path, buf, 2 * 3072, 0);
  snprintf(spec, sizeof spec, "bad=%s,shape=1x28x28", path);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ae_error_clear(&p);
  snprintf(spec, sizeof spec, "good=%s", path);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), 0);
  ck_assert_int_eq(ae_dataset_find(&r, "good")->num_classes, 2);
  /* An unknown sample size needs shape=. */
  write_bytes(path, buf, 2 * 100, 0);
  snprintf(spec, sizeof spec, "odd=%s", path);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ae_error_clear(&p);
  snprintf(spec, sizeof spec, "odd=%s,shape=4x5x5,labels=%s", path, lpath);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), 0);
  free(buf);
  /* A truncated gzip IDX file and one with bad magic. */
  unsigned char idx[64];
  memset(idx, 0, sizeof idx);
  int dims[3] = {3, 28, 28};
  size_t h = idx_header(idx, 3, dims);
  snprintf(path, sizeof path, "%s/trunc-images-idx3-ubyte.gz", tmp_dir);
  write_bytes(path, idx, h + 10, 1);
  snprintf(lpath, sizeof lpath, "%s/trunc-labels-idx1-ubyte.gz", tmp_dir);
  int ld[1] = {3};
  size_t lh = idx_header(idx + 32, 1, ld);
  write_bytes(lpath, idx + 32, lh + 3, 1);
  snprintf(spec, sizeof spec, "trunc=%s", path);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ae_error_clear(&p);
  idx[2] = 0x0b;
  write_bytes(path, idx, h + 10, 1);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ae_error_clear(&p);
  /* A header announcing fewer bytes than the stream holds (2 MiB more):
   * refused, without reading it all. */
  {
    size_t big = 16 + (2u << 20);
    unsigned char *bb = calloc(big, 1);
    ck_assert_ptr_nonnull(bb);
    int small[3] = {1, 28, 28};
    idx_header(bb, 3, small);
    write_bytes(path, bb, big, 1);
    free(bb);
    ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
    ck_assert_ptr_nonnull(strstr(p.reason, "too large"));
    ae_error_clear(&p);
  }
  /* A file that is not gzip at all under a .gz name. */
  write_bytes(path, "not gzip", 8, 0);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ae_error_clear(&p);
  ck_assert_int_eq(r.n, 2);
  ae_dataset_registry_free(&r);
}
END_TEST

START_TEST(test_bad_specs) {
  ae_dataset_registry r;
  ae_error p = AE_ERROR_INIT;
  char spec[9000];
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, &p), 0);
  const char *bad[] = {"noequals",
                       "=/tmp",
                       "bad name=/tmp",
                       "synthetic=/tmp",
                       "inline=/tmp",
                       "x=",
                       "x=/nonexistent/ae/file.bin"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ck_assert_int_ne(ae_dataset_registry_add(&r, bad[i], &p), 0);
    ck_assert_int_ne(p.code, 0);
    ck_assert_ptr_nonnull(p.reason);
    ae_error_clear(&p);
  }
  snprintf(spec, sizeof spec, "c=%s,colour=blue", cifar_dir);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ae_error_clear(&p);
  snprintf(spec, sizeof spec, "c=%s,shape=3x32", cifar_dir);
  ck_assert_int_eq(ae_dataset_registry_add(&r, spec, &p), AE_EINVAL);
  ae_error_clear(&p);
  /* A folder without any images. */
  snprintf(spec, sizeof spec, "empty=%s", "/");
  ck_assert_int_ne(ae_dataset_registry_add(&r, spec, &p), 0);
  ae_error_clear(&p);
  ck_assert_uint_eq(r.n, 0);
  ae_dataset_registry_free(&r);
}
END_TEST

static Suite *dataset_suite(void) {
  Suite *s = suite_create("dataset_registry");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_cifar_folder_uses_train_pair);
  tcase_add_test(tc, test_cifar_test_file_labels_and_pixels);
  tcase_add_test(tc, test_idx_parse);
  tcase_add_test(tc, test_gz_idx_folder_and_autodetect);
  tcase_add_test(tc, test_malformed_files);
  tcase_add_test(tc, test_bad_specs);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  find_cifar();
  if (!mkdtemp(tmp_dir)) return 1;
  SRunner *sr = srunner_create(dataset_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  if (system(cmd) != 0) failed++;
  return failed != 0;
}
