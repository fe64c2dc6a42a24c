/* test_dataset_formats.c: every format the dataset registry recognises
 * (gpu/dataset*.c), on small files written here byte by byte: CIFAR-10 and
 * CIFAR-100 binary batches, CIFAR-10/100 and ImageNet16-120 pickled
 * batches (in Python 2's cPickle style, as the official files are, and in
 * Python 3's protocol 4), NumPy .npy pairs, and --datasets-dir.  Images and
 * labels must read back exactly (pixels up to the per-channel
 * normalisation, which is recomputed here from the raw bytes); truncated
 * files, wrong magic, wrong shapes and labels out of range must fail with
 * an error naming the file and the fault.  When Debian's python3 with
 * numpy is installed, pickles of protocols 2 to 5 and np.save files made by
 * the real modules are read back too.
 *
 * Single-threaded; every test frees what it loads; the temporary folder is
 * removed at the end. */
#define _GNU_SOURCE /* memmem */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/error.h"
#include "api/status.h"
#include "gpu/dataset.h"

static char tmp_dir[] = "/tmp/ae_test_formats_XXXXXX";

/* A growing byte buffer. */
typedef struct {
  uint8_t *b;
  size_t n, cap;
} bytes;

static void put(bytes *o, const void *p, size_t n) {
  if (o->n + n > o->cap) {
    o->cap = (o->n + n) * 2 + 64;
    o->b = realloc(o->b, o->cap);
    ck_assert_ptr_nonnull(o->b);
  }
  memcpy(o->b + o->n, p, n);
  o->n += n;
}

static void put_byte(bytes *o, int c) {
  uint8_t b = (uint8_t)c;
  put(o, &b, 1);
}

static void put_str(bytes *o, const char *s) {
  put(o, s, strlen(s));
}

static void put_le(bytes *o, uint64_t v, int n) {
  for (int k = 0; k < n; k++)
    put_byte(o, (int)(v >> (8 * k)));
}

static void write_file(const char *dir, const char *name, const void *b,
                       size_t n) {
  char path[4300];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  fclose(f);
}

static char *make_dir(const char *name) {
  static char path[4300];
  snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
  mkdir(path, 0700);
  return path;
}

/* The raw byte of sample i, value k (distinct across samples, channels
 * and positions). */
static uint8_t pixel(long long i, long long k) {
  return (uint8_t)((i * 31 + k * 7 + (k / 97) * 13) % 256);
}

/* Checks that d holds samples [first, first + n) of the pixel() pattern
 * (per values each, C channels), normalised per channel, and the labels. */
static void check_pixels(const ae_dataset *d, long long n, long long per,
                         int channels, const int *labels) {
  ck_assert_int_eq(d->size, n);
  long long plane = per / channels;
  for (int c = 0; c < channels; c++) {
    double s = 0, s2 = 0;
    for (long long i = 0; i < n; i++)
      for (long long k = 0; k < plane; k++) {
        double v = pixel(i, c * plane + k);
        s += v;
        s2 += v * v;
      }
    double cnt = (double)n * plane, mean = s / cnt;
    double sd = sqrt(s2 / cnt - mean * mean);
    for (long long i = 0; i < n; i++)
      for (long long k = 0; k < plane; k++) {
        long long at = i * per + c * plane + k;
        double want = (pixel(i, c * plane + k) - mean) / sd;
        if (fabs(d->x[at] - want) > 1e-4)
          ck_abort_msg("sample %lld value %lld: %g, want %g", i, c * plane + k,
                       d->x[at], want);
      }
  }
  for (long long i = 0; i < n; i++)
    ck_assert_int_eq(d->y[i], labels[i]);
}

/* A CIFAR binary batch of n records from sample `first` on. */
static void cifar_bin(bytes *o, long long first, int n, int cifar100,
                      const int *labels) {
  for (int i = 0; i < n; i++) {
    if (cifar100) put_byte(o, labels[i] / 5); /* coarse, 0..19 */
    put_byte(o, labels[i]);
    for (int k = 0; k < 3072; k++)
      put_byte(o, pixel(first + i, k));
  }
}

/* The pickle styles: Python 2 cPickle protocol 2 (the official CIFAR
 * files) and Python 3 protocol 4. */
enum { PY2, PY3 };

static void pk_key(bytes *o, int style, const char *s) {
  size_t n = strlen(s);
  put_byte(o, style == PY2 ? 'U' : 0x8c);
  put_byte(o, (int)n);
  put(o, s, n);
  if (style == PY3) put_byte(o, 0x94); /* MEMOIZE */
}

