/* dataset.c: the dataset registry: loads raw uint8 NCHW files (the CIFAR-10
 * sample layout) and gzip'd IDX files (Fashion-MNIST), normalises them per
 * channel and lists them for request validation.
 *
 * The registry is built once on the main thread at start-up and only read
 * afterwards, by every worker at once, without locks.  Every size read
 * from a file is bounded before anything is allocated from it. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "api/status.h"
#include "gpu/dataset.h"

/* Largest file (after gunzip) the registry reads: 4 GiB of pixels. */
#define AE_DATASET_MAX_BYTES (4ull << 30)
/* Largest single IDX dimension accepted. */
#define AE_IDX_MAX_DIM (1u << 28)

static void dataset_problem(ae_problem *p, const char *spec, const char *why) {
  ae_problem_set(p, 400, "invalid_dataset", "Invalid dataset",
                 "dataset '%s': %s", spec, why);
}

static char *dup_string(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

static char *path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *r = malloc(a + b + 2);
  if (!r) return NULL;
  memcpy(r, dir, a);
  r[a] = '/';
  memcpy(r + a + 1, name, b + 1);
  return r;
}

/* Replaces the suffix `from` of s by `to`; NULL when s lacks it. */
static char *replace_suffix(const char *s, const char *from, const char *to) {
  if (!ends_with(s, from)) return NULL;
  size_t keep = strlen(s) - strlen(from), m = strlen(to);
  char *r = malloc(keep + m + 1);
  if (!r) return NULL;
  memcpy(r, s, keep);
  memcpy(r + keep, to, m + 1);
  return r;
}

/* Reads a whole file (gunzipping *.gz) into a malloc'd buffer. */
static int read_file_bytes(const char *path, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  if (ends_with(path, ".gz")) {
    gzFile gz = gzopen(path, "rb");
    if (!gz) return AE_EIO;
    size_t cap = 1 << 20, n = 0;
    /* Stop at the size an IDX header announces (plus one byte, to see that
     * more follows), so a small gzip bomb cannot fill memory. */
    unsigned long long limit = AE_DATASET_MAX_BYTES;
    int limit_known = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
      gzclose(gz);
      return AE_ENOMEM;
    }
    for (;;) {
      if (n == cap) {
        if (cap >= limit) {
          free(buf);
          gzclose(gz);
          return AE_EINVAL;
        }
        size_t next = cap * 2 < limit ? cap * 2 : (size_t)limit;
        uint8_t *nb = realloc(buf, next);
        if (!nb) {
          free(buf);
          gzclose(gz);
          return AE_ENOMEM;
        }
        buf = nb;
        cap = next;
      }
      size_t want = cap - n;
      if (want > (1u << 30)) want = 1u << 30;
      int got = gzread(gz, buf + n, (unsigned)want);
      if (got < 0) {
        free(buf);
        gzclose(gz);
        return AE_EIO;
      }
      if (got == 0) break;
      n += (size_t)got;
      if (!limit_known && n >= 4 && buf[0] == 0 && buf[1] == 0 && buf[3] >= 1 &&
          buf[3] <= 4 && n >= 4 + 4 * (size_t)buf[3]) {
        unsigned long long count = 1;
        for (int k = 0; k < buf[3] && count <= AE_DATASET_MAX_BYTES; k++) {
          const uint8_t *b = buf + 4 + 4 * k;
          count *= ((unsigned long long)b[0] << 24) |
                   ((unsigned long long)b[1] << 16) |
                   ((unsigned long long)b[2] << 8) | b[3];
        }
        limit_known = 1;
        if (count <= AE_DATASET_MAX_BYTES)
          limit = 4 + 4 * (unsigned long long)buf[3] + count + 1;
      }
    }
    int zerr = 0;
    gzerror(gz, &zerr);
    gzclose(gz);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
      free(buf);
      return AE_EIO;
    }
    *out = buf;
    *len = n;
    return AE_OK;
  }
  FILE *f = fopen(path, "rb");
  if (!f) return AE_EIO;
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return AE_EIO;
  }
  if ((unsigned long long)st.st_size > AE_DATASET_MAX_BYTES) {
    fclose(f);
    return AE_EINVAL;
  }
  size_t n = (size_t)st.st_size;
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    fclose(f);
    return AE_ENOMEM;
  }
  if (n && fread(buf, 1, n, f) != n) {
    free(buf);
    fclose(f);
    return AE_EIO;
  }
  fclose(f);
  *out = buf;
  *len = n;
  return AE_OK;
}

