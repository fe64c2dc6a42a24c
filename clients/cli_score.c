/* cli_score.c: `archeval score [FILE|-]`: scores one job request (the body
 * of POST /v1/jobs) or a JSON array of them in this process, with no
 * server, and prints one JSON line per request, in input order:
 * {"result": ...} or {"error": problem}.
 *
 * The main thread reads and validates every request, then either scores
 * them itself or hands them to --threads worker threads, each with its own
 * engine; a worker writes only its own slots of the shared result table,
 * under one mutex, and the main thread prints the slots in order. */
#include "config.h"

#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/error.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "clients/cli.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"

#define AE_SCORE_MAX_INPUT (256u << 20) /* bytes of JSON read at most */
#define AE_SCORE_MAX_DATASETS 64

static void score_usage(FILE *f) {
  fprintf(f,
          "Usage: archeval score [OPTIONS] [FILE|-]\n"
          "Scores job requests in this process and prints one JSON line per\n"
          "request, in order: {\"result\": ...} or {\"error\": problem}.\n"
          "FILE (default '-', standard input) holds one request, the body of\n"
          "POST /v1/jobs, or a JSON array of them; or FILE is an ONNX model\n"
          "(MODEL.onnx), scored as {\"architecture\": {\"type\": \"onnx\"}}\n"
          "on synthetic data of its own input shape (--data NAME: a dataset\n"
          "instead; --seed N; --as-graph).\n"
          "\n"
          "Options:\n"
          "  --backend host|cuda   scoring backend (default host)\n"
          "  --threads N           parallel workers, each with its own engine\n"
          "                        (default 1)\n"
          "  --dataset NAME=PATH   register a dataset (repeatable); PATH is\n"
          "                        a folder or file: CIFAR-10/100 batches\n"
          "                        (binary or pickle), ImageNet16-120\n"
          "                        pickles, .npy, *_u8_nchw.bin or IDX;\n"
          "                        options ,split=train|test ,labels=FILE\n"
          "                        ,shape=CxHxW\n"
          "  --datasets-dir DIR    register every dataset one level under DIR\n"
          "  --profile P           what to compute: fast, rank, full or all\n"
          "                        (a request without profile or metrics:\n"
          "                        full)\n"
          "  --data NAME           MODEL.onnx only: the dataset to score on\n"
          "  --seed N              MODEL.onnx only: the seed (default 0)\n"
          "  --as-graph            MODEL.onnx only: score the imported graph\n"
          "                        even when the model is a NAS-Bench-201\n"
          "                        network (by default scored as the native\n"
          "                        nb201 request; \"as_graph\": true)\n"
          "  --metrics LIST        comma-separated groups (topology,\n"
          "                        expressivity, convergence, generalization,\n"
          "                        proxies) or metrics "
          "(convergence.ntk_condition)\n"
          "                        to compute, with --profile their union;\n"
          "                        either flag replaces every request's own\n"
          "                        \"profile\" and \"metrics\"\n"
          "  -h, --help            show this help\n"
          "\n"
          "Exit status: 0 all scored, 1 a job failed, 2 bad usage, 3 a\n"
          "request was rejected (problem+json on stderr), 4 backend\n"
          "unavailable.\n");
}

/* Prints a problem+json on stderr as one line. */
static void print_problem(const ae_problem *p) {
  json_t *j = ae_problem_to_json(p, NULL);
  char *s = j ? ae_json_dumps(j) : NULL;
  fprintf(stderr, "%s\n", s ? s : "{\"title\":\"error\"}");
  free(s);
  json_decref(j);
}

/* One request of the input and, once scored, its output line. */
typedef struct {
  json_t *body; /* borrowed from the parsed input */
  ae_request req;
  int valid;  /* parsed */
  char *line; /* the JSON line to print, malloc'd */
  int failed; /* 1: scoring failed */
  int done;
} score_item;

typedef struct {
  score_item *items;
  size_t n;
  size_t next; /* next item a worker takes */
  ae_engine_config cfg;
  const ae_dataset_registry *reg;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int open_failed;
  ae_error open_error;
} score_pool;

