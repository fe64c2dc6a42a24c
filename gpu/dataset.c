/* dataset.c: the dataset registry: parses --dataset specs, recognises the
 * format of a folder or file from its names (and a pickle or .npy from its
 * first bytes), hands it to the loader of that format (dataset_raw.c,
 * dataset_cifar.c, dataset_pickle.c, dataset_npy.c), normalises the pixels
 * per channel, and lists the result for request validation.
 * --datasets-dir registers every recognisable dataset one level under a
 * folder.
 *
 * The registry is built once on the main thread at start-up and only read
 * afterwards, by every worker at once, without locks.  Every size read
 * from a file is bounded before anything is allocated from it. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/dataset.h"
#include "gpu/dataset_internal.h"

/* Most entries of one folder looked at. */
#define AE_DATASET_MAX_ENTRIES 100000

enum { SPLIT_DEFAULT, SPLIT_TRAIN, SPLIT_TEST };

/* A spec's path and options. */
typedef struct {
  const char *path;
  const char *labels; /* labels=FILE, or NULL */
  int shape[3], rank; /* shape=, rank 0 when not given */
  int split;          /* split=, SPLIT_DEFAULT when not given */
} dataset_opts;

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

/* The names of a folder's entries, sorted, hidden ones left out. */
typedef struct {
  char **names;
  size_t n;
} folder_list;

static void folder_list_free(folder_list *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->names[i]);
  free(l->names);
  memset(l, 0, sizeof *l);
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int folder_list_read(const char *dir, folder_list *l, ae_error *err) {
  memset(l, 0, sizeof *l);
  DIR *d = opendir(dir);
  if (!d)
    return ae_error_set(err, errno == ENOENT ? AE_ENOTFOUND : AE_EINVAL, NULL,
                        "%s: cannot list the folder (%s)", dir,
                        strerror(errno));
  size_t cap = 0;
  int rc = AE_OK;
  struct dirent *e;
  while (rc == AE_OK && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (l->n == AE_DATASET_MAX_ENTRIES) {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: more than %d entries in the folder", dir,
                        AE_DATASET_MAX_ENTRIES);
      break;
    }
    if (l->n == cap) {
      size_t next = cap ? cap * 2 : 32;
      char **names = realloc(l->names, next * sizeof *names);
      if (!names) {
        rc = ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
        break;
      }
      l->names = names;
      cap = next;
    }
    if (!(l->names[l->n] = dataset_strdup(e->d_name))) {
      rc = ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
      break;
    }
    l->n++;
  }
  closedir(d);
  if (rc) {
    folder_list_free(l);
    return rc;
  }
  if (l->n) qsort(l->names, l->n, sizeof *l->names, compare_names);
  return AE_OK;
}

static int folder_has(const folder_list *l, const char *name) {
  for (size_t i = 0; i < l->n; i++)
    if (!strcmp(l->names[i], name)) return 1;
  return 0;
}

