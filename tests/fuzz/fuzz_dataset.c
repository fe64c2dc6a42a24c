/* fuzz_dataset.c: libFuzzer harness for the dataset loaders
 * (ae_dataset_registry_add), the code that reads a user's --dataset spec
 * and its files in every format: raw uint8, IDX (plain or gzip'd), CIFAR
 * binary batches, pickled CIFAR / ImageNet16 batches and .npy pairs.
 *
 * There is no pure spec parser to call, so each input is written as files
 * into a private temporary folder and registered.  Input layout:
 *   byte 0: flags: 1 = IDX (else raw uint8), 2 = gzip'd, 4 = labels given
 *           with labels=, 8 = the spec names the folder, 16 = the images
 *           file is written verbatim with a .gz name (corrupt gzip);
 *           bits 5-7: the format (0: raw or IDX as above; 1: CIFAR-10
 *           binary; 2: CIFAR-100 binary; 3: CIFAR pickle; 4: ImageNet16
 *           pickle; 5: x.npy/y.npy; 6: CIFAR-100 pickle; 7: a .npy pair
 *           of other names);
 *   byte 1: n, the length of the option text that follows;
 *   n bytes: appended to the spec after a comma ("shape=1x2x2", ...);
 *   2 bytes: m, big-endian, the length of the images file;
 *   m bytes: the images file; the rest: the labels file (for the pickle
 *   formats, the test-split file).
 * The pickle and .npy bytes also go straight to their parsers.  Accepted
 * datasets are checked against dataset.h (positive size and shape, labels
 * below num_classes, finite pixels); refusals must carry a reason.
 * Single-threaded; the folder lives for the process and is emptied per
 * input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "api/error.h"
#include "api/status.h"
#include "gpu/dataset.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[64];

static const char *const file_names[] = {"d-images-idx3-ubyte",
                                         "d-labels-idx1-ubyte",
                                         "d-images-idx3-ubyte.gz",
                                         "d-labels-idx1-ubyte.gz",
                                         "d_u8_nchw.bin",
                                         "d_labels_u8.bin",
                                         "data_batch_1.bin",
                                         "test_batch.bin",
                                         "train.bin",
                                         "test.bin",
                                         "data_batch_1",
                                         "test_batch",
                                         "train_data_batch_1",
                                         "val_data",
                                         "x.npy",
                                         "y.npy",
                                         "train",
                                         "test",
                                         "feat.npy",
                                         "lab.npy"};

/* The images and labels file names of formats 1 to 7. */
static const char *const format_files[8][2] = {
    {NULL, NULL},
    {"data_batch_1.bin", "test_batch.bin"},
    {"train.bin", "test.bin"},
    {"data_batch_1", "test_batch"},
    {"train_data_batch_1", "val_data"},
    {"x.npy", "y.npy"},
    {"train", "test"},
    {"feat.npy", "lab.npy"}};
#define N_FILE_NAMES (sizeof file_names / sizeof file_names[0])

static void remove_fuzz_dir(void) {
  char path[128];
  for (size_t i = 0; i < N_FILE_NAMES; i++) {
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, file_names[i]);
    unlink(path);
  }
  rmdir(fuzz_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *tmp = getenv("TMPDIR");
  snprintf(fuzz_dir, sizeof fuzz_dir, "%s/aefuzzXXXXXX",
           tmp && strlen(tmp) < 40 ? tmp : "/tmp");
  if (!mkdtemp(fuzz_dir)) abort();
  atexit(remove_fuzz_dir);
  return 0;
}

