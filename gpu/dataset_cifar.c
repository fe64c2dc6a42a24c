/* dataset_cifar.c: the CIFAR binary batches of
 * www.cs.toronto.edu/~kriz/cifar.html: CIFAR-10's
 * data_batch_N.bin / test_batch.bin (records of 1 label byte and 3072
 * pixel bytes: 1024 red, 1024 green, 1024 blue, rows top to bottom) and
 * CIFAR-100's train.bin / test.bin (a coarse and a fine label byte, then
 * the same 3072 bytes; the fine label, 0..99, is kept).
 *
 * Runs on the thread that builds the registry; no state of its own. */
#include "config.h"

#include <stdlib.h>

#include "gpu/dataset_internal.h"

#define CIFAR_PIXELS 3072

int dataset_load_cifar_bin(dataset_build *b, const char *file, int cifar100,
                           ae_error *err) {
  static const int shape[3] = {3, 32, 32};
  size_t head = cifar100 ? 2 : 1, record = head + CIFAR_PIXELS;
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = dataset_read_file(file, &buf, &len, err);
  if (rc) return rc;
  if (len == 0) {
    rc = ae_error_set(err, AE_EINVAL, NULL, "%s: empty", file);
    goto done;
  }
  if (len % record) {
    size_t whole = len / record * record;
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: truncated at byte %zu (records of %zu bytes: "
                      "%zu whole records, then %zu bytes)",
                      file, len, record, whole / record, len - whole);
    goto done;
  }
  long long n = (long long)(len / record);
  rc = dataset_build_shape(b, shape, 3, file, err);
  if (!rc) rc = dataset_build_reserve(b, n, file, err);
  if (rc) goto done;
  int classes = cifar100 ? 100 : 10;
  for (long long i = 0; i < n; i++) {
    const uint8_t *r = buf + (size_t)i * record;
    if (cifar100 && r[0] >= 20) {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: coarse label %d out of range 0..19 (record %lld, "
                        "byte %zu)",
                        file, r[0], i, (size_t)i * record);
      goto done;
    }
    int label = r[head - 1];
    if (label >= classes) {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: label %d out of range 0..%d (record %lld, byte "
                        "%zu)",
                        file, label, classes - 1, i,
                        (size_t)i * record + head - 1);
      goto done;
    }
    float *x = b->x + (b->n + i) * b->per;
    for (int k = 0; k < CIFAR_PIXELS; k++)
      x[k] = (float)r[head + k];
    b->y[b->n + i] = (uint8_t)label;
  }
  b->n += n;
  b->num_classes = classes;
  b->format = cifar100 ? "cifar100-bin" : "cifar10-bin";
done:
  free(buf);
  return rc;
}