/* The number N of a name PREFIX<N>SUFFIX, or -1. */
static long batch_number(const char *name, const char *prefix,
                         const char *suffix) {
  size_t p = strlen(prefix), s = strlen(suffix), n = strlen(name);
  if (n <= p + s || strncmp(name, prefix, p) || strcmp(name + n - s, suffix))
    return -1;
  long v = 0;
  for (size_t i = p; i < n - s; i++) {
    if (name[i] < '0' || name[i] > '9' || v > 100000) return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

/* The files PREFIX<N>SUFFIX of a folder, in the order of N. */
typedef struct {
  const char *names[AE_DATASET_MAX_BATCHES];
  long numbers[AE_DATASET_MAX_BATCHES];
  int n;
} batch_list;

static int find_batches(const folder_list *l, const char *prefix,
                        const char *suffix, batch_list *out, const char *dir,
                        ae_error *err) {
  out->n = 0;
  for (size_t i = 0; i < l->n; i++) {
    long v = batch_number(l->names[i], prefix, suffix);
    if (v < 0) continue;
    if (out->n == AE_DATASET_MAX_BATCHES)
      return ae_error_set(err, AE_EINVAL, NULL, "%s: more than %d %sN%s files",
                          dir, AE_DATASET_MAX_BATCHES, prefix, suffix);
    int k = out->n++;
    while (k > 0 && out->numbers[k - 1] > v) {
      out->numbers[k] = out->numbers[k - 1];
      out->names[k] = out->names[k - 1];
      k--;
    }
    out->numbers[k] = v;
    out->names[k] = l->names[i];
  }
  return AE_OK;
}

/* The loader of one file of a split. */
enum file_kind { KIND_CIFAR10_BIN, KIND_CIFAR100_BIN, KIND_PICKLE };

static int load_one(dataset_build *b, const char *dir, const char *name,
                    int kind, ae_error *err) {
  char *path = dataset_path_join(dir, name);
  if (!path) return ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
  int rc =
      kind == KIND_PICKLE
          ? dataset_load_pickle(b, path, err)
          : dataset_load_cifar_bin(b, path, kind == KIND_CIFAR100_BIN, err);
  free(path);
  return rc;
}

/* A folder layout with a train split of numbered batches or one file, and a
 * test file. */
typedef struct {
  const char *train_prefix, *train_suffix; /* numbered train batches */
  const char *train_file;                  /* or one train file */
  const char *test_file;
  int kind;
} folder_layout;

static const folder_layout layouts[] = {
    {"data_batch_", ".bin", NULL, "test_batch.bin", KIND_CIFAR10_BIN},
    {NULL, NULL, "train.bin", "test.bin", KIND_CIFAR100_BIN},
    {"train_data_batch_", "", NULL, "val_data", KIND_PICKLE},
    {"data_batch_", "", NULL, "test_batch", KIND_PICKLE},
    {NULL, NULL, "train", "test", KIND_PICKLE},
};

/* Loads a folder in one of the layouts; *matched 0 when none fits. */
static int load_layout(dataset_build *b, const char *dir, const folder_list *l,
                       const dataset_opts *o, const char **split, int *matched,
                       ae_error *err) {
  *matched = 0;
  for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
    const folder_layout *lay = &layouts[i];
    batch_list train = {.n = 0};
    if (lay->train_prefix) {
      int rc = find_batches(l, lay->train_prefix, lay->train_suffix, &train,
                            dir, err);
      if (rc) return rc;
    } else if (folder_has(l, lay->train_file)) {
      train.names[0] = lay->train_file;
      train.n = 1;
    }
    int has_test = folder_has(l, lay->test_file);
    if (!train.n && !has_test) continue;
    *matched = 1;
    int want_test =
        o->split == SPLIT_TEST || (o->split == SPLIT_DEFAULT && !train.n);
    if (want_test && !has_test)
      return ae_error_set(err, AE_EINVAL, NULL,
                          "%s: no test split (no %s in the folder)", dir,
                          lay->test_file);
    if (!want_test && !train.n)
      return ae_error_set(err, AE_EINVAL, NULL, "%s: no train split (only %s)",
                          dir, lay->test_file);
    *split = want_test ? "test" : "train";
    if (want_test) return load_one(b, dir, lay->test_file, lay->kind, err);
    for (int k = 0; k < train.n; k++) {
      int rc = load_one(b, dir, train.names[k], lay->kind, err);
      if (rc) return rc;
    }
    return AE_OK;
  }
  return AE_OK;
}

/* x.npy and y.npy, or x_train.npy/y_train.npy and x_test.npy/y_test.npy. */
static int load_npy_folder(dataset_build *b, const char *dir,
                           const folder_list *l, const dataset_opts *o,
                           const char **split, int *matched, ae_error *err) {
  int train = folder_has(l, "x_train.npy") && folder_has(l, "y_train.npy");
  int test = folder_has(l, "x_test.npy") && folder_has(l, "y_test.npy");
  int plain = folder_has(l, "x.npy") && folder_has(l, "y.npy");
  *matched = train || test || plain;
  if (!*matched) return AE_OK;
  const char *x, *y;
  if (o->split == SPLIT_TEST ||
      (o->split == SPLIT_DEFAULT && !train && !plain)) {
    if (!test)
      return ae_error_set(err, AE_EINVAL, NULL,
                          "%s: no test split (no x_test.npy and y_test.npy)",
                          dir);
    x = "x_test.npy", y = "y_test.npy", *split = "test";
  } else if (train) {
    x = "x_train.npy", y = "y_train.npy", *split = "train";
  } else if (plain && o->split == SPLIT_DEFAULT) {
    x = "x.npy", y = "y.npy", *split = "all";
  } else {
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%s: no train split (no x_train.npy and y_train.npy)",
                        dir);
  }
  char *xp = dataset_path_join(dir, x), *yp = dataset_path_join(dir, y);
  int rc = xp && yp ? dataset_load_npy(b, xp, yp, err)
                    : ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
  free(xp);
  free(yp);
  return rc;
}

