/* status.h: the error codes every archeval component returns.
 *
 * Functions that can fail return an int: 0 (AE_OK) on success or one of the
 * negative codes below.  Errors travel as values up to one place (the
 * worker, the route handler, the CLI's main) that turns them into a
 * problem+json.  No thread owns anything here. */
#ifndef AE_STATUS_H
#define AE_STATUS_H

enum {
  AE_OK = 0,
  AE_EINVAL = -1,       /* bad input; an ae_problem says which field */
  AE_ENOMEM = -2,       /* an allocation failed or a budget was exceeded */
  AE_ECANCELLED = -3,   /* the job's cancel flag was seen at a checkpoint */
  AE_EDEADLINE = -4,    /* the job's deadline passed at a checkpoint */
  AE_EIO = -5,          /* a file could not be read */
  AE_EDEVICE = -6,      /* sticky device error: the worker leaves service */
  AE_EINTERNAL = -7,    /* a bug or a library failure; logged, never leaked */
  AE_EUNSUPPORTED = -8, /* not available in this build (e.g. CUDA) */
  AE_ENOTFOUND = -9     /* unknown dataset, file, id */
};

/* A short, static, human-readable name for a status code. */
const char *ae_strerror(int status);

#endif
