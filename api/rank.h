/* rank.h: the combined rank of a population of scorecards (ranking.md
 * §5-6) as a pure function: scorecards in, ranks out, no I/O and no
 * mutable state.  `archeval rank` and the studies call the same code.
 *
 * Conventions (also in the README, "Ranking a population"):
 * - A metric is named "group.field" ("convergence.ntk_lambda_min") and
 *   read from scorecard[group][field].  A member "has" a metric when the
 *   key is there, even as null (a computed but degenerate value).
 * - Component ranks follow §5.1: 1 = worst .. n = best by the metric's
 *   better direction; equal values share the average of their ranks;
 *   null, non-finite and absent values take the lowest ranks, tied at the
 *   average of the ranks they occupy.
 * - The score is the sum over components of log(rank / n) ("log_rank",
 *   at most 0) or of the ranks ("rank_sum"); higher is better.  The terms
 *   are summed in ascending order, so members with the same ranks in any
 *   order get bit-identical scores.
 * - The combined rank and the aspect ranks are positions in the order of
 *   their score: 1 = best.  Scores within 1e-12 relative
 *   (|a - b| <= 1e-12 * max(1, |a|, |b|)) are tied and share the average
 *   of their positions.
 * - Aspects (expressivity, convergence, generalization, complexity) have
 *   the fixed membership of ranking.md §6, whatever the components; an
 *   aspect metric absent from every scorecard is skipped, and an aspect
 *   with no metric left has no score (null).
 * - The Pareto front: members that no other member dominates over the
 *   aspect scores of the aspects that have one.  A dominates B when A is
 *   at least as good on every such aspect and better on one (with the
 *   tie tolerance above).  Members with equal aspect scores do not
 *   dominate each other, so ties are all on the front or all off it.
 *   With no aspect scored, every member is on the front.  The front
 *   costs O(n^2) comparisons (about a second for 15,625 members here).
 * - A component absent from every scorecard is skipped (listed in
 *   `skipped`); one absent from only some ranks those as null, with a
 *   warning.  "default" falls back to "fast" when some scorecard lacks a
 *   component of "default" but every scorecard has both of "fast"
 *   (ranking.md §6, as studies do); `combination` says which was used.
 *
 * The caller owns every struct here; nothing is shared between threads. */
#ifndef AE_RANK_H
#define AE_RANK_H

#include <jansson.h>
#include <stddef.h>

#include "api/error.h"

typedef enum { AE_RANK_LOG_RANK = 0, AE_RANK_RANK_SUM = 1 } ae_rank_aggregate;

/* The aspects of ranking.md §6, in output order. */
typedef enum {
  AE_ASPECT_NONE = -1,
  AE_ASPECT_EXPRESSIVITY = 0,
  AE_ASPECT_CONVERGENCE,
  AE_ASPECT_GENERALIZATION,
  AE_ASPECT_COMPLEXITY,
  AE_ASPECT_COUNT
} ae_rank_aspect;

/* A metric of the known-metrics table. better: +1 higher is better, -1
 * lower is better.  aspect: its aspect per §6, or AE_ASPECT_NONE. */
typedef struct {
  const char *name;
  int better;
  ae_rank_aspect aspect;
} ae_rank_known_metric;

/* The known metric of that name, or NULL. */
const ae_rank_known_metric *ae_rank_known_lookup(const char *name);

/* The whole known-metrics table, *n entries. */
const ae_rank_known_metric *ae_rank_known_table(size_t *n);

/* "expressivity", ..., "complexity". */
const char *ae_rank_aspect_name(ae_rank_aspect a);

/* One column: a metric and its better direction. */
typedef struct {
  char *name; /* malloc'd */
  int better; /* +1 higher, -1 lower */
  ae_rank_aspect aspect;
} ae_rank_metric;

/* What to rank by. */
typedef struct {
  char *combination; /* "default", "fast", or NULL for an explicit list */
  ae_rank_metric *components;
  size_t n_components;
  ae_rank_aggregate aggregate;
} ae_rank_spec;

/* A component given by a user: a known metric name ("topology.flops"), or
 * any "group.field" with an explicit direction ("topology.paths:higher",
 * "x.y:lower").  A direction on a known metric must be its own: they are
 * not user-settable.  An unknown name without a direction is an error
 * naming it. */

