/* dataset.h: the datasets a server or the CLI knows, loaded once.
 *
 * The registry is built at start-up on the main thread (from --dataset
 * NAME=PATH specs and from Fashion-MNIST when Debian's package is
 * installed), then only read, by every worker thread at once, without
 * locks.  Pixels are stored as float, normalised per channel (mean and
 * standard deviation over the whole dataset).  "synthetic" is not in the
 * registry: the engine draws it from the seed. */
#ifndef AE_DATASET_H
#define AE_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include "api/problem.h"
#include "api/request.h"

typedef struct {
  char *name;
  char *path;
  int shape[3], rank;    /* per sample: {C,H,W} rank 3, or {F} rank 1 */
  int num_classes;
  long long size;        /* samples */
  float *x;              /* size * prod(shape), normalised per channel */
  uint8_t *y;            /* size labels in [0, num_classes) */
} ae_dataset;

typedef struct {
  ae_dataset *sets;
  size_t n;
  ae_dataset_info *infos; /* parallel to sets, for ae_catalog */
} ae_dataset_registry;

/* An empty registry; with autodetect, adds "fashion-mnist" when
 * /usr/share/datasets/fashion-mnist (or $ARCHEVAL_FASHION_MNIST) holds the
 * IDX files.  0 or an error (p filled). */
int ae_dataset_registry_init(ae_dataset_registry *r, int autodetect,
                             ae_problem *p);

/* Adds one dataset from a spec NAME=PATH[,shape=CxHxW][,labels=FILE]:
 * PATH is a folder or file of raw uint8 NCHW images with a labels file
 * beside it (the CIFAR-10 sample layout), or gzip'd IDX files.  0 or an
 * error (p names the spec). */
int ae_dataset_registry_add(ae_dataset_registry *r, const char *spec,
                            ae_problem *p);

const ae_dataset *ae_dataset_find(const ae_dataset_registry *r,
                                  const char *name);

/* The catalog for ae_request_parse (borrowed; valid while r lives). */
ae_catalog ae_dataset_registry_catalog(const ae_dataset_registry *r);

void ae_dataset_registry_free(ae_dataset_registry *r);

/* Parsers of outside bytes, exposed for tests and fuzzing. */
/* An IDX file (already gunzipped): dims and a pointer into buf. */
int ae_idx_parse(const uint8_t *buf, size_t len, int *ndims, int dims[4],
                 const uint8_t **data);

#endif