static void pk_int(bytes *o, long v) {
  if (v >= 0 && v < 256) {
    put_byte(o, 'K');
    put_byte(o, (int)v);
  } else if (v >= 0 && v < 65536) {
    put_byte(o, 'M');
    put_le(o, (uint64_t)v, 2);
  } else {
    put_byte(o, 'J');
    put_le(o, (uint64_t)(uint32_t)v, 4);
  }
}

static void pk_global(bytes *o, int style, const char *mod, const char *name) {
  if (style == PY2) {
    put_byte(o, 'c');
    put_str(o, mod);
    put_byte(o, '\n');
    put_str(o, name);
    put_byte(o, '\n');
  } else {
    pk_key(o, PY3, mod);
    pk_key(o, PY3, name);
    put_byte(o, 0x93);
  }
}

/* A pickled batch dict: "batch_label", "data" (n x row uint8 from sample
 * first on), the labels under label_key (n ints), "filenames". */
static void pickle_batch(bytes *o, int style, long long first, int n, int row,
                         const char *label_key, const int *labels) {
  put_byte(o, 0x80);
  put_byte(o, style == PY2 ? 2 : 4);
  if (style == PY3) {
    put_byte(o, 0x95); /* FRAME, whatever its length */
    put_le(o, 0, 8);
  }
  put_byte(o, '}');
  put_byte(o, style == PY2 ? 'q' : 0x94);
  if (style == PY2) put_byte(o, 1);
  put_byte(o, '(');
  pk_key(o, style, "batch_label");
  pk_key(o, style, "training batch 1 of 5");
  pk_key(o, style, "data");
  pk_global(o, style, "numpy.core.multiarray", "_reconstruct");
  pk_global(o, style, "numpy", "ndarray");
  pk_int(o, 0);
  put_byte(o, 0x85);
  if (style == PY2) {
    pk_key(o, PY2, "b");
  } else {
    put_byte(o, 'C');
    put_byte(o, 1);
    put_byte(o, 'b');
  }
  put_byte(o, 0x87);
  put_byte(o, 'R');
  put_byte(o, '(');
  pk_int(o, 1);
  pk_int(o, n);
  pk_int(o, row);
  put_byte(o, 0x86);
  pk_global(o, style, "numpy", "dtype");
  pk_key(o, style, "u1");
  pk_int(o, 0);
  pk_int(o, 1);
  put_byte(o, 0x87);
  put_byte(o, 'R');
  put_byte(o, style == PY2 ? 'q' : 0x94);
  if (style == PY2) put_byte(o, 7);
  put_byte(o, '(');
  pk_int(o, 3);
  pk_key(o, style, "|");
  put_str(o, "NNN");
  pk_int(o, -1);
  pk_int(o, -1);
  pk_int(o, 0);
  put_byte(o, 't');
  put_byte(o, 'b');
  put_byte(o, 0x89); /* NEWFALSE: C order */
  put_byte(o, style == PY2 ? 'T' : 'B');
  put_le(o, (uint64_t)n * (uint64_t)row, 4);
  for (long long i = 0; i < n; i++)
    for (int k = 0; k < row; k++)
      put_byte(o, pixel(first + i, k));
  put_byte(o, 't');
  put_byte(o, 'b');
  pk_key(o, style, label_key);
  put_byte(o, ']');
  /* cPickle appends in groups of at most 1000 under a MARK. */
  for (int i = 0; i < n; i += 1000) {
    put_byte(o, '(');
    for (int k = i; k < n && k < i + 1000; k++)
      pk_int(o, labels[k]);
    put_byte(o, 'e');
  }
  pk_key(o, style, "filenames");
  put_byte(o, ']');
  put_byte(o, '(');
  for (int i = 0; i < n; i++)
    pk_key(o, style, "img.png");
  put_byte(o, 'e');
  put_byte(o, 'u');
  put_byte(o, '.');
}

