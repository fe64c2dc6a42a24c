/* warmup.h: the device parity gate of the engine's warm-up.
 *
 * ae_engine_warmup itself is declared in gpu/engine.h (it is part of the
 * engine's interface) and defined in gpu/warmup.c, which also holds the
 * comparison below.  No state; runs on the worker thread that owns the
 * engine. */
#ifndef AE_WARMUP_H
#define AE_WARMUP_H

#include "api/scorecard.h"

/* 1 when a device's scorecard matches the host reference's on the same
 * request (scorecard.md §4: eigenvalues and bounds within 1e-3,
 * linear-region counts within 0.5 %), else 0. */
int ae_warmup_matches_reference(const ae_scorecard *dev,
                                const ae_scorecard *ref);

#endif
