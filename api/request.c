/* request.c: validates a POST /v1/jobs body into an ae_request.
 *
 * Every field is checked (types, ranges, unknown keys) and every error is
 * collected with its JSON pointer before giving up.  On success the
 * architecture is lowered for the resolved data shape, the server limits
 * are enforced, and a "normalised" copy of the request with every default
 * filled in is built for the job resource.  The loop thread parses; the
 * resulting plain struct then moves to a worker as a whole. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/onnx_nb201.h"
#include "api/request.h"
#include "api/status.h"

/* At most this many errors are reported for the elements of one inline
 * array, so a large bad body does not make a huge answer. */
#define MAX_ELEMENT_ERRORS 10
/* The most classes a request may state (data.num_classes). */
#define AE_MAX_CLASSES 1000

void ae_settings_default(ae_settings *s) {
  s->lr_samples = 3000;
  s->lr_repeats = 3;
  s->curv_points = 128;
  s->curv_repeats = 3;
  s->ntk_repeats = 1;
  s->ntk_parameterization = AE_NTK_STANDARD;
  s->eta = NAN;
  s->init = AE_INIT_KAIMING_NORMAL;
  s->ap_repeats = 8;
  s->fc_samples = 8;
}

void ae_request_free(ae_request *r) {
  if (!r) return;
  ae_arch_free(&r->arch);
  ae_graph_free(&r->net);
  free(r->data.dataset);
  free(r->data.inputs);
  free(r->data.labels);
  free(r->client_ref);
  json_decref(r->normalised);
  json_decref(r->model_warnings);
  memset(r, 0, sizeof *r);
}

/* ---- profile, metrics and settings ---- */

static const char *const profile_names[] = {"fast", "rank", "full", "all",
                                            NULL};
#define PROFILE_LIST "fast, rank, full, all"
#define GROUP_LIST                                                             \
  "topology, expressivity, convergence, generalization, proxies"

/* Reads "profile" (null counts as absent): 0 with *name set to the
 * profile's constant name and its metrics added to *sel, or 1 (error
 * added). */
static int parse_profile(const json_t *v, const char **name, ae_metric_set *sel,
                         ae_problem *p) {
  if (json_is_null(v)) return 0;
  const char *given = json_is_string(v) ? json_string_value(v) : NULL;
  for (int k = 0; given && profile_names[k]; k++)
    if (strcmp(given, profile_names[k]) == 0) {
      ae_metric_set s;
      if (ae_metric_profile(profile_names[k], &s)) break;
      sel->bits |= s.bits;
      *name = profile_names[k];
      return 0;
    }
  ae_problem_add(p, "/profile", "must be one of " PROFILE_LIST);
  return 1;
}

/* When name is "group.x" for a known group: 1 and that group's fields,
 * comma-separated, in out; else 0. */
static int group_fields(const char *name, char *out, size_t size) {
  const char *dot = strchr(name, '.');
  char group[32];
  size_t glen = dot ? (size_t)(dot - name) : 0;
  if (!dot || glen >= sizeof group) return 0;
  memcpy(group, name, glen);
  group[glen] = '\0';
  unsigned bit = ae_metric_group_bit(group);
  if (!bit) return 0;
  size_t used = 0;
  out[0] = '\0';
  for (int k = 0; k < AE_M_COUNT; k++) {
    const ae_metric_info *m = ae_metric_info_of((ae_metric_id)k);
    if (m->group_bit != bit) continue;
    int w =
        snprintf(out + used, size - used, "%s%s", used ? ", " : "", m->field);
    if (w < 0 || (size_t)w >= size - used) break;
    used += (size_t)w;
  }
  return 1;
}

/* Reads "metrics": group names and "group.field" metric names, each adding
 * its metrics to *sel (a metric brings its family).  Returns the number of
 * errors added. */
static int parse_metrics(const json_t *v, ae_metric_set *sel, ae_problem *p) {
  const char *ptr = "/metrics";
  if (!json_is_array(v)) {
    ae_problem_add(p, ptr,
                   "must be an array of group or \"group.field\" metric "
                   "names, not %s",
                   ae_json_type_name(v));
    return 1;
  }
  if (json_array_size(v) == 0) {
    ae_problem_add(p, ptr,
                   "must name at least one group (" GROUP_LIST
                   ") or metric; omit it to use the profile");
    return 1;
  }
  /* Each name at most once: longer lists are refused before the
   * (quadratic) check for repeats. */
  size_t most = AE_M_COUNT;
  for (int k = 0; ae_metric_group_names[k]; k++)
    most++;
  if (json_array_size(v) > most) {
    ae_problem_add(p, ptr,
                   "lists %zu names; there are %zu groups and metrics, each "
                   "allowed once",
                   json_array_size(v), most);
    return 1;
  }
  int errors = 0;
  size_t i;
  const json_t *m;
  json_array_foreach(v, i, m) {
    char ip[AE_PTR_MAX];
    ae_ptr_index(ip, sizeof ip, ptr, i);
    const char *name = json_is_string(m) ? json_string_value(m) : "";
    unsigned group = strchr(name, '.') ? 0 : ae_metric_group_bit(name);
    ae_metric_id id;
    int is_metric = !group && ae_metric_from_name(name, &id) == 0;
    int repeated = 0;
    for (size_t j = 0; j < i && (group || is_metric); j++)
      if (json_equal(json_array_get(v, j), m)) repeated = 1;
    if (!group && !is_metric) {
      char fields[1024];
      if (group_fields(name, fields, sizeof fields))
        ae_problem_add(p, ip, "unknown metric \"%.128s\" (the group has: %s)",
                       name, fields);
      else
        ae_problem_add(p, ip,
                       "unknown metric \"%.128s\": must be a group (" GROUP_LIST
                       ") or a \"group.field\" metric of scorecard.md, e.g. "
                       "\"convergence.ntk_lambda_min\"",
                       name);
      errors++;
    } else if (repeated) {
      ae_problem_add(p, ip, "\"%s\" is listed twice", name);
      errors++;
    } else if (group) {
      ae_metric_set_add_groups(sel, group);
    } else {
      ae_metric_set_add(sel, id);
    }
  }
  return errors;
}

/* Reads settings.init. */
static int parse_init(const json_t *v, ae_init_scheme *out, ae_problem *p) {
  static const struct {
    const char *name;
    ae_init_scheme scheme;
  } schemes[] = {{"kaiming_normal", AE_INIT_KAIMING_NORMAL},
                 {"torch_default", AE_INIT_TORCH_DEFAULT},
                 {"gaussian", AE_INIT_GAUSSIAN}};
  const char *name = json_is_string(v) ? json_string_value(v) : "";
  for (size_t k = 0; k < sizeof schemes / sizeof schemes[0]; k++)
    if (strcmp(name, schemes[k].name) == 0) {
      *out = schemes[k].scheme;
      return 0;
    }
  ae_problem_add(p, "/settings/init",
                 "must be one of kaiming_normal, torch_default, gaussian");
  return 1;
}