int ae_idx_parse(const uint8_t *buf, size_t len, int *ndims, int dims[4],
                 const uint8_t **data) {
  if (!buf || len < 4) return AE_EINVAL;
  /* Magic: two zero bytes, the type (0x08: unsigned byte), the rank. */
  if (buf[0] != 0 || buf[1] != 0 || buf[2] != 0x08) return AE_EINVAL;
  int nd = buf[3];
  if (nd < 1 || nd > 4) return AE_EINVAL;
  size_t header = 4 + 4 * (size_t)nd;
  if (len < header) return AE_EINVAL;
  unsigned long long count = 1;
  for (int k = 0; k < nd; k++) {
    const uint8_t *b = buf + 4 + 4 * k;
    uint32_t d = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
                 ((uint32_t)b[2] << 8) | (uint32_t)b[3];
    if (d == 0 || d > AE_IDX_MAX_DIM) return AE_EINVAL;
    count *= d;
    if (count > AE_DATASET_MAX_BYTES) return AE_EINVAL;
    dims[k] = (int)d;
  }
  if (count != len - header) return AE_EINVAL;
  *ndims = nd;
  *data = buf + header;
  return AE_OK;
}

/* Parses "CxHxW" or "F" into shape/rank. */
static int parse_shape(const char *s, int shape[3], int *rank) {
  int v[3] = {0, 0, 0}, n = 0;
  const char *c = s;
  while (n < 3) {
    char *end;
    errno = 0;
    long x = strtol(c, &end, 10);
    if (end == c || errno || x < 1 || x > 1 << 20) return AE_EINVAL;
    v[n++] = (int)x;
    if (*end == '\0') break;
    if (*end != 'x' || n == 3) return AE_EINVAL;
    c = end + 1;
  }
  if (n == 2) return AE_EINVAL;
  shape[0] = v[0];
  shape[1] = n == 3 ? v[1] : 1;
  shape[2] = n == 3 ? v[2] : 1;
  *rank = n == 3 ? 3 : 1;
  return AE_OK;
}

/* What one spec resolves to: the image and label files and the shape. */
typedef struct {
  char *images, *labels;
  int idx; /* 1: IDX files, 0: raw uint8 */
} dataset_files;

static void dataset_files_free(dataset_files *f) {
  free(f->images);
  free(f->labels);
}

/* Picks the files of a folder: the *train*_u8_nchw.bin pair, else the only
 * *_u8_nchw.bin, else the train IDX pair, else the only IDX images. */
static int resolve_folder(const char *dir, dataset_files *f) {
  DIR *d = opendir(dir);
  if (!d) return AE_EIO;
  char *raw_train = NULL, *raw_any = NULL, *idx_train = NULL, *idx_any = NULL;
  int n_raw = 0, n_idx = 0, rc = AE_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && rc == AE_OK) {
    const char *nm = e->d_name;
    char **slot = NULL;
    int train = strstr(nm, "train") != NULL;
    if (ends_with(nm, "_u8_nchw.bin")) {
      n_raw++;
      slot = train ? &raw_train : &raw_any;
    } else if (ends_with(nm, "-images-idx3-ubyte.gz") ||
               ends_with(nm, "-images-idx3-ubyte")) {
      n_idx++;
      slot = train ? &idx_train : &idx_any;
    }
    /* The smallest name wins, so the choice does not depend on readdir. */
    if (slot && (!*slot || strcmp(nm, strrchr(*slot, '/') + 1) < 0)) {
      char *full = path_join(dir, nm);
      if (!full) {
        rc = AE_ENOMEM;
      } else {
        free(*slot);
        *slot = full;
      }
    }
  }
  closedir(d);
  if (rc == AE_OK) {
    if (raw_train) {
      f->images = raw_train, raw_train = NULL;
    } else if (n_raw == 1 && raw_any) {
      f->images = raw_any, raw_any = NULL;
    } else if (idx_train) {
      f->images = idx_train, idx_train = NULL, f->idx = 1;
    } else if (n_idx == 1 && idx_any) {
      f->images = idx_any, idx_any = NULL, f->idx = 1;
    } else {
      rc = AE_ENOTFOUND;
    }
  }
  free(raw_train);
  free(raw_any);
  free(idx_train);
  free(idx_any);
  return rc;
}

