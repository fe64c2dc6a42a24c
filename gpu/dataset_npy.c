/* dataset_npy.c: NumPy .npy pairs: x.npy (N x C x H x W, N x H x W or
 * N x D; uint8, float32 or float64) and y.npy (N integer labels, or
 * N x 1), as numpy.save writes them: format 1.0, 2.0 or 3.0, C order,
 * little endian.
 *
 * The header is a Python dict literal; this file reads the three keys
 * numpy writes ('descr', 'fortran_order', 'shape') with a small bounded
 * scanner, and nothing else.
 *
 * Runs on the thread that builds the registry (or a fuzzer's); no state of
 * its own. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/dataset.h"
#include "gpu/dataset_internal.h"

/* Longest header read (numpy pads to 64 bytes; real headers are short). */
#define NPY_MAX_HEADER 65536

typedef struct {
  const char *p, *end;
} npy_scan;

static void skip_space(npy_scan *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n'))
    s->p++;
}

static int accept(npy_scan *s, char c) {
  skip_space(s);
  if (s->p < s->end && *s->p == c) {
    s->p++;
    return 1;
  }
  return 0;
}

/* A quoted string ('...' or "..."), without escapes; a pointer into the
 * header and its length. */
static int quoted(npy_scan *s, const char **str, size_t *len) {
  skip_space(s);
  if (s->p >= s->end || (*s->p != '\'' && *s->p != '"')) return 0;
  char q = *s->p++;
  const char *start = s->p;
  while (s->p < s->end && *s->p != q) {
    if (*s->p == '\\') return 0;
    s->p++;
  }
  if (s->p >= s->end) return 0;
  *str = start;
  *len = (size_t)(s->p - start);
  s->p++;
  return 1;
}

static int word(npy_scan *s, const char *w) {
  skip_space(s);
  size_t n = strlen(w);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n)) return 0;
  s->p += n;
  return 1;
}

/* A tuple of non-negative ints: (), (N,), (N, M), ... */
static int shape_tuple(npy_scan *s, ae_npy *out) {
  if (!accept(s, '(')) return 0;
  out->ndim = 0;
  for (;;) {
    if (accept(s, ')')) return 1;
    skip_space(s);
    long long v = 0;
    int digits = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
      if (v > (long long)AE_DATASET_MAX_BYTES) return 0;
      v = v * 10 + (*s->p++ - '0');
      digits++;
    }
    if (!digits || out->ndim == 4) return 0;
    out->dims[out->ndim++] = v;
    if (accept(s, ')')) return 1;
    if (!accept(s, ',')) return 0;
  }
}

static int header_error(ae_error *err, const char *what) {
  return ae_error_set(err, AE_EINVAL, NULL, "malformed .npy header (%s)", what);
}

