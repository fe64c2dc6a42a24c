/* engine.h: the scoring engine's one C interface.
 *
 * An ae_engine is one backend instance (host or cuda:N) with its buffers
 * (and on a GPU its device, streams, library handles and workspace).  It is
 * owned by exactly one worker thread for its whole life: open, warm up,
 * score jobs one after another, close, all on that thread.  The engine
 * knows nothing of the wire protocol: it takes a parsed ae_request and the
 * read-only dataset registry, and fills an ae_scorecard or an ae_error
 * (api/error.h; the caller turns that into a problem with
 * ae_problem_from_error).
 *
 * Same request and seed, same numbers: the engine fixes its own arithmetic
 * settings (see ae_engine_open), whatever process it runs in. */
#ifndef AE_ENGINE_H
#define AE_ENGINE_H

#include "api/error.h"
#include "api/request.h"
#include "api/scorecard.h"
#include "gpu/dataset.h"
#include "gpu/job_control.h"
#include "gpu/plan.h"
#include <stddef.h>

typedef enum { AE_BACKEND_HOST, AE_BACKEND_CUDA } ae_backend_kind;

typedef struct {
  ae_backend_kind backend;
  int device; /* CUDA device ordinal */
  int index;  /* worker index, for the name "host:1" */
} ae_engine_config;

typedef struct ae_engine ae_engine;

/* Opens a backend.  AE_EUNSUPPORTED when CUDA was not built or there is no
 * such device, AE_ENOMEM; err says why.
 *
 * It also fixes the process's BLAS to one thread: OpenBLAS's threaded
 * LAPACK (dsyevd's tridiagonal reduction, dpotrf) sums partial results
 * in an order that depends on the thread count, which moved eigenvalues
 * in their last digits between the CLI (one thread) and a daemon with
 * fewer workers than cores.  Parallelism comes from workers instead. */
int ae_engine_open(const ae_engine_config *cfg, ae_engine **out, ae_error *err);

/* Runs one small evaluation of every group through every code path, so the
 * first real job pays no start-up cost.  An engine on a device must also
 * match the host reference's results (eigenvalues and bounds within 1e-3,
 * linear regions within 0.5 %), else AE_EDEVICE: the worker leaves
 * service (and `--backend auto` falls back to the host).  0 or an error
 * (err says why).  Defined in gpu/warmup.c. */
int ae_engine_warmup(ae_engine *e, const ae_dataset_registry *reg,
                     ae_error *err);

/* Scores one request.  Returns 0 (out filled) or an error with err filled:
 * AE_ECANCELLED, AE_EDEADLINE, AE_EINVAL / AE_ENOMEM (the job fails),
 * AE_EDEVICE (sticky: the worker must leave service) or AE_EINTERNAL. */
int ae_engine_score(ae_engine *e, const ae_request *req,
                    const ae_dataset_registry *reg, const ae_job_control *ctl,
                    ae_scorecard *out, ae_error *err);

/* "host:0", "cuda:1". */
const char *ae_engine_name(const ae_engine *e);

/* The backend it runs on. */
ae_backend_kind ae_engine_backend(const ae_engine *e);

/* Bytes of device (or host buffer) memory this engine holds now. */
size_t ae_engine_memory_used(const ae_engine *e);

/* The engine's thread has no job waiting: gives back what is kept from
 * job to job for speed (the host nets' spare arena of this thread), so an
 * idle worker holds no job memory.  Call it on the thread that runs e's
 * jobs. */
void ae_engine_idle(ae_engine *e);

void ae_engine_close(ae_engine *e);

/* The memory one job of req needs on this engine, part by part
 * (gpu/plan.h): what validation compares with --max-job-memory.  AE_OK,
 * AE_EINVAL or AE_ENOMEM. */
int ae_engine_estimate(const ae_request *req, ae_plan_job_bytes *out);
/* The default memory budget of one job (ae_limits.max_working_set_bytes):
 * half of this machine's physical memory. */
double ae_engine_default_job_memory(void);

/* Number of CUDA devices usable by this build (0 without CUDA). */
int ae_cuda_device_count(void);

#endif