/* Replaces the suffix `from` of s by `to`; NULL when s lacks it. */
static char *replace_suffix(const char *s, const char *from, const char *to) {
  if (!dataset_ends_with(s, from)) return NULL;
  size_t keep = strlen(s) - strlen(from), m = strlen(to);
  char *r = malloc(keep + m + 1);
  if (!r) return NULL;
  memcpy(r, s, keep);
  memcpy(r + keep, to, m + 1);
  return r;
}

static int is_idx_images(const char *name) {
  return dataset_ends_with(name, "-images-idx3-ubyte.gz") ||
         dataset_ends_with(name, "-images-idx3-ubyte");
}

/* The labels file beside an IDX or raw images file, or NULL. */
static char *labels_beside(const char *images) {
  if (dataset_ends_with(images, "-images-idx3-ubyte.gz"))
    return replace_suffix(images, "-images-idx3-ubyte.gz",
                          "-labels-idx1-ubyte.gz");
  if (dataset_ends_with(images, "-images-idx3-ubyte"))
    return replace_suffix(images, "-images-idx3-ubyte", "-labels-idx1-ubyte");
  return replace_suffix(images, "_u8_nchw.bin", "_labels_u8.bin");
}

/* Raw and IDX images in a folder: by split (names holding "train", or
 * "test"/"t10k"), else the only one; raw before IDX. */
static int load_raw_folder(dataset_build *b, const char *dir,
                           const folder_list *l, const dataset_opts *o,
                           const char **split, int *matched, ae_error *err) {
  *matched = 0;
  for (int idx = 0; idx < 2; idx++) {
    const char *train = NULL, *test = NULL, *only = NULL;
    int count = 0;
    for (size_t i = 0; i < l->n; i++) {
      const char *nm = l->names[i];
      if (idx ? !is_idx_images(nm) : !dataset_ends_with(nm, "_u8_nchw.bin"))
        continue;
      count++;
      only = nm;
      if (!train && strstr(nm, "train")) train = nm;
      if (!test && (strstr(nm, "test") || strstr(nm, "t10k"))) test = nm;
    }
    if (!count) continue;
    *matched = 1;
    const char *pick = NULL;
    if (o->split == SPLIT_TEST) {
      pick = test, *split = "test";
    } else if (o->split == SPLIT_TRAIN) {
      pick = train, *split = "train";
    } else if (train) {
      pick = train, *split = "train";
    } else if (count == 1) {
      pick = only, *split = test == only ? "test" : "all";
    }
    if (!pick)
      return ae_error_set(err, AE_EINVAL, NULL,
                          o->split == SPLIT_TEST
                              ? "%s: no test split (no images file named "
                                "*test* or *t10k*)"
                              : "%s: several images files and none named "
                                "*train*; give split= or the file",
                          dir);
    char *images = dataset_path_join(dir, pick);
    char *labels = !images     ? NULL
                   : o->labels ? dataset_strdup(o->labels)
                               : labels_beside(images);
    int rc;
    if (!images || !labels)
      rc = ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
    else if (idx)
      rc = dataset_load_idx(b, images, labels, o->shape, o->rank, err);
    else
      rc = dataset_load_raw(b, images, labels, o->shape, o->rank, err);
    free(images);
    free(labels);
    return rc;
  }
  return AE_OK;
}