int ae_npy_parse(const uint8_t *buf, size_t len, ae_npy *out, ae_error *err) {
  memset(out, 0, sizeof *out);
  static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (len < 8 || memcmp(buf, magic, 6))
    return ae_error_set(err, AE_EINVAL, NULL,
                        len < 8 && !memcmp(buf, magic, len < 6 ? len : 6)
                            ? "truncated at byte %zu (the .npy preamble has "
                              "10 or 12 bytes)"
                            : "wrong magic (not a .npy file; %zu bytes)",
                        len);
  int major = buf[6];
  if (major < 1 || major > 3)
    return ae_error_set(err, AE_EINVAL, NULL,
                        ".npy format version %d.%d (1.0 to 3.0 are read)",
                        major, buf[7]);
  size_t lb = major == 1 ? 2 : 4, pre = 8 + lb;
  if (len < pre)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "truncated at byte %zu (the .npy preamble has %zu "
                        "bytes)",
                        len, pre);
  size_t hlen = buf[8] | (size_t)buf[9] << 8;
  if (lb == 4) hlen |= (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
  if (hlen > NPY_MAX_HEADER) return header_error(err, "longer than 64 KiB");
  if (len - pre < hlen)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "truncated at byte %zu (the .npy header ends at byte "
                        "%zu)",
                        len, pre + hlen);
  npy_scan s = {(const char *)buf + pre, (const char *)buf + pre + hlen};
  const char *descr = NULL;
  size_t descr_len = 0;
  int have_fortran = 0, have_shape = 0, fortran = 0;
  if (!accept(&s, '{')) return header_error(err, "no '{'");
  while (!accept(&s, '}')) {
    const char *key;
    size_t klen;
    if (!quoted(&s, &key, &klen) || !accept(&s, ':'))
      return header_error(err, "want 'key': value");
    if (klen == 5 && !memcmp(key, "descr", 5)) {
      if (!quoted(&s, &descr, &descr_len))
        return header_error(err, "'descr' is not a string");
    } else if (klen == 13 && !memcmp(key, "fortran_order", 13)) {
      if (word(&s, "True"))
        fortran = 1;
      else if (!word(&s, "False"))
        return header_error(err, "'fortran_order' is not True or False");
      have_fortran = 1;
    } else if (klen == 5 && !memcmp(key, "shape", 5)) {
      if (!shape_tuple(&s, out))
        return header_error(err, "'shape' is not a tuple of up to 4 ints");
      have_shape = 1;
    } else {
      return header_error(err, "unknown key");
    }
    if (!accept(&s, ',')) {
      if (!accept(&s, '}')) return header_error(err, "want ',' or '}'");
      break;
    }
  }
  if (!descr || !have_fortran || !have_shape)
    return header_error(err, "want 'descr', 'fortran_order' and 'shape'");
  if (fortran)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "Fortran-order array (save it C-ordered: "
                        "numpy.ascontiguousarray)");
  if (descr_len != 3 || (descr[0] != '<' && descr[0] != '|') ||
      !strchr("uifb", descr[1]) || !strchr("1248", descr[2]) ||
      (descr[1] == 'f' && descr[2] != '4' && descr[2] != '8') ||
      (descr[1] == 'b' && descr[2] != '1'))
    return ae_error_set(err, AE_EINVAL, NULL,
                        "dtype '%.*s' (want little-endian uint/int, bool, "
                        "float32 or float64)",
                        (int)(descr_len > 16 ? 16 : descr_len), descr);
  out->kind = descr[1];
  out->item_bytes = descr[2] - '0';
  if (out->ndim < 1)
    return ae_error_set(err, AE_EINVAL, NULL, "wrong shape (a scalar)");
  unsigned long long count = 1;
  for (int k = 0; k < out->ndim; k++) {
    count *= (unsigned long long)out->dims[k];
    if (count > AE_DATASET_MAX_BYTES)
      return ae_error_set(err, AE_EINVAL, NULL,
                          "wrong shape (more than %llu elements)",
                          AE_DATASET_MAX_BYTES);
  }
  size_t start = pre + hlen, want = (size_t)count * (size_t)out->item_bytes;
  if (len - start < want)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "truncated at byte %zu (the shape needs %zu bytes of "
                        "data from byte %zu)",
                        len, want, start);
  if (len - start > want)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%zu bytes after the data the shape announces",
                        len - start - want);
  out->count = (long long)count;
  out->data = buf + start;
  return AE_OK;
}

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int k = n - 1; k >= 0; k--)
    v = v << 8 | p[k];
  return v;
}

/* Element i of an array as a double (floats) or an int64 (integers). */
static double npy_double(const ae_npy *a, long long i) {
  const uint8_t *p = a->data + (size_t)i * (size_t)a->item_bytes;
  uint64_t u = le(p, a->item_bytes);
  if (a->kind == 'f' && a->item_bytes == 4) {
    uint32_t w = (uint32_t)u;
    float f;
    memcpy(&f, &w, sizeof f);
    return f;
  }
  if (a->kind == 'f') {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
  }
  if (a->kind == 'i' && a->item_bytes < 8 && (u >> (8 * a->item_bytes - 1)) & 1)
    return (double)(int64_t)(u | (~0ull << (8 * a->item_bytes)));
  if (a->kind == 'i') return (double)(int64_t)u;
  return (double)u;
}

