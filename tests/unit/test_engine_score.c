/* test_engine_score.c: ae_engine_score end to end on small requests:
 * determinism, seeds, group selection, cancel and deadline, every null with
 * a warning, datasets, the CUDA backend refusal, warm-up.  Single-threaded;
 * each test opens and closes its own engine. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/request.h"
#include "api/scorecard.h"
#include "api/status.h"
#include "gpu/dataset.h"
#include "gpu/engine.h"
#include "gpu/groups/group.h"

static ae_dataset_registry reg;

static const char *shared_data(void) {
  const char *s = getenv("AE_SHARED_DATA");
  return s && s[0] ? s : AE_SRCDIR "/../shared/data";
}

static ae_engine *open_host(void) {
  ae_engine_config cfg = {AE_BACKEND_HOST, 0, 0};
  ae_engine *e = NULL;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_engine_open(&cfg, &e, &err), 0);
  ck_assert_ptr_nonnull(e);
  ae_error_clear(&err);
  return e;
}

static void parse(const char *text, ae_request *req) {
  ae_problem p = AE_PROBLEM_INIT;
  json_t *body = NULL;
  ae_catalog cat = ae_dataset_registry_catalog(&reg);
  ae_limits lim;
  ae_limits_default(&lim);
  int rc = ae_json_parse_body(text, strlen(text), &body, &p);
  if (!rc) rc = ae_request_parse(body, &cat, &lim, req, &p);
  if (rc) {
    json_t *j = ae_problem_to_json(&p, NULL);
    char *s = ae_json_dumps(j);
    fprintf(stderr, "request rejected: %s\n", s);
    free(s);
    json_decref(j);
  }
  ck_assert_int_eq(rc, 0);
  json_decref(body);
  ae_problem_clear(&p);
}

/* Scores text; returns the result JSON (new reference) or NULL with *rc. */
static json_t *score_text(ae_engine *e, const char *text,
                          const ae_job_control *ctl, int *rc_out) {
  ae_request req;
  parse(text, &req);
  ae_scorecard sc;
  ae_error err = AE_ERROR_INIT;
  int rc = ae_engine_score(e, &req, &reg, ctl, &sc, &err);
  json_t *j = rc ? NULL : ae_scorecard_to_json(&sc);
  if (rc_out) *rc_out = rc;
  if (rc && !rc_out) fprintf(stderr, "score failed: %s\n", err.reason);
  /* A failure always says why. */
  if (rc) ck_assert_ptr_nonnull(err.reason);
  ae_scorecard_free(&sc);
  ae_request_free(&req);
  ae_error_clear(&err);
  return j;
}

/* The result without its timings, as a string (malloc'd). */
static char *dump_without_timings(json_t *res) {
  json_t *c = json_deep_copy(res);
  json_object_del(json_object_get(c, "provenance"), "timings_s");
  char *s = ae_json_dumps(c);
  json_decref(c);
  return s;
}

#define MLP_REQ(seed)                                                          \
  "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\","              \
  "\"width\":32},\"data\":{\"batch_size\":8,\"input_shape\":[20]},"            \
  "\"seed\":" #seed ",\"settings\":{\"linear_regions\":{\"samples\":200,"      \
  "\"repeats\":2},\"curvature\":{\"points\":16,\"repeats\":2}}}"

