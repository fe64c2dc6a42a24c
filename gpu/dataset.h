/* dataset.h: the datasets a server or the CLI knows, loaded once.
 *
 * The registry is built at start-up on the main thread (from --dataset
 * NAME=PATH specs, --datasets-dir folders, and Fashion-MNIST when Debian's
 * package is installed), then only read, by every worker thread at once,
 * without locks.  Pixels are stored as float, normalised per channel (mean
 * and standard deviation over the whole dataset).  "synthetic" is not in
 * the registry: the engine draws it from the seed.
 *
 * Formats recognised from a path (gpu/dataset.c picks the loader):
 * CIFAR-10/100 binary batches, CIFAR-10/100 Python pickle batches,
 * NAS-Bench-201's ImageNet16-120 pickle batches, NumPy .npy pairs, raw
 * uint8 NCHW with a labels file, and IDX.  Errors are ae_error values
 * (api/error.h) whose reason names the spec and the file. */
#ifndef AE_DATASET_H
#define AE_DATASET_H

#include "api/error.h"
#include "api/request.h"
#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *name;
  char *path;
  const char *format; /* "cifar10-bin", "npy", ... (static) */
  const char *split;  /* "train", "test" or "all" (static) */
  int shape[3], rank; /* per sample: {C,H,W} rank 3, or {F} rank 1 */
  int num_classes;
  long long size; /* samples */
  float *x;       /* size * prod(shape), normalised per channel */
  uint8_t *y;     /* size labels in [0, num_classes) */
} ae_dataset;

typedef struct {
  ae_dataset *sets;
  size_t n;
  ae_dataset_info *infos; /* parallel to sets, for ae_catalog */
} ae_dataset_registry;

/* An empty registry; with autodetect, adds "fashion-mnist" when
 * /usr/share/datasets/fashion-mnist (or $ARCHEVAL_FASHION_MNIST) holds the
 * IDX files.  0 or an error (err filled). */
int ae_dataset_registry_init(ae_dataset_registry *r, int autodetect,
                             ae_error *err);

/* Adds one dataset from a spec
 *   NAME=PATH[,split=train|test|val][,labels=FILE][,shape=CxHxW]
 * PATH is a folder (its format recognised from the file names in it) or
 * one file.  A folder with a train and a test split gives train unless
 * split=test (val: the same).  0 or an error: AE_EINVAL (bad spec or file; the
 * reason names the file and what is wrong), AE_ENOTFOUND (no such path, or
 * nothing recognisable in the folder), AE_ENOMEM. */
int ae_dataset_registry_add(ae_dataset_registry *r, const char *spec,
                            ae_error *err);

/* What ae_dataset_registry_add_dir reports for each entry: found (0) or
 * skipped with a warning (1), and a one-line message. */
typedef void (*ae_dataset_log_fn)(void *ctx, int warning, const char *message);

/* Registers every recognisable dataset one level under dir: each
 * sub-folder (named after the folder) and each NAME_u8_nchw.bin or
 * NAME.npy beside its labels.  What cannot be read is skipped and reported
 * through log (may be NULL).  0 (even when nothing was found), or an error
 * when dir cannot be listed or memory runs out. */
int ae_dataset_registry_add_dir(ae_dataset_registry *r, const char *dir,
                                ae_dataset_log_fn log, void *ctx,
                                ae_error *err);

const ae_dataset *ae_dataset_find(const ae_dataset_registry *r,
                                  const char *name);

/* The catalog for ae_request_parse (borrowed; valid while r lives). */
ae_catalog ae_dataset_registry_catalog(const ae_dataset_registry *r);

void ae_dataset_registry_free(ae_dataset_registry *r);

/* Parsers of outside bytes, exposed for tests and fuzzing.  None reads
 * past len; every count is bounded before it is used. */

/* An IDX file (already gunzipped): dims and a pointer into buf. */
int ae_idx_parse(const uint8_t *buf, size_t len, int *ndims, int dims[4],
                 const uint8_t **data, ae_error *err);

/* A pickled batch: a dict with a uint8 "data" array of n rows of row_bytes
 * (or n x C x H x W), and "labels" or "fine_labels" (a list of ints or an
 * integer array). */
typedef struct {
  const uint8_t *pixels; /* n * row_bytes, into buf or into owned */
  long long n, row_bytes;
  int32_t *labels; /* n, malloc'd */
  int fine;        /* 1: the labels were "fine_labels" (CIFAR-100) */
  uint8_t *owned;  /* pixels decoded from a latin-1 string, or NULL */
} ae_pickle_batch;

int ae_pickle_batch_parse(const uint8_t *buf, size_t len, ae_pickle_batch *out,
                          ae_error *err);
void ae_pickle_batch_free(ae_pickle_batch *b);

/* A .npy file (format 1.0, 2.0 or 3.0, C order, little endian). */
typedef struct {
  char kind;      /* 'u' unsigned, 'i' signed, 'f' float, 'b' bool */
  int item_bytes; /* 1, 2, 4 or 8 */
  int ndim;       /* 1..4 */
  long long dims[4];
  long long count;     /* product of dims */
  const uint8_t *data; /* count * item_bytes, into buf */
} ae_npy;

int ae_npy_parse(const uint8_t *buf, size_t len, ae_npy *out, ae_error *err);

#endif
