/* batch.c: draws a job's batch and computes K(0) (see batch.h).
 *
 * Everything here is owned by the job's worker thread; the dataset
 * registry is only read. */
#include "gpu/batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"
#include "gpu/host/net.h"
#include "gpu/philox.h"

void ae_scale_to_sqrt_dim(float *x, int n, int dim) {
  for (int i = 0; i < n; i++) {
    float *v = x + (size_t)i * dim;
    double s = 0.0;
    for (int k = 0; k < dim; k++)
      s += (double)v[k] * v[k];
    if (s <= 0.0) continue;
    double f = sqrt((double)dim / s);
    for (int k = 0; k < dim; k++)
      v[k] = (float)(v[k] * f);
  }
}

/* n samples of set without replacement (a partial Fisher-Yates over the
 * sample indices, driven by the seed) into b->x and b->labels_owned:
 * picks skip .. skip+n-1 of that order (skip n: zico's second batch). */
static int draw_from_dataset(const ae_request *r, const ae_dataset *set,
                             int skip, ae_batch *b, ae_error *err) {
  int n = b->n, dim = b->dim;
  long long per = (long long)set->shape[0] * set->shape[1] * set->shape[2];
  if (set->rank == 1) per = set->shape[0];
  if (per != dim || set->size < n + skip)
    return ae_error_set(err, skip ? AE_ENOTFOUND : AE_EINVAL, "/data",
                        "dataset '%s' has %lld samples of %lld values; the "
                        "request needs %d of %d",
                        set->name, set->size, per, n + skip, dim);
  int *order = malloc((size_t)set->size * sizeof *order);
  b->labels_owned = malloc((size_t)n * sizeof *b->labels_owned);
  if (!order || !b->labels_owned) {
    free(order);
    return AE_ENOMEM;
  }
  for (long long i = 0; i < set->size; i++)
    order[i] = (int)i;
  for (int k = 0; k < n + skip; k++) {
    double u = ae_philox_uniform(r->seed, AE_TID_SAMPLE_CHOICE, 0, (uint64_t)k);
    long long pick = k + (long long)(u * (double)(set->size - k));
    if (pick >= set->size) pick = set->size - 1;
    int t = order[k];
    order[k] = order[pick];
    order[pick] = t;
    if (k < skip) continue;
    memcpy(b->x + (size_t)(k - skip) * dim, set->x + (size_t)order[k] * dim,
           (size_t)dim * sizeof *b->x);
    b->labels_owned[k - skip] = set->y[order[k]];
  }
  free(order);
  b->labels = b->labels_owned;
  if (set->num_classes > b->num_classes) b->num_classes = set->num_classes;
  return AE_OK;
}

int ae_batch_input_kernel(ae_batch *b, const ae_job_control *ctl) {
  if (b->k0) return AE_OK;
  int n = b->n, dim = b->dim;
  b->k0 = malloc((size_t)n * n * sizeof *b->k0);
  double *norm = malloc((size_t)n * sizeof *norm);
  if (!b->k0 || !norm) {
    free(b->k0);
    free(norm);
    b->k0 = NULL;
    return AE_ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    const float *a = b->x + (size_t)i * dim;
    double s = 0.0;
    for (int k = 0; k < dim; k++)
      s += (double)a[k] * a[k];
    norm[i] = sqrt(s);
  }
  for (int i = 0; i < n; i++) {
    int rc = ae_job_checkpoint(ctl);
    if (rc) {
      /* Stopped: no half-filled K(0) stays behind. */
      free(b->k0);
      free(norm);
      b->k0 = NULL;
      return rc;
    }
    const float *a = b->x + (size_t)i * dim;
    b->k0[(size_t)i * n + i] = 1.0;
    for (int l = i + 1; l < n; l++) {
      const float *c = b->x + (size_t)l * dim;
      double s = 0.0;
      for (int k = 0; k < dim; k++)
        s += (double)a[k] * c[k];
      double cs = norm[i] > 0 && norm[l] > 0 ? s / (norm[i] * norm[l]) : 0.0;
      if (cs > 1.0) cs = 1.0;
      if (cs < -1.0) cs = -1.0;
      b->k0[(size_t)i * n + l] = b->k0[(size_t)l * n + i] = cs;
    }
  }
  free(norm);
  return AE_OK;
}

int ae_batch_draw(const ae_request *r, const ae_dataset *ds, ae_batch *b,
                  ae_error *err) {
  const ae_data_spec *spec = &r->data;
  memset(b, 0, sizeof *b);
  int n = spec->batch_size, dim = 1;
  for (int k = 0; k < spec->input_rank; k++)
    dim *= spec->input_shape[k];
  b->n = n;
  b->dim = dim;
  b->num_classes =
      spec->num_classes > 0 ? spec->num_classes : r->net.num_classes;
  size_t total = (size_t)n * dim;
  b->x = malloc(total * sizeof *b->x);
  b->x_net = malloc(total * sizeof *b->x_net);
  if (!b->x || !b->x_net) return AE_ENOMEM;
  if (spec->inputs) {
    memcpy(b->x, spec->inputs, total * sizeof *b->x);
    b->labels = spec->labels;
  } else if (!ds) {
    ae_net_philox_normals_fill_f32(r->seed, AE_TID_SYNTHETIC_INPUTS, 0, 0,
                                   total, b->x);
  } else {
    int rc = draw_from_dataset(r, ds, 0, b, err);
    if (rc) return rc;
  }
  memcpy(b->x_net, b->x, total * sizeof *b->x);
  if (r->net.scale_input_norm) ae_scale_to_sqrt_dim(b->x_net, n, dim);
  return AE_OK;
}

void ae_batch_free(ae_batch *b) {
  free(b->x);
  free(b->x_net);
  free(b->labels_owned);
  free(b->k0);
  memset(b, 0, sizeof *b);
}

int ae_batch_draw_next(const ae_request *r, const ae_dataset *ds,
                       const ae_batch *first, ae_batch *b, ae_error *err) {
  memset(b, 0, sizeof *b);
  int n = first->n, dim = first->dim;
  if (r->data.inputs)
    return ae_error_set(err, AE_ENOTFOUND, "/data",
                        "inline data has %d samples; a second batch needs "
                        "%d",
                        n, 2 * n);
  b->n = n;
  b->dim = dim;
  b->num_classes = first->num_classes;
  size_t total = (size_t)n * dim;
  b->x = malloc(total * sizeof *b->x);
  b->x_net = malloc(total * sizeof *b->x_net);
  if (!b->x || !b->x_net) return AE_ENOMEM;
  if (!ds) {
    ae_net_philox_normals_fill_f32(r->seed, AE_TID_SYNTHETIC_INPUTS, 0, total,
                                   total, b->x);
  } else {
    int rc = draw_from_dataset(r, ds, n, b, err);
    if (rc) return rc;
  }
  memcpy(b->x_net, b->x, total * sizeof *b->x);
  if (r->net.scale_input_norm) ae_scale_to_sqrt_dim(b->x_net, n, dim);
  return AE_OK;
}

void ae_batch_class_labels(const ae_request *r, const ae_batch *b, int offset,
                           int *out) {
  int classes = b->num_classes > 0 ? b->num_classes : 1;
  for (int i = 0; i < b->n; i++) {
    if (b->labels) {
      out[i] = b->labels[i];
      continue;
    }
    double u = ae_philox_uniform(r->seed, AE_TID_RANDOM_LABELS, 2,
                                 (uint64_t)offset + (uint64_t)i);
    int c = (int)(u * (double)classes);
    out[i] = c < classes ? c : classes - 1;
  }
}