static int load_folder(dataset_build *b, const dataset_opts *o,
                       const char **split, ae_error *err) {
  folder_list l;
  int rc = folder_list_read(o->path, &l, err);
  if (rc) return rc;
  int matched = 0;
  /* shape= and labels= belong to the raw and IDX layouts. */
  if (o->rank == 0 && !o->labels) {
    rc = load_layout(b, o->path, &l, o, split, &matched, err);
    if (!rc && !matched)
      rc = load_npy_folder(b, o->path, &l, o, split, &matched, err);
  }
  if (!rc && !matched)
    rc = load_raw_folder(b, o->path, &l, o, split, &matched, err);
  if (!rc && !matched)
    rc = ae_error_set(err, AE_ENOTFOUND, NULL,
                      "%s: no dataset recognised in the folder (CIFAR "
                      "batches, ImageNet16 batches, x.npy and y.npy, "
                      "*_u8_nchw.bin or IDX images)",
                      o->path);
  folder_list_free(&l);
  return rc;
}

/* The labels .npy beside an x .npy: x.npy -> y.npy, x_S.npy -> y_S.npy,
 * S_x.npy -> S_y.npy. */
static char *npy_labels_beside(const char *path) {
  const char *base = dataset_basename(path);
  size_t at = (size_t)(base - path), n = strlen(path);
  char *r = NULL;
  if (!strcmp(base, "x.npy") || !strncmp(base, "x_", 2)) {
    if ((r = dataset_strdup(path))) r[at] = 'y';
  } else if (dataset_ends_with(base, "_x.npy")) {
    if ((r = dataset_strdup(path))) r[n - 5] = 'y';
  }
  return r;
}

/* The first bytes of a file (fewer when it is shorter); 0 or an error. */
static int sniff(const char *path, uint8_t head[8], size_t *got,
                 ae_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return ae_error_set(err, AE_EINVAL, NULL, "%s: cannot open (%s)", path,
                        strerror(errno));
  *got = fread(head, 1, 8, f);
  fclose(f);
  return AE_OK;
}

