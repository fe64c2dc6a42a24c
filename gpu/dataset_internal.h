/* dataset_internal.h: what the registry (gpu/dataset.c) shares with the
 * loaders of each file format (gpu/dataset_raw.c, dataset_cifar.c,
 * dataset_pickle.c, dataset_npy.c) and with gpu/dataset_io.c: the
 * accumulator a loader appends samples to, whole-file reads with bounds,
 * and small path helpers.
 *
 * Everything here runs on the thread that builds the registry (the main
 * thread at start-up); nothing is shared. */
#ifndef AE_DATASET_INTERNAL_H
#define AE_DATASET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "api/error.h"

/* Largest file (after gunzip) a loader reads: 4 GiB. */
#define AE_DATASET_MAX_BYTES (4ull << 30)
/* Most values (samples x values per sample) one data set may hold: 1 Gi
 * floats, 4 GiB in memory. */
#define AE_DATASET_MAX_VALUES (1ll << 30)
/* Most files of one split (CIFAR and ImageNet16 batches). */
#define AE_DATASET_MAX_BATCHES 64

/* Samples as they are read, before normalisation.  A loader fixes the shape
 * with dataset_build_shape, then appends with dataset_build_reserve and
 * writes x (raw values, 0..255 for uint8 files) and y. */
typedef struct {
  float *x;
  uint8_t *y;
  long long n, cap; /* samples held, samples allocated */
  long long per;    /* values per sample; 0 until the shape is set */
  int shape[3], rank;
  int num_classes;    /* fixed by the format, or 0: 1 + the largest label */
  const char *format; /* static string shown by GET /v1/datasets */
} dataset_build;

/* Sets the per-sample shape (rank 3: {C,H,W}; rank 1: {F,1,1}); a second
 * call must agree (file names the file for the error). */
int dataset_build_shape(dataset_build *b, const int shape[3], int rank,
                        const char *file, ae_error *err);

/* Makes room for n more samples; the caller writes b->x + b->n * b->per
 * and b->y + b->n, then adds n to b->n.  AE_EINVAL past
 * AE_DATASET_MAX_VALUES, AE_ENOMEM. */
int dataset_build_reserve(dataset_build *b, long long n, const char *file,
                          ae_error *err);

void dataset_build_free(dataset_build *b);

/* Reads a whole regular file (gunzipping *.gz) into a malloc'd buffer, at
 * most AE_DATASET_MAX_BYTES.  Errors name the file. */
int dataset_read_file(const char *path, uint8_t **out, size_t *len,
                      ae_error *err);

/* Path helpers; each returns a malloc'd string or NULL (no memory). */
char *dataset_path_join(const char *dir, const char *name);
char *dataset_strdup(const char *s);
int dataset_ends_with(const char *s, const char *suffix);
/* The last component of a path (a pointer into it). */
const char *dataset_basename(const char *path);
/* 1 when path names a regular file (following links). */
int dataset_is_file(const char *path);

/* The loaders.  Each appends the samples of one file to b, checking every
 * size and label, and reports errors naming the file. */

/* Raw uint8 images (no header) and their uint8 labels file; shape is the
 * given shape (rank > 0) or inferred from the sample size (3072, 784). */
int dataset_load_raw(dataset_build *b, const char *images, const char *labels,
                     const int shape[3], int rank, ae_error *err);
/* A gzip'd (or plain) IDX image file and its IDX labels file. */
int dataset_load_idx(dataset_build *b, const char *images, const char *labels,
                     const int shape[3], int rank, ae_error *err);
/* One CIFAR binary batch: CIFAR-10 (records of label + 3072 pixels) or,
 * with cifar100, CIFAR-100 (coarse label, fine label, 3072 pixels; the fine
 * label is kept). */
int dataset_load_cifar_bin(dataset_build *b, const char *file, int cifar100,
                           ae_error *err);
/* One pickled batch: CIFAR-10 or CIFAR-100 (Python layout) or
 * NAS-Bench-201's ImageNet16-120, told apart by its keys and row size. */
int dataset_load_pickle(dataset_build *b, const char *file, ae_error *err);
/* A NumPy pair: x (N x C x H x W or N x D; uint8, float32 or float64) and
 * y (N integer labels). */
int dataset_load_npy(dataset_build *b, const char *x_file, const char *y_file,
                     ae_error *err);

#endif
