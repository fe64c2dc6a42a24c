/* request.h: a job request (POST /v1/jobs body) as a C struct.
 *
 * ae_request_parse validates the whole body synchronously (unknown keys,
 * types, ranges, the architecture, its shapes against the data) and either
 * fills an ae_request with every default resolved, or fills an ae_problem
 * whose errors name each offending field by JSON pointer.  A parsed request
 * is plain data: the loop thread parses it, a worker thread later reads it;
 * whoever holds it owns it and frees it with ae_request_free. */
#ifndef AE_REQUEST_H
#define AE_REQUEST_H

#include "api/arch.h"
#include "api/metric_set.h"
#include "api/problem.h"
#include <jansson.h>
#include <stdint.h>

enum {
  AE_GROUP_TOPOLOGY = 1u << 0,
  AE_GROUP_EXPRESSIVITY = 1u << 1,
  AE_GROUP_CONVERGENCE = 1u << 2,
  AE_GROUP_GENERALIZATION = 1u << 3,
  AE_GROUP_PROXIES = 1u << 4, /* ranking.md §4: only when asked for */
  AE_GROUP_ALL = 0xfu,        /* the four aspect groups (profile "full") */
  AE_GROUP_EVERY = 0x1fu      /* and the proxies (profile "all") */
};

typedef enum { AE_NTK_STANDARD, AE_NTK_NTK } ae_ntk_parameterization;

/* settings.init (ranking.md §0): how weights are drawn. */
typedef enum {
  AE_INIT_KAIMING_NORMAL, /* W ~ N(0, c_sigma / fan_in), biases 0 */
  AE_INIT_TORCH_DEFAULT,  /* W, linear biases ~ U(+-1/sqrt(fan_in)) */
  AE_INIT_GAUSSIAN        /* W ~ N(0, 1), biases 0 */
} ae_init_scheme;

typedef struct {
  int lr_samples;   /* linear_regions.samples (3000) */
  int lr_repeats;   /* linear_regions.repeats (3) */
  int curv_points;  /* curvature.points (128) */
  int curv_repeats; /* curvature.repeats (3) */
  int ntk_repeats;  /* ntk.repeats (1) */
  ae_ntk_parameterization ntk_parameterization; /* "standard" */
  double eta;                                   /* NaN: default 1/lambda_max */
  ae_init_scheme init;                          /* "kaiming_normal" */
  int ap_repeats; /* activation_patterns.repeats (8) */
  int fc_samples; /* feature_corr_lambda_min.samples (8) */
} ae_settings;

/* One dataset the server knows, as validation needs it (no pixels). */
typedef struct {
  const char *name;
  int shape[3], rank; /* per-sample shape */
  int num_classes;
  long long size; /* number of samples */
} ae_dataset_info;

typedef struct {
  const ae_dataset_info *sets;
  size_t n;
} ae_catalog;

typedef struct {
  char *dataset;                  /* "synthetic", a catalog name, or "inline" */
  int input_shape[3], input_rank; /* resolved per-sample shape */
  int num_classes;                /* resolved */
  int batch_size; /* N (64); for inline data, the sample count */
  float *inputs;  /* inline: batch_size * prod(shape), else NULL */
  int *labels;    /* inline labels, else NULL */
} ae_data_spec;

typedef struct {
  ae_arch arch;
  ae_graph net; /* arch lowered for this data (full network) */
  ae_data_spec data;
  uint64_t seed;
  ae_metric_set selected; /* the metrics selected (profile and "metrics") */
  const char *profile;    /* "fast", "rank", "full", "all" (static), or
                             NULL when only "metrics" was given */
  ae_settings settings;
  int priority; /* lower runs sooner */
  long long timeout_ms;
  char *client_ref;       /* NULL when absent */
  json_t *normalised;     /* owned: the request with defaults filled in,
                             as the job resource's "request" shows it */
  json_t *model_warnings; /* owned: an uploaded model's import warnings
                             (strings, ae_model_info.warnings), NULL when
                             none; the engine reports each as
                             "architecture.model: ..." */
} ae_request;

/* Validates body against the catalog and limits.  Returns 0, or AE_EINVAL
 * with p filled (status 422, code invalid_request) and *out left empty.
 * Knows no uploaded models: {"type": "onnx"} is a 422 at
 * /architecture/model (ae_request_parse_models). */
int ae_request_parse(const json_t *body, const ae_catalog *cat,
                     const ae_limits *lim, ae_request *out, ae_problem *p);

/* An uploaded ONNX model as a job needs it: what ae_onnx_import made of
 * it, without the file. */
typedef struct {
  json_t *architecture;           /* {"type": "graph", ...}: a new reference the
                                     parser releases */
  int input_shape[3], input_rank; /* per-sample: the default data shape */
  int num_classes;                /* the output's width: the default */
  json_t *warnings; /* the import's warnings (an array of strings, e.g. BN
                       folded into the convs): a new reference the parser
                       takes, or NULL */
} ae_model_info;

/* Where ae_request_parse_models finds the models a request names (the
 * daemon: its store; the CLI: the file it was given).  resolve returns
 * AE_OK with out filled, AE_ENOTFOUND (a 422 at /architecture/model), or
 * another status: AE_EIO (the store failed: a 503 store_unavailable),
 * AE_ENOMEM. */
typedef struct {
  int (*resolve)(void *ctx, const char *id, ae_model_info *out);
  void *ctx;
} ae_model_source;

/* ae_request_parse, with {"type": "onnx", "model": "sha256:..."} resolved
 * through models (NULL: none).  The model's graph is parsed and lowered
 * like a "graph" architecture (out->arch.model keeps the id), or, when it
 * is a NAS-Bench-201 network (api/onnx_nb201.h) and "as_graph" is not
 * true, as that native nb201 architecture (data with other classes than
 * the model's output are then a 422 at /architecture/model); data without
 * a shape or classes defaults to the model's input shape and output
 * width; the normalised request shows {"type": "onnx", "model": id} (and
 * "as_graph": true when given). */
int ae_request_parse_models(const json_t *body, const ae_catalog *cat,
                            const ae_model_source *models, const ae_limits *lim,
                            ae_request *out, ae_problem *p);

/* Parses a request body as JSON, rejecting duplicate keys: 0 and *out (a
 * new reference), or AE_EINVAL with p = 400 invalid_json whose detail gives
 * the line and column.  Used by the daemon and the CLI alike. */
int ae_json_parse_body(const char *buf, size_t len, json_t **out,
                       ae_problem *p);

/* Settings at their defaults. */
void ae_settings_default(ae_settings *s);

void ae_request_free(ae_request *r);

/* The inline inputs read back from the text of a normalised request
 * (ae_json_dumps of r->normalised, which echoes them): the numbers of its
 * "data"."inputs", in order, as float32.  They are the values
 * ae_request_parse read (a normalised number is the shortest text of the
 * same double, and strtod rounds it back to that double), so that a
 * daemon may hold a queued job's inputs once, as that text, and read them
 * at its start.  AE_OK with *out (malloc'd, n floats); AE_EINVAL when the
 * text has no inputs, a non-finite or non-number value, or not exactly n
 * of them; AE_ENOMEM.  text[len] must be its terminating NUL.  Any
 * thread. */
int ae_request_inputs_from_text(const char *text, size_t len, size_t n,
                                float **out);

#endif