static const char *init_name(ae_init_scheme s) {
  switch (s) {
  case AE_INIT_TORCH_DEFAULT:
    return "torch_default";
  case AE_INIT_GAUSSIAN:
    return "gaussian";
  case AE_INIT_KAIMING_NORMAL:
    break;
  }
  return "kaiming_normal";
}

/* Reads an optional nested settings object; NULL when absent or bad. */
static const json_t *settings_child(const json_t *s, const char *key,
                                    int *errors, ae_problem *p) {
  const json_t *v = json_object_get(s, key);
  if (!v) return NULL;
  if (!json_is_object(v)) {
    char ptr[AE_PTR_MAX];
    ae_ptr_key(ptr, sizeof ptr, "/settings", key);
    ae_problem_add(p, ptr, "must be an object, not %s", ae_json_type_name(v));
    (*errors)++;
    return NULL;
  }
  return v;
}

/* Reads the settings; *fc_given is set when feature_corr_lambda_min.samples
 * is given (checked against the batch size once the data is known). */
static int parse_settings(const json_t *v, ae_settings *s, int *fc_given,
                          ae_problem *p) {
  const char *ptr = "/settings";
  if (!json_is_object(v)) {
    ae_problem_add(p, ptr, "must be an object, not %s", ae_json_type_name(v));
    return 1;
  }
  static const char *const keys[] = {"linear_regions",
                                     "curvature",
                                     "ntk",
                                     "eta",
                                     "init",
                                     "activation_patterns",
                                     "feature_corr_lambda_min",
                                     NULL};
  int errors = ae_check_keys(v, keys, ptr, p);
  const json_t *lr = settings_child(v, "linear_regions", &errors, p);
  const json_t *cv = settings_child(v, "curvature", &errors, p);
  const json_t *ntk = settings_child(v, "ntk", &errors, p);
  const json_t *ap = settings_child(v, "activation_patterns", &errors, p);
  const json_t *fc = settings_child(v, "feature_corr_lambda_min", &errors, p);
  long long x;
  const json_t *init = json_object_get(v, "init");
  if (init) errors += parse_init(init, &s->init, p);
  if (ap) {
    static const char *const k[] = {"repeats", NULL};
    errors += ae_check_keys(ap, k, "/settings/activation_patterns", p);
    x = s->ap_repeats;
    errors += ae_get_int(ap, "repeats", "/settings/activation_patterns", 1, 64,
                         &x, p);
    s->ap_repeats = (int)x;
  }
  if (fc) {
    static const char *const k[] = {"samples", NULL};
    errors += ae_check_keys(fc, k, "/settings/feature_corr_lambda_min", p);
    x = s->fc_samples;
    /* The upper bound is the batch size, checked with the data. */
    errors += ae_get_int(fc, "samples", "/settings/feature_corr_lambda_min", 1,
                         INT_MAX, &x, p);
    s->fc_samples = (int)x;
    *fc_given = json_object_get(fc, "samples") != NULL;
  }
  if (lr) {
    static const char *const k[] = {"samples", "repeats", NULL};
    errors += ae_check_keys(lr, k, "/settings/linear_regions", p);
    x = s->lr_samples;
    errors +=
        ae_get_int(lr, "samples", "/settings/linear_regions", 2, 100000, &x, p);
    s->lr_samples = (int)x;
    x = s->lr_repeats;
    errors +=
        ae_get_int(lr, "repeats", "/settings/linear_regions", 1, 16, &x, p);
    s->lr_repeats = (int)x;
  }
  if (cv) {
    static const char *const k[] = {"points", "repeats", NULL};
    errors += ae_check_keys(cv, k, "/settings/curvature", p);
    x = s->curv_points;
    errors += ae_get_int(cv, "points", "/settings/curvature", 8, 4096, &x, p);
    s->curv_points = (int)x;
    x = s->curv_repeats;
    errors += ae_get_int(cv, "repeats", "/settings/curvature", 1, 16, &x, p);
    s->curv_repeats = (int)x;
  }
  if (ntk) {
    static const char *const k[] = {"repeats", "parameterization", NULL};
    errors += ae_check_keys(ntk, k, "/settings/ntk", p);
    x = s->ntk_repeats;
    errors += ae_get_int(ntk, "repeats", "/settings/ntk", 1, 16, &x, p);
    s->ntk_repeats = (int)x;
    const json_t *par = json_object_get(ntk, "parameterization");
    if (par) {
      const char *name = json_is_string(par) ? json_string_value(par) : "";
      if (strcmp(name, "standard") == 0) {
        s->ntk_parameterization = AE_NTK_STANDARD;
      } else if (strcmp(name, "ntk") == 0) {
        s->ntk_parameterization = AE_NTK_NTK;
      } else {
        ae_problem_add(p, "/settings/ntk/parameterization",
                       "must be \"standard\" or \"ntk\"");
        errors++;
      }
    }
  }
  const json_t *eta = json_object_get(v, "eta");
  if (eta && !json_is_null(eta))
    errors += ae_get_number(v, "eta", ptr, 0.0, 1e300, 1, &s->eta, p);
  return errors;
}

/* ---- data ---- */

/* Reads input_shape: [F] or [C, H, W] of positive ints. */
static int parse_shape(const json_t *v, int shape[3], int *rank,
                       ae_problem *p) {
  const char *ptr = "/data/input_shape";
  size_t n = json_is_array(v) ? json_array_size(v) : 0;
  if (n != 1 && n != 3) {
    ae_problem_add(p, ptr, "must be [features] or [channels, height, width]");
    return 1;
  }
  double elems = 1;
  for (size_t i = 0; i < n; i++) {
    const json_t *d = json_array_get(v, i);
    char ip[AE_PTR_MAX];
    ae_ptr_index(ip, sizeof ip, ptr, i);
    if (!json_is_integer(d) || json_integer_value(d) < 1 ||
        json_integer_value(d) > 1 << 24) {
      ae_problem_add(p, ip, "must be a positive integer");
      return 1;
    }
    shape[i] = (int)json_integer_value(d);
    elems *= shape[i];
  }
  if (elems > (double)(1 << 24)) {
    ae_problem_add(p, ptr, "has %.0f values per sample, more than 2^24", elems);
    return 1;
  }
  *rank = (int)n;
  if (n == 1) shape[1] = shape[2] = 1;
  return 0;
}

static size_t shape_elems(const int shape[3], int rank) {
  return rank == 3 ? (size_t)shape[0] * shape[1] * shape[2] : (size_t)shape[0];
}