START_TEST(test_deterministic_and_seeded) {
  ae_engine *e = open_host();
  json_t *a = score_text(e, MLP_REQ(7), NULL, NULL);
  json_t *b = score_text(e, MLP_REQ(7), NULL, NULL);
  json_t *c = score_text(e, MLP_REQ(8), NULL, NULL);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_ptr_nonnull(c);
  char *sa = dump_without_timings(a), *sb = dump_without_timings(b),
       *scc = dump_without_timings(c);
  ck_assert_str_eq(sa, sb);
  ck_assert_str_ne(sa, scc);
  /* Every group is there, with finite main values. */
  const char *groups[] = {"topology", "expressivity", "convergence",
                          "generalization", "provenance"};
  for (int g = 0; g < 5; g++)
    ck_assert_ptr_nonnull(json_object_get(a, groups[g]));
  json_t *conv = json_object_get(a, "convergence");
  double lmin = json_number_value(json_object_get(conv, "ntk_lambda_min"));
  double lmax = json_number_value(json_object_get(conv, "ntk_lambda_max"));
  double cond = json_number_value(json_object_get(conv, "ntk_condition"));
  ck_assert(lmin > 0 && lmax >= lmin);
  ck_assert_double_eq_tol(cond, lmax / lmin, 1e-9 * cond);
  double rate = json_number_value(json_object_get(conv, "rate"));
  ck_assert(rate > 0 && rate < 1);
  /* Default eta = 1 / lambda_max of the normalised NTK: rate = 1 - 1/2k. */
  ck_assert_double_eq_tol(rate, 1.0 - 0.5 / cond, 1e-12);
  double steps = json_number_value(json_object_get(conv, "steps_to_1e-3"));
  ck_assert_double_eq(steps, ceil(log(1e-3) / log(rate)));
  /* 2_21_112: paths 0-1-2-3 (3 linear edges counting the 0->1, 2->3), ... */
  json_t *topo = json_object_get(a, "topology");
  ck_assert(json_number_value(json_object_get(topo, "paths")) > 0);
  json_t *gen = json_object_get(a, "generalization");
  ck_assert_str_eq(json_string_value(json_object_get(gen, "labels")), "random");
  double kc = json_number_value(json_object_get(gen, "kernel_complexity"));
  double ar = json_number_value(json_object_get(gen, "arora_bound"));
  ck_assert(kc > 0);
  ck_assert_double_eq_tol(ar, sqrt(2.0) * kc, 1e-12 * ar);
  /* gap_bound = (sum_p d_p) * kernel_complexity. */
  double sum_d = 0;
  size_t di;
  json_t *dv;
  json_array_foreach(json_object_get(topo, "path_depths"), di, dv) {
    sum_d += json_number_value(dv);
  }
  ck_assert(sum_d > 0);
  ck_assert_double_eq_tol(json_number_value(json_object_get(gen, "gap_bound")),
                          sum_d * kc, 1e-12 * sum_d * kc);
  json_t *ex = json_object_get(a, "expressivity");
  double lr = json_number_value(json_object_get(ex, "linear_regions"));
  ck_assert(lr >= 1 && lr <= 200);
  ck_assert_int_eq(
      json_integer_value(json_object_get(ex, "linear_regions_samples")), 200);
  ck_assert(json_number_value(json_object_get(ex, "curvature")) > 0);
  json_t *prov = json_object_get(a, "provenance");
  ck_assert_str_eq(json_string_value(json_object_get(prov, "backend")), "host");
  ck_assert_str_eq(json_string_value(json_object_get(prov, "analytic_mode")),
                   "exact");
  ck_assert_int_eq(json_integer_value(json_object_get(prov, "seed")), 7);
  json_t *t = json_object_get(prov, "timings_s");
  ck_assert_ptr_nonnull(json_object_get(t, "total"));
  ck_assert_ptr_nonnull(json_object_get(t, "convergence"));
  free(sa);
  free(sb);
  free(scc);
  json_decref(a);
  json_decref(b);
  json_decref(c);
  ae_engine_close(e);
}
END_TEST

START_TEST(test_group_selection) {
  ae_engine *e = open_host();
  ae_request req;
  parse("{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_02_002\","
        "\"width\":16},\"data\":{\"batch_size\":4,\"input_shape\":[8]},"
        "\"metrics\":[\"topology\"]}",
        &req);
  ae_scorecard sc;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_engine_score(e, &req, &reg, NULL, &sc, &err), 0);
  ck_assert_uint_eq(sc.groups, AE_GROUP_TOPOLOGY);
  ck_assert(isnan(sc.convergence.ntk_lambda_min));
  ck_assert(isnan(sc.expressivity.curvature));
  ck_assert(isnan(sc.generalization.kernel_complexity));
  ck_assert(isnan(sc.provenance.t_convergence));
  ck_assert(isfinite(sc.provenance.t_topology));
  /* 2_02_002: 0->1 linear, 0->2 zero, 1->2 linear, 0->3 zero, 1->3 zero,
   * 2->3 linear: one path of three linear edges. */
  ck_assert_double_eq(sc.topology.paths, 1);
  ck_assert_uint_eq(sc.topology.n_path_depths, 1);
  ck_assert_double_eq(sc.topology.path_depths[0], 3);
  ck_assert_double_eq(sc.topology.effective_depth, 3);
  /* Params: stem 8x16, three 16x16 edges, readout 16x10, no biases. */
  ck_assert_double_eq(sc.topology.params, 8 * 16 + 3 * 16 * 16 + 16 * 10);
  json_t *j = ae_scorecard_to_json(&sc);
  ck_assert_ptr_null(json_object_get(j, "convergence"));
  ck_assert_ptr_null(json_object_get(j, "expressivity"));
  ck_assert_ptr_nonnull(json_object_get(j, "topology"));
  json_decref(j);
  ae_scorecard_free(&sc);
  ae_request_free(&req);
  ae_error_clear(&err);
  ae_engine_close(e);
}
END_TEST