static int load_file(dataset_build *b, const dataset_opts *o, ae_error *err) {
  const char *path = o->path, *base = dataset_basename(path);
  int raw_like = is_idx_images(base) || dataset_ends_with(base, ".bin");
  if (o->rank && !raw_like)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%s: shape= applies to raw and IDX files only", path);
  if (is_idx_images(base) ||
      (dataset_ends_with(base, ".bin") &&
       (o->labels || o->rank || dataset_ends_with(base, "_u8_nchw.bin")))) {
    char *labels = o->labels ? dataset_strdup(o->labels) : labels_beside(path);
    if (!labels)
      return ae_error_set(
          err, AE_EINVAL, NULL,
          "%s: cannot name the labels file; give labels=", path);
    int rc = is_idx_images(base)
                 ? dataset_load_idx(b, path, labels, o->shape, o->rank, err)
                 : dataset_load_raw(b, path, labels, o->shape, o->rank, err);
    free(labels);
    return rc;
  }
  if (batch_number(base, "data_batch_", ".bin") >= 0 ||
      !strcmp(base, "test_batch.bin"))
    return dataset_load_cifar_bin(b, path, 0, err);
  if (!strcmp(base, "train.bin") || !strcmp(base, "test.bin"))
    return dataset_load_cifar_bin(b, path, 1, err);
  uint8_t head[8];
  size_t got = 0;
  int rc = sniff(path, head, &got, err);
  if (rc) return rc;
  if (dataset_ends_with(base, ".npy") ||
      (got >= 6 && !memcmp(head, "\x93NUMPY", 6))) {
    char *labels =
        o->labels ? dataset_strdup(o->labels) : npy_labels_beside(path);
    if (!labels)
      return ae_error_set(
          err, AE_EINVAL, NULL,
          "%s: cannot name the labels .npy; give labels=", path);
    rc = dataset_load_npy(b, path, labels, err);
    free(labels);
    return rc;
  }
  if (o->labels)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "%s: labels= applies to raw, IDX and .npy files", path);
  if (got >= 1 && head[0] == 0x80) return dataset_load_pickle(b, path, err);
  return ae_error_set(err, AE_EINVAL, NULL,
                      "%s: unknown file kind (want CIFAR batches, "
                      "ImageNet16 or CIFAR pickles, .npy, *_u8_nchw.bin or "
                      "*-images-idx3-ubyte[.gz])",
                      path);
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
    if (sd < 1e-12 || !isfinite(sd)) sd = 1.0;
    if (!isfinite(mean)) mean = 0.0;
    for (long long i = 0; i < size; i++) {
      float *v = x + (i * channels + c) * plane;
      for (long long k = 0; k < plane; k++)
        v[k] = (float)(((double)v[k] - mean) / sd);
    }
  }
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
  /* The names of earlier infos point into sets, which may have moved. */
  for (size_t i = 0; i <= r->n; i++) {
    ae_dataset_info *in = &r->infos[i];
    const ae_dataset *s = &r->sets[i];
    in->name = s->name;
    memcpy(in->shape, s->shape, sizeof in->shape);
    in->rank = s->rank;
    in->num_classes = s->num_classes;
    in->size = s->size;
  }
  r->n++;
  memset(ds, 0, sizeof *ds);
  return AE_OK;
}

/* Loads the dataset of o and registers it as name.  Errors start with
 * "dataset 'NAME': ". */
static int register_dataset(ae_dataset_registry *r, const char *name,
                            const dataset_opts *o, ae_error *err) {
  if (!strcmp(name, "synthetic") || !strcmp(name, "inline") ||
      ae_dataset_find(r, name))
    return ae_error_set(err, AE_EINVAL, NULL,
                        "dataset '%s': the name is reserved or already "
                        "registered",
                        name);
  struct stat st;
  if (stat(o->path, &st) != 0)
    return ae_error_set(err, AE_ENOTFOUND, NULL,
                        "dataset '%s': %s: no such file or folder", name,
                        o->path);
  dataset_build b;
  memset(&b, 0, sizeof b);
  ae_error sub = AE_ERROR_INIT;
  const char *split = "all";
  int rc;
  if (S_ISDIR(st.st_mode)) {
    rc = load_folder(&b, o, &split, &sub);
  } else {
    if (o->split != SPLIT_DEFAULT)
      rc = ae_error_set(&sub, AE_EINVAL, NULL,
                        "%s: split= applies to a folder, not a file", o->path);
    else
      rc = load_file(&b, o, &sub);
  }
  if (!rc && b.n < 1)
    rc = ae_error_set(&sub, AE_EINVAL, NULL, "%s: no samples", o->path);
  if (rc) {
    rc = ae_error_set(err, rc, NULL, "dataset '%s': %s", name,
                      sub.reason ? sub.reason : "cannot be read");
    ae_error_clear(&sub);
    dataset_build_free(&b);
    return rc;
  }
  int classes = b.num_classes;
  if (!classes) {
    for (long long i = 0; i < b.n; i++)
      if (b.y[i] + 1 > classes) classes = b.y[i] + 1;
    if (classes < 2) classes = 2;
  }
  int channels = b.rank == 3 ? b.shape[0] : 1;
  normalise_per_channel(b.x, b.n, channels, b.per / channels);
  ae_dataset ds;
  memset(&ds, 0, sizeof ds);
  ds.name = dataset_strdup(name);
  ds.path = dataset_strdup(o->path);
  ds.format = b.format ? b.format : "unknown";
  ds.split = split;
  memcpy(ds.shape, b.shape, sizeof ds.shape);
  ds.rank = b.rank;
  ds.num_classes = classes;
  ds.size = b.n;
  ds.x = b.x;
  ds.y = b.y;
  /* Give back what the accumulator over-allocated. */
  if (b.cap > b.n) {
    float *x = realloc(ds.x, (size_t)(b.n * b.per) * sizeof *x);
    if (x) ds.x = x;
  }
  b.x = NULL, b.y = NULL;
  if (!ds.name || !ds.path || registry_push(r, &ds)) {
    dataset_free(&ds);
    return ae_error_set(err, AE_ENOMEM, NULL, "dataset '%s': out of memory",
                        name);
  }
  return AE_OK;
}

