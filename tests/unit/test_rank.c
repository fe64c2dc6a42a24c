/* test_rank.c: the combined rank (api/rank.c) on populations small enough
 * to rank by hand: ties, nulls and non-finite values, one member, all
 * null, log_rank against rank_sum, the Pareto front of known 2-D and 3-D
 * sets with ties, aspect skipping, the default-to-fast fallback, the
 * component syntax and its errors, and the JSON rendering.  Every
 * expected number below is worked out in the comment next to it.
 * Single-threaded. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/rank.h"

#define EPS 1e-12

/* A scorecard from a JSON literal (new reference). */
static json_t *card(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  ck_assert_msg(j != NULL, "bad literal %s: %s", text, e.text);
  return j;
}

static void free_cards(json_t **cards, size_t n) {
  for (size_t i = 0; i < n; i++)
    json_decref(cards[i]);
}

static int column(const ae_rank_result *r, const char *name) {
  for (size_t c = 0; c < r->n_metrics; c++)
    if (!strcmp(r->metrics[c].name, name)) return (int)c;
  return -1;
}

static double rank_of(const ae_rank_result *r, size_t i, const char *name) {
  int c = column(r, name);
  ck_assert_msg(c >= 0, "no column %s", name);
  return r->ranks[i * r->n_metrics + (size_t)c];
}

static void spec_or_fail(const char *components, ae_rank_aggregate agg,
                         ae_rank_spec *spec) {
  ae_error err = AE_ERROR_INIT;
  int rc = ae_rank_spec_parse(components, agg, spec, &err);
  ck_assert_msg(rc == AE_OK, "spec %s: %s", components,
                err.reason ? err.reason : "?");
  ae_error_clear(&err);
}

static void compute_or_fail(json_t **cards, size_t n, const ae_rank_spec *s,
                            ae_rank_result *r) {
  ae_error err = AE_ERROR_INIT;
  int rc = ae_rank_compute(cards, n, s, r, &err);
  ck_assert_msg(rc == AE_OK, "compute: %s", err.reason ? err.reason : "?");
  ae_error_clear(&err);
}

/* ---- ae_rank_values ---------------------------------------------------- */

START_TEST(values_ties_higher) {
  /* [3, 1, 3, 2], higher better: 1 -> 1, 2 -> 2, the two 3s share
   * positions 3 and 4 -> 3.5. */
  double v[] = {3, 1, 3, 2}, r[4];
  ck_assert_int_eq(ae_rank_values(v, 4, +1, r), AE_OK);
  double want[] = {3.5, 1, 3.5, 2};
  for (int i = 0; i < 4; i++)
    ck_assert_double_eq(r[i], want[i]);
}
END_TEST

START_TEST(values_ties_lower) {
  /* Lower better: the 3s are worst (positions 1, 2 -> 1.5), 2 -> 3,
   * 1 -> 4. */
  double v[] = {3, 1, 3, 2}, r[4];
  ck_assert_int_eq(ae_rank_values(v, 4, -1, r), AE_OK);
  double want[] = {1.5, 4, 1.5, 3};
  for (int i = 0; i < 4; i++)
    ck_assert_double_eq(r[i], want[i]);
}
END_TEST

START_TEST(values_nan_and_inf_are_null) {
  /* NaN, +Inf and -Inf are null: the three worst positions, tied at 2;
   * then 5 -> 4, 7 -> 5.  +Inf is not "best" even with higher better. */
  double v[] = {7, NAN, INFINITY, 5, -INFINITY}, r[5];
  ck_assert_int_eq(ae_rank_values(v, 5, +1, r), AE_OK);
  double want[] = {5, 2, 2, 4, 2};
  for (int i = 0; i < 5; i++)
    ck_assert_double_eq(r[i], want[i]);
  /* Lower better: 7 -> 4, 5 -> 5, nulls still 2. */
  ck_assert_int_eq(ae_rank_values(v, 5, -1, r), AE_OK);
  double want_low[] = {4, 2, 2, 5, 2};
  for (int i = 0; i < 5; i++)
    ck_assert_double_eq(r[i], want_low[i]);
}
END_TEST

START_TEST(values_negative_zero_ties_zero) {
  double v[] = {-0.0, 0.0, -1}, r[3];
  ck_assert_int_eq(ae_rank_values(v, 3, +1, r), AE_OK);
  ck_assert_double_eq(r[0], 2.5);
  ck_assert_double_eq(r[1], 2.5);
  ck_assert_double_eq(r[2], 1);
}
END_TEST