/* A .npy file (format 1.0) with the given descr and shape, data as is. */
static void npy(bytes *o, const char *descr, const char *shape,
                const void *data, size_t len) {
  char h[256];
  int n = snprintf(h, sizeof h,
                   "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                   descr, shape);
  int total = 10 + n + 1;
  int pad = (64 - total % 64) % 64;
  put(o, "\x93NUMPY\x01\x00", 8);
  put_le(o, (uint64_t)(n + pad + 1), 2);
  put(o, h, (size_t)n);
  for (int i = 0; i < pad; i++)
    put_byte(o, ' ');
  put_byte(o, '\n');
  put(o, data, len);
}

/* Registers spec, expecting success. */
static const ae_dataset *add_ok(ae_dataset_registry *r, const char *fmt,
                                const char *arg, const char *name) {
  char spec[9000];
  snprintf(spec, sizeof spec, fmt, arg);
  ae_error err = AE_ERROR_INIT;
  int rc = ae_dataset_registry_add(r, spec, &err);
  ck_assert_msg(rc == 0, "%s: %s", spec, err.reason ? err.reason : "?");
  ae_error_clear(&err);
  const ae_dataset *d = ae_dataset_find(r, name);
  ck_assert_ptr_nonnull(d);
  return d;
}

/* Registers spec, expecting code and a reason holding both words. */
static void add_fails(ae_dataset_registry *r, const char *fmt, const char *arg,
                      int code, const char *word1, const char *word2) {
  char spec[9000];
  snprintf(spec, sizeof spec, fmt, arg);
  ae_error err = AE_ERROR_INIT;
  size_t before = r->n;
  ck_assert_int_eq(ae_dataset_registry_add(r, spec, &err), code);
  ck_assert_ptr_nonnull(err.reason);
  ck_assert_msg(strstr(err.reason, word1) && strstr(err.reason, word2),
                "%s: '%s' lacks '%s' or '%s'", spec, err.reason, word1, word2);
  ck_assert_uint_eq(r->n, before);
  ae_error_clear(&err);
}

static int labels_a[2000], labels_b[2000];

static void fill_labels(int classes, int offset) {
  for (int i = 0; i < 2000; i++) {
    labels_a[i] = (i * 7 + 3) % classes + offset;
    labels_b[i] = labels_a[i] - offset;
  }
}

START_TEST(test_cifar10_binary_folder_and_split) {
  char *dir = make_dir("cifar-10-batches-bin");
  fill_labels(10, 0);
  /* Two train batches (3 and 2 records) and a test batch of 4; the train
   * split is their concatenation in batch order. */
  bytes b1 = {0}, b2 = {0}, t = {0};
  cifar_bin(&b1, 0, 3, 0, labels_a);
  cifar_bin(&b2, 3, 2, 0, labels_a + 3);
  cifar_bin(&t, 0, 4, 0, labels_a);
  write_file(dir, "data_batch_2.bin", b2.b, b2.n);
  write_file(dir, "data_batch_1.bin", b1.b, b1.n);
  write_file(dir, "test_batch.bin", t.b, t.n);
  write_file(dir, "batches.meta.txt", "airplane\n", 9);
  ae_dataset_registry r;
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, NULL), 0);
  const ae_dataset *d = add_ok(&r, "c10=%s", dir, "c10");
  ck_assert_str_eq(d->format, "cifar10-bin");
  ck_assert_str_eq(d->split, "train");
  ck_assert_int_eq(d->num_classes, 10);
  ck_assert_int_eq(d->rank, 3);
  ck_assert_int_eq(d->shape[0], 3);
  ck_assert_int_eq(d->shape[1], 32);
  ck_assert_int_eq(d->shape[2], 32);
  check_pixels(d, 5, 3072, 3, labels_a);
  d = add_ok(&r, "c10t=%s,split=test", dir, "c10t");
  ck_assert_str_eq(d->split, "test");
  check_pixels(d, 4, 3072, 3, labels_a);
  /* One batch file by name. */
  char path[4400];
  snprintf(path, sizeof path, "%s/data_batch_2.bin", dir);
  d = add_ok(&r, "c10b2=%s", path, "c10b2");
  ck_assert_int_eq(d->size, 2);
  ck_assert_int_eq(d->y[1], labels_a[4]);
  /* Truncated: a record short by one byte. */
  write_file(dir, "data_batch_2.bin", b2.b, b2.n - 1);
  add_fails(&r, "bad=%s", dir, AE_EINVAL, "data_batch_2.bin",
            "truncated at byte 6145");
  /* A label out of range. */
  b2.b[3073] = 12;
  write_file(dir, "data_batch_2.bin", b2.b, b2.n);
  add_fails(&r, "bad=%s", dir, AE_EINVAL, "label 12 out of range 0..9",
            "data_batch_2.bin");
  /* No test split asked for where there is none. */
  unlink(path);
  snprintf(path, sizeof path, "%s/test_batch.bin", dir);
  unlink(path);
  add_fails(&r, "bad=%s,split=test", dir, AE_EINVAL, "no test split",
            "test_batch.bin");
  ae_dataset_registry_free(&r);
  free(b1.b);
  free(b2.b);
  free(t.b);
}
END_TEST