int ae_dataset_registry_add(ae_dataset_registry *r, const char *spec,
                            ae_error *err) {
  const char *eq = spec ? strchr(spec, '=') : NULL;
  if (!eq)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "dataset '%s': expected NAME=PATH", spec ? spec : "");
  size_t name_len = (size_t)(eq - spec);
  if (!name_is_valid(spec, name_len))
    return ae_error_set(err, AE_EINVAL, NULL,
                        "dataset '%s': the name must be 1-63 letters, digits, "
                        "'-', '_' or '.'",
                        spec);
  char name[64];
  memcpy(name, spec, name_len);
  name[name_len] = '\0';
  char *rest = dataset_strdup(eq + 1);
  if (!rest)
    return ae_error_set(err, AE_ENOMEM, NULL, "dataset '%s': out of memory",
                        name);
  /* PATH, then comma-separated options. */
  dataset_opts o = {rest, NULL, {0, 0, 0}, 0, SPLIT_DEFAULT};
  int rc = AE_OK;
  char *comma = strchr(rest, ',');
  if (comma) *comma = '\0';
  char *opt = comma ? comma + 1 : NULL;
  while (opt && !rc) {
    char *next = strchr(opt, ',');
    if (next) *next++ = '\0';
    if (!strncmp(opt, "shape=", 6)) {
      if (parse_shape(opt + 6, o.shape, &o.rank))
        rc = ae_error_set(err, AE_EINVAL, NULL,
                          "dataset '%s': bad shape= (want CxHxW or F)", spec);
    } else if (!strncmp(opt, "labels=", 7) && opt[7]) {
      o.labels = opt + 7;
    } else if (!strcmp(opt, "split=train")) {
      o.split = SPLIT_TRAIN;
    } else if (!strcmp(opt, "split=test") || !strcmp(opt, "split=val")) {
      o.split = SPLIT_TEST;
    } else {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "dataset '%s': unknown option '%s' (want "
                        "split=train|test|val, labels=FILE or shape=CxHxW)",
                        spec, opt);
    }
    opt = next;
  }
  if (!rc && !rest[0])
    rc = ae_error_set(err, AE_EINVAL, NULL, "dataset '%s': empty path", spec);
  if (!rc) rc = register_dataset(r, name, &o, err);
  free(rest);
  return rc;
}

