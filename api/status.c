/* status.c: names for the AE_E* codes of status.h.  Static strings only;
 * safe from any thread. */
#include "api/status.h"

const char *ae_strerror(int status) {
  switch (status) {
  case AE_OK:
    return "ok";
  case AE_EINVAL:
    return "invalid input";
  case AE_ENOMEM:
    return "out of memory";
  case AE_ECANCELLED:
    return "cancelled";
  case AE_EDEADLINE:
    return "deadline exceeded";
  case AE_EIO:
    return "input/output error";
  case AE_EDEVICE:
    return "device error";
  case AE_EINTERNAL:
    return "internal error";
  case AE_EUNSUPPORTED:
    return "not supported in this build";
  case AE_ENOTFOUND:
    return "not found";
  default:
    return "unknown error";
  }
}