START_TEST(test_cifar100_binary) {
  char *dir = make_dir("cifar-100-binary");
  fill_labels(100, 0);
  bytes tr = {0}, te = {0};
  cifar_bin(&tr, 0, 6, 1, labels_a);
  cifar_bin(&te, 0, 2, 1, labels_a + 10);
  write_file(dir, "train.bin", tr.b, tr.n);
  write_file(dir, "test.bin", te.b, te.n);
  ae_dataset_registry r;
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, NULL), 0);
  const ae_dataset *d = add_ok(&r, "c100=%s", dir, "c100");
  ck_assert_str_eq(d->format, "cifar100-bin");
  ck_assert_int_eq(d->num_classes, 100);
  check_pixels(d, 6, 3072, 3, labels_a); /* the fine labels */
  d = add_ok(&r, "c100t=%s,split=test", dir, "c100t");
  ck_assert_int_eq(d->size, 2);
  ck_assert_int_eq(d->y[0], labels_a[10]);
  /* A coarse label out of range, then a fine one. */
  tr.b[3074] = 20;
  write_file(dir, "train.bin", tr.b, tr.n);
  add_fails(&r, "bad=%s", dir, AE_EINVAL, "coarse label 20", "train.bin");
  tr.b[3074] = 1;
  tr.b[3075] = 100;
  write_file(dir, "train.bin", tr.b, tr.n);
  add_fails(&r, "bad=%s", dir, AE_EINVAL, "label 100 out of range 0..99",
            "record 1");
  ae_dataset_registry_free(&r);
  free(tr.b);
  free(te.b);
}
END_TEST

START_TEST(test_cifar_pickles) {
  ae_dataset_registry r;
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, NULL), 0);
  for (int style = PY2; style <= PY3; style++) {
    char name[64];
    snprintf(name, sizeof name, "cifar-10-batches-py-%d", style);
    char *dir = make_dir(name);
    fill_labels(10, 0);
    /* 1200 labels in the first batch: two APPENDS groups. */
    bytes b1 = {0}, b2 = {0}, t = {0};
    pickle_batch(&b1, style, 0, 1200, 3072, "labels", labels_a);
    pickle_batch(&b2, style, 1200, 3, 3072, "labels", labels_a + 1200);
    pickle_batch(&t, style, 0, 2, 3072, "labels", labels_a);
    write_file(dir, "data_batch_1", b1.b, b1.n);
    write_file(dir, "data_batch_2", b2.b, b2.n);
    write_file(dir, "test_batch", t.b, t.n);
    write_file(dir, "batches.meta", "\x80\x02}.", 4);
    snprintf(name, sizeof name, "c10py%d", style);
    char fmt[80];
    snprintf(fmt, sizeof fmt, "%s=%%s", name);
    const ae_dataset *d = add_ok(&r, fmt, dir, name);
    ck_assert_str_eq(d->format, "cifar10-pickle");
    ck_assert_int_eq(d->num_classes, 10);
    check_pixels(d, 1203, 3072, 3, labels_a);
    /* CIFAR-100: fine_labels (and coarse_labels, ignored). */
    snprintf(name, sizeof name, "cifar-100-python-%d", style);
    dir = make_dir(name);
    fill_labels(100, 0);
    bytes c = {0};
    pickle_batch(&c, style, 0, 7, 3072, "fine_labels", labels_a);
    write_file(dir, "train", c.b, c.n);
    write_file(dir, "test", c.b, c.n);
    snprintf(name, sizeof name, "c100py%d", style);
    snprintf(fmt, sizeof fmt, "%s=%%s", name);
    d = add_ok(&r, fmt, dir, name);
    ck_assert_str_eq(d->format, "cifar100-pickle");
    ck_assert_int_eq(d->num_classes, 100);
    check_pixels(d, 7, 3072, 3, labels_a);
    /* Truncated anywhere: an error naming the byte, never a crash. */
    char path[4400];
    snprintf(path, sizeof path, "%s/train", dir);
    for (size_t cut = 1; cut < c.n; cut += cut < 64 ? 1 : 97) {
      write_file(dir, "train", c.b, cut);
      add_fails(&r, "bad=%s", path, AE_EINVAL, "train: ", "at byte");
    }
    free(b1.b);
    free(b2.b);
    free(t.b);
    free(c.b);
  }
  ae_dataset_registry_free(&r);
}
END_TEST