/* ---- populations --------------------------------------------------------- */

START_TEST(nulls_rank_worst_and_score) {
  /* One known component, kernel_complexity (lower better), n = 4:
   * values 2, null, 1, 2.  null -> 1; the 2s share positions 2, 3 -> 2.5;
   * 1 -> 4.  log_rank scores: log(2.5/4), log(1/4), log(1), log(2.5/4).
   * Combined rank: #2 first (1), #0 and #3 tied (2.5), #1 last (4). */
  json_t *c[4] = {card("{\"generalization\":{\"kernel_complexity\":2}}"),
                  card("{\"generalization\":{\"kernel_complexity\":null}}"),
                  card("{\"generalization\":{\"kernel_complexity\":1}}"),
                  card("{\"generalization\":{\"kernel_complexity\":2.0}}")};
  ae_rank_spec s;
  spec_or_fail("generalization.kernel_complexity", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  compute_or_fail(c, 4, &s, &r);
  ck_assert_str_eq(r.combination, "custom");
  ck_assert_ptr_null(r.requested);
  ck_assert_uint_eq(r.n_components, 1);
  double want_rank[] = {2.5, 1, 4, 2.5};
  for (size_t i = 0; i < 4; i++)
    ck_assert_double_eq(rank_of(&r, i, "generalization.kernel_complexity"),
                        want_rank[i]);
  ck_assert_double_eq_tol(r.score[0], log(2.5 / 4), EPS);
  ck_assert_double_eq_tol(r.score[1], log(1.0 / 4), EPS);
  ck_assert_double_eq_tol(r.score[2], 0, EPS);
  ck_assert_double_eq(r.score[0], r.score[3]);
  ck_assert_double_eq(r.rank[2], 1);
  ck_assert_double_eq(r.rank[0], 2.5);
  ck_assert_double_eq(r.rank[3], 2.5);
  ck_assert_double_eq(r.rank[1], 4);
  /* Best first, ties in input order. */
  ck_assert_uint_eq(r.order[0], 2);
  ck_assert_uint_eq(r.order[1], 0);
  ck_assert_uint_eq(r.order[2], 3);
  ck_assert_uint_eq(r.order[3], 1);
  /* The value of the null member is NaN; present all. */
  ck_assert(isnan(r.values[1 * r.n_metrics]));
  ck_assert(r.present[1 * r.n_metrics]);
  /* Generalization is the only scored aspect; its rank equals the
   * combined rank here. */
  ck_assert(r.aspect_scored[AE_ASPECT_GENERALIZATION]);
  ck_assert(!r.aspect_scored[AE_ASPECT_EXPRESSIVITY]);
  ck_assert(!r.aspect_scored[AE_ASPECT_CONVERGENCE]);
  ck_assert(!r.aspect_scored[AE_ASPECT_COMPLEXITY]);
  for (size_t i = 0; i < 4; i++) {
    ck_assert_double_eq(
        r.aspect_rank[i * AE_ASPECT_COUNT + AE_ASPECT_GENERALIZATION],
        r.rank[i]);
    ck_assert(
        isnan(r.aspect_rank[i * AE_ASPECT_COUNT + AE_ASPECT_EXPRESSIVITY]));
  }
  /* One aspect: the front is the best member alone. */
  ck_assert(r.pareto[2]);
  ck_assert(!r.pareto[0] && !r.pareto[1] && !r.pareto[3]);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 4);
}
END_TEST

START_TEST(single_member) {
  json_t *c[1] = {card("{\"topology\":{\"flops\":10,\"params\":3}}")};
  ae_rank_spec s;
  spec_or_fail("topology.flops,topology.params", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  compute_or_fail(c, 1, &s, &r);
  ck_assert_double_eq(rank_of(&r, 0, "topology.flops"), 1);
  ck_assert_double_eq(r.score[0], 0); /* log(1/1) twice */
  ck_assert_double_eq(r.rank[0], 1);
  ck_assert(r.pareto[0]);
  ae_rank_result_free(&r);
  /* rank_sum: 1 + 1. */
  s.aggregate = AE_RANK_RANK_SUM;
  compute_or_fail(c, 1, &s, &r);
  ck_assert_double_eq(r.score[0], 2);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 1);
}
END_TEST

