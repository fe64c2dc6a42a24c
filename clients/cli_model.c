/* cli_model.c: an ONNX file as the CLI's model source: `archeval score
 * MODEL.onnx` imports the file in this process (api/onnx.h), lowers it
 * once for its own input shape (for the number of classes), and resolves
 * {"type": "onnx", "model": id} requests to it, exactly as archevald
 * resolves an uploaded model (its import warnings included: each job's
 * result reports them as "architecture.model: ...").  Single-threaded: the main
 * thread loads, resolves and frees it. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "api/onnx.h"
#include "api/sha256.h"
#include "api/status.h"
#include "clients/cli.h"

static int resolve(void *ctx, const char *id, ae_model_info *out) {
  const ae_cli_model *m = ctx;
  memset(out, 0, sizeof *out);
  if (strcmp(id, m->id)) return AE_ENOTFOUND;
  out->architecture = json_incref(m->architecture);
  memcpy(out->input_shape, m->input_shape, sizeof out->input_shape);
  out->input_rank = m->input_rank;
  out->num_classes = m->num_classes;
  /* Each request owns a copy of the warnings (ae_request.model_warnings). */
  if (json_array_size(m->warnings) > 0) {
    out->warnings = json_deep_copy(m->warnings);
    if (!out->warnings) {
      json_decref(out->architecture);
      out->architecture = NULL;
      return AE_ENOMEM;
    }
  }
  return AE_OK;
}

int ae_cli_model_load(const void *bytes, size_t len, ae_cli_model *m,
                      ae_problem *p) {
  memset(m, 0, sizeof *m);
  ae_onnx_limits olim;
  ae_onnx_limits_default(&olim);
  ae_onnx_model om;
  int rc = ae_onnx_import(bytes, len, &olim, &om, p);
  if (rc) return rc;
  for (size_t i = 0; i < json_array_size(om.warnings); i++)
    fprintf(stderr, "archeval: model: warning: %s\n",
            json_string_value(json_array_get(om.warnings, i)));
  ae_limits lim;
  ae_limits_default(&lim);
  ae_arch arch;
  ae_graph g;
  memset(&arch, 0, sizeof arch);
  memset(&g, 0, sizeof g);
  rc = ae_arch_from_json(om.architecture, "/architecture", &lim, &arch, p);
  if (rc == AE_OK) {
    ae_lower_opts lo;
    memset(&lo, 0, sizeof lo);
    memcpy(lo.input_shape, om.input_shape, sizeof lo.input_shape);
    lo.input_rank = om.input_rank;
    rc = ae_arch_lower(&arch, &lo, &lim, "/architecture", &g, p);
  }
  if (rc == AE_OK) {
    char hex[65];
    ae_sha256_hex(bytes, len, hex);
    snprintf(m->id, sizeof m->id, "sha256:%s", hex);
    m->architecture = json_incref(om.architecture);
    m->warnings = json_incref(om.warnings);
    memcpy(m->input_shape, om.input_shape, sizeof m->input_shape);
    m->input_rank = om.input_rank;
    m->num_classes = g.num_classes;
    m->source.resolve = resolve;
    m->source.ctx = m;
  }
  ae_graph_free(&g);
  ae_arch_free(&arch);
  ae_onnx_model_free(&om);
  return rc;
}

void ae_cli_model_free(ae_cli_model *m) {
  json_decref(m->architecture);
  json_decref(m->warnings);
  memset(m, 0, sizeof *m);
}