START_TEST(test_imagenet16_pickles) {
  char *dir = make_dir("ImageNet16-120");
  fill_labels(120, 1); /* labels_a: 1..120; labels_b: 0..119 */
  bytes b1 = {0}, b2 = {0}, v = {0};
  pickle_batch(&b1, PY3, 0, 5, 768, "labels", labels_a);
  pickle_batch(&b2, PY2, 5, 4, 768, "labels", labels_a + 5);
  pickle_batch(&v, PY3, 0, 3, 768, "labels", labels_a);
  write_file(dir, "train_data_batch_1", b1.b, b1.n);
  write_file(dir, "train_data_batch_2", b2.b, b2.n);
  write_file(dir, "val_data", v.b, v.n);
  ae_dataset_registry r;
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, NULL), 0);
  const ae_dataset *d = add_ok(&r, "in16=%s", dir, "in16");
  ck_assert_str_eq(d->format, "imagenet16-pickle");
  ck_assert_int_eq(d->num_classes, 120);
  ck_assert_int_eq(d->shape[0], 3);
  ck_assert_int_eq(d->shape[1], 16);
  ck_assert_int_eq(d->shape[2], 16);
  check_pixels(d, 9, 768, 3, labels_b);
  d = add_ok(&r, "in16v=%s,split=test", dir, "in16v");
  ck_assert_int_eq(d->size, 3);
  /* Label 0 is out of ImageNet16-120's 1..120. */
  int zero[3] = {1, 0, 2};
  bytes bad = {0};
  pickle_batch(&bad, PY3, 0, 3, 768, "labels", zero);
  write_file(dir, "val_data", bad.b, bad.n);
  add_fails(&r, "bad=%s,split=test", dir, AE_EINVAL,
            "label 0 out of range 1..120", "val_data");
  /* Rows of another size: wrong shape. */
  bad.n = 0;
  pickle_batch(&bad, PY3, 0, 3, 500, "labels", labels_a);
  write_file(dir, "val_data", bad.b, bad.n);
  add_fails(&r, "bad=%s,split=test", dir, AE_EINVAL, "wrong shape",
            "rows of 500 bytes");
  ae_dataset_registry_free(&r);
  free(b1.b);
  free(b2.b);
  free(v.b);
  free(bad.b);
}
END_TEST

START_TEST(test_pickle_rejects) {
  ae_pickle_batch pb;
  ae_error err = AE_ERROR_INIT;
  /* Not a pickle. */
  ck_assert_int_eq(
      ae_pickle_batch_parse((const uint8_t *)"PK\3\4", 4, &pb, &err),
      AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.reason, "wrong magic"));
  ae_error_clear(&err);
  /* A global that would run code. */
  static const char evil[] = "\x80\x02\x63os\nsystem\nX\x02\0\0\0lsR.";
  ck_assert_int_eq(
      ae_pickle_batch_parse((const uint8_t *)evil, sizeof evil - 1, &pb, &err),
      AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.reason, "unsupported pickle global"));
  ck_assert_ptr_nonnull(strstr(err.reason, "os.system"));
  ae_error_clear(&err);
  /* An opcode outside the subset (protocol 0 INT). */
  static const char p0[] = "\x80\x02I1\n.";
  ck_assert_int_eq(
      ae_pickle_batch_parse((const uint8_t *)p0, sizeof p0 - 1, &pb, &err),
      AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.reason, "opcode 0x49 at byte 2"));
  ae_error_clear(&err);
  /* A string longer than the file. */
  static const char lng[] = "\x80\x02T\xff\xff\xff\x7f"
                            "abc";
  ck_assert_int_eq(
      ae_pickle_batch_parse((const uint8_t *)lng, sizeof lng - 1, &pb, &err),
      AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.reason, "truncated at byte 10"));
  ae_error_clear(&err);
  /* A dict without data, and a list instead of a dict. */
  static const char nodata[] = "\x80\x02}.";
  ck_assert_int_eq(ae_pickle_batch_parse((const uint8_t *)nodata,
                                         sizeof nodata - 1, &pb, &err),
                   AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.reason, "no \"data\""));
  ae_error_clear(&err);
  static const char list[] = "\x80\x02].";
  ck_assert_int_eq(
      ae_pickle_batch_parse((const uint8_t *)list, sizeof list - 1, &pb, &err),
      AE_EINVAL);
  ae_error_clear(&err);
  /* Stack underflow and an unbalanced MARK. */
  static const char under[] = "\x80\x02s.";
  ck_assert_int_eq(ae_pickle_batch_parse((const uint8_t *)under,
                                         sizeof under - 1, &pb, &err),
                   AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.reason, "underflow"));
  ae_error_clear(&err);
  static const char mark[] = "\x80\x02(}.";
  ck_assert_int_eq(
      ae_pickle_batch_parse((const uint8_t *)mark, sizeof mark - 1, &pb, &err),
      AE_EINVAL);
  ae_error_clear(&err);
  /* Labels and rows that disagree. */
  fill_labels(10, 0);
  bytes b = {0};
  pickle_batch(&b, PY2, 0, 3, 3072, "labels", labels_a);
  ck_assert_int_eq(ae_pickle_batch_parse(b.b, b.n, &pb, &err), AE_OK);
  ck_assert_int_eq(pb.n, 3);
  ck_assert_int_eq(pb.row_bytes, 3072);
  ck_assert_int_eq(pb.labels[2], labels_a[2]);
  ck_assert_int_eq(pb.pixels[3072 + 5], pixel(1, 5));
  ae_pickle_batch_free(&pb);
  /* Data announcing 3 rows holds bytes for 3; relabel the shape as 4. */
  uint8_t *shape = memmem(b.b, b.n, "K\x01K\x03M\x00\x0c", 7);
  ck_assert_ptr_nonnull(shape);
  shape[3] = 4;
  ck_assert_int_eq(ae_pickle_batch_parse(b.b, b.n, &pb, &err), AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.reason, "needs 12288 bytes"));
  ae_error_clear(&err);
  free(b.b);
}
END_TEST