/* The labels file beside an images file. */
static int labels_beside(dataset_files *f) {
  const char *im = f->images;
  if (f->idx) {
    f->labels =
        ends_with(im, ".gz")
            ? replace_suffix(im, "-images-idx3-ubyte.gz",
                             "-labels-idx1-ubyte.gz")
            : replace_suffix(im, "-images-idx3-ubyte", "-labels-idx1-ubyte");
  } else {
    f->labels = replace_suffix(im, "_u8_nchw.bin", "_labels_u8.bin");
  }
  return f->labels ? AE_OK : AE_ENOTFOUND;
}

/* Normalises pixels (size samples of C x plane) per channel in place. */
static void normalise_per_channel(float *x, long long size, int channels,
                                  long long plane) {
  for (int c = 0; c < channels; c++) {
    double sum = 0.0, sum2 = 0.0;
    for (long long i = 0; i < size; i++) {
      const float *v = x + (i * channels + c) * plane;
      for (long long k = 0; k < plane; k++) {
        sum += v[k];
        sum2 += (double)v[k] * v[k];
      }
    }
    double n = (double)size * (double)plane;
    double mean = sum / n, var = sum2 / n - mean * mean;
    double sd = var > 0.0 ? sqrt(var) : 1.0;
    if (sd < 1e-12) sd = 1.0;
    for (long long i = 0; i < size; i++) {
      float *v = x + (i * channels + c) * plane;
      for (long long k = 0; k < plane; k++)
        v[k] = (float)(((double)v[k] - mean) / sd);
    }
  }
}

/* Loads files into ds (name/path already set).  shape_given: rank > 0. */
static int load_dataset(ae_dataset *ds, const dataset_files *f,
                        const int shape_given[3], int rank_given,
                        const char *spec, ae_problem *p) {
  uint8_t *ibuf = NULL, *lbuf = NULL;
  size_t ilen = 0, llen = 0;
  int rc = read_file_bytes(f->images, &ibuf, &ilen);
  if (rc) {
    dataset_problem(p, spec,
                    rc == AE_EINVAL ? "image file too large"
                                    : "cannot read the image file");
    goto done;
  }
  rc = read_file_bytes(f->labels, &lbuf, &llen);
  if (rc) {
    dataset_problem(p, spec, "cannot read the labels file");
    goto done;
  }
  const uint8_t *pix = ibuf, *lab = lbuf;
  long long n_images = 0, per = 0, n_labels = (long long)llen;
  int shape[3] = {0, 0, 0}, rank = 0;
  if (f->idx) {
    int nd, dims[4];
    if (ae_idx_parse(ibuf, ilen, &nd, dims, &pix) || nd < 2) {
      rc = AE_EINVAL;
      dataset_problem(p, spec, "malformed IDX image file");
      goto done;
    }
    n_images = dims[0];
    per = 1;
    for (int k = 1; k < nd; k++)
      per *= dims[k];
    if (nd == 3) {
      shape[0] = 1, shape[1] = dims[1], shape[2] = dims[2], rank = 3;
    } else if (nd == 4) {
      shape[0] = dims[1], shape[1] = dims[2], shape[2] = dims[3], rank = 3;
    } else {
      shape[0] = dims[1], shape[1] = shape[2] = 1, rank = 1;
    }
    int lnd, ldims[4];
    if (ae_idx_parse(lbuf, llen, &lnd, ldims, &lab) || lnd != 1) {
      rc = AE_EINVAL;
      dataset_problem(p, spec, "malformed IDX labels file");
      goto done;
    }
    n_labels = ldims[0];
  } else {
    if (n_labels <= 0 || ilen == 0 || ilen % (size_t)n_labels) {
      rc = AE_EINVAL;
      dataset_problem(p, spec,
                      "image bytes are not a multiple of the "
                      "number of labels");
      goto done;
    }
    n_images = n_labels;
    per = (long long)(ilen / (size_t)n_labels);
    if (per == 3072) {
      shape[0] = 3, shape[1] = shape[2] = 32, rank = 3;
    } else if (per == 784) {
      shape[0] = 1, shape[1] = shape[2] = 28, rank = 3;
    } else if (!rank_given) {
      rc = AE_EINVAL;
      dataset_problem(p, spec,
                      "cannot infer the sample shape; give "
                      "shape=CxHxW");
      goto done;
    }
  }
  if (rank_given) {
    long long g = (long long)shape_given[0] * shape_given[1] * shape_given[2];
    if (g != per) {
      rc = AE_EINVAL;
      dataset_problem(p, spec,
                      "the given shape does not match the sample "
                      "size");
      goto done;
    }
    memcpy(shape, shape_given, sizeof shape);
    rank = rank_given;
  }
  if (n_labels != n_images || n_images < 1) {
    rc = AE_EINVAL;
    dataset_problem(p, spec, "image and label counts differ");
    goto done;
  }
  int maxlab = 0;
  for (long long i = 0; i < n_labels; i++)
    if (lab[i] > maxlab) maxlab = lab[i];
  ds->x = malloc((size_t)(n_images * per) * sizeof(float));
  ds->y = malloc((size_t)n_images);
  if (!ds->x || !ds->y) {
    rc = AE_ENOMEM;
    dataset_problem(p, spec, "out of memory");
    goto done;
  }
  for (long long i = 0; i < n_images * per; i++)
    ds->x[i] = (float)pix[i];
  memcpy(ds->y, lab, (size_t)n_images);
  memcpy(ds->shape, shape, sizeof shape);
  ds->rank = rank;
  ds->size = n_images;
  ds->num_classes = maxlab + 1 < 2 ? 2 : maxlab + 1;
  int channels = rank == 3 ? shape[0] : 1;
  normalise_per_channel(ds->x, n_images, channels, per / channels);
  rc = AE_OK;
done:
  free(ibuf);
  free(lbuf);
  return rc;
}