/* Infers a shape from the nesting of one sample: flat -> [len], nested
 * three deep -> [C, H, W].  Returns 0 or 1 (error added). */
static int infer_inline_shape(const json_t *sample, int shape[3], int *rank,
                              ae_problem *p) {
  const char *ptr = "/data/inputs/0";
  if (!json_is_array(sample) || json_array_size(sample) == 0) {
    ae_problem_add(p, ptr, "must be a non-empty array of numbers");
    return 1;
  }
  const json_t *a = json_array_get(sample, 0);
  if (!json_is_array(a)) {
    shape[0] = (int)json_array_size(sample);
    shape[1] = shape[2] = 1;
    *rank = 1;
    return 0;
  }
  const json_t *b = json_array_get(a, 0);
  if (!json_is_array(b) || json_array_size(a) == 0 || json_array_size(b) == 0) {
    ae_problem_add(p, ptr,
                   "must be flat or nested as [channels][height][width]");
    return 1;
  }
  shape[0] = (int)json_array_size(sample);
  shape[1] = (int)json_array_size(a);
  shape[2] = (int)json_array_size(b);
  *rank = 3;
  return 0;
}

/* Reads a number into *out as float; 0 or 1. */
static int read_value(const json_t *v, float *out) {
  if (!json_is_number(v)) return 1;
  double x = json_number_value(v);
  if (!isfinite(x) || fabs(x) > FLT_MAX) return 1;
  *out = (float)x;
  return 0;
}

/* Copies one sample (flat or nested to shape) into dst. */
static int read_sample(const json_t *s, const int shape[3], int rank,
                       float *dst, const char *ptr, ae_problem *p) {
  size_t n = shape_elems(shape, rank);
  if (json_is_array(s) && json_array_size(s) == n &&
      (n == 0 || !json_is_array(json_array_get(s, 0)))) {
    for (size_t i = 0; i < n; i++)
      if (read_value(json_array_get(s, i), &dst[i])) {
        char ip[AE_PTR_MAX];
        ae_ptr_index(ip, sizeof ip, ptr, i);
        ae_problem_add(p, ip, "must be a finite number");
        return 1;
      }
    return 0;
  }
  if (rank == 3 && json_is_array(s) && json_array_size(s) == (size_t)shape[0]) {
    size_t k = 0;
    for (int c = 0; c < shape[0]; c++) {
      const json_t *plane = json_array_get(s, (size_t)c);
      if (!json_is_array(plane) || json_array_size(plane) != (size_t)shape[1])
        goto bad_shape;
      for (int h = 0; h < shape[1]; h++) {
        const json_t *row = json_array_get(plane, (size_t)h);
        if (!json_is_array(row) || json_array_size(row) != (size_t)shape[2])
          goto bad_shape;
        for (int w = 0; w < shape[2]; w++)
          if (read_value(json_array_get(row, (size_t)w), &dst[k++])) {
            char ip[AE_PTR_MAX + 40];
            if (snprintf(ip, sizeof ip, "%s/%d/%d/%d", ptr, c, h, w) < 0)
              ip[0] = '\0';
            ae_problem_add(p, ip, "must be a finite number");
            return 1;
          }
      }
    }
    return 0;
  }
bad_shape:
  if (rank == 3)
    ae_problem_add(p, ptr,
                   "must be %zu numbers, or nested as [%d][%d][%d] (the "
                   "input shape)",
                   n, shape[0], shape[1], shape[2]);
  else
    ae_problem_add(p, ptr,
                   "must be an array of %zu numbers (the input "
                   "shape)",
                   n);
  return 1;
}

typedef struct {
  const ae_dataset_info *info; /* catalog entry, or NULL */
  int is_inline, has_shape, has_classes, has_batch;
} data_meta;