START_TEST(test_cancel_and_deadline) {
  ae_engine *e = open_host();
  atomic_int cancel = 1;
  ae_job_control ctl = {&cancel, 0};
  int rc = 0;
  json_t *j = score_text(e, MLP_REQ(1), &ctl, &rc);
  ck_assert_ptr_null(j);
  ck_assert_int_eq(rc, AE_ECANCELLED);
  ae_job_control past = {NULL, 1}; /* 1 ns after boot: long gone */
  j = score_text(e, MLP_REQ(1), &past, &rc);
  ck_assert_ptr_null(j);
  ck_assert_int_eq(rc, AE_EDEADLINE);
  /* A deadline that passes while the job runs (it takes > 20 ms). */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ae_job_control soon = {NULL, (long long)ts.tv_sec * 1000000000LL +
                                   ts.tv_nsec + 2000000LL};
  j = score_text(e, MLP_REQ(1), &soon, &rc);
  ck_assert_ptr_null(j);
  ck_assert_int_eq(rc, AE_EDEADLINE);
  ck_assert_int_eq(ae_job_checkpoint(NULL), 0);
  atomic_int off = 0;
  ae_job_control ok = {&off, 0};
  ck_assert_int_eq(ae_job_checkpoint(&ok), 0);
  ck_assert_int_eq(ae_job_checkpoint(&ctl), AE_ECANCELLED);
  ck_assert_int_eq(ae_job_checkpoint(&past), AE_EDEADLINE);
  ae_engine_close(e);
}
END_TEST

/* Every null value in result names itself in result.warnings. */
static void assert_nulls_warned(json_t *res) {
  json_t *warnings = json_object_get(res, "warnings");
  const char *group;
  json_t *obj;
  json_object_foreach(res, group, obj) {
    if (!json_is_object(obj)) continue;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
      if (!json_is_null(v)) continue;
      char name[128];
      snprintf(name, sizeof name, "%s.%s", group, key);
      int found = 0;
      size_t i;
      json_t *w;
      json_array_foreach(warnings, i, w) {
        if (!strncmp(json_string_value(w), name, strlen(name))) found = 1;
      }
      if (!found) fprintf(stderr, "null without a warning: %s\n", name);
      ck_assert(found);
    }
  }
}

START_TEST(test_nulls_have_warnings) {
  ae_engine *e = open_host();
  /* Smooth activation: no linear regions. */
  json_t *a = score_text(
      e,
      "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\","
      "\"width\":16,\"activation\":\"tanh\"},\"data\":{\"batch_size\":6,"
      "\"input_shape\":[10]},\"settings\":{\"linear_regions\":{\"samples\":"
      "50,\"repeats\":1},\"curvature\":{\"points\":8,\"repeats\":1}}}",
      NULL, NULL);
  ck_assert_ptr_nonnull(a);
  ck_assert(json_is_null(
      json_object_get(json_object_get(a, "expressivity"), "linear_regions")));
  ck_assert(json_number_value(json_object_get(
                json_object_get(a, "expressivity"), "curvature")) > 0);
  assert_nulls_warned(a);
  /* A conv graph: no analytic kernels, no cell DAG bound. */
  json_t *b = score_text(
      e,
      "{\"architecture\":{\"type\":\"graph\",\"nodes\":["
      "{\"id\":\"c\",\"op\":\"conv\",\"inputs\":[\"input\"],\"out\":4,"
      "\"kernel\":3,\"stride\":1,\"padding\":1},"
      "{\"id\":\"r\",\"op\":\"act\",\"fn\":\"relu\",\"inputs\":[\"c\"]},"
      "{\"id\":\"g\",\"op\":\"global_avg_pool\",\"inputs\":[\"r\"]},"
      "{\"id\":\"f\",\"op\":\"flatten\",\"inputs\":[\"g\"]},"
      "{\"id\":\"o\",\"op\":\"linear\",\"out\":3,\"inputs\":[\"f\"]}],"
      "\"output\":\"o\"},\"data\":{\"batch_size\":5,\"input_shape\":[2,6,6],"
      "\"num_classes\":3},\"settings\":{\"linear_regions\":{\"samples\":40,"
      "\"repeats\":1},\"curvature\":{\"points\":8,\"repeats\":1}}}",
      NULL, NULL);
  ck_assert_ptr_nonnull(b);
  json_t *conv = json_object_get(b, "convergence");
  ck_assert(json_is_null(json_object_get(conv, "nngp_lambda_min_bound")));
  ck_assert(json_number_value(json_object_get(conv, "ntk_lambda_max")) > 0);
  assert_nulls_warned(b);
  json_decref(a);
  json_decref(b);
  ae_engine_close(e);
}
END_TEST

