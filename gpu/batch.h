/* batch.h: a job's batch of inputs and its input kernel K(0).
 *
 * The batch is drawn from the request and seed alone: synthetic normals,
 * samples of a registered dataset without replacement, or the request's
 * inline samples.  K(0) is the cosine similarity of the flattened inputs,
 * the start of every analytic kernel; O(N^2 d), so it is computed only
 * when a metric needs it.  An ae_batch belongs to the job
 * (the worker thread running it); the dataset is only read. */
#ifndef AE_BATCH_H
#define AE_BATCH_H

#include "api/error.h"
#include "api/request.h"
#include "gpu/dataset.h"
#include "gpu/job_control.h"

typedef struct {
  int n;             /* batch size N */
  int dim;           /* flattened input size d */
  float *x;          /* n * dim: the batch as drawn */
  float *x_net;      /* n * dim: as fed to the net (scaled when asked) */
  const int *labels; /* n class labels (borrowed or labels_owned), or NULL */
  int *labels_owned;
  int num_classes;
  double *k0; /* n * n cosine similarities, NULL until computed */
} ae_batch;

/* Draws req's batch (ds: the dataset it names, NULL for synthetic or
 * inline data) and its net-ready copy.  0, AE_ENOMEM, or AE_EINVAL with
 * err saying why.  Free with ae_batch_free even on failure. */
int ae_batch_draw(const ae_request *req, const ae_dataset *ds, ae_batch *out,
                  ae_error *err);

/* Computes b->k0 from the batch as drawn, once.  0, AE_ENOMEM, or the
 * error of ctl's checkpoint (NULL: none), passed before every row (b->k0
 * then stays NULL). */
int ae_batch_input_kernel(ae_batch *b, const ae_job_control *ctl);

void ae_batch_free(ae_batch *b);

/* ZiCo's second batch (ranking.md §4): the n samples after `first`'s,
 * which is not changed.  A dataset: the next n picks of the same
 * without-replacement order (the partial Fisher-Yates of ae_batch_draw
 * continued with the same stream, counters n .. 2n-1); synthetic data:
 * the next n * dim draws of its stream (no labels).  AE_ENOTFOUND with
 * err saying why when there are not 2n samples (a dataset of fewer, or
 * inline data, which has exactly n); 0 or AE_ENOMEM otherwise.  Free out
 * with ae_batch_free even on failure. */
int ae_batch_draw_next(const ae_request *req, const ae_dataset *ds,
                       const ae_batch *first, ae_batch *out, ae_error *err);

/* Class labels for a cross-entropy (ranking.md §4): b's own labels, or for
 * a batch without labels (synthetic data) random classes,
 * floor(u * num_classes) with u = ae_philox_uniform(seed,
 * AE_TID_RANDOM_LABELS, 2, offset + i) (offset: 0 for the job's batch, n
 * for the second).  out: b->n labels. */
void ae_batch_class_labels(const ae_request *req, const ae_batch *b, int offset,
                           int *out);

/* Scales each of n samples of dim floats to norm sqrt(dim) in place; an
 * all-zero sample stays zero. */
void ae_scale_to_sqrt_dim(float *x, int n, int dim);

#endif