/* Reads and parses one .npy file; buf is the caller's to free. */
static int read_npy(const char *file, uint8_t **buf, ae_npy *a, ae_error *err) {
  size_t len;
  int rc = dataset_read_file(file, buf, &len, err);
  if (rc) return rc;
  ae_error sub = AE_ERROR_INIT;
  rc = ae_npy_parse(*buf, len, a, &sub);
  if (rc) {
    rc = ae_error_set(err, sub.code, NULL, "%s: %s", file,
                      sub.reason ? sub.reason : "malformed");
    ae_error_clear(&sub);
  }
  return rc;
}

int dataset_load_npy(dataset_build *b, const char *x_file, const char *y_file,
                     ae_error *err) {
  uint8_t *xbuf = NULL, *ybuf = NULL;
  ae_npy x, y;
  int rc = read_npy(x_file, &xbuf, &x, err);
  if (!rc) rc = read_npy(y_file, &ybuf, &y, err);
  if (rc) goto done;
  int shape[3] = {1, 1, 1}, rank = 3;
  if (!(x.kind == 'u' && x.item_bytes == 1) && x.kind != 'f') {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: dtype %c%d (want uint8, float32 or float64)", x_file,
                      x.kind, x.item_bytes);
    goto done;
  }
  if (x.ndim == 4 && x.dims[1] > 4 && x.dims[3] <= 4) {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: wrong shape (%lldx%lldx%lldx%lld looks like N x H "
                      "x W x C; archeval wants N x C x H x W: "
                      "x.transpose(0, 3, 1, 2))",
                      x_file, x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    goto done;
  }
  if (x.ndim == 4) {
    shape[0] = (int)x.dims[1], shape[1] = (int)x.dims[2];
    shape[2] = (int)x.dims[3];
  } else if (x.ndim == 3) {
    shape[1] = (int)x.dims[1], shape[2] = (int)x.dims[2];
  } else if (x.ndim == 2) {
    shape[0] = (int)x.dims[1], rank = 1;
  } else {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: wrong shape (%d dimensions; want N x C x H x W or "
                      "N x D)",
                      x_file, x.ndim);
    goto done;
  }
  for (int k = 1; k < x.ndim; k++)
    if (x.dims[k] < 1 || x.dims[k] > (1 << 20)) {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: wrong shape (dimension %d is %lld)", x_file, k,
                        x.dims[k]);
      goto done;
    }
  long long n = x.dims[0];
  if (n < 1) {
    rc = ae_error_set(err, AE_EINVAL, NULL, "%s: no samples", x_file);
    goto done;
  }
  if ((y.kind != 'u' && y.kind != 'i') ||
      !(y.ndim == 1 || (y.ndim == 2 && y.dims[1] == 1)) || y.dims[0] != n) {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: wrong shape (want %lld integer labels, an N or "
                      "N x 1 array of ints, for the samples of %s)",
                      y_file, n, x_file);
    goto done;
  }
  rc = dataset_build_shape(b, shape, rank, x_file, err);
  if (!rc) rc = dataset_build_reserve(b, n, x_file, err);
  if (rc) goto done;
  for (long long i = 0; i < n; i++) {
    double v = npy_double(&y, i);
    if (!(v >= 0 && v <= 255)) {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: label %.0f out of range 0..255 (sample %lld)",
                        y_file, v, i);
      goto done;
    }
    b->y[b->n + i] = (uint8_t)v;
  }
  float *out = b->x + b->n * b->per;
  for (long long i = 0; i < n * b->per; i++) {
    double v = x.kind == 'u' ? x.data[i] : npy_double(&x, i);
    if (!isfinite(v) || fabs(v) > 3.0e38) {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: value %g is not a finite float32 (element "
                        "%lld)",
                        x_file, v, i);
      goto done;
    }
    out[i] = (float)v;
  }
  b->n += n;
  b->format = "npy";
done:
  free(xbuf);
  free(ybuf);
  return rc;
}