/* Fills spec from "default", "fast" or a comma-separated list of
 * components.  Errors (AE_EINVAL, AE_ENOMEM) name the offending entry;
 * the pointer is "/components/K" for the K-th (0-based) list entry. */
int ae_rank_spec_parse(const char *components, ae_rank_aggregate aggregate,
                       ae_rank_spec *spec, ae_error *err);

/* Fills spec from the JSON of a study's "rank" (api.md): "default", "fast",
 * or {"components": "fast" | [strings], "aggregate": "log_rank" |
 * "rank_sum"}; NULL means "default".  Pointers are relative to the rank
 * value ("/components/2", "/aggregate"). */
int ae_rank_spec_from_json(const json_t *rank, ae_rank_spec *spec,
                           ae_error *err);

/* "log_rank" / "rank_sum" to the enum; -1 for anything else. */
int ae_rank_aggregate_parse(const char *text);
const char *ae_rank_aggregate_name(ae_rank_aggregate a);

void ae_rank_spec_free(ae_rank_spec *spec);

/* Ranks n values by §5.1 into ranks (n entries): 1 = worst .. n = best
 * for the direction better (+1 higher, -1 lower); equal values share the
 * average of their ranks; NaN and +-Inf ("null") take the lowest ranks,
 * tied at their average.  AE_ENOMEM or AE_OK. */
int ae_rank_values(const double *values, size_t n, int better, double *ranks);

/* The ranking of n members.  Member i's arrays are row i of n rows. */
typedef struct {
  size_t n;
  ae_rank_aggregate aggregate;
  /* Static strings. */
  const char *requested;   /* "default", "fast" or NULL (explicit list) */
  const char *combination; /* "default", "fast" or "custom" (used) */
  int fallback;            /* 1: "default" fell back to "fast" */

  /* Every metric used: the components first (is_component 1), then the
   * aspect metrics that are not components.  Only metrics present in at
   * least one scorecard. */
  ae_rank_metric *metrics;
  int *is_component;
  size_t n_metrics;
  size_t n_components; /* the first n_components of metrics */

  /* Components requested but absent from every scorecard. */
  char **skipped;
  size_t n_skipped;

  double *values;         /* n x n_metrics; NaN when null or non-finite */
  unsigned char *present; /* n x n_metrics; 1 when the key is there */
  double *ranks;          /* n x n_metrics, 1 = worst .. n = best */

  double *score; /* n: the combined score, higher better */
  double *rank;  /* n: position by score, 1 = best */

  int aspect_scored[AE_ASPECT_COUNT]; /* 1: the aspect has a metric */
  double *aspect_score;               /* n x AE_ASPECT_COUNT, NaN unscored */
  double *aspect_rank;                /* n x AE_ASPECT_COUNT, 1 = best */

  unsigned char *pareto; /* n: 1 when on the front */
  size_t *order;         /* n: member indices by rank, best first (stable) */

  char **warnings;
  size_t n_warnings;
} ae_rank_result;

/* Ranks n scorecards (each a jansson object: a job's "result"; borrowed).
 * On success fills out (free with ae_rank_result_free).  Errors:
 * AE_EINVAL for no scorecards, a scorecard that is not an object, a metric
 * value that is neither a number nor null (pointer "/I/group/field"), or
 * no component present in any scorecard; AE_ENOMEM.  Pure: the same input
 * gives the same output. */
int ae_rank_compute(json_t *const *scorecards, size_t n,
                    const ae_rank_spec *spec, ae_rank_result *out,
                    ae_error *err);

void ae_rank_result_free(ae_rank_result *r);

/* New reference: the ranking as JSON (the members in rank order):
 * {"n", "rank": {"requested", "combination", "fallback", "aggregate",
 *  "components": [{"metric", "better", "aspect"}], "skipped"},
 *  "aspects": {"expressivity": [metrics], ...},
 *  "members": [{"id", "index", "metrics": {name: value|null},
 *   "ranks": {name: rank}, "score", "rank", "aspect_scores": {...},
 *   "aspect_ranks": {...}, "pareto": bool}],
 *  "pareto_front": [ids], "warnings": [...]}.
 * ids (optional, n strings) name the members; without them "id" is the
 * 0-based input index.  NULL when out of memory. */
json_t *ae_rank_result_to_json(const ae_rank_result *r, const char *const *ids);

#endif
