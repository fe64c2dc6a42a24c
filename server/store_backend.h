/* store_backend.h: what a job store backend provides to store.c.
 *
 * A backend is a table of operations over its own handle (void *impl) and
 * an open function.  store.c owns the public ae_store: it chooses the
 * backend, times every call and forwards it; the backend's functions have
 * the semantics store.h documents for the public ones.  Backends never
 * see each other.
 *
 * Thread: the same as store.h (the loop thread that opened the store). */
#ifndef AE_STORE_BACKEND_H
#define AE_STORE_BACKEND_H

#include <stddef.h>

#include "server/store.h"

typedef struct {
  const char *name; /* "sqlite", "postgresql" */
  int (*insert)(void *impl, const ae_store_job *jobs, size_t n);
  int (*mark_running)(void *impl, const char *id, const char *worker,
                      long long started_ms);
  int (*mark_cancel_requested)(void *impl, const char *id);
  int (*finish)(void *impl, const char *id, ae_job_state state,
                const char *result_json, const char *error_json,
                long long finished_ms, long long expires_ms);
  int (*remove)(void *impl, const char *id);
  int (*expire)(void *impl, long long now_ms);
  int (*load)(void *impl, int (*fn)(void *ud, const ae_store_job *j), void *ud);
  int (*ping)(void *impl);
  const char *(*errmsg)(const void *impl);
  void (*close)(void *impl);
} ae_store_ops;

/* store_sqlite.c: opens DIR/jobs.sqlite3 (store.h, ae_store_open). */
extern const ae_store_ops ae_store_sqlite_ops;
int ae_store_sqlite_open(const char *dir, ae_store_sync sync, void **impl,
                         char *err, size_t errlen);

#ifdef HAVE_LIBPQ
/* store_pg.c: connects to the database CONNINFO names (a URL or a
 * key=value string) and prepares it (store.h, ae_store_open_url). */
extern const ae_store_ops ae_store_pg_ops;
int ae_store_pg_open(const char *conninfo, void **impl, char *err,
                     size_t errlen);
#endif

/* The job states' names in both schemas, and back. */
const char *ae_store_state_name(ae_job_state state);
int ae_store_state_parse(const char *name, ae_job_state *out);

#endif