START_TEST(test_npy_pairs) {
  char *dir = make_dir("npy-images");
  fill_labels(10, 0);
  /* uint8 N x C x H x W with int64 labels, as x.npy and y.npy. */
  enum { N = 6, C = 2, H = 3, W = 4 };
  uint8_t x8[N * C * H * W];
  int64_t y64[N];
  for (int i = 0; i < N; i++) {
    for (int k = 0; k < C * H * W; k++)
      x8[i * C * H * W + k] = pixel(i, k);
    y64[i] = labels_a[i];
  }
  bytes x = {0}, y = {0};
  npy(&x, "|u1", "(6, 2, 3, 4)", x8, sizeof x8);
  npy(&y, "<i8", "(6,)", y64, sizeof y64);
  write_file(dir, "x.npy", x.b, x.n);
  write_file(dir, "y.npy", y.b, y.n);
  ae_dataset_registry r;
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, NULL), 0);
  const ae_dataset *d = add_ok(&r, "mine=%s", dir, "mine");
  ck_assert_str_eq(d->format, "npy");
  ck_assert_int_eq(d->rank, 3);
  ck_assert_int_eq(d->shape[0], C);
  ck_assert_int_eq(d->shape[1], H);
  ck_assert_int_eq(d->shape[2], W);
  ck_assert_int_eq(d->num_classes, 9); /* labels 3, 0, 7, 4, 1, 8 */
  check_pixels(d, N, C * H * W, C, labels_a);
  /* float32 N x D with uint8 labels, named by labels=. */
  float xf[N * 5];
  uint8_t y8[N];
  for (int i = 0; i < N; i++) {
    for (int k = 0; k < 5; k++)
      xf[i * 5 + k] = (float)pixel(i, k);
    y8[i] = (uint8_t)labels_a[i];
  }
  x.n = y.n = 0;
  npy(&x, "<f4", "(6, 5)", xf, sizeof xf);
  npy(&y, "|u1", "(6,)", y8, sizeof y8);
  write_file(dir, "feat.npy", x.b, x.n);
  write_file(dir, "lab.npy", y.b, y.n);
  char spec[9000];
  snprintf(spec, sizeof spec, "%s/feat.npy,labels=%s/lab.npy", dir, dir);
  d = add_ok(&r, "flat=%s", spec, "flat");
  ck_assert_int_eq(d->rank, 1);
  ck_assert_int_eq(d->shape[0], 5);
  check_pixels(d, N, 5, 1, labels_a);
  /* float64, N x 1 labels. */
  double xd[N * 5];
  int32_t y32[N];
  for (int i = 0; i < N * 5; i++)
    xd[i] = xf[i];
  for (int i = 0; i < N; i++)
    y32[i] = labels_a[i];
  x.n = y.n = 0;
  npy(&x, "<f8", "(6, 5)", xd, sizeof xd);
  npy(&y, "<i4", "(6, 1)", y32, sizeof y32);
  write_file(dir, "d_x.npy", x.b, x.n);
  write_file(dir, "d_y.npy", y.b, y.n);
  snprintf(spec, sizeof spec, "%s/d_x.npy", dir);
  d = add_ok(&r, "f64=%s", spec, "f64");
  check_pixels(d, N, 5, 1, labels_a);
  /* Wrong magic. */
  char path[4500];
  snprintf(path, sizeof path, "%s/d_x.npy", dir);
  write_file(dir, "d_x.npy", "\x93NUMPX\x01\x00\x10\x00", 10);
  add_fails(&r, "bad=%s", path, AE_EINVAL, "d_x.npy: wrong magic",
            "not a .npy file");
  /* Truncated data. */
  x.n = 0;
  npy(&x, "<f8", "(6, 5)", xd, sizeof xd - 3);
  write_file(dir, "d_x.npy", x.b, x.n);
  add_fails(&r, "bad=%s", path, AE_EINVAL, "d_x.npy: truncated at byte",
            "needs 240 bytes");
  /* N x H x W x C is refused with the transpose to make. */
  x.n = 0;
  uint8_t nhwc[2 * 8 * 8 * 3] = {0};
  npy(&x, "|u1", "(2, 8, 8, 3)", nhwc, sizeof nhwc);
  write_file(dir, "x.npy", x.b, x.n);
  y.n = 0;
  npy(&y, "|u1", "(2,)", y8, 2);
  write_file(dir, "y.npy", y.b, y.n);
  add_fails(&r, "bad=%s", dir, AE_EINVAL, "x.npy: wrong shape",
            "transpose(0, 3, 1, 2)");
  /* Labels that do not match the samples, and out of range. */
  x.n = 0;
  npy(&x, "|u1", "(6, 2, 3, 4)", x8, sizeof x8);
  write_file(dir, "x.npy", x.b, x.n);
  add_fails(&r, "bad=%s", dir, AE_EINVAL, "y.npy: wrong shape", "want 6");
  y.n = 0;
  int64_t far[N] = {0, 1, 2, 300, 4, 5};
  npy(&y, "<i8", "(6,)", far, sizeof far);
  write_file(dir, "y.npy", y.b, y.n);
  add_fails(&r, "bad=%s", dir, AE_EINVAL, "label 300 out of range", "sample 3");
  /* Big endian and Fortran order. */
  y.n = 0;
  npy(&y, ">i8", "(6,)", y64, sizeof y64);
  write_file(dir, "y.npy", y.b, y.n);
  add_fails(&r, "bad=%s", dir, AE_EINVAL, "dtype '>i8'", "y.npy");
  ae_dataset_registry_free(&r);
  free(x.b);
  free(y.b);
}
END_TEST