/* Writes bytes to path, gzip-compressed when gz. */
static void write_file(const char *path, const uint8_t *b, size_t n, int gz) {
  if (gz) {
    gzFile f = gzopen(path, "wb1");
    if (!f) abort();
    if (n && gzwrite(f, b, (unsigned)n) != (int)n) abort();
    if (gzclose(f) != Z_OK) abort();
    return;
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (n && fwrite(b, 1, n, f) != n) abort();
  if (fclose(f)) abort();
}

static void check_dataset(const ae_dataset *d) {
  if (d->size < 1 || d->num_classes < 2 || !d->format || !d->split) abort();
  if (d->rank != 1 && d->rank != 3) abort();
  long long per = 1;
  for (int k = 0; k < 3; k++) {
    if (d->shape[k] < 1) abort();
    per *= d->shape[k];
  }
  for (long long i = 0; i < d->size; i++)
    if (d->y[i] >= d->num_classes) abort();
  for (long long i = 0; i < d->size * per; i++)
    if (!isfinite(d->x[i])) abort();
}

/* The pickle and .npy parsers on the bytes themselves, from a copy of
 * exactly their size: what they promise on success, a reason on failure. */
static void parse_directly(int format, const uint8_t *bytes, size_t n) {
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return;
  if (n) memcpy(buf, bytes, n);
  ae_error err = AE_ERROR_INIT;
  if (format == 3 || format == 4 || format == 6) {
    ae_pickle_batch pb;
    if (ae_pickle_batch_parse(buf, n, &pb, &err) == AE_OK) {
      if (pb.n < 0 || pb.row_bytes < 0 || (pb.n && !pb.labels)) abort();
      unsigned sum = 0;
      for (long long i = 0; i < pb.n * pb.row_bytes; i++)
        sum += pb.pixels[i];
      for (long long i = 0; i < pb.n; i++)
        sum += (unsigned)pb.labels[i];
      if (sum == 0xdeadbeefu) abort();
      ae_pickle_batch_free(&pb);
    } else if (!err.reason) {
      abort();
    }
  } else if (format == 5 || format == 7) {
    ae_npy a;
    if (ae_npy_parse(buf, n, &a, &err) == AE_OK) {
      if (a.ndim < 1 || a.ndim > 4 || a.data < buf ||
          a.data + a.count * a.item_bytes != buf + n)
        abort();
    } else if (!err.reason) {
      abort();
    }
  }
  ae_error_clear(&err);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4 || size > 1 << 16) return 0;
  int flags = data[0];
  size_t opt_len = data[1], pos = 2;
  if (pos + opt_len + 2 > size) return 0;
  char opts[256];
  memcpy(opts, data + pos, opt_len);
  opts[opt_len] = '\0';
  if (strlen(opts) != opt_len) return 0; /* a spec is a C string */
  pos += opt_len;
  size_t img_len = ((size_t)data[pos] << 8) | data[pos + 1];
  pos += 2;
  if (pos + img_len > size) return 0;
  const uint8_t *img = data + pos, *lab = data + pos + img_len;
  size_t lab_len = size - pos - img_len;

  int idx = flags & 1, gz = (flags & 2) != 0, raw_gz = (flags & 16) != 0;
  int format = flags >> 5;
  for (size_t i = 0; i < N_FILE_NAMES; i++) {
    char old[128];
    snprintf(old, sizeof old, "%s/%s", fuzz_dir, file_names[i]);
    unlink(old);
  }
  char img_path[128], lab_path[128];
  if (format) {
    snprintf(img_path, sizeof img_path, "%s/%s", fuzz_dir,
             format_files[format][0]);
    snprintf(lab_path, sizeof lab_path, "%s/%s", fuzz_dir,
             format_files[format][1]);
    write_file(img_path, img, img_len, 0);
    write_file(lab_path, lab, lab_len, 0);
    parse_directly(format, img, img_len);
  } else {
    const char *suffix = idx && (gz || raw_gz) ? ".gz" : "";
    snprintf(img_path, sizeof img_path, "%s/%s%s", fuzz_dir,
             idx ? "d-images-idx3-ubyte" : "d_u8_nchw.bin", suffix);
    snprintf(lab_path, sizeof lab_path, "%s/%s%s", fuzz_dir,
             idx ? "d-labels-idx1-ubyte" : "d_labels_u8.bin", suffix);
    write_file(img_path, img, img_len, idx && gz && !raw_gz);
    write_file(lab_path, lab, lab_len, idx && gz);
  }

  char spec[512];
  int n = snprintf(spec, sizeof spec, "fz=%s", flags & 8 ? fuzz_dir : img_path);
  if (flags & 4)
    n += snprintf(spec + n, sizeof spec - (size_t)n, ",labels=%s", lab_path);
  if (opt_len) snprintf(spec + n, sizeof spec - (size_t)n, ",%s", opts);

  ae_dataset_registry r;
  ae_error p = AE_ERROR_INIT;
  if (ae_dataset_registry_init(&r, 0, &p) != AE_OK) abort();
  if (ae_dataset_registry_add(&r, spec, &p) == AE_OK) {
    if (r.n != 1) abort();
    check_dataset(&r.sets[0]);
    ae_catalog cat = ae_dataset_registry_catalog(&r);
    if (cat.n != 1 || strcmp(cat.sets[0].name, "fz")) abort();
    if (!ae_dataset_find(&r, "fz")) abort();
  } else {
    if (r.n != 0 || p.code == AE_OK || !p.reason) abort();
  }
  ae_error_clear(&p);
  ae_dataset_registry_free(&r);
  return 0;
}
