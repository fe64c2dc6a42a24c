/* dataset_raw.c: the two layouts archeval read first: raw uint8 NCHW
 * images with a uint8 labels file beside them (the CIFAR-10 sample
 * layout), and IDX files, plain or gzip'd (Fashion-MNIST).
 *
 * Runs on the thread that builds the registry; no state of its own. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "gpu/dataset.h"
#include "gpu/dataset_internal.h"

/* Largest single IDX dimension accepted. */
#define AE_IDX_MAX_DIM (1u << 28)

int ae_idx_parse(const uint8_t *buf, size_t len, int *ndims, int dims[4],
                 const uint8_t **data, ae_error *err) {
  if (!buf || len < 4)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "truncated at byte %zu (an IDX header has 4 bytes "
                        "and 4 per dimension)",
                        len);
  /* Magic: two zero bytes, the type (0x08: unsigned byte), the rank. */
  if (buf[0] != 0 || buf[1] != 0)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "wrong magic (not an IDX file: %02x %02x %02x %02x)",
                        buf[0], buf[1], buf[2], buf[3]);
  if (buf[2] != 0x08)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "IDX element type 0x%02x (only 0x08, unsigned bytes, "
                        "is read)",
                        buf[2]);
  int nd = buf[3];
  if (nd < 1 || nd > 4)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "wrong shape (%d IDX dimensions; 1 to 4 are read)", nd);
  size_t header = 4 + 4 * (size_t)nd;
  if (len < header)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "truncated at byte %zu (the IDX header has %zu)", len,
                        header);
  unsigned long long count = 1;
  for (int k = 0; k < nd; k++) {
    const uint8_t *b = buf + 4 + 4 * k;
    uint32_t d = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
                 ((uint32_t)b[2] << 8) | (uint32_t)b[3];
    if (d == 0 || d > AE_IDX_MAX_DIM)
      return ae_error_set(err, AE_EINVAL, NULL,
                          "wrong shape (IDX dimension %d is %u)", k, d);
    count *= d;
    if (count > AE_DATASET_MAX_BYTES)
      return ae_error_set(err, AE_EINVAL, NULL,
                          "wrong shape (more than %llu IDX elements)",
                          AE_DATASET_MAX_BYTES);
    dims[k] = (int)d;
  }
  if (count > len - header)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "truncated at byte %zu (the IDX header announces "
                        "%llu bytes)",
                        len, header + count);
  if (count < len - header)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%zu bytes after the %llu the IDX header announces",
                        len - header - (size_t)count, header + count);
  *ndims = nd;
  *data = buf + header;
  return AE_OK;
}

/* A shape= given with the spec: it must hold the file's per values per
 * sample; then it replaces the inferred shape and rank.  0 or AE_EINVAL. */
static int take_given_shape(const int shape_given[3], int rank_given,
                            long long per, const char *images, int shape[3],
                            int *rank, ae_error *err) {
  long long g = (long long)shape_given[0] * shape_given[1] * shape_given[2];
  if (g != per)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%s: wrong shape (shape= gives %lld values per "
                        "sample; the file holds %lld)",
                        images, g, per);
  memcpy(shape, shape_given, 3 * sizeof *shape);
  *rank = rank_given;
  return 0;
}

/* Appends n samples of per uint8 values and their uint8 labels. */
static int append_u8(dataset_build *b, const uint8_t *pix, const uint8_t *lab,
                     long long n, const char *file, ae_error *err) {
  int rc = dataset_build_reserve(b, n, file, err);
  if (rc) return rc;
  float *x = b->x + b->n * b->per;
  for (long long i = 0; i < n * b->per; i++)
    x[i] = (float)pix[i];
  memcpy(b->y + b->n, lab, (size_t)n);
  b->n += n;
  return AE_OK;
}

int dataset_load_raw(dataset_build *b, const char *images, const char *labels,
                     const int shape_given[3], int rank_given, ae_error *err) {
  uint8_t *ibuf = NULL, *lbuf = NULL;
  size_t ilen = 0, llen = 0;
  int rc = dataset_read_file(images, &ibuf, &ilen, err);
  if (!rc) rc = dataset_read_file(labels, &lbuf, &llen, err);
  if (rc) goto done;
  if (llen == 0 || ilen == 0 || ilen % llen) {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: %zu bytes are not a whole number of samples for "
                      "the %zu labels of %s",
                      images, ilen, llen, labels);
    goto done;
  }
  long long per = (long long)(ilen / llen);
  int shape[3] = {0, 0, 0}, rank = 3;
  if (rank_given) {
    rc = take_given_shape(shape_given, rank_given, per, images, shape, &rank,
                          err);
    if (rc) goto done;
  } else if (per == 3072) {
    shape[0] = 3, shape[1] = shape[2] = 32;
  } else if (per == 784) {
    shape[0] = 1, shape[1] = shape[2] = 28;
  } else {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: cannot infer the sample shape from %lld bytes per "
                      "sample; give shape=CxHxW",
                      images, per);
    goto done;
  }
  rc = dataset_build_shape(b, shape, rank, images, err);
  if (!rc) rc = append_u8(b, ibuf, lbuf, (long long)llen, images, err);
  if (!rc) b->format = "raw-u8";
done:
  free(ibuf);
  free(lbuf);
  return rc;
}

int dataset_load_idx(dataset_build *b, const char *images, const char *labels,
                     const int shape_given[3], int rank_given, ae_error *err) {
  uint8_t *ibuf = NULL, *lbuf = NULL;
  size_t ilen = 0, llen = 0;
  int rc = dataset_read_file(images, &ibuf, &ilen, err);
  if (!rc) rc = dataset_read_file(labels, &lbuf, &llen, err);
  if (rc) goto done;
  const uint8_t *pix, *lab;
  int nd, dims[4], lnd, ldims[4];
  ae_error sub = AE_ERROR_INIT;
  if (ae_idx_parse(ibuf, ilen, &nd, dims, &pix, &sub)) {
    rc = ae_error_set(err, sub.code, NULL, "%s: %s", images, sub.reason);
    ae_error_clear(&sub);
    goto done;
  }
  if (ae_idx_parse(lbuf, llen, &lnd, ldims, &lab, &sub)) {
    rc = ae_error_set(err, sub.code, NULL, "%s: %s", labels, sub.reason);
    ae_error_clear(&sub);
    goto done;
  }
  if (nd < 2) {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: wrong shape (IDX images need 2 to 4 dimensions)",
                      images);
    goto done;
  }
  if (lnd != 1) {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: wrong shape (IDX labels need 1 dimension, not %d)",
                      labels, lnd);
    goto done;
  }
  if (ldims[0] != dims[0]) {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: %d labels for the %d images of %s", labels, ldims[0],
                      dims[0], images);
    goto done;
  }
  long long per = 1;
  for (int k = 1; k < nd; k++)
    per *= dims[k];
  int shape[3], rank = 3;
  if (nd == 3) {
    shape[0] = 1, shape[1] = dims[1], shape[2] = dims[2];
  } else if (nd == 4) {
    shape[0] = dims[1], shape[1] = dims[2], shape[2] = dims[3];
  } else {
    shape[0] = dims[1], shape[1] = shape[2] = 1, rank = 1;
  }
  if (rank_given) {
    rc = take_given_shape(shape_given, rank_given, per, images, shape, &rank,
                          err);
    if (rc) goto done;
  }
  rc = dataset_build_shape(b, shape, rank, images, err);
  if (!rc) rc = append_u8(b, pix, lab, dims[0], images, err);
  if (!rc) b->format = "idx";
done:
  free(ibuf);
  free(lbuf);
  return rc;
}