static int parse_data(const json_t *d, ae_arch_type type, int type_known,
                      int arch_classes, const ae_model_info *model,
                      const ae_catalog *cat, const ae_limits *lim,
                      ae_data_spec *out, data_meta *m, ae_problem *p) {
  int errors = 0;
  const json_t *empty = NULL;
  if (!d) d = empty = json_object();
  if (!d) return -1;
  if (!json_is_object(d)) {
    ae_problem_add(p, "/data", "must be an object, not %s",
                   ae_json_type_name(d));
    return 1;
  }
  static const char *const keys[] = {"dataset",    "input_shape", "num_classes",
                                     "batch_size", "inputs",      "labels",
                                     NULL};
  errors += ae_check_keys(d, keys, "/data", p);
  const json_t *ds = json_object_get(d, "dataset");
  const json_t *inputs = json_object_get(d, "inputs");
  const json_t *labels = json_object_get(d, "labels");
  const json_t *shape = json_object_get(d, "input_shape");
  const json_t *classes = json_object_get(d, "num_classes");
  const char *name = "synthetic";
  if (ds && !json_is_string(ds)) {
    ae_problem_add(p, "/data/dataset", "must be a string, not %s",
                   ae_json_type_name(ds));
    errors++;
    ds = NULL;
  } else if (ds) {
    name = json_string_value(ds);
  } else if (inputs) {
    name = "inline";
  }
  m->is_inline = strcmp(name, "inline") == 0;
  if (strcmp(name, "synthetic") != 0 && !m->is_inline) {
    for (size_t i = 0; cat && i < cat->n; i++)
      if (strcmp(cat->sets[i].name, name) == 0) m->info = &cat->sets[i];
    if (!m->info) {
      char known[1024];
      size_t n = (size_t)snprintf(known, sizeof known, "synthetic");
      for (size_t i = 0; cat && i < cat->n && n < sizeof known; i++)
        n += (size_t)snprintf(known + n, sizeof known - n, ", %s",
                              cat->sets[i].name);
      ae_problem_add(p, "/data/dataset",
                     "unknown dataset \"%.128s\" (known: %s; or give inline "
                     "\"inputs\")",
                     name, known);
      errors++;
    }
  }
  if (m->is_inline && !inputs) {
    ae_problem_add(p, "/data/inputs",
                   "required when the dataset is \"inline\"");
    errors++;
  }
  if (inputs && !m->is_inline) {
    ae_problem_add(p, "/data/inputs",
                   "inline inputs cannot be combined with dataset \"%.128s\"",
                   name);
    errors++;
  }
  if (labels && !inputs) {
    ae_problem_add(p, "/data/labels", "only allowed with inline inputs");
    errors++;
  }
  if (m->info && shape) {
    /* Allowed when it repeats the dataset's own shape (a normalised
     * request does). */
    int given[3] = {0, 0, 0}, rank = 0;
    ae_problem scratch = AE_PROBLEM_INIT;
    if (parse_shape(shape, given, &rank, &scratch) == 0 &&
        rank == m->info->rank &&
        memcmp(given, m->info->shape, (size_t)rank * sizeof(int)) == 0)
      shape = NULL;
    ae_problem_clear(&scratch);
  }
  if (m->info && classes && json_is_integer(classes) &&
      json_integer_value(classes) == m->info->num_classes)
    classes = NULL;
  if (m->info && shape) {
    ae_problem_add(p, "/data/input_shape",
                   "only for synthetic or inline data; dataset \"%s\" has its "
                   "own shape",
                   name);
    errors++;
    shape = NULL;
  }
  if (m->info && classes) {
    ae_problem_add(p, "/data/num_classes",
                   "only for synthetic or inline data; dataset \"%s\" has %d "
                   "classes",
                   name, m->info->num_classes);
    errors++;
    classes = NULL;
  }
  /* Shape. */
  if (m->info) {
    memcpy(out->input_shape, m->info->shape, sizeof out->input_shape);
    out->input_rank = m->info->rank;
  } else if (shape) {
    errors += parse_shape(shape, out->input_shape, &out->input_rank, p);
    m->has_shape = 1;
  } else if (m->is_inline && json_is_array(inputs) &&
             json_array_size(inputs) > 0 &&
             !(type_known &&
               (type == AE_ARCH_NB201 || type == AE_ARCH_NB101 ||
                type == AE_ARCH_DARTS) &&
               !json_is_array(json_array_get(json_array_get(inputs, 0), 0)))) {
    errors += infer_inline_shape(json_array_get(inputs, 0), out->input_shape,
                                 &out->input_rank, p);
  } else if (type_known && (type == AE_ARCH_NB201 || type == AE_ARCH_NB101 ||
                            type == AE_ARCH_DARTS)) {
    out->input_shape[0] = 3;
    out->input_shape[1] = out->input_shape[2] = 32;
    out->input_rank = 3;
  } else if (type_known && type == AE_ARCH_MLP_DAG) {
    out->input_shape[0] = 784;
    out->input_shape[1] = out->input_shape[2] = 1;
    out->input_rank = 1;
  } else if (model && !m->is_inline) {
    memcpy(out->input_shape, model->input_shape, sizeof out->input_shape);
    out->input_rank = model->input_rank;
  } else if (type_known && type == AE_ARCH_GRAPH && !m->is_inline) {
    ae_problem_add(p, "/data/input_shape",
                   "required for a graph architecture on synthetic data");
    errors++;
  }
  /* Classes. */
  long long nc = arch_classes > 0 ? arch_classes : 10;
  if (m->info) nc = m->info->num_classes;
  if (classes) {
    errors += ae_get_int(d, "num_classes", "/data", 2, AE_MAX_CLASSES, &nc, p);
    m->has_classes = 1;
  }
  out->num_classes = (int)nc;
  /* Batch size. */
  long long max_batch = lim->max_batch_size;
  if (m->info && m->info->size < max_batch) max_batch = m->info->size;
  long long bs = 64 < max_batch ? 64 : max_batch;
  m->has_batch = json_object_get(d, "batch_size") != NULL;
  errors += ae_get_int(d, "batch_size", "/data", 2,
                       max_batch < 2 ? 2 : max_batch, &bs, p);
  out->batch_size = (int)bs;
  out->dataset = strdup(name);
  if (!out->dataset) {
    json_decref((json_t *)empty);
    return -1;
  }
  /* Inline data. */
  if (m->is_inline && inputs && !json_is_array(inputs)) {
    ae_problem_add(p, "/data/inputs", "must be an array of samples, not %s",
                   ae_json_type_name(inputs));
    errors++;
  } else if (m->is_inline && inputs) {
    size_t n = json_array_size(inputs);
    if (n < 2 || n > (size_t)lim->max_batch_size) {
      ae_problem_add(p, "/data/inputs", "must have 2 to %d samples, not %zu",
                     lim->max_batch_size, n);
      errors++;
    } else if (m->has_batch && (size_t)bs != n) {
      ae_problem_add(p, "/data/batch_size",
                     "must equal the number of inline samples (%zu)", n);
      errors++;
    } else if (!errors && out->input_rank > 0) {
      out->batch_size = (int)n;
      size_t per = shape_elems(out->input_shape, out->input_rank);
      out->inputs = malloc(n * per * sizeof *out->inputs);
      if (!out->inputs) {
        json_decref((json_t *)empty);
        return -1;
      }
      int bad = 0;
      for (size_t i = 0; i < n && bad < MAX_ELEMENT_ERRORS; i++) {
        char ip[AE_PTR_MAX];
        ae_ptr_index(ip, sizeof ip, "/data/inputs", i);
        bad += read_sample(json_array_get(inputs, i), out->input_shape,
                           out->input_rank, out->inputs + i * per, ip, p);
      }
      errors += bad;
    }
    if (labels && !json_is_array(labels)) {
      ae_problem_add(p, "/data/labels", "must be an array of class indices");
      errors++;
    } else if (labels && json_array_size(labels) != n) {
      ae_problem_add(p, "/data/labels",
                     "has %zu entries for %zu inline samples",
                     json_array_size(labels), n);
      errors++;
    } else if (labels && !errors) {
      out->labels = malloc(n * sizeof *out->labels);
      if (!out->labels) {
        json_decref((json_t *)empty);
        return -1;
      }
      int bad = 0;
      for (size_t i = 0; i < n && bad < MAX_ELEMENT_ERRORS; i++) {
        const json_t *l = json_array_get(labels, i);
        if (!json_is_integer(l) || json_integer_value(l) < 0 ||
            json_integer_value(l) >= out->num_classes) {
          char ip[AE_PTR_MAX];
          ae_ptr_index(ip, sizeof ip, "/data/labels", i);
          ae_problem_add(p, ip, "must be an integer in [0, %d)",
                         out->num_classes);
          bad++;
        } else {
          out->labels[i] = (int)json_integer_value(l);
        }
      }
      errors += bad;
    }
  }
  json_decref((json_t *)empty);
  return errors;
}

/* A graph's output width against the data's number of classes (a
 * graph says its width only through its nodes, known after lowering).
 * When the request did not state the classes (synthetic or inline data
 * without num_classes) the data follows the output, provided the inline
 * labels fit; a width the request contradicts (num_classes, a catalog
 * dataset, labels beyond it) is a 422 naming /architecture/output, never a
 * silent mismatch.  An unlabelled batch with an output no classifier has
 * (one unit, a feature map) keeps the default: nothing is scored against
 * classes then.  Returns the number of errors added (0 or 1). */