START_TEST(all_null) {
  /* n = 3, every value null: each rank (1+2+3)/3 = 2, score log(2/3),
   * combined rank all tied at 2, every member on the front (equal). */
  json_t *c[3] = {card("{\"convergence\":{\"ntk_lambda_min\":null}}"),
                  card("{\"convergence\":{\"ntk_lambda_min\":null}}"),
                  card("{\"convergence\":{\"ntk_lambda_min\":null}}")};
  ae_rank_spec s;
  spec_or_fail("convergence.ntk_lambda_min", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  compute_or_fail(c, 3, &s, &r);
  for (size_t i = 0; i < 3; i++) {
    ck_assert_double_eq(rank_of(&r, i, "convergence.ntk_lambda_min"), 2);
    ck_assert_double_eq_tol(r.score[i], log(2.0 / 3), EPS);
    ck_assert_double_eq(r.rank[i], 2);
    ck_assert(r.pareto[i]);
  }
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 3);
}
END_TEST

/* Two components x, y (unknown metrics, higher better), n = 4:
 *   A (1,4)  B (2,3)  C (3,2)  D (4,1)
 * rank_sum: all 5 -> one four-way tie at rank 2.5.
 * log_rank: A, D = log(1/4) + log(4/4) = -1.386; B, C = log(2/4) +
 * log(3/4) = -0.981 -> B, C tied first (1.5), A, D tied (3.5).  B's terms
 * come in the other order than C's: the scores are bit-identical. */
static void four_members(json_t **c) {
  c[0] = card("{\"g\":{\"x\":1,\"y\":4}}");
  c[1] = card("{\"g\":{\"x\":2,\"y\":3}}");
  c[2] = card("{\"g\":{\"x\":3,\"y\":2}}");
  c[3] = card("{\"g\":{\"x\":4,\"y\":1}}");
}

START_TEST(log_rank_against_rank_sum) {
  json_t *c[4];
  four_members(c);
  ae_rank_spec s;
  spec_or_fail("g.x:higher,g.y:higher", AE_RANK_RANK_SUM, &s);
  ae_rank_result r;
  compute_or_fail(c, 4, &s, &r);
  for (size_t i = 0; i < 4; i++) {
    ck_assert_double_eq(r.score[i], 5);
    ck_assert_double_eq(r.rank[i], 2.5);
  }
  ae_rank_result_free(&r);
  s.aggregate = AE_RANK_LOG_RANK;
  compute_or_fail(c, 4, &s, &r);
  ck_assert_double_eq_tol(r.score[0], log(0.25), EPS);
  ck_assert_double_eq_tol(r.score[1], log(0.5) + log(0.75), EPS);
  ck_assert(r.score[1] == r.score[2]);
  ck_assert(r.score[0] == r.score[3]);
  ck_assert_double_eq(r.rank[1], 1.5);
  ck_assert_double_eq(r.rank[2], 1.5);
  ck_assert_double_eq(r.rank[0], 3.5);
  ck_assert_double_eq(r.rank[3], 3.5);
  /* Unknown metrics have no aspect: nothing scored, all on the front. */
  for (int a = 0; a < AE_ASPECT_COUNT; a++)
    ck_assert(!r.aspect_scored[a]);
  for (size_t i = 0; i < 4; i++)
    ck_assert(r.pareto[i]);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 4);
}
END_TEST

START_TEST(lower_direction_reverses) {
  /* The same with x lower better: x ranks become 4,3,2,1, so A = (4,4)
   * is best (score 0), D = (1,1) worst (2 log(1/4)), B = (3,3) and
   * C = (2,2) in between. */
  json_t *c[4];
  four_members(c);
  ae_rank_spec s;
  spec_or_fail("g.x:lower,g.y:higher", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  compute_or_fail(c, 4, &s, &r);
  ck_assert_double_eq(r.score[0], 0);
  ck_assert_double_eq_tol(r.score[3], 2 * log(0.25), EPS);
  ck_assert_double_eq_tol(r.score[1], 2 * log(0.75), EPS);
  ck_assert_uint_eq(r.order[0], 0);
  ck_assert_uint_eq(r.order[1], 1);
  ck_assert_uint_eq(r.order[2], 2);
  ck_assert_uint_eq(r.order[3], 3);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 4);
}
END_TEST

/* Aspects E and C from one metric each: the aspect score is monotone in
 * the value, so the front is the front of the values.
 *   P0 (1,4) P1 (2,3) P2 (3,1) P3 (1,1) P4 (2,2) P5 (2,3) = P1
 * P3 is dominated by P4, P4 by P1; P1 and P5 tie and dominate neither
 * each other nor P0, P2.  Front {0, 1, 2, 5}. */