static void collect(void *ctx, int warning, const char *message) {
  int *counts = ctx;
  counts[warning ? 1 : 0]++;
  if (warning) ck_assert_ptr_nonnull(strstr(message, "skipped"));
}

START_TEST(test_datasets_dir) {
  /* Runs after the tests above made their folders in tmp_dir; make one of
   * each kind afresh in a folder of its own. */
  char root[4300];
  snprintf(root, sizeof root, "%s/all", tmp_dir);
  mkdir(root, 0700);
  char sub[8800];
  fill_labels(10, 0);
  bytes b = {0};
  cifar_bin(&b, 0, 2, 0, labels_a);
  snprintf(sub, sizeof sub, "%s/cifar10", root);
  mkdir(sub, 0700);
  write_file(sub, "data_batch_1.bin", b.b, b.n);
  b.n = 0;
  fill_labels(120, 1);
  pickle_batch(&b, PY2, 0, 3, 768, "labels", labels_a);
  snprintf(sub, sizeof sub, "%s/in16", root);
  mkdir(sub, 0700);
  write_file(sub, "val_data", b.b, b.n);
  /* A broken one, a folder with nothing in it, a top-level raw pair. */
  snprintf(sub, sizeof sub, "%s/broken", root);
  mkdir(sub, 0700);
  write_file(sub, "test_batch.bin", b.b, 100);
  snprintf(sub, sizeof sub, "%s/empty", root);
  mkdir(sub, 0700);
  uint8_t raw[2 * 784] = {0}, lab[2] = {0, 1};
  write_file(root, "digits_u8_nchw.bin", raw, sizeof raw);
  write_file(root, "digits_labels_u8.bin", lab, sizeof lab);
  write_file(root, "README", "hello", 5);
  ae_dataset_registry r;
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, NULL), 0);
  ae_error err = AE_ERROR_INIT;
  int counts[2] = {0, 0};
  ck_assert_int_eq(ae_dataset_registry_add_dir(&r, root, collect, counts, &err),
                   0);
  ck_assert_uint_eq(r.n, 3);
  ck_assert_int_eq(counts[0], 3); /* found */
  ck_assert_int_eq(counts[1], 2); /* broken, empty */
  ck_assert_str_eq(ae_dataset_find(&r, "cifar10")->format, "cifar10-bin");
  ck_assert_str_eq(ae_dataset_find(&r, "in16")->split, "test");
  ck_assert_str_eq(ae_dataset_find(&r, "digits")->format, "raw-u8");
  ck_assert_int_eq(ae_dataset_find(&r, "digits")->shape[1], 28);
  /* Twice: every name is taken now, so all are skipped. */
  counts[0] = counts[1] = 0;
  ck_assert_int_eq(ae_dataset_registry_add_dir(&r, root, collect, counts, &err),
                   0);
  ck_assert_uint_eq(r.n, 3);
  ck_assert_int_eq(counts[0], 0);
  /* A folder that does not exist is an error. */
  ck_assert_int_eq(
      ae_dataset_registry_add_dir(&r, "/nonexistent/ae", NULL, NULL, &err),
      AE_ENOTFOUND);
  ck_assert_ptr_nonnull(strstr(err.reason, "/nonexistent/ae"));
  ae_error_clear(&err);
  ae_dataset_registry_free(&r);
  free(b.b);
}
END_TEST