static int check_output_width(ae_request *out, const data_meta *m,
                              ae_problem *p) {
  int width = out->net.num_classes, classes = out->data.num_classes;
  if (out->arch.type != AE_ARCH_GRAPH || width == classes) return 0;
  const ae_graph *given = &out->arch.graph;
  const char *id = given->nodes[given->output].name;
  if (!id) id = "?";
  if (m->info || m->has_classes) {
    ae_problem_add(p, "/architecture/output",
                   "the output (node \"%s\") has %d units but the data has "
                   "%d classes (%s); make the output %d wide%s",
                   id, width, classes,
                   m->info ? "from the dataset" : "/data/num_classes", classes,
                   m->info ? "" : " or set /data/num_classes to match");
    return 1;
  }
  int top_label = -1;
  for (int i = 0; out->data.labels && i < out->data.batch_size; i++)
    if (out->data.labels[i] > top_label) top_label = out->data.labels[i];
  if (top_label >= width) {
    ae_problem_add(p, "/architecture/output",
                   "the output (node \"%s\") has %d units but the labels go "
                   "up to %d; make the output at least %d wide",
                   id, width, top_label, top_label + 1);
    return 1;
  }
  if (width >= 2 && width <= AE_MAX_CLASSES) out->data.num_classes = width;
  return 0;
}

/* ---- normalised request ---- */

static json_t *activation_json(ae_activation a) {
  if (a.fn == AE_ACT_LEAKY_RELU)
    return json_pack("{s:s, s:f}", "fn", "leaky_relu", "slope", a.slope);
  return json_string(ae_act_name(a.fn));
}

/* The "activation" of an mlp_dag: one value when every linear edge shares
 * it (or there are none), else one per linear edge. */
static json_t *mlp_activation_json(const ae_arch *a, const json_t *given) {
  if (given && json_is_array(given)) {
    json_t *arr = json_array();
    for (int e = 0; arr && e < a->dag.n_edges; e++)
      if (a->dag.edges[e].kind == AE_EDGE_LINEAR &&
          json_array_append_new(arr, activation_json(a->dag.edges[e].act))) {
        json_decref(arr);
        return NULL;
      }
    return arr;
  }
  ae_activation act = {AE_ACT_RELU, 0.01};
  for (int e = 0; e < a->dag.n_edges; e++)
    if (a->dag.edges[e].kind == AE_EDGE_LINEAR) {
      act = a->dag.edges[e].act;
      break;
    }
  return activation_json(act);
}

/* Copies a graph node object with its op's defaults filled in. */
static json_t *graph_node_json(const json_t *given, const ae_node *parsed) {
  json_t *n = json_deep_copy(given);
  if (!n) return NULL;
  int bad = 0;
  switch (parsed->op) {
  case AE_OP_LINEAR:
    bad |= json_object_set_new(n, "bias", json_boolean(parsed->bias));
    break;
  case AE_OP_CONV:
    bad |= json_object_set_new(n, "stride", json_integer(parsed->stride));
    bad |= json_object_set_new(n, "padding", json_integer(parsed->padding));
    break;
  case AE_OP_AVG_POOL:
    bad |= json_object_set_new(n, "stride", json_integer(parsed->stride));
    bad |= json_object_set_new(n, "padding", json_integer(parsed->padding));
    bad |= json_object_set_new(n, "count_include_pad",
                               json_boolean(parsed->count_include_pad));
    break;
  case AE_OP_ACT:
    if (parsed->act.fn == AE_ACT_LEAKY_RELU)
      bad |= json_object_set_new(n, "slope", json_real(parsed->act.slope));
    break;
  default:
    break;
  }
  if (bad) {
    json_decref(n);
    return NULL;
  }
  return n;
}

/* A DARTS cell as {"ops": [[op, input] x 8], "concat": [...]} parts. */
static json_t *darts_pairs_json(const ae_darts_cell *c) {
  json_t *pairs = json_array();
  for (int k = 0; pairs && k < 8; k++)
    if (json_array_append_new(
            pairs,
            json_pack("[s, i]", ae_darts_op_name(c->op[k]), c->input[k]))) {
      json_decref(pairs);
      return NULL;
    }
  return pairs;
}

static json_t *darts_concat_json(unsigned mask) {
  json_t *list = json_array();
  for (int s = 2; list && s < 6; s++)
    if ((mask & (1u << s)) && json_array_append_new(list, json_integer(s))) {
      json_decref(list);
      return NULL;
    }
  return list;
}

/* nb101 and darts in their normal form: the pruned matrix and its ops;
 * the genotype as an object, whichever form was given. */
static json_t *cell_arch_json(const ae_arch *a, int classes) {
  if (a->type == AE_ARCH_NB101) {
    json_t *matrix = json_array(), *ops = json_array();
    int n = a->nb101_vertices, bad = !matrix || !ops;
    for (int i = 0; !bad && i < n; i++) {
      json_t *row = json_array();
      for (int k = 0; row && k < n; k++)
        bad |= json_array_append_new(row, json_integer(a->nb101_matrix[i][k]));
      bad |= !row || json_array_append_new(matrix, row);
      bad |= json_array_append_new(
          ops, json_string(ae_nb101_op_name(a->nb101_ops[i])));
    }
    if (bad) {
      json_decref(matrix);
      json_decref(ops);
      return NULL;
    }
    return json_pack("{s:s, s:o, s:o, s:i, s:i, s:i, s:i}", "type", "nb101",
                     "matrix", matrix, "ops", ops, "stem_channels",
                     a->stem_channels, "stacks", a->stacks, "cells_per_stack",
                     a->cells_per_stack, "num_classes", classes);
  }
  json_t *geno = json_pack("{s:o*, s:o*, s:o*, s:o*}", "normal",
                           darts_pairs_json(&a->darts_normal), "normal_concat",
                           darts_concat_json(a->darts_normal.concat), "reduce",
                           darts_pairs_json(&a->darts_reduce), "reduce_concat",
                           darts_concat_json(a->darts_reduce.concat));
  if (!geno || json_object_size(geno) != 4) {
    json_decref(geno);
    return NULL;
  }
  return json_pack("{s:s, s:o, s:i, s:i, s:i}", "type", "darts", "genotype",
                   geno, "channels", a->darts_channels, "layers",
                   a->darts_layers, "num_classes", classes);
}