START_TEST(test_nb201_on_cifar10) {
  ae_engine *e = open_host();
  json_t *a = score_text(
      e,
      "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"|nor_conv_3x3~0|+"
      "|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
      "nor_conv_3x3~2|\",\"channels\":4,\"cells_per_stage\":1},"
      "\"data\":{\"dataset\":\"cifar10\",\"batch_size\":8},\"seed\":3,"
      "\"settings\":{\"linear_regions\":{\"samples\":300,\"repeats\":1},"
      "\"curvature\":{\"points\":8,\"repeats\":1}}}",
      NULL, NULL);
  ck_assert_ptr_nonnull(a);
  json_t *gen = json_object_get(a, "generalization");
  ck_assert_str_eq(json_string_value(json_object_get(gen, "labels")),
                   "dataset");
  ck_assert(json_number_value(json_object_get(gen, "kernel_complexity")) > 0);
  json_t *prov = json_object_get(a, "provenance");
  ck_assert_str_eq(json_string_value(json_object_get(prov, "analytic_mode")),
                   "topological");
  ck_assert_str_eq(json_string_value(json_object_get(prov, "dataset")),
                   "cifar10");
  json_t *ex = json_object_get(a, "expressivity");
  double lr = json_number_value(json_object_get(ex, "linear_regions"));
  ck_assert(lr >= 2 && lr <= 300);
  json_t *topo = json_object_get(a, "topology");
  /* The cell's four paths: e01-e12-e23 (3 convs), e01-e13 (2),
   * e02-e23 (2), e03 skip (0). */
  ck_assert_double_eq(json_number_value(json_object_get(topo, "paths")), 4);
  ck_assert_double_eq_tol(
      json_number_value(json_object_get(topo, "effective_depth")), 7.0 / 4,
      1e-12);
  assert_nulls_warned(a);
  json_decref(a);
  ae_engine_close(e);
}
END_TEST

START_TEST(test_cuda_backend_and_names) {
  ae_engine_config cfg = {AE_BACKEND_CUDA, 0, 0};
  ae_engine *e = NULL;
  ae_error err = AE_ERROR_INIT;
  if (ae_cuda_device_count() == 0) {
    /* No device (or no CUDA in this build): refused, saying why. */
    ck_assert_int_eq(ae_engine_open(&cfg, &e, &err), AE_EUNSUPPORTED);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(err.code, AE_EUNSUPPORTED);
    ck_assert(strstr(err.reason, "CUDA") || strstr(err.reason, "cuda"));
    ae_error_clear(&err);
  } else {
    /* A device: the same request on both backends agrees to 1e-3. */
    ck_assert_int_eq(ae_engine_open(&cfg, &e, &err), 0);
    ck_assert_str_eq(ae_engine_name(e), "cuda:0");
    ae_engine *h = open_host();
    json_t *a = score_text(h, MLP_REQ(7), NULL, NULL);
    json_t *b = score_text(e, MLP_REQ(7), NULL, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(b, "provenance"), "backend")),
                     "cuda:0");
    static const char *const keys[] = {"ntk_lambda_min", "ntk_lambda_max",
                                       "nngp_lambda_min"};
    for (int k = 0; k < 3; k++) {
      double x = json_number_value(
          json_object_get(json_object_get(a, "convergence"), keys[k]));
      double y = json_number_value(
          json_object_get(json_object_get(b, "convergence"), keys[k]));
      ck_assert_double_eq_tol(x, y, 1e-3 * fabs(x));
    }
    json_decref(a);
    json_decref(b);
    ae_engine_close(h);
    ae_engine_close(e);
  }
  ae_engine_config host = {AE_BACKEND_HOST, 0, 3};
  ck_assert_int_eq(ae_engine_open(&host, &e, &err), 0);
  ck_assert_str_eq(ae_engine_name(e), "host:3");
  ck_assert_uint_eq(ae_engine_memory_used(e), 0);
  ck_assert_int_eq(ae_engine_warmup(e, &reg, &err), 0);
  ck_assert_int_eq(err.code, AE_OK);
  ck_assert_uint_eq(ae_engine_memory_used(e), 0);
  ae_engine_close(e);
}
END_TEST