static void dataset_free(ae_dataset *d) {
  free(d->name);
  free(d->path);
  free(d->x);
  free(d->y);
  memset(d, 0, sizeof *d);
}

static int name_is_valid(const char *s, size_t n) {
  if (n == 0 || n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
      return 0;
  }
  return 1;
}

/* Appends ds (taken over) to r, rebuilding the parallel infos. */
static int registry_push(ae_dataset_registry *r, ae_dataset *ds) {
  ae_dataset *sets = realloc(r->sets, (r->n + 1) * sizeof *sets);
  if (!sets) return AE_ENOMEM;
  r->sets = sets;
  ae_dataset_info *infos = realloc(r->infos, (r->n + 1) * sizeof *infos);
  if (!infos) return AE_ENOMEM;
  r->infos = infos;
  r->sets[r->n] = *ds;
  ae_dataset_info *in = &r->infos[r->n];
  in->name = r->sets[r->n].name;
  memcpy(in->shape, ds->shape, sizeof in->shape);
  in->rank = ds->rank;
  in->num_classes = ds->num_classes;
  in->size = ds->size;
  r->n++;
  memset(ds, 0, sizeof *ds);
  return AE_OK;
}

int ae_dataset_registry_add(ae_dataset_registry *r, const char *spec,
                            ae_problem *p) {
  const char *eq = spec ? strchr(spec, '=') : NULL;
  if (!eq) {
    dataset_problem(p, spec ? spec : "", "expected NAME=PATH");
    return AE_EINVAL;
  }
  size_t name_len = (size_t)(eq - spec);
  if (!name_is_valid(spec, name_len)) {
    dataset_problem(p, spec,
                    "the name must be 1-63 letters, digits, '-', "
                    "'_' or '.'");
    return AE_EINVAL;
  }
  ae_dataset ds;
  memset(&ds, 0, sizeof ds);
  dataset_files files = {NULL, NULL, 0};
  char *rest = dup_string(eq + 1);
  ds.name = malloc(name_len + 1);
  int rc = AE_OK;
  if (!rest || !ds.name) {
    rc = AE_ENOMEM;
    dataset_problem(p, spec, "out of memory");
    goto fail;
  }
  memcpy(ds.name, spec, name_len);
  ds.name[name_len] = '\0';
  if (!strcmp(ds.name, "synthetic") || !strcmp(ds.name, "inline") ||
      ae_dataset_find(r, ds.name)) {
    rc = AE_EINVAL;
    dataset_problem(p, spec, "the name is reserved or already registered");
    goto fail;
  }
  /* PATH, then comma-separated options. */
  int shape[3] = {0, 0, 0}, rank = 0;
  char *labels_opt = NULL;
  char *comma = strchr(rest, ',');
  if (comma) *comma = '\0';
  char *opt = comma ? comma + 1 : NULL;
  while (opt) {
    char *next = strchr(opt, ',');
    if (next) *next++ = '\0';
    if (!strncmp(opt, "shape=", 6)) {
      if (parse_shape(opt + 6, shape, &rank)) {
        rc = AE_EINVAL;
        dataset_problem(p, spec, "bad shape= (want CxHxW or F)");
        goto fail;
      }
    } else if (!strncmp(opt, "labels=", 7) && opt[7]) {
      labels_opt = opt + 7;
    } else {
      rc = AE_EINVAL;
      dataset_problem(p, spec, "unknown option (want shape= or labels=)");
      goto fail;
    }
    opt = next;
  }
  if (!rest[0]) {
    rc = AE_EINVAL;
    dataset_problem(p, spec, "empty path");
    goto fail;
  }
  ds.path = dup_string(rest);
  if (!ds.path) {
    rc = AE_ENOMEM;
    dataset_problem(p, spec, "out of memory");
    goto fail;
  }
  struct stat st;
  if (stat(ds.path, &st) != 0) {
    rc = AE_ENOTFOUND;
    dataset_problem(p, spec, "no such file or folder");
    goto fail;
  }
  if (S_ISDIR(st.st_mode)) {
    rc = resolve_folder(ds.path, &files);
    if (rc) {
      dataset_problem(p, spec,
                      rc == AE_ENOMEM ? "out of memory"
                                      : "no *_u8_nchw.bin or IDX images in the "
                                        "folder");
      goto fail;
    }
  } else {
    files.images = dup_string(ds.path);
    if (!files.images) {
      rc = AE_ENOMEM;
      dataset_problem(p, spec, "out of memory");
      goto fail;
    }
    files.idx = ends_with(ds.path, "-idx3-ubyte.gz") ||
                ends_with(ds.path, "-idx3-ubyte");
    if (!files.idx && !ends_with(ds.path, ".bin")) {
      rc = AE_EINVAL;
      dataset_problem(p, spec,
                      "unknown file kind (want *_u8_nchw.bin or "
                      "*-images-idx3-ubyte[.gz])");
      goto fail;
    }
  }
  if (labels_opt) {
    files.labels = dup_string(labels_opt);
    if (!files.labels) rc = AE_ENOMEM;
  } else if (labels_beside(&files)) {
    rc = AE_EINVAL;
    dataset_problem(p, spec, "cannot name the labels file; give labels=");
    goto fail;
  }
  if (rc) {
    dataset_problem(p, spec, "out of memory");
    goto fail;
  }
  rc = load_dataset(&ds, &files, shape, rank, spec, p);
  if (rc) goto fail;
  rc = registry_push(r, &ds);
  if (rc) {
    dataset_problem(p, spec, "out of memory");
    goto fail;
  }
  dataset_files_free(&files);
  free(rest);
  return AE_OK;
fail:
  dataset_files_free(&files);
  free(rest);
  dataset_free(&ds);
  return rc;
}