START_TEST(pareto_2d_with_ties) {
  static const double e[] = {1, 2, 3, 1, 2, 2}, cv[] = {4, 3, 1, 1, 2, 3};
  json_t *c[6];
  for (size_t i = 0; i < 6; i++) {
    c[i] = json_pack("{s:{s:f},s:{s:f}}", "expressivity", "linear_regions",
                     e[i], "convergence", "ntk_lambda_min", cv[i]);
    ck_assert_ptr_nonnull(c[i]);
  }
  ae_rank_spec s;
  spec_or_fail("default", AE_RANK_LOG_RANK, &s);
  /* None of the default's components is in these scorecards (and "fast"
   * is not complete either): an error... */
  ae_rank_result r;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_rank_compute(c, 6, &s, &r, &err), AE_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.reason, "none of the components"));
  ae_error_clear(&err);
  ae_rank_spec_free(&s);
  /* ... so rank by the two metrics themselves. */
  spec_or_fail("expressivity.linear_regions,convergence.ntk_lambda_min",
               AE_RANK_LOG_RANK, &s);
  compute_or_fail(c, 6, &s, &r);
  ck_assert(r.aspect_scored[AE_ASPECT_EXPRESSIVITY]);
  ck_assert(r.aspect_scored[AE_ASPECT_CONVERGENCE]);
  ck_assert(!r.aspect_scored[AE_ASPECT_GENERALIZATION]);
  ck_assert(!r.aspect_scored[AE_ASPECT_COMPLEXITY]);
  int want[] = {1, 1, 1, 0, 0, 1};
  for (size_t i = 0; i < 6; i++)
    ck_assert_msg(r.pareto[i] == want[i], "member %zu", i);
  /* E ranks: 1s at positions 1,2 -> 1.5; 2s at 3..5 -> 4; 3 -> 6.
   * E aspect rank (1 = best): P2 1, the 2s tie at 3, the 1s at 5.5. */
  ck_assert_double_eq(rank_of(&r, 0, "expressivity.linear_regions"), 1.5);
  ck_assert_double_eq(rank_of(&r, 4, "expressivity.linear_regions"), 4);
  ck_assert_double_eq(
      r.aspect_rank[2 * AE_ASPECT_COUNT + AE_ASPECT_EXPRESSIVITY], 1);
  ck_assert_double_eq(
      r.aspect_rank[1 * AE_ASPECT_COUNT + AE_ASPECT_EXPRESSIVITY], 3);
  ck_assert_double_eq(
      r.aspect_rank[3 * AE_ASPECT_COUNT + AE_ASPECT_EXPRESSIVITY], 5.5);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 6);
}
END_TEST

/* Three aspects, kernel_complexity lower better:
 *   Q0 (1,1,5) Q1 (1,1,1) Q2 (2,0,9) Q3 (0,2,9) Q4 (2,2,3)
 * Q4 dominates Q0, Q2, Q3; Q1 dominates Q0; Q1 and Q4 do not dominate
 * each other (Q1 has the lower complexity).  Front {1, 4}. */
START_TEST(pareto_3d) {
  static const double e[] = {1, 1, 2, 0, 2}, cv[] = {1, 1, 0, 2, 2},
                      g[] = {5, 1, 9, 9, 3};
  json_t *c[5];
  for (size_t i = 0; i < 5; i++) {
    c[i] = json_pack("{s:{s:f},s:{s:f},s:{s:f}}", "expressivity",
                     "linear_regions", e[i], "convergence", "ntk_lambda_min",
                     cv[i], "generalization", "kernel_complexity", g[i]);
    ck_assert_ptr_nonnull(c[i]);
  }
  ae_rank_spec s;
  spec_or_fail("expressivity.linear_regions", AE_RANK_RANK_SUM, &s);
  ae_rank_result r;
  compute_or_fail(c, 5, &s, &r);
  /* One component, but every aspect metric present is ranked too. */
  ck_assert_uint_eq(r.n_components, 1);
  ck_assert_uint_eq(r.n_metrics, 3);
  ck_assert(r.aspect_scored[AE_ASPECT_GENERALIZATION]);
  int want[] = {0, 1, 0, 0, 1};
  for (size_t i = 0; i < 5; i++)
    ck_assert_msg(r.pareto[i] == want[i], "member %zu", i);
  /* kernel_complexity lower better: 9,9 -> 1.5; 5 -> 3; 3 -> 4; 1 -> 5. */
  ck_assert_double_eq(rank_of(&r, 2, "generalization.kernel_complexity"), 1.5);
  ck_assert_double_eq(rank_of(&r, 0, "generalization.kernel_complexity"), 3);
  ck_assert_double_eq(rank_of(&r, 1, "generalization.kernel_complexity"), 5);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 5);
}
END_TEST