/* The group table: each group's part of the scorecard has exactly the
 * catalog's metrics of that group that the job selected, and a job's
 * selection answers per metric, family by family. */
START_TEST(test_group_table) {
  ck_assert_uint_eq(ae_n_metric_groups, 4);
  ae_engine *e = open_host();
  json_t *a = score_text(e, MLP_REQ(7), NULL, NULL);
  ck_assert_ptr_nonnull(a);
  /* The same request parsed, for its selection. */
  ae_request req;
  parse(MLP_REQ(7), &req);
  json_t *timings =
      json_object_get(json_object_get(a, "provenance"), "timings_s");
  unsigned bits = 0;
  for (size_t g = 0; g < ae_n_metric_groups; g++) {
    const ae_metric_group *grp = ae_metric_groups[g];
    ck_assert_uint_eq(bits & grp->bit, 0);
    bits |= grp->bit;
    json_t *part = json_object_get(a, grp->name);
    ck_assert_msg(part != NULL, "no %s in the scorecard", grp->name);
    size_t n = 0;
    for (int k = 0; k < AE_M_COUNT; k++) {
      const ae_metric_info *m = ae_metric_info_of((ae_metric_id)k);
      if (m->group_bit != grp->bit ||
          !ae_metric_set_has(req.selected, (ae_metric_id)k))
        continue;
      ck_assert_msg(json_object_get(part, m->field) != NULL,
                    "%s.%s selected, not rendered", grp->name, m->field);
      n++;
    }
    ck_assert_uint_eq(json_object_size(part), n);
    /* Its wall time lands in its own slot. */
    ck_assert(json_number_value(json_object_get(timings, grp->name)) >= 0);
  }
  ck_assert_uint_eq(bits, AE_GROUP_ALL);
  json_decref(a);
  ae_request_free(&req);
  ae_engine_close(e);

  ae_job_state job;
  memset(&job, 0, sizeof job);
  ae_metric_set_add(&job.selected, AE_M_EFFECTIVE_DEPTH);
  ck_assert_int_eq(ae_job_wants(&job, AE_M_PATHS), 1); /* its family */
  ck_assert_int_eq(ae_job_wants(&job, AE_M_DAG_FILTER), 1);
  ck_assert_int_eq(ae_job_wants(&job, AE_M_FLOPS), 0);
  ck_assert_int_eq(ae_job_wants(&job, AE_M_CURVATURE), 0);
}
END_TEST

START_TEST(test_inline_data) {
  ae_engine *e = open_host();
  /* Sample 1 is 3x sample 0: parallel inputs, so K0 (cosines) has two
   * equal rows and every analytic kernel a zero eigenvalue.  Labels given:
   * one-hot, "dataset". */
  json_t *a = score_text(e,
                         "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":"
                         "\"2_21_112\",\"width\":16},\"data\":{\"inputs\":"
                         "[[1,2,0,-1],[3,6,0,-3],[0,1,1,1],[2,-1,0,1]],"
                         "\"labels\":[0,1,1,0],\"num_classes\":2},"
                         "\"metrics\":[\"convergence\",\"generalization\"]}",
                         NULL, NULL);
  ck_assert_ptr_nonnull(a);
  json_t *conv = json_object_get(a, "convergence");
  double nngp = json_number_value(json_object_get(conv, "nngp_lambda_min"));
  double ntk_an =
      json_number_value(json_object_get(conv, "ntk_analytic_lambda_min"));
  ck_assert_double_eq_tol(nngp, 0.0, 1e-9);
  ck_assert_double_eq_tol(ntk_an, 0.0, 1e-9);
  /* The bound is min over pairs of P - sum_p f^dp(rho): 0 at rho = 1. */
  ck_assert_double_eq_tol(
      json_number_value(json_object_get(conv, "nngp_lambda_min_bound")), 0.0,
      1e-9);
  json_t *gen = json_object_get(a, "generalization");
  ck_assert_str_eq(json_string_value(json_object_get(gen, "labels")),
                   "dataset");
  json_t *prov = json_object_get(a, "provenance");
  ck_assert_int_eq(json_integer_value(json_object_get(prov, "batch_size")), 4);
  ck_assert_ptr_null(json_object_get(a, "topology"));
  assert_nulls_warned(a);
  json_decref(a);
  ae_engine_close(e);
}
END_TEST