/* Pickles and .npy files written by the real modules (protocols 2 to 5),
 * when Debian's python3 with numpy is there. */
START_TEST(test_python_made_files) {
  if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
    fprintf(stderr, "no python3 with numpy: skipped\n");
    return;
  }
  char cmd[9000];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && mkdir -p py && cd py && /usr/bin/python3 -c '\n"
           "import pickle, numpy as np\n"
           "n = 5\n"
           "i = np.arange(n).reshape(n, 1); k = np.arange(3072)\n"
           "x = ((i * 31 + k * 7 + (k // 97) * 13) %% 256).astype(np.uint8)\n"
           "y = [(j * 7 + 3) %% 10 for j in range(n)]\n"
           "for p in range(2, 6):\n"
           "    with open(\"p%%d\" %% p, \"wb\") as f:\n"
           "        pickle.dump({\"data\": x, \"labels\": y,\n"
           "                     \"mean\": x.mean(0)}, f, protocol=p)\n"
           "    with open(\"a%%d\" %% p, \"wb\") as f:\n"
           "        pickle.dump({b\"data\": x, b\"labels\": np.array(y)}, f,\n"
           "                    protocol=p)\n"
           "    with open(\"s%%d\" %% p, \"wb\") as f:\n"
           "        pickle.dump({\"data\": x, \"labels\": list(np.array(y))},\n"
           "                    f, protocol=p)\n"
           "np.save(\"x.npy\", x.reshape(n, 3, 32, 32).astype(np.float32))\n"
           "np.save(\"y.npy\", np.array(y, dtype=np.int64))\n"
           "'",
           tmp_dir);
  ck_assert_int_eq(system(cmd), 0);
  fill_labels(10, 0);
  ae_dataset_registry r;
  ck_assert_int_eq(ae_dataset_registry_init(&r, 0, NULL), 0);
  for (int p = 2; p <= 5; p++)
    for (int a = 0; a < 3; a++) {
      /* p: str keys, list of ints; a: bytes keys, int64 array; s: a list
       * of NumPy ints. */
      char path[4400], name[16], fmt[32];
      snprintf(path, sizeof path, "%s/py/%c%d", tmp_dir, "pas"[a], p);
      snprintf(name, sizeof name, "%c%d", "pas"[a], p);
      snprintf(fmt, sizeof fmt, "%s=%%s", name);
      const ae_dataset *d = add_ok(&r, fmt, path, name);
      ck_assert_str_eq(d->format, "cifar10-pickle");
      check_pixels(d, 5, 3072, 3, labels_a);
    }
  char dir[4400];
  snprintf(dir, sizeof dir, "%s/py", tmp_dir);
  const ae_dataset *d = add_ok(&r, "npy=%s", dir, "npy");
  check_pixels(d, 5, 3072, 3, labels_a);
  ae_dataset_registry_free(&r);
}
END_TEST

static Suite *formats_suite(void) {
  Suite *s = suite_create("dataset_formats");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_cifar10_binary_folder_and_split);
  tcase_add_test(tc, test_cifar100_binary);
  tcase_add_test(tc, test_cifar_pickles);
  tcase_add_test(tc, test_imagenet16_pickles);
  tcase_add_test(tc, test_pickle_rejects);
  tcase_add_test(tc, test_npy_pairs);
  tcase_add_test(tc, test_datasets_dir);
  tcase_add_test(tc, test_python_made_files);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  if (!mkdtemp(tmp_dir)) return 1;
  SRunner *sr = srunner_create(formats_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  if (system(cmd) != 0) failed++;
  return failed != 0;
}
