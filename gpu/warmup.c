/* warmup.c: the engine's warm-up (ae_engine_warmup, gpu/engine.h) and the
 * parity gate that keeps a device that disagrees with the host reference
 * out of service.
 *
 * Warm-up scores two tiny built-in requests through every group and code
 * path, so the first real job pays no start-up cost.  On a device engine
 * each result is compared with a host engine's on the same request.  Runs
 * on the worker thread that owns the engine; no state of its own. */
#include "gpu/warmup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/status.h"
#include "gpu/engine.h"

/* Two tiny requests that pass through every group and code path: an nb201
 * cell with every op kind, and an mlp_dag with skips and a smooth edge. */
static const char *const warmup_requests[] = {
    "{\"architecture\":{\"type\":\"nb201\",\"cell\":\"|nor_conv_3x3~0|+"
    "|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    "\",\"channels\":2,\"cells_per_stage\":1},\"data\":{\"batch_size\":4},"
    "\"settings\":{\"linear_regions\":{\"samples\":16,\"repeats\":1},"
    "\"curvature\":{\"points\":8,\"repeats\":1}}}",
    "{\"architecture\":{\"type\":\"mlp_dag\",\"dag\":\"2_21_112\","
    "\"width\":8},\"data\":{\"batch_size\":4,\"input_shape\":[16]},"
    "\"settings\":{\"linear_regions\":{\"samples\":16,\"repeats\":1},"
    "\"curvature\":{\"points\":8,\"repeats\":1}}}"};

/* |a - b| within rel of the larger magnitude (or both non-finite). */
static int values_agree(double a, double b, double rel) {
  if (!isfinite(a) || !isfinite(b)) return !isfinite(a) && !isfinite(b);
  double scale = fmax(fabs(a), fabs(b));
  return fabs(a - b) <= rel * scale + 1e-12;
}

int ae_warmup_matches_reference(const ae_scorecard *dev,
                                const ae_scorecard *ref) {
  const double pairs[][2] = {
      {dev->convergence.ntk_lambda_min, ref->convergence.ntk_lambda_min},
      {dev->convergence.ntk_lambda_max, ref->convergence.ntk_lambda_max},
      {dev->convergence.nngp_lambda_min, ref->convergence.nngp_lambda_min},
      {dev->generalization.kernel_complexity,
       ref->generalization.kernel_complexity},
      {dev->expressivity.curvature, ref->expressivity.curvature}};
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++)
    if (!values_agree(pairs[i][0], pairs[i][1], 1e-3)) return 0;
  return values_agree(dev->expressivity.linear_regions,
                      ref->expressivity.linear_regions, 5e-3);
}

/* Scores req on a host engine too and compares.  0 or AE_EDEVICE (or the
 * host's own error). */
static int parity_gate(const ae_engine *e, const ae_request *req,
                       const ae_dataset_registry *reg, const ae_scorecard *dev,
                       ae_error *err) {
  ae_engine_config hc = {AE_BACKEND_HOST, 0, 0};
  ae_engine *host = NULL;
  int rc = ae_engine_open(&hc, &host, err);
  if (rc) return rc;
  ae_scorecard ref;
  rc = ae_engine_score(host, req, reg, NULL, &ref, err);
  if (!rc && !ae_warmup_matches_reference(dev, &ref))
    rc = ae_error_set(err, AE_EDEVICE, NULL,
                      "%s disagrees with the host reference on its warm-up "
                      "request",
                      ae_engine_name(e));
  ae_scorecard_free(&ref);
  ae_engine_close(host);
  return rc;
}

/* Parses one built-in request. */
static int warmup_request(const char *text, const ae_dataset_registry *reg,
                          json_t **body, ae_request *req, ae_error *err) {
  ae_catalog cat = ae_dataset_registry_catalog(reg);
  ae_limits lim;
  ae_limits_default(&lim);
  ae_problem p = AE_PROBLEM_INIT;
  int rc = ae_json_parse_body(text, strlen(text), body, &p);
  if (!rc) rc = ae_request_parse(*body, &cat, &lim, req, &p);
  if (rc)
    ae_error_set(err, AE_EINTERNAL, NULL, "a warm-up request is invalid: %s",
                 p.detail ? p.detail : ae_strerror(rc));
  ae_problem_clear(&p);
  return rc ? AE_EINTERNAL : AE_OK;
}

int ae_engine_warmup(ae_engine *e, const ae_dataset_registry *reg,
                     ae_error *err) {
  int rc = AE_OK;
  for (size_t i = 0;
       rc == AE_OK && i < sizeof warmup_requests / sizeof *warmup_requests;
       i++) {
    json_t *body = NULL;
    ae_request req;
    rc = warmup_request(warmup_requests[i], reg, &body, &req, err);
    if (!rc) {
      ae_scorecard sc;
      rc = ae_engine_score(e, &req, reg, NULL, &sc, err);
      if (!rc && ae_engine_backend(e) != AE_BACKEND_HOST)
        rc = parity_gate(e, &req, reg, &sc, err);
      ae_scorecard_free(&sc);
      ae_request_free(&req);
    }
    json_decref(body);
    if (rc == AE_EINVAL) {
      /* Our own request is bad: a bug, not the caller's. */
      char why[256];
      snprintf(why, sizeof why, "%s", err->reason ? err->reason : "");
      rc = ae_error_set(err, AE_EINTERNAL, NULL,
                        "warm-up request %zu was refused: %s", i, why);
    }
  }
  return rc;
}