START_TEST(aspect_members_and_skipping) {
  /* Convergence has ntk_lambda_min and nngp_lambda_min here; the other
   * convergence metrics are absent everywhere and skipped.  n = 2:
   * member 0 better on ntk (2 vs 1), worse on nngp: its aspect score is
   * log(2/2) + log(1/2), member 1's the same: tied at 1.5.  ntk_condition
   * is a known metric but in no aspect. */
  json_t *c[2] = {
      card("{\"convergence\":{\"ntk_lambda_min\":2,\"nngp_lambda_min\":0.1,"
           "\"ntk_condition\":10}}"),
      card("{\"convergence\":{\"ntk_lambda_min\":1,\"nngp_lambda_min\":0.2,"
           "\"ntk_condition\":5}}")};
  ae_rank_spec s;
  spec_or_fail("convergence.ntk_condition", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  compute_or_fail(c, 2, &s, &r);
  ck_assert_uint_eq(r.n_metrics, 3);
  ck_assert_int_eq(column(&r, "convergence.jacobian_trainability"), -1);
  ck_assert_int_eq(column(&r, "proxies.synflow"), -1);
  /* ntk_condition lower better: member 1 (5) ranks 2 and is first. */
  ck_assert_double_eq(rank_of(&r, 1, "convergence.ntk_condition"), 2);
  ck_assert_double_eq(r.rank[1], 1);
  ck_assert_double_eq(r.rank[0], 2);
  for (size_t i = 0; i < 2; i++) {
    ck_assert_double_eq_tol(
        r.aspect_score[i * AE_ASPECT_COUNT + AE_ASPECT_CONVERGENCE], log(0.5),
        EPS);
    ck_assert_double_eq(
        r.aspect_rank[i * AE_ASPECT_COUNT + AE_ASPECT_CONVERGENCE], 1.5);
    ck_assert(r.pareto[i]);
  }
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 2);
}
END_TEST

START_TEST(absent_in_some_is_null_with_warning) {
  /* x absent from member 1: ranked there as null (1); a warning says so. */
  json_t *c[3] = {card("{\"g\":{\"x\":5}}"), card("{\"g\":{}}"),
                  card("{\"h\":{\"x\":1},\"g\":{\"x\":1}}")};
  ae_rank_spec s;
  spec_or_fail("g.x:higher", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  compute_or_fail(c, 3, &s, &r);
  ck_assert_double_eq(rank_of(&r, 0, "g.x"), 3);
  ck_assert_double_eq(rank_of(&r, 1, "g.x"), 1);
  ck_assert_double_eq(rank_of(&r, 2, "g.x"), 2);
  ck_assert(!r.present[1 * r.n_metrics]);
  ck_assert_uint_eq(r.n_warnings, 1);
  ck_assert_ptr_nonnull(strstr(r.warnings[0], "g.x is absent from 1 of 3"));
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 3);
}
END_TEST

/* Scorecards with the given metrics (all value 1 + i). */
static json_t *card_with(const char *const *names, size_t k, double v) {
  json_t *sc = json_object();
  for (size_t j = 0; j < k; j++) {
    const char *dot = strchr(names[j], '.');
    char group[64];
    snprintf(group, sizeof group, "%.*s", (int)(dot - names[j]), names[j]);
    json_t *g = json_object_get(sc, group);
    if (!g) {
      g = json_object();
      json_object_set_new(sc, group, g);
    }
    json_object_set_new(g, dot + 1, json_real(v));
  }
  return sc;
}

static const char *const default_names[] = {
    "expressivity.feature_isotropy",
    "expressivity.feature_progressivity",
    "expressivity.activation_patterns",
    "convergence.jacobian_trainability",
    "convergence.feature_corr_lambda_min",
    "proxies.synflow",
    "topology.flops"};