int ae_dataset_registry_init(ae_dataset_registry *r, int autodetect,
                             ae_problem *p) {
  memset(r, 0, sizeof *r);
  if (!autodetect) return AE_OK;
  const char *dir = getenv("ARCHEVAL_FASHION_MNIST");
  if (!dir || !dir[0]) dir = "/usr/share/datasets/fashion-mnist";
  char *images = path_join(dir, "train-images-idx3-ubyte.gz");
  char *labels = path_join(dir, "train-labels-idx1-ubyte.gz");
  int rc = AE_OK;
  if (!images || !labels) {
    rc = AE_ENOMEM;
    dataset_problem(p, "fashion-mnist", "out of memory");
  } else if (access(images, R_OK) == 0 && access(labels, R_OK) == 0) {
    size_t n = strlen(dir) + sizeof "fashion-mnist=";
    char *spec = malloc(n);
    if (!spec) {
      rc = AE_ENOMEM;
      dataset_problem(p, "fashion-mnist", "out of memory");
    } else {
      snprintf(spec, n, "fashion-mnist=%s", dir);
      rc = ae_dataset_registry_add(r, spec, p);
      free(spec);
    }
  }
  free(images);
  free(labels);
  if (rc) ae_dataset_registry_free(r);
  return rc;
}

const ae_dataset *ae_dataset_find(const ae_dataset_registry *r,
                                  const char *name) {
  if (!r || !name) return NULL;
  for (size_t i = 0; i < r->n; i++)
    if (!strcmp(r->sets[i].name, name)) return &r->sets[i];
  return NULL;
}

ae_catalog ae_dataset_registry_catalog(const ae_dataset_registry *r) {
  ae_catalog c = {r ? r->infos : NULL, r ? r->n : 0};
  return c;
}

void ae_dataset_registry_free(ae_dataset_registry *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n; i++)
    dataset_free(&r->sets[i]);
  free(r->sets);
  free(r->infos);
  memset(r, 0, sizeof *r);
}