/* {"result": ...} or {"error": ...} as a malloc'd line (NULL: no memory). */
static char *wrap_line(const char *key, json_t *value /* stolen */) {
  json_t *o = json_object();
  if (!o || !value || json_object_set_new(o, key, value)) {
    json_decref(o);
    return NULL;
  }
  char *s = ae_json_dumps(o);
  json_decref(o);
  return s;
}

/* Scores one item with engine e; fills line and failed. */
static void score_one(ae_engine *e, const ae_dataset_registry *reg,
                      score_item *it) {
  ae_scorecard sc;
  ae_error err = AE_ERROR_INIT;
  int rc = ae_engine_score(e, &it->req, reg, NULL, &sc, &err);
  if (rc == AE_OK) {
    it->line = wrap_line("result", ae_scorecard_to_json(&sc));
  } else {
    ae_problem p = AE_PROBLEM_INIT;
    ae_problem_from_error(&err, &p);
    it->failed = 1;
    it->line = wrap_line("error", ae_problem_to_json(&p, NULL));
    ae_problem_clear(&p);
  }
  ae_scorecard_free(&sc);
  ae_error_clear(&err);
}

static void *score_worker(void *arg) {
  score_pool *pool = arg;
  ae_engine *e = NULL;
  ae_error err = AE_ERROR_INIT;
  int rc = ae_engine_open(&pool->cfg, &e, &err);
  pthread_mutex_lock(&pool->lock);
  if (rc) {
    if (!pool->open_failed) {
      pool->open_failed = 1;
      pool->open_error = err;
      memset(&err, 0, sizeof err);
    }
    /* Take every remaining item, so the printer does not wait forever. */
    while (pool->next < pool->n) {
      score_item *it = &pool->items[pool->next++];
      it->failed = 1;
      it->done = 1;
    }
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    ae_error_clear(&err);
    return NULL;
  }
  for (;;) {
    while (pool->next < pool->n && !pool->items[pool->next].valid)
      pool->next++;
    if (pool->next >= pool->n) break;
    score_item *it = &pool->items[pool->next++];
    pthread_mutex_unlock(&pool->lock);
    score_one(e, pool->reg, it);
    pthread_mutex_lock(&pool->lock);
    it->done = 1;
    pthread_cond_broadcast(&pool->cond);
  }
  pthread_mutex_unlock(&pool->lock);
  ae_engine_close(e);
  return NULL;
}

/* 1 when the input is an ONNX model rather than JSON: its name ends in
 * ".onnx", or it does not begin (after blanks) like a JSON request.  An
 * ONNX file (a protobuf ModelProto) begins with field 1, ir_version:
 * byte 0x08. */
static int is_onnx_file(const char *path, const char *buf, size_t len) {
  size_t n = strlen(path);
  if (n > 5 && !strcmp(path + n - 5, ".onnx")) return 1;
  return len > 0 && (unsigned char)buf[0] == 0x08;
}

/* Looks for data.dataset == "fashion-mnist" in any request. */
static int wants_fashion_mnist(json_t *root) {
  size_t n = json_is_array(root) ? json_array_size(root) : 1;
  for (size_t i = 0; i < n; i++) {
    json_t *r = json_is_array(root) ? json_array_get(root, i) : root;
    json_t *d = json_object_get(json_object_get(r, "data"), "dataset");
    if (json_is_string(d) && !strcmp(json_string_value(d), "fashion-mnist"))
      return 1;
  }
  return 0;
}

static double wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --metrics LIST as a JSON array of names (new reference), each checked:
 * NULL with a message on stderr for an unknown or empty name. */
static json_t *metrics_flag(const char *list) {
  json_t *arr = json_array();
  const char *p = list;
  while (arr) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    char name[128];
    ae_metric_id id;
    if (n == 0 || n >= sizeof name) {
      fprintf(stderr,
              "archeval score: --metrics: an empty or overlong name "
              "in '%s'\n",
              list);
      break;
    }
    memcpy(name, p, n);
    name[n] = '\0';
    if (!ae_metric_group_bit(name) && ae_metric_from_name(name, &id)) {
      fprintf(stderr,
              "archeval score: --metrics: unknown '%s' (a group: topology, "
              "expressivity, convergence, generalization, proxies; or a "
              "metric such as convergence.ntk_condition)\n",
              name);
      break;
    }
    if (json_array_append_new(arr, json_string(name))) break;
    if (!end) return arr;
    p = end + 1;
  }
  json_decref(arr);
  return NULL;
}