START_TEST(default_when_complete) {
  json_t *c[3];
  for (size_t i = 0; i < 3; i++)
    c[i] = card_with(default_names, 7, (double)i);
  ae_rank_spec s;
  spec_or_fail(NULL, AE_RANK_LOG_RANK, &s);
  ck_assert_str_eq(s.combination, "default");
  ck_assert_uint_eq(s.n_components, 7);
  ae_rank_result r;
  compute_or_fail(c, 3, &s, &r);
  ck_assert_str_eq(r.combination, "default");
  ck_assert_str_eq(r.requested, "default");
  ck_assert(!r.fallback);
  ck_assert_uint_eq(r.n_components, 7);
  ck_assert_uint_eq(r.n_skipped, 0);
  /* Member 2 is best on all seven: score 0; member 0: 7 log(1/3). */
  ck_assert_double_eq(r.score[2], 0);
  ck_assert_double_eq_tol(r.score[0], 7 * log(1.0 / 3), EPS);
  ck_assert_uint_eq(r.order[0], 2);
  /* Aspects: E has 3 members here, C 3, X 1, G none. */
  ck_assert(r.aspect_scored[AE_ASPECT_COMPLEXITY]);
  ck_assert(!r.aspect_scored[AE_ASPECT_GENERALIZATION]);
  ck_assert(r.pareto[2] && !r.pareto[0] && !r.pareto[1]);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 3);
}
END_TEST

START_TEST(default_falls_back_to_fast) {
  /* Member 1 lacks synflow: "default" is incomplete, "fast" complete. */
  json_t *c[2] = {card_with(default_names, 7, 1),
                  card_with(default_names, 5, 2)};
  ae_rank_spec s;
  spec_or_fail("default", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  compute_or_fail(c, 2, &s, &r);
  ck_assert_str_eq(r.combination, "fast");
  ck_assert_str_eq(r.requested, "default");
  ck_assert(r.fallback);
  ck_assert_uint_eq(r.n_components, 2);
  ck_assert_str_eq(r.metrics[0].name, "expressivity.activation_patterns");
  ck_assert_str_eq(r.metrics[1].name, "convergence.feature_corr_lambda_min");
  ck_assert_ptr_nonnull(strstr(r.warnings[0], "proxies.synflow"));
  ae_rank_result_free(&r);
  /* "fast" asked for directly: no fallback. */
  ae_rank_spec_free(&s);
  spec_or_fail("fast", AE_RANK_LOG_RANK, &s);
  compute_or_fail(c, 2, &s, &r);
  ck_assert_str_eq(r.combination, "fast");
  ck_assert(!r.fallback);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 2);
}
END_TEST

START_TEST(default_partial_skips_absent) {
  /* Only topology.flops (today's scorecards): "fast" is not complete
   * either, so "default" with the six others skipped. */
  json_t *c[2] = {card("{\"topology\":{\"flops\":4}}"),
                  card("{\"topology\":{\"flops\":8}}")};
  ae_rank_spec s;
  spec_or_fail("default", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  compute_or_fail(c, 2, &s, &r);
  ck_assert_str_eq(r.combination, "default");
  ck_assert(!r.fallback);
  ck_assert_uint_eq(r.n_components, 1);
  ck_assert_uint_eq(r.n_skipped, 6);
  ck_assert_str_eq(r.skipped[0], "expressivity.feature_isotropy");
  ck_assert_double_eq(r.rank[1], 1); /* flops higher is better */
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 2);
}
END_TEST

static void expect_spec_error(const char *components, const char *pointer,
                              const char *fragment) {
  ae_rank_spec s;
  ae_error err = AE_ERROR_INIT;
  ck_assert_int_eq(ae_rank_spec_parse(components, AE_RANK_LOG_RANK, &s, &err),
                   AE_EINVAL);
  ck_assert_ptr_nonnull(err.reason);
  ck_assert_msg(strstr(err.reason, fragment) != NULL, "'%s' lacks '%s'",
                err.reason, fragment);
  if (pointer) ck_assert_str_eq(err.pointer, pointer);
  ck_assert_ptr_null(s.components);
  ae_error_clear(&err);
}

START_TEST(spec_errors) {
  expect_spec_error("topology.flops,foo.bar", "/components/1",
                    "unknown metric 'foo.bar'");
  expect_spec_error("generalization.kernel_complexity:higher", "/components/0",
                    "lower is better");
  expect_spec_error("topology.flops,topology.flops", "/components/1",
                    "given twice");
  expect_spec_error("x.y:up", "/components/0", "'higher' or 'lower'");
  expect_spec_error("topology.flops,,x.y:lower", "/components/1", "empty");
  expect_spec_error("flops", "/components/0", "group.field");
  expect_spec_error(".x:higher", "/components/0", "group.field");
  expect_spec_error("x.:higher", "/components/0", "group.field");
}
END_TEST