static json_t *arch_json(const ae_request *r, const json_t *given) {
  const ae_arch *a = &r->arch;
  int classes = a->num_classes > 0 ? a->num_classes : r->net.num_classes;
  if (a->model) {
    json_t *as_graph = json_object_get(given, "as_graph");
    return json_is_true(as_graph)
               ? json_pack("{s:s, s:s, s:b}", "type", "onnx", "model", a->model,
                           "as_graph", 1)
               : json_pack("{s:s, s:s}", "type", "onnx", "model", a->model);
  }
  switch (a->type) {
  case AE_ARCH_NB201:
    return json_pack("{s:s, s:O, s:i, s:i, s:i}", "type", "nb201", "cell",
                     json_object_get(given, "cell"), "channels", a->channels,
                     "cells_per_stage", a->cells_per_stage, "num_classes",
                     classes);
  case AE_ARCH_NB101:
  case AE_ARCH_DARTS:
    return cell_arch_json(a, classes);
  case AE_ARCH_MLP_DAG:
    return json_pack(
        "{s:s, s:O, s:i, s:o, s:b, s:i}", "type", "mlp_dag", "dag",
        json_object_get(given, "dag"), "width", a->width, "activation",
        mlp_activation_json(a, json_object_get(given, "activation")), "bias",
        a->bias, "num_classes", classes);
  case AE_ARCH_GRAPH: {
    const json_t *nodes = json_object_get(given, "nodes");
    size_t n_given = json_array_size(nodes);
    json_t *out_nodes = json_array();
    /* parsed[i]: the parsed node of request node i; NULL for a node that
     * was dropped (it does not reach the output) and keeps its form. */
    const ae_node **parsed = calloc(n_given + 1, sizeof *parsed);
    if (!out_nodes || !parsed) {
      json_decref(out_nodes);
      free(parsed);
      return NULL;
    }
    for (int k = 1; k < a->graph.n_nodes; k++) {
      int src = a->graph.nodes[k].src_index;
      if (src >= 0 && (size_t)src < n_given) parsed[src] = &a->graph.nodes[k];
    }
    for (size_t i = 0; i < n_given; i++) {
      json_t *n = parsed[i]
                      ? graph_node_json(json_array_get(nodes, i), parsed[i])
                      : json_deep_copy(json_array_get(nodes, i));
      if (!n || json_array_append_new(out_nodes, n)) {
        json_decref(out_nodes);
        free(parsed);
        return NULL;
      }
    }
    free(parsed);
    return json_pack("{s:s, s:o, s:O}", "type", "graph", "nodes", out_nodes,
                     "output", json_object_get(given, "output"));
  }
  }
  return NULL;
}