/* For --datasets-dir: a message through log. */
static void dir_log(ae_dataset_log_fn log, void *ctx, int warning,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void dir_log(ae_dataset_log_fn log, void *ctx, int warning,
                    const char *fmt, ...) {
  if (!log) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  log(ctx, warning, msg);
}

/* The dataset name of a top-level file of a datasets folder, or 0. */
static int top_level_name(const char *entry, char name[64]) {
  static const char *const suffixes[] = {"_u8_nchw.bin", "_x.npy"};
  for (size_t i = 0; i < 2; i++) {
    if (!dataset_ends_with(entry, suffixes[i])) continue;
    size_t n = strlen(entry) - strlen(suffixes[i]);
    if (!name_is_valid(entry, n)) return 0;
    memcpy(name, entry, n);
    name[n] = '\0';
    return 1;
  }
  return 0;
}

int ae_dataset_registry_add_dir(ae_dataset_registry *r, const char *dir,
                                ae_dataset_log_fn log, void *ctx,
                                ae_error *err) {
  folder_list l;
  int rc = folder_list_read(dir, &l, err);
  if (rc) return rc;
  size_t found = 0;
  for (size_t i = 0; i < l.n && rc == AE_OK; i++) {
    char *path = dataset_path_join(dir, l.names[i]);
    if (!path) {
      rc = ae_error_set(err, AE_ENOMEM, NULL, "out of memory");
      break;
    }
    struct stat st;
    char name[64];
    int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    if (is_dir) {
      size_t n = strlen(l.names[i]);
      if (!name_is_valid(l.names[i], n)) {
        dir_log(log, ctx, 1,
                "%s: skipped: a dataset name must be 1-63 letters, digits, "
                "'-', '_' or '.'",
                path);
        free(path);
        continue;
      }
      memcpy(name, l.names[i], n + 1);
    } else if (!top_level_name(l.names[i], name)) {
      free(path); /* labels files, READMEs and the like */
      continue;
    }
    dataset_opts o = {path, NULL, {0, 0, 0}, 0, SPLIT_DEFAULT};
    ae_error sub = AE_ERROR_INIT;
    int added = register_dataset(r, name, &o, &sub);
    if (added == AE_ENOMEM) {
      rc = ae_error_set(err, AE_ENOMEM, NULL, "%s", sub.reason);
    } else if (added) {
      dir_log(log, ctx, 1, "%s: skipped: %s", path,
              sub.reason ? sub.reason : "cannot be read");
    } else {
      const ae_dataset *d = &r->sets[r->n - 1];
      found++;
      if (d->rank == 3)
        dir_log(log, ctx, 0,
                "dataset '%s': %s, %s split, %lld samples of %dx%dx%d, %d "
                "classes, from %s",
                d->name, d->format, d->split, d->size, d->shape[0], d->shape[1],
                d->shape[2], d->num_classes, path);
      else
        dir_log(log, ctx, 0,
                "dataset '%s': %s, %s split, %lld samples of %d, %d "
                "classes, from %s",
                d->name, d->format, d->split, d->size, d->shape[0],
                d->num_classes, path);
    }
    ae_error_clear(&sub);
    free(path);
  }
  if (!rc && !found)
    dir_log(log, ctx, 1, "%s: no dataset registered (every entry skipped)",
            dir);
  folder_list_free(&l);
  return rc;
}

int ae_dataset_registry_init(ae_dataset_registry *r, int autodetect,
                             ae_error *err) {
  memset(r, 0, sizeof *r);
  if (!autodetect) return AE_OK;
  const char *dir = getenv("ARCHEVAL_FASHION_MNIST");
  if (!dir || !dir[0]) dir = "/usr/share/datasets/fashion-mnist";
  char *images = dataset_path_join(dir, "train-images-idx3-ubyte.gz");
  char *labels = dataset_path_join(dir, "train-labels-idx1-ubyte.gz");
  int rc = AE_OK;
  if (!images || !labels) {
    rc = ae_error_set(err, AE_ENOMEM, NULL,
                      "dataset 'fashion-mnist': out of memory");
  } else if (access(images, R_OK) == 0 && access(labels, R_OK) == 0) {
    dataset_opts o = {dir, NULL, {0, 0, 0}, 0, SPLIT_TRAIN};
    rc = register_dataset(r, "fashion-mnist", &o, err);
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