/* MLP_REQ's network and settings with extra top-level fields. */
#define MLP_SEL(extra)                                                         \
  "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\","              \
  "\"width\":32},\"data\":{\"batch_size\":8,\"input_shape\":[20]},"            \
  "\"settings\":{\"linear_regions\":{\"samples\":200,"                         \
  "\"repeats\":2},\"curvature\":{\"points\":16,\"repeats\":2}}," extra "}"

/* The keys of result part `group`, comma-separated, in order. */
static void part_keys(json_t *res, const char *group, char *out, size_t n) {
  out[0] = '\0';
  const char *key;
  json_t *v;
  size_t used = 0;
  json_object_foreach(json_object_get(res, group), key, v) {
    int w = snprintf(out + used, n - used, "%s%s", used ? "," : "", key);
    ck_assert(w > 0 && (size_t)w < n - used);
    used += (size_t)w;
  }
}

/* A metric selected alone is rendered alone with its family; curvature
 * runs without linear regions and the reverse; the other groups are
 * absent. */
START_TEST(test_metric_selected_alone) {
  ae_engine *e = open_host();
  char keys[512];
  json_t *a = score_text(
      e, MLP_SEL("\"metrics\":[\"convergence.ntk_condition\"]"), NULL, NULL);
  ck_assert_ptr_nonnull(a);
  part_keys(a, "convergence", keys, sizeof keys);
  ck_assert_str_eq(keys, "ntk_lambda_min,ntk_lambda_max,ntk_condition,rate,"
                         "steps_to_1e-3");
  ck_assert(json_is_number(
      json_object_get(json_object_get(a, "convergence"), "ntk_condition")));
  ck_assert_ptr_null(json_object_get(a, "topology"));
  ck_assert_ptr_null(json_object_get(a, "expressivity"));
  ck_assert_ptr_null(json_object_get(a, "generalization"));
  json_t *t = json_object_get(json_object_get(a, "provenance"), "timings_s");
  ck_assert_ptr_null(json_object_get(t, "expressivity"));
  ck_assert_ptr_nonnull(json_object_get(t, "convergence"));
  json_decref(a);

  a = score_text(e, MLP_SEL("\"metrics\":[\"expressivity.curvature\"]"), NULL,
                 NULL);
  part_keys(a, "expressivity", keys, sizeof keys);
  ck_assert_str_eq(keys, "curvature");
  ck_assert(json_is_number(
      json_object_get(json_object_get(a, "expressivity"), "curvature")));
  /* Nothing said about linear regions: they were not asked for. */
  char *text = ae_json_dumps(a);
  ck_assert_ptr_null(strstr(text, "linear_regions"));
  free(text);
  json_decref(a);

  a = score_text(e, MLP_SEL("\"metrics\":[\"expressivity.linear_regions\"]"),
                 NULL, NULL);
  part_keys(a, "expressivity", keys, sizeof keys);
  ck_assert_str_eq(keys, "linear_regions,linear_regions_samples,"
                         "linear_regions_saturated");
  ck_assert(json_is_number(
      json_object_get(json_object_get(a, "expressivity"), "linear_regions")));
  text = ae_json_dumps(a);
  ck_assert_ptr_null(strstr(text, "curvature"));
  free(text);
  json_decref(a);

  /* Topology's params alone: the paths family is not computed. */
  a = score_text(e, MLP_SEL("\"metrics\":[\"topology.macs\"]"), NULL, NULL);
  part_keys(a, "topology", keys, sizeof keys);
  ck_assert_str_eq(keys, "flops,macs");
  json_t *topo = json_object_get(a, "topology");
  /* 20x32 stem, three 32x32 edges, 32x10 readout, no biases. */
  ck_assert_double_eq(json_number_value(json_object_get(topo, "macs")),
                      20 * 32 + 3 * 32 * 32 + 32 * 10);
  ck_assert_double_eq(json_number_value(json_object_get(topo, "flops")),
                      2 * json_number_value(json_object_get(topo, "macs")));
  json_decref(a);
  ae_engine_close(e);
}
END_TEST