static json_t *data_json(const ae_data_spec *d, const json_t *given) {
  json_t *shape = d->input_rank == 3
                      ? json_pack("[i, i, i]", d->input_shape[0],
                                  d->input_shape[1], d->input_shape[2])
                      : json_pack("[i]", d->input_shape[0]);
  json_t *o = json_pack("{s:s, s:o, s:i, s:i}", "dataset", d->dataset,
                        "input_shape", shape, "num_classes", d->num_classes,
                        "batch_size", d->batch_size);
  if (!o) return NULL;
  const json_t *inputs = given ? json_object_get(given, "inputs") : NULL;
  const json_t *labels = given ? json_object_get(given, "labels") : NULL;
  if ((inputs && json_object_set(o, "inputs", (json_t *)inputs)) ||
      (labels && json_object_set(o, "labels", (json_t *)labels))) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* The selected metrics as "group.field" names, in catalog order. */
static json_t *selected_json(ae_metric_set sel) {
  json_t *list = json_array();
  for (int k = 0; list && k < AE_M_COUNT; k++) {
    if (!ae_metric_set_has(sel, (ae_metric_id)k)) continue;
    const ae_metric_info *m = ae_metric_info_of((ae_metric_id)k);
    if (json_array_append_new(list,
                              json_sprintf("%s.%s", m->group, m->field))) {
      json_decref(list);
      return NULL;
    }
  }
  return list;
}

static json_t *normalised_json(const ae_request *r, const json_t *body) {
  const ae_settings *s = &r->settings;
  json_t *settings = json_pack(
      "{s:{s:i, s:i}, s:{s:i, s:i}, s:{s:i, s:s}, s:o, s:s, s:{s:i}, "
      "s:{s:i}}",
      "linear_regions", "samples", s->lr_samples, "repeats", s->lr_repeats,
      "curvature", "points", s->curv_points, "repeats", s->curv_repeats, "ntk",
      "repeats", s->ntk_repeats, "parameterization",
      s->ntk_parameterization == AE_NTK_NTK ? "ntk" : "standard", "eta",
      isfinite(s->eta) ? json_real(s->eta) : json_null(), "init",
      init_name(s->init), "activation_patterns", "repeats", s->ap_repeats,
      "feature_corr_lambda_min", "samples", s->fc_samples);
  return json_pack(
      "{s:o, s:o, s:I, s:o, s:o, s:o, s:i, s:I, s:o}", "architecture",
      arch_json(r, json_object_get(body, "architecture")), "data",
      data_json(&r->data, json_object_get(body, "data")), "seed",
      (json_int_t)r->seed, "profile",
      r->profile ? json_string(r->profile) : json_null(), "metrics",
      selected_json(r->selected), "settings", settings, "priority", r->priority,
      "timeout_ms", (json_int_t)r->timeout_ms, "client_ref",
      r->client_ref ? json_string(r->client_ref) : json_null());
}

/* ---- the request ---- */

/* 1 when s is "sha256:" and 64 lowercase hex digits. */
static int model_id_ok(const char *s) {
  if (strncmp(s, "sha256:", 7)) return 0;
  for (int i = 0; i < 64; i++)
    if (!strchr("0123456789abcdef", s[7 + i]) || !s[7 + i]) return 0;
  return s[71] == '\0';
}

/* {"type": "onnx", "model": id}: resolves the model and parses its graph
 * into out (out->model set).  *info gets the model's defaults (its
 * architecture released; its warnings kept on success, released
 * otherwise).  0, AE_EINVAL (p filled) or AE_ENOMEM. */
static int parse_onnx_ref(const json_t *j, const ae_model_source *models,
                          const ae_limits *lim, ae_arch *out,
                          ae_model_info *info, ae_problem *p) {
  static const char *const keys[] = {"type", "model", "as_graph", NULL};
  memset(info, 0, sizeof *info);
  int errors = ae_check_keys(j, keys, "/architecture", p);
  int as_graph = 0;
  errors += ae_get_bool(j, "as_graph", "/architecture", &as_graph, p);
  const json_t *model = json_object_get(j, "model");
  const char *id = json_is_string(model) ? json_string_value(model) : NULL;
  if (!id || !model_id_ok(id)) {
    ae_problem_add(p, "/architecture/model",
                   "must be the id POST /v1/models answered: \"sha256:\" "
                   "and 64 lowercase hex digits");
    return AE_EINVAL;
  }
  int rc = models ? models->resolve(models->ctx, id, info) : AE_ENOTFOUND;
  if (rc) { /* a resolver fills nothing it keeps on failure */
    json_decref(info->architecture);
    json_decref(info->warnings);
    memset(info, 0, sizeof *info);
  }
  if (rc == AE_ENOTFOUND) {
    ae_problem_add(p, "/architecture/model",
                   "no model %s is stored here; upload it with POST "
                   "/v1/models",
                   id);
    return AE_EINVAL;
  }
  if (rc == AE_ENOMEM) return AE_ENOMEM;
  if (rc) {
    ae_problem_set(p, 503, "store_unavailable", "Store unavailable",
                   "The stored model %s could not be read; try again.", id);
    return AE_EINVAL;
  }
  /* A NAS-Bench-201 network is scored as the native nb201 request (its
   * graph would get other weights and cell-level metrics); "as_graph"
   * opts out. */
  ae_onnx_nb201 nb;
  int recognised = 0;
  if (!as_graph) {
    recognised = ae_onnx_nb201_match(info->architecture, info->input_shape,
                                     info->input_rank, &nb);
    if (recognised < 0) {
      json_decref(info->architecture);
      info->architecture = NULL;
      return AE_ENOMEM;
    }
  }
  json_t *native = recognised ? ae_onnx_nb201_request_arch(&nb) : NULL;
  if (recognised && !native) {
    json_decref(info->architecture);
    info->architecture = NULL;
    return AE_ENOMEM;
  }
  rc = ae_arch_from_json(native ? native : info->architecture, "/architecture",
                         lim, out, p);
  json_decref(native);
  json_decref(info->architecture);
  info->architecture = NULL;
  if (rc == AE_OK && errors) {
    ae_arch_free(out);
    rc = AE_EINVAL;
  }
  if (rc == AE_OK && !(out->model = strdup(id))) {
    ae_arch_free(out);
    rc = AE_ENOMEM;
  }
  if (rc == AE_OK) out->model_bn_folded = recognised && nb.bn_folded;
  if (rc) {
    json_decref(info->warnings);
    info->warnings = NULL;
  }
  return rc;
}

int ae_request_parse(const json_t *body, const ae_catalog *cat,
                     const ae_limits *lim, ae_request *out, ae_problem *p) {
  return ae_request_parse_models(body, cat, NULL, lim, out, p);
}

int ae_request_parse_models(const json_t *body, const ae_catalog *cat,
                            const ae_model_source *models, const ae_limits *lim,
                            ae_request *out, ae_problem *p) {
  memset(out, 0, sizeof *out);
  ae_settings_default(&out->settings);
  out->timeout_ms = lim->default_timeout_ms;
  if (!json_is_object(body)) {
    ae_problem_add(p, "", "the request body must be a JSON object, not %s",
                   body ? ae_json_type_name(body) : "nothing");
    return AE_EINVAL;
  }
  static const char *const keys[] = {
      "architecture", "data",     "seed",       "profile",    "metrics",
      "settings",     "priority", "timeout_ms", "client_ref", NULL};
  int errors = ae_check_keys(body, keys, "", p);
  int rc = AE_OK;
  /* Architecture. */
  const json_t *arch = json_object_get(body, "architecture");
  int arch_ok = 0, type_known = 0, has_model = 0;
  ae_arch_type type = AE_ARCH_GRAPH;
  ae_model_info model;
  memset(&model, 0, sizeof model);
  if (!arch) {
    ae_problem_add(p, "/architecture",
                   "required field \"architecture\" is "
                   "missing");
    errors++;
  } else {
    const json_t *t = json_object_get(arch, "type");
    const char *ts = json_is_string(t) ? json_string_value(t) : "";
    type_known = 1;
    if (strcmp(ts, "nb201") == 0)
      type = AE_ARCH_NB201;
    else if (strcmp(ts, "mlp_dag") == 0)
      type = AE_ARCH_MLP_DAG;
    else if (strcmp(ts, "graph") == 0 || strcmp(ts, "onnx") == 0)
      type = AE_ARCH_GRAPH;
    else if (strcmp(ts, "nb101") == 0)
      type = AE_ARCH_NB101;
    else if (strcmp(ts, "darts") == 0)
      type = AE_ARCH_DARTS;
    else
      type_known = 0;
    if (strcmp(ts, "onnx") == 0) {
      rc = parse_onnx_ref(arch, models, lim, &out->arch, &model, p);
      if (rc == AE_OK) has_model = 1;
      out->model_warnings = model.warnings; /* freed with out */
      model.warnings = NULL;
    } else {
      rc = ae_arch_from_json(arch, "/architecture", lim, &out->arch, p);
    }
    if (rc == AE_ENOMEM) goto fail;
    if (rc == AE_OK)
      arch_ok = 1;
    else
      errors++;
  }
  /* Scalars. */
  long long x = 0;
  if (ae_get_int(body, "seed", "", 0, LLONG_MAX, &x, p))
    errors++;
  else
    out->seed = (uint64_t)x;
  /* The selection: the profile's metrics and those "metrics" names, a
   * union; neither given means the profile "full". */
  const json_t *profile = json_object_get(body, "profile");
  const json_t *metrics = json_object_get(body, "metrics");
  if (profile)
    errors += parse_profile(profile, &out->profile, &out->selected, p);
  if (metrics) errors += parse_metrics(metrics, &out->selected, p);
  if (!out->profile && !metrics) {
    out->profile = "full";
    (void)ae_metric_profile("full", &out->selected); /* a known name */
  }
  const json_t *settings = json_object_get(body, "settings");
  int fc_given = 0;
  if (settings)
    errors += parse_settings(settings, &out->settings, &fc_given, p);
  /* "fast" sweeps whole spaces: feature_corr_lambda_min_mean is over the
   * first sample alone (the metric itself) unless the request sets
   * samples; the other 7 default passes would be 90 % of its time. */
  if (!fc_given && out->profile && strcmp(out->profile, "fast") == 0)
    out->settings.fc_samples = 1;
  x = 0;
  errors += ae_get_int(body, "priority", "", -1000, 1000, &x, p);
  out->priority = (int)x;
  x = lim->default_timeout_ms;
  errors += ae_get_int(body, "timeout_ms", "", 1, 86400000, &x, p);
  out->timeout_ms = x;
  const json_t *ref = json_object_get(body, "client_ref");
  if (ref && !json_is_null(ref)) {
    if (!json_is_string(ref) || json_string_length(ref) > 256) {
      ae_problem_add(p, "/client_ref", "must be a string of at most 256 bytes");
      errors++;
    } else if (!(out->client_ref = strdup(json_string_value(ref)))) {
      rc = AE_ENOMEM;
      goto fail;
    }
  }
  /* Data. */
  data_meta meta;
  memset(&meta, 0, sizeof meta);
  int derr =
      parse_data(json_object_get(body, "data"), type, type_known,
                 has_model ? model.num_classes
                 : arch_ok ? out->arch.num_classes
                           : 0,
                 has_model ? &model : NULL, cat, lim, &out->data, &meta, p);
  if (derr < 0) {
    rc = AE_ENOMEM;
    goto fail;
  }
  errors += derr;
  if (!derr && has_model && out->arch.type == AE_ARCH_NB201 &&
      out->data.num_classes != model.num_classes) {
    /* A recognised NB-201 model: its classifier is the model's, as the
     * graph's would be (check_output_width). */
    ae_problem_add(p, "/architecture/model",
                   "the model's output has %d units but the data has %d "
                   "classes; use data with %d classes",
                   model.num_classes, out->data.num_classes, model.num_classes);
    errors++;
  }
  if (!derr && fc_given && out->settings.fc_samples > out->data.batch_size) {
    ae_problem_add(p, "/settings/feature_corr_lambda_min/samples",
                   "must be at most the batch size (%d)", out->data.batch_size);
    errors++;
  } else if (!derr && !fc_given &&
             out->settings.fc_samples > out->data.batch_size) {
    out->settings.fc_samples = out->data.batch_size;
  }
  if (!errors && out->arch.type != AE_ARCH_MLP_DAG &&
      out->arch.type != AE_ARCH_GRAPH && out->data.input_rank != 3) {
    ae_problem_add(p,
                   meta.info        ? "/data/dataset"
                   : meta.is_inline ? "/data/inputs"
                                    : "/data/input_shape",
                   "%s needs image data [channels, height, width]",
                   out->arch.type == AE_ARCH_NB201   ? "nb201"
                   : out->arch.type == AE_ARCH_NB101 ? "nb101"
                                                     : "darts");
    errors++;
  }
  if (errors) goto invalid;
  /* Lower for the data and check the limits. */
  ae_lower_opts opts;
  memset(&opts, 0, sizeof opts);
  memcpy(opts.input_shape, out->data.input_shape, sizeof opts.input_shape);
  opts.input_rank = out->data.input_rank;
  opts.num_classes = out->data.num_classes;
  rc = ae_arch_lower(&out->arch, &opts, lim, "/architecture", &out->net, p);
  if (rc == AE_ENOMEM) goto fail;
  if (rc != AE_OK) goto invalid;
  if (check_output_width(out, &meta, p)) goto invalid;
  out->normalised = normalised_json(out, body);
  if (!out->normalised) {
    rc = AE_ENOMEM;
    goto fail;
  }
  return AE_OK;
invalid:
  ae_request_free(out);
  if (p->status == 0) ae_problem_add(p, "", "invalid request");
  return AE_EINVAL;
fail:
  ae_request_free(out);
  ae_problem_set(p, 500, "internal", NULL, "out of memory");
  return rc == AE_OK ? AE_ENOMEM : rc;
}

/* ---- inline inputs read back from a normalised request's text ---- */

typedef struct {
  const char *p, *end;
} text_scan;

static void scan_ws(text_scan *s) {
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
    s->p++;
}

/* Past a string (at its opening quote); 0, or -1 when it does not end. */
static int scan_string(text_scan *s) {
  if (s->p >= s->end || *s->p != '"') return -1;
  for (s->p++; s->p < s->end; s->p++) {
    if (*s->p == '\\') {
      s->p++;
    } else if (*s->p == '"') {
      s->p++;
      return 0;
    }
  }
  return -1;
}

/* Past one value of any kind, nested at most depth deep; 0 or -1. */
static int scan_value(text_scan *s, int depth) {
  scan_ws(s);
  if (s->p >= s->end || depth <= 0) return -1;
  char open = *s->p;
  if (open == '"') return scan_string(s);
  if (open != '{' && open != '[') {
    const char *start = s->p;
    while (s->p < s->end && strchr("+-.0123456789eEaflnrstu", *s->p) && *s->p)
      s->p++;
    return s->p > start ? 0 : -1;
  }
  char close = open == '{' ? '}' : ']';
  s->p++;
  scan_ws(s);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    return 0;
  }
  for (;;) {
    if (open == '{') {
      scan_ws(s);
      if (scan_string(s)) return -1;
      scan_ws(s);
      if (s->p >= s->end || *s->p++ != ':') return -1;
    }
    if (scan_value(s, depth - 1)) return -1;
    scan_ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
      s->p++;
      continue;
    }
    if (*s->p++ == close) return 0;
    return -1;
  }
}