START_TEST(spec_accepts) {
  ae_rank_spec s;
  /* A known metric with its own direction is fine; unknown with one. */
  spec_or_fail("generalization.kernel_complexity:lower,topology.paths:higher",
               AE_RANK_RANK_SUM, &s);
  ck_assert_uint_eq(s.n_components, 2);
  ck_assert_int_eq(s.components[0].better, -1);
  ck_assert_int_eq(s.components[0].aspect, AE_ASPECT_GENERALIZATION);
  ck_assert_str_eq(s.components[0].name, "generalization.kernel_complexity");
  ck_assert_int_eq(s.components[1].better, +1);
  ck_assert_int_eq(s.components[1].aspect, AE_ASPECT_NONE);
  ck_assert_ptr_null(s.combination);
  ck_assert_int_eq(s.aggregate, AE_RANK_RANK_SUM);
  ae_rank_spec_free(&s);
  spec_or_fail("fast", AE_RANK_LOG_RANK, &s);
  ck_assert_uint_eq(s.n_components, 2);
  ae_rank_spec_free(&s);
}
END_TEST

START_TEST(spec_from_json) {
  ae_rank_spec s;
  ae_error err = AE_ERROR_INIT;
  json_t *j = card("{\"components\":[\"x.y:lower\",\"topology.flops\"],"
                   "\"aggregate\":\"rank_sum\"}");
  ck_assert_int_eq(ae_rank_spec_from_json(j, &s, &err), AE_OK);
  ck_assert_uint_eq(s.n_components, 2);
  ck_assert_int_eq(s.aggregate, AE_RANK_RANK_SUM);
  ae_rank_spec_free(&s);
  json_decref(j);

  j = json_string("fast");
  ck_assert_int_eq(ae_rank_spec_from_json(j, &s, &err), AE_OK);
  ck_assert_str_eq(s.combination, "fast");
  ae_rank_spec_free(&s);
  json_decref(j);

  ck_assert_int_eq(ae_rank_spec_from_json(NULL, &s, &err), AE_OK);
  ck_assert_str_eq(s.combination, "default");
  ae_rank_spec_free(&s);

  static const struct {
    const char *text, *pointer;
  } bad[] = {
      {"{\"aggregate\":\"mean\"}", "/aggregate"},
      {"{\"components\":[]}", "/components"},
      {"{\"components\":[\"x.y:lower\",3]}", "/components/1"},
      {"{\"components\":[\"x.y\"]}", "/components/0"},
      {"{\"component\":\"fast\"}", "/component"},
      {"\"best\"", ""},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_error_t e;
    j = json_loads(bad[i].text, JSON_DECODE_ANY, &e);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(ae_rank_spec_from_json(j, &s, &err), AE_EINVAL);
    ck_assert_msg(err.pointer && !strcmp(err.pointer, bad[i].pointer),
                  "%s: pointer %s", bad[i].text,
                  err.pointer ? err.pointer : "(null)");
    ae_error_clear(&err);
    json_decref(j);
  }
}
END_TEST

START_TEST(compute_errors) {
  ae_rank_spec s;
  spec_or_fail("topology.flops", AE_RANK_LOG_RANK, &s);
  ae_rank_result r;
  ae_error err = AE_ERROR_INIT;
  /* No scorecards. */
  ck_assert_int_eq(ae_rank_compute(NULL, 0, &s, &r, &err), AE_EINVAL);
  ae_error_clear(&err);
  /* A value that is neither a number nor null names the field. */
  json_t *c[2] = {card("{\"topology\":{\"flops\":1}}"),
                  card("{\"topology\":{\"flops\":\"many\"}}")};
  ck_assert_int_eq(ae_rank_compute(c, 2, &s, &r, &err), AE_EINVAL);
  ck_assert_str_eq(err.pointer, "/1/topology/flops");
  ae_error_clear(&err);
  /* Not an object. */
  json_t *arr[1] = {json_array()};
  ck_assert_int_eq(ae_rank_compute(arr, 1, &s, &r, &err), AE_EINVAL);
  ck_assert_str_eq(err.pointer, "/0");
  ae_error_clear(&err);
  json_decref(arr[0]);
  free_cards(c, 2);
  ae_rank_spec_free(&s);
}
END_TEST