/* Replaces the "profile" and "metrics" of every request object in root by
 * those of the command line (either may be NULL: not set).  0 or -1 (out
 * of memory). */
static int apply_selection(json_t *root, const char *profile,
                           const json_t *metrics) {
  size_t n = json_is_array(root) ? json_array_size(root) : 1;
  for (size_t i = 0; i < n; i++) {
    json_t *r = json_is_array(root) ? json_array_get(root, i) : root;
    if (!json_is_object(r)) continue; /* the parser says what is wrong */
    json_object_del(r, "profile");
    json_object_del(r, "metrics");
    if (profile && json_object_set_new(r, "profile", json_string(profile)))
      return -1;
    if (metrics && json_object_set_new(r, "metrics", json_deep_copy(metrics)))
      return -1;
  }
  return 0;
}

/* --datasets-dir: what was skipped goes to stderr. */
static void warn_dataset(void *ctx, int warning, const char *message) {
  (void)ctx;
  if (warning) fprintf(stderr, "archeval score: warning: %s\n", message);
}

int ae_cli_score(int argc, char **argv) {
  static const struct option opts[] = {
      {"backend", required_argument, NULL, 'b'},
      {"threads", required_argument, NULL, 't'},
      {"dataset", required_argument, NULL, 'd'},
      {"datasets-dir", required_argument, NULL, 'D'},
      {"profile", required_argument, NULL, 'p'},
      {"metrics", required_argument, NULL, 'm'},
      {"data", required_argument, NULL, 'a'},
      {"seed", required_argument, NULL, 's'},
      {"as-graph", no_argument, NULL, 'g'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *datasets[AE_SCORE_MAX_DATASETS], *datasets_dir = NULL;
  int n_datasets = 0, threads = 1;
  const char *profile = NULL, *metrics_list = NULL, *model_data = NULL;
  long long model_seed = -1;
  int as_graph = 0;
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
    switch (c) {
    case 'b':
      if (!strcmp(optarg, "host")) {
        cfg.backend = AE_BACKEND_HOST;
      } else if (!strcmp(optarg, "cuda")) {
        cfg.backend = AE_BACKEND_CUDA;
      } else {
        fprintf(stderr, "archeval score: --backend must be host or cuda\n");
        return AE_EXIT_USAGE;
      }
      break;
    case 't': {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (*end || v < 1 || v > 256) {
        fprintf(stderr, "archeval score: --threads must be 1..256\n");
        return AE_EXIT_USAGE;
      }
      threads = (int)v;
      break;
    }
    case 'd':
      if (n_datasets == AE_SCORE_MAX_DATASETS) {
        fprintf(stderr, "archeval score: too many --dataset\n");
        return AE_EXIT_USAGE;
      }
      datasets[n_datasets++] = optarg;
      break;
    case 'D':
      datasets_dir = optarg;
      break;
    case 'p': {
      ae_metric_set unused;
      if (ae_metric_profile(optarg, &unused)) {
        fprintf(stderr, "archeval score: --profile must be fast, rank, full "
                        "or all\n");
        return AE_EXIT_USAGE;
      }
      profile = optarg;
      break;
    }
    case 'm':
      metrics_list = optarg;
      break;
    case 'a':
      model_data = optarg;
      break;
    case 's': {
      char *end;
      model_seed = strtoll(optarg, &end, 10);
      if (*end || !*optarg || model_seed < 0) {
        fprintf(stderr, "archeval score: --seed must be a non-negative "
                        "integer\n");
        return AE_EXIT_USAGE;
      }
      break;
    }
    case 'g':
      as_graph = 1;
      break;
    case 'h':
      score_usage(stdout);
      return AE_EXIT_OK;
    default:
      fprintf(stderr, "archeval score: bad option '%s'\n", argv[optind - 1]);
      score_usage(stderr);
      return AE_EXIT_USAGE;
    }
  }
  if (argc - optind > 1) {
    fprintf(stderr, "archeval score: one input file at most\n");
    score_usage(stderr);
    return AE_EXIT_USAGE;
  }
  const char *path = optind < argc ? argv[optind] : "-";
  json_t *metrics_arr = NULL;
  if (metrics_list && !(metrics_arr = metrics_flag(metrics_list)))
    return AE_EXIT_USAGE;

  int status = AE_EXIT_OK;
  ae_problem p = AE_PROBLEM_INIT;
  char *buf = NULL;
  size_t len = 0;
  json_t *root = NULL;
  score_item *items = NULL;
  size_t n_items = 0;
  ae_dataset_registry reg;
  memset(&reg, 0, sizeof reg);
  ae_cli_model model;
  memset(&model, 0, sizeof model);
  int rc = ae_cli_read_file(path, AE_SCORE_MAX_INPUT, &buf, &len);
  if (rc) {
    fprintf(stderr, "archeval score: cannot read %s: %s\n",
            strcmp(path, "-") ? path : "standard input", ae_strerror(rc));
    json_decref(metrics_arr);
    return AE_EXIT_FAILURE;
  }
  int is_model = is_onnx_file(path, buf, len);
  if ((model_data || model_seed >= 0 || as_graph) && !is_model) {
    fprintf(stderr, "archeval score: --data, --seed and --as-graph apply "
                    "to an ONNX model only (a request says its own)\n");
    status = AE_EXIT_USAGE;
    goto done;
  }
  if (is_model) {
    rc = ae_cli_model_load(buf, len, &model, &p);
    if (rc) {
      if (!p.status) ae_problem_set(&p, 500, "internal", NULL, "out of memory");
      print_problem(&p);
      status = rc == AE_ENOMEM ? AE_EXIT_FAILURE : AE_EXIT_INVALID;
      goto done;
    }
    root = json_pack("{s:{s:s, s:s}, s:I}", "architecture", "type", "onnx",
                     "model", model.id, "seed",
                     (json_int_t)(model_seed >= 0 ? model_seed : 0));
    if (root && model_data &&
        json_object_set_new(root, "data",
                            json_pack("{s:s}", "dataset", model_data))) {
      json_decref(root);
      root = NULL;
    }
    if (root && as_graph &&
        json_object_set_new(json_object_get(root, "architecture"), "as_graph",
                            json_true())) {
      json_decref(root);
      root = NULL;
    }
    if (!root) {
      fprintf(stderr, "archeval score: out of memory\n");
      status = AE_EXIT_FAILURE;
      goto done;
    }
  } else if (ae_json_parse_body(buf, len, &root, &p)) {
    print_problem(&p);
    status = AE_EXIT_INVALID;
    goto done;
  }
  if ((profile || metrics_arr) && apply_selection(root, profile, metrics_arr)) {
    fprintf(stderr, "archeval score: out of memory\n");
    status = AE_EXIT_FAILURE;
    goto done;
  }
  int is_array = json_is_array(root);
  if (is_array && json_array_size(root) == 0) {
    fprintf(stderr, "archeval score: the request array is empty\n");
    status = AE_EXIT_INVALID;
    goto done;
  }
  /* Datasets: fashion-mnist is loaded only when a request names it. */
  int fashion_given = 0;
  for (int i = 0; i < n_datasets; i++)
    if (!strncmp(datasets[i], "fashion-mnist=", 14)) fashion_given = 1;
  ae_error derr = AE_ERROR_INIT;
  rc = ae_dataset_registry_init(
      &reg, !fashion_given && wants_fashion_mnist(root), &derr);
  for (int i = 0; !rc && i < n_datasets; i++)
    rc = ae_dataset_registry_add(&reg, datasets[i], &derr);
  if (!rc && datasets_dir)
    rc = ae_dataset_registry_add_dir(&reg, datasets_dir, warn_dataset, NULL,
                                     &derr);
  if (rc) {
    ae_problem_from_error(&derr, &p);
    ae_error_clear(&derr);
    print_problem(&p);
    status = AE_EXIT_USAGE;
    goto done;
  }
  ae_catalog cat = ae_dataset_registry_catalog(&reg);
  ae_limits lim;
  ae_limits_default(&lim);
  lim.max_working_set_bytes = ae_engine_default_job_memory();

  n_items = is_array ? json_array_size(root) : 1;
  items = calloc(n_items, sizeof *items);
  if (!items) {
    fprintf(stderr, "archeval score: out of memory\n");
    status = AE_EXIT_FAILURE;
    goto done;
  }
  int any_invalid = 0;
  for (size_t i = 0; i < n_items; i++) {
    score_item *it = &items[i];
    it->body = is_array ? json_array_get(root, i) : root;
    ae_problem_clear(&p);
    if (ae_request_parse_models(it->body, &cat, is_model ? &model.source : NULL,
                                &lim, &it->req, &p)) {
      any_invalid = 1;
      it->done = 1;
      if (!is_array) {
        print_problem(&p);
        status = AE_EXIT_INVALID;
        goto done;
      }
      char prefix[32];
      snprintf(prefix, sizeof prefix, "/%zu", i);
      ae_problem_prefix(&p, prefix);
      it->line = wrap_line("error", ae_problem_to_json(&p, NULL));
      print_problem(&p);
    } else {
      it->valid = 1;
    }
  }
  ae_problem_clear(&p);

  score_pool pool;
  memset(&pool, 0, sizeof pool);
  pool.items = items;
  pool.n = n_items;
  pool.cfg = cfg;
  pool.reg = &reg;
  pthread_mutex_init(&pool.lock, NULL);
  pthread_cond_init(&pool.cond, NULL);
  int n_threads = threads < (int)n_items ? threads : (int)n_items;
  pthread_t tids[256];
  int started = 0;
  ae_engine *inline_engine = NULL;
  if (n_threads <= 1) {
    if (ae_engine_open(&cfg, &inline_engine, &pool.open_error))
      pool.open_failed = 1;
  } else {
    for (int t = 0; t < n_threads; t++) {
      pool.cfg.index = t;
      if (pthread_create(&tids[t], NULL, score_worker, &pool) != 0) break;
      started++;
    }
    if (!started) {
      pool.open_failed = 1;
      ae_error_set(&pool.open_error, AE_EINTERNAL, NULL,
                   "cannot start the worker threads");
    }
  }
  double t0 = wall_seconds();
  size_t scored = 0, n_valid = 0;
  for (size_t i = 0; i < n_items; i++)
    n_valid += items[i].valid;
  for (size_t i = 0; i < n_items; i++) {
    score_item *it = &items[i];
    if (inline_engine && it->valid) {
      score_one(inline_engine, &reg, it);
      it->done = 1;
    } else if (started) {
      pthread_mutex_lock(&pool.lock);
      while (!it->done)
        pthread_cond_wait(&pool.cond, &pool.lock);
      pthread_mutex_unlock(&pool.lock);
    }
    if (pool.open_failed && !it->line) break;
    if (it->valid) {
      scored++;
      if (it->failed) status = AE_EXIT_FAILURE;
      if (n_items > 1)
        fprintf(stderr, "scored %zu/%zu (%.1f s)\n", scored, n_valid,
                wall_seconds() - t0);
    }
    if (it->line) {
      fputs(it->line, stdout);
      fputc('\n', stdout);
      fflush(stdout);
    } else {
      fprintf(stderr, "archeval score: out of memory rendering item %zu\n", i);
      status = AE_EXIT_FAILURE;
    }
  }
  for (int t = 0; t < started; t++)
    pthread_join(tids[t], NULL);
  ae_engine_close(inline_engine);
  if (pool.open_failed) {
    ae_problem_from_error(&pool.open_error, &p);
    print_problem(&p);
    ae_problem_clear(&p);
    status = AE_EXIT_UNAVAILABLE;
  } else if (any_invalid) {
    status = AE_EXIT_INVALID;
  }
  ae_error_clear(&pool.open_error);
  pthread_mutex_destroy(&pool.lock);
  pthread_cond_destroy(&pool.cond);

done:
  for (size_t i = 0; items && i < n_items; i++) {
    if (items[i].valid) ae_request_free(&items[i].req);
    free(items[i].line);
  }
  free(items);
  json_decref(root);
  json_decref(metrics_arr);
  free(buf);
  ae_cli_model_free(&model);
  ae_dataset_registry_free(&reg);
  ae_problem_clear(&p);
  return status;
}