/* In the object at s->p, positions s->p at the value of key (a plain
 * name, no escapes); 0, or -1 when there is no such key. */
static int scan_to_key(text_scan *s, const char *key) {
  size_t klen = strlen(key);
  scan_ws(s);
  if (s->p >= s->end || *s->p++ != '{') return -1;
  for (;;) {
    scan_ws(s);
    const char *name = s->p + 1;
    if (scan_string(s)) return -1;
    int match = (size_t)(s->p - 1 - name) == klen && !memcmp(name, key, klen);
    scan_ws(s);
    if (s->p >= s->end || *s->p++ != ':') return -1;
    if (match) return 0;
    if (scan_value(s, 16)) return -1;
    scan_ws(s);
    if (s->p >= s->end || *s->p++ != ',') return -1;
  }
}

/* The numbers of the array at s->p (nested at most depth deep), in order,
 * into out[*k..n); 0 or -1. */
static int scan_numbers(text_scan *s, int depth, float *out, size_t n,
                        size_t *k) {
  scan_ws(s);
  if (depth <= 0 || s->p >= s->end || *s->p != '[') return -1;
  s->p++;
  scan_ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return 0;
  }
  for (;;) {
    scan_ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == '[') {
      if (scan_numbers(s, depth - 1, out, n, k)) return -1;
    } else {
      if (*s->p != '-' && (*s->p < '0' || *s->p > '9')) return -1;
      char *after;
      double x = strtod(s->p, &after);
      if (after == s->p || after > s->end || !isfinite(x) ||
          fabs(x) > FLT_MAX || *k >= n)
        return -1;
      out[(*k)++] = (float)x;
      s->p = after;
    }
    scan_ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
      s->p++;
      continue;
    }
    return *s->p++ == ']' ? 0 : -1;
  }
}

int ae_request_inputs_from_text(const char *text, size_t len, size_t n,
                                float **out) {
  *out = NULL;
  if (!text || !n || n > SIZE_MAX / sizeof(float)) return AE_EINVAL;
  /* strtod reads up to the text's end: it must be NUL-terminated there. */
  if (text[len] != '\0') return AE_EINVAL;
  text_scan s = {text, text + len};
  if (scan_to_key(&s, "data") || scan_to_key(&s, "inputs")) return AE_EINVAL;
  float *v = malloc(n * sizeof *v);
  if (!v) return AE_ENOMEM;
  size_t k = 0;
  /* Samples, then at most [C][H][W]. */
  if (scan_numbers(&s, 4, v, n, &k) || k != n) {
    free(v);
    return AE_EINVAL;
  }
  *out = v;
  return AE_OK;
}
