/* dataset_io.c: the pieces every dataset loader shares: whole-file reads
 * with a size bound (gunzipping *.gz without letting a small gzip bomb fill
 * memory), the sample accumulator of dataset_internal.h, and path helpers.
 *
 * Runs on the thread that builds the registry; no state of its own. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "gpu/dataset_internal.h"

char *dataset_strdup(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

int dataset_ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

char *dataset_path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *r = malloc(a + b + 2);
  if (!r) return NULL;
  memcpy(r, dir, a);
  r[a] = '/';
  memcpy(r + a + 1, name, b + 1);
  return r;
}

const char *dataset_basename(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

int dataset_is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The size an IDX header at the start of buf announces (header included),
 * or 0 when buf does not start like an IDX header or the size is absurd. */
static unsigned long long idx_announced_size(const uint8_t *buf, size_t n) {
  if (n < 4 || buf[0] != 0 || buf[1] != 0 || buf[3] < 1 || buf[3] > 4 ||
      n < 4 + 4 * (size_t)buf[3])
    return 0;
  unsigned long long count = 1;
  for (int k = 0; k < buf[3] && count <= AE_DATASET_MAX_BYTES; k++) {
    const uint8_t *b = buf + 4 + 4 * k;
    count *= ((unsigned long long)b[0] << 24) |
             ((unsigned long long)b[1] << 16) |
             ((unsigned long long)b[2] << 8) | b[3];
  }
  if (count > AE_DATASET_MAX_BYTES) return 0;
  return 4 + 4 * (unsigned long long)buf[3] + count;
}

static int read_gzip(const char *path, uint8_t **out, size_t *len,
                     ae_error *err) {
  gzFile gz = gzopen(path, "rb");
  if (!gz)
    return ae_error_set(err, AE_EINVAL, NULL, "%s: cannot open (%s)", path,
                        errno ? strerror(errno) : "gzopen failed");
  size_t cap = 1 << 20, n = 0;
  /* Stop at the size an IDX header announces (plus one byte, to see that
   * more follows), so a small gzip bomb cannot fill memory. */
  unsigned long long limit = AE_DATASET_MAX_BYTES;
  int limit_known = 0, rc = AE_OK;
  uint8_t *buf = malloc(cap);
  if (!buf) rc = ae_error_set(err, AE_ENOMEM, NULL, "%s: out of memory", path);
  while (rc == AE_OK) {
    if (n == cap) {
      if (cap >= limit) {
        rc = ae_error_set(err, AE_EINVAL, NULL,
                          "%s: too large (more than %llu bytes unpacked)", path,
                          limit);
        break;
      }
      size_t next = cap * 2 < limit ? cap * 2 : (size_t)limit;
      uint8_t *nb = realloc(buf, next);
      if (!nb) {
        rc = ae_error_set(err, AE_ENOMEM, NULL, "%s: out of memory", path);
        break;
      }
      buf = nb;
      cap = next;
    }
    size_t want = cap - n;
    if (want > (1u << 30)) want = 1u << 30;
    int got = gzread(gz, buf + n, (unsigned)want);
    if (got < 0) {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: corrupt gzip data after %zu bytes", path, n);
      break;
    }
    if (got == 0) break;
    n += (size_t)got;
    if (!limit_known) {
      unsigned long long announced = idx_announced_size(buf, n);
      if (announced) {
        limit_known = 1;
        limit = announced + 1;
      }
    }
  }
  if (rc == AE_OK) {
    int zerr = 0;
    gzerror(gz, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END)
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: corrupt gzip data after %zu bytes", path, n);
  }
  gzclose(gz);
  if (rc) {
    free(buf);
    return rc;
  }
  *out = buf;
  *len = n;
  return AE_OK;
}

int dataset_read_file(const char *path, uint8_t **out, size_t *len,
                      ae_error *err) {
  *out = NULL;
  *len = 0;
  if (dataset_ends_with(path, ".gz")) return read_gzip(path, out, len, err);
  FILE *f = fopen(path, "rb");
  if (!f)
    return ae_error_set(err, AE_EINVAL, NULL, "%s: cannot open (%s)", path,
                        strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return ae_error_set(err, AE_EINVAL, NULL, "%s: not a regular file", path);
  }
  if ((unsigned long long)st.st_size > AE_DATASET_MAX_BYTES) {
    fclose(f);
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%s: too large (%lld bytes; at most %llu)", path,
                        (long long)st.st_size, AE_DATASET_MAX_BYTES);
  }
  size_t n = (size_t)st.st_size;
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    fclose(f);
    return ae_error_set(err, AE_ENOMEM, NULL, "%s: out of memory", path);
  }
  if (n && fread(buf, 1, n, f) != n) {
    free(buf);
    fclose(f);
    return ae_error_set(err, AE_EINVAL, NULL, "%s: read failed", path);
  }
  fclose(f);
  *out = buf;
  *len = n;
  return AE_OK;
}

int dataset_build_shape(dataset_build *b, const int shape[3], int rank,
                        const char *file, ae_error *err) {
  long long per = (long long)shape[0] * shape[1] * shape[2];
  if (per < 1 || per > AE_DATASET_MAX_VALUES)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%s: wrong shape (%lld values per sample)", file, per);
  if (b->per) {
    if (b->rank != rank || memcmp(b->shape, shape, sizeof b->shape))
      return ae_error_set(err, AE_EINVAL, NULL,
                          "%s: wrong shape (%dx%dx%d; the files before it "
                          "hold %dx%dx%d)",
                          file, shape[0], shape[1], shape[2], b->shape[0],
                          b->shape[1], b->shape[2]);
    return AE_OK;
  }
  memcpy(b->shape, shape, sizeof b->shape);
  b->rank = rank;
  b->per = per;
  return AE_OK;
}

int dataset_build_reserve(dataset_build *b, long long n, const char *file,
                          ae_error *err) {
  if (n < 0 || b->per < 1 ||
      n > (AE_DATASET_MAX_VALUES - b->n * b->per) / b->per)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%s: too many samples (at most %lld values in all)",
                        file, AE_DATASET_MAX_VALUES);
  if (n == 0 || b->n + n <= b->cap) return AE_OK;
  long long cap = b->cap ? b->cap : n;
  while (cap < b->n + n)
    cap *= 2;
  if (cap > AE_DATASET_MAX_VALUES / b->per)
    cap = AE_DATASET_MAX_VALUES / b->per;
  float *x = realloc(b->x, (size_t)(cap * b->per) * sizeof *x);
  if (!x) return ae_error_set(err, AE_ENOMEM, NULL, "%s: out of memory", file);
  b->x = x;
  uint8_t *y = realloc(b->y, (size_t)cap);
  if (!y) return ae_error_set(err, AE_ENOMEM, NULL, "%s: out of memory", file);
  b->y = y;
  b->cap = cap;
  return AE_OK;
}

void dataset_build_free(dataset_build *b) {
  free(b->x);
  free(b->y);
  memset(b, 0, sizeof *b);
}