/* Runs the request's groups on a job state as ae_engine_score does, and
 * leaves the job's intermediates for inspection (free with
 * ae_job_state_free, then the scorecard). */
static void run_job(const ae_request *req, ae_exec_device *dev,
                    ae_scorecard *sc, ae_job_state *job) {
  memset(job, 0, sizeof *job);
  ae_scorecard_init(sc);
  job->req = req;
  job->exec = &ae_host_executor;
  job->device = dev;
  job->sc = sc;
  ae_job_select_metrics(job);
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_batch_draw(req, NULL, &job->batch, &err), 0);
  for (size_t g = 0; g < job->n_requested; g++)
    ck_assert_int_eq(job->requested[g]->run(job, &err), 0);
  ae_error_clear(&err);
}

/* A profile computes nothing it does not report: no empirical NTK, no
 * analytic kernels and no curvature or linear regions for "fast"; no
 * curvature for "rank"; "full" computes them all (the control that
 * shows the check can fail). */
START_TEST(test_profile_computes_only_selected) {
  ae_exec_device *dev = NULL;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_host_executor.device_open(0, &dev, &err), 0);
  static const char *const profiles[] = {"fast", "rank", "full"};
  for (int i = 0; i < 3; i++) {
    char text[1024];
    snprintf(text, sizeof text, MLP_SEL("\"profile\":\"%s\""), profiles[i]);
    ae_request req;
    parse(text, &req);
    ae_scorecard sc;
    ae_job_state job;
    run_job(&req, dev, &sc, &job);
    int full = i == 2;
    ck_assert_msg((job.theta != NULL) == full, "%s: empirical NTK %s",
                  profiles[i], job.theta ? "computed" : "missing");
    ck_assert_int_eq(job.kernels_state, full ? 1 : 0);
    ck_assert_int_eq(job.nngp != NULL, full);
    ck_assert_int_eq(isfinite(sc.expressivity.curvature), full);
    ck_assert_int_eq(isfinite(sc.expressivity.linear_regions), full);
    ck_assert_int_eq(isfinite(sc.convergence.ntk_lambda_min), full);
    ck_assert_int_eq(isfinite(sc.generalization.kernel_complexity), full);
    /* Topology is in every profile. */
    ck_assert(isfinite(sc.topology.macs) && sc.topology.macs > 0);
    ck_assert(isfinite(sc.topology.effective_depth));
    ae_job_state_free(&job);
    ae_scorecard_free(&sc);
    ae_request_free(&req);
  }
  ae_host_executor.device_close(dev);
  ae_error_clear(&err);
}
END_TEST

static Suite *engine_suite(void) {
  Suite *s = suite_create("engine_score");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_deterministic_and_seeded);
  tcase_add_test(tc, test_group_selection);
  tcase_add_test(tc, test_cancel_and_deadline);
  tcase_add_test(tc, test_nulls_have_warnings);
  tcase_add_test(tc, test_nb201_on_cifar10);
  tcase_add_test(tc, test_inline_data);
  tcase_add_test(tc, test_group_table);
  tcase_add_test(tc, test_metric_selected_alone);
  tcase_add_test(tc, test_profile_computes_only_selected);
  tcase_add_test(tc, test_cuda_backend_and_names);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  ae_error err = AE_ERROR_INIT;
  char spec[4200];
  snprintf(spec, sizeof spec, "cifar10=%s/cifar10", shared_data());
  if (ae_dataset_registry_init(&reg, 0, &err) ||
      ae_dataset_registry_add(&reg, spec, &err)) {
    fprintf(stderr, "cannot load %s: %s\n", spec, err.reason);
    ae_error_clear(&err);
    return 1;
  }
  SRunner *sr = srunner_create(engine_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  ae_dataset_registry_free(&reg);
  return failed != 0;
}