START_TEST(json_rendering) {
  json_t *c[3] = {card("{\"topology\":{\"flops\":2}}"),
                  card("{\"topology\":{\"flops\":null}}"),
                  card("{\"topology\":{\"flops\":3}}")};
  ae_rank_spec s;
  spec_or_fail("topology.flops", AE_RANK_RANK_SUM, &s);
  ae_rank_result r;
  compute_or_fail(c, 3, &s, &r);
  const char *ids[] = {"a", "b", "c"};
  json_t *j = ae_rank_result_to_json(&r, ids);
  ck_assert_ptr_nonnull(j);
  ck_assert_int_eq(json_integer_value(json_object_get(j, "n")), 3);
  json_t *rank = json_object_get(j, "rank");
  ck_assert_str_eq(json_string_value(json_object_get(rank, "aggregate")),
                   "rank_sum");
  ck_assert_str_eq(json_string_value(json_object_get(rank, "combination")),
                   "custom");
  ck_assert(json_is_null(json_object_get(rank, "requested")));
  json_t *comp0 = json_array_get(json_object_get(rank, "components"), 0);
  ck_assert_str_eq(json_string_value(json_object_get(comp0, "better")),
                   "higher");
  ck_assert_str_eq(json_string_value(json_object_get(comp0, "aspect")),
                   "complexity");
  json_t *members = json_object_get(j, "members");
  ck_assert_uint_eq(json_array_size(members), 3);
  /* Best first: c (3), a (2), b (null). */
  const char *want[] = {"c", "a", "b"};
  for (size_t k = 0; k < 3; k++) {
    json_t *m = json_array_get(members, k);
    ck_assert_str_eq(json_string_value(json_object_get(m, "id")), want[k]);
    ck_assert_double_eq(json_real_value(json_object_get(m, "rank")),
                        (double)k + 1);
  }
  json_t *b = json_array_get(members, 2);
  ck_assert(json_is_null(
      json_object_get(json_object_get(b, "metrics"), "topology.flops")));
  ck_assert_double_eq(json_real_value(json_object_get(
                          json_object_get(b, "ranks"), "topology.flops")),
                      1);
  ck_assert(json_is_null(
      json_object_get(json_object_get(b, "aspect_ranks"), "expressivity")));
  json_t *front = json_object_get(j, "pareto_front");
  ck_assert_uint_eq(json_array_size(front), 1);
  ck_assert_str_eq(json_string_value(json_array_get(front, 0)), "c");
  json_decref(j);
  /* Without ids, the index. */
  j = ae_rank_result_to_json(&r, NULL);
  ck_assert_int_eq(json_integer_value(json_object_get(
                       json_array_get(json_object_get(j, "members"), 0), "id")),
                   2);
  json_decref(j);
  ae_rank_result_free(&r);
  ae_rank_spec_free(&s);
  free_cards(c, 3);
}
END_TEST

START_TEST(known_table) {
  size_t n;
  const ae_rank_known_metric *t = ae_rank_known_table(&n);
  ck_assert_uint_gt(n, 20);
  ck_assert_int_eq(
      ae_rank_known_lookup("generalization.kernel_complexity")->better, -1);
  ck_assert_int_eq(ae_rank_known_lookup("topology.flops")->better, +1);
  ck_assert_int_eq(ae_rank_known_lookup("convergence.ntk_condition")->better,
                   -1);
  ck_assert_ptr_null(ae_rank_known_lookup("topology.paths"));
  /* Every name is unique and group.field. */
  for (size_t i = 0; i < n; i++) {
    ck_assert_ptr_nonnull(strchr(t[i].name, '.'));
    for (size_t k = i + 1; k < n; k++)
      ck_assert_str_ne(t[i].name, t[k].name);
  }
}
END_TEST

static Suite *rank_suite(void) {
  Suite *s = suite_create("rank");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, values_ties_higher);
  tcase_add_test(tc, values_ties_lower);
  tcase_add_test(tc, values_nan_and_inf_are_null);
  tcase_add_test(tc, values_negative_zero_ties_zero);
  tcase_add_test(tc, nulls_rank_worst_and_score);
  tcase_add_test(tc, single_member);
  tcase_add_test(tc, all_null);
  tcase_add_test(tc, log_rank_against_rank_sum);
  tcase_add_test(tc, lower_direction_reverses);
  tcase_add_test(tc, pareto_2d_with_ties);
  tcase_add_test(tc, pareto_3d);
  tcase_add_test(tc, aspect_members_and_skipping);
  tcase_add_test(tc, absent_in_some_is_null_with_warning);
  tcase_add_test(tc, default_when_complete);
  tcase_add_test(tc, default_falls_back_to_fast);
  tcase_add_test(tc, default_partial_skips_absent);
  tcase_add_test(tc, spec_errors);
  tcase_add_test(tc, spec_accepts);
  tcase_add_test(tc, spec_from_json);
  tcase_add_test(tc, compute_errors);
  tcase_add_test(tc, json_rendering);
  tcase_add_test(tc, known_table);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(rank_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
