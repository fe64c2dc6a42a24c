/* api_internal.h: helpers shared by the api/ parsers (not a public
 * interface).  JSON pointers are built in caller-owned fixed buffers;
 * field readers record one ae_problem entry per offending field and return
 * the number of errors they added.  No state; any thread. */
#ifndef AE_API_INTERNAL_H
#define AE_API_INTERNAL_H

#include "api/problem.h"
#include <jansson.h>
#include <stddef.h>

#define AE_PTR_MAX 512

/* out = base + "/" + escaped key (RFC 6901: "~" -> "~0", "/" -> "~1"). */
void ae_ptr_key(char *out, size_t size, const char *base, const char *key);
/* out = base + "/" + index. */
void ae_ptr_index(char *out, size_t size, const char *base, size_t index);

/* Adds an error for every key of obj not in allowed (NULL-terminated). */
int ae_check_keys(const json_t *obj, const char *const *allowed,
                  const char *pointer, ae_problem *p);

/* Reads an optional integer member in [lo, hi] into *out (left unchanged
 * when absent).  Returns the number of errors added (0 or 1). */
int ae_get_int(const json_t *obj, const char *key, const char *pointer,
               long long lo, long long hi, long long *out, ae_problem *p);
/* The same for a required member. */
int ae_get_int_req(const json_t *obj, const char *key, const char *pointer,
                   long long lo, long long hi, long long *out, ae_problem *p);
/* Optional boolean. */
int ae_get_bool(const json_t *obj, const char *key, const char *pointer,
                int *out, ae_problem *p);
/* Optional number (integer or real), finite, in (lo, hi] when excl_lo,
 * else [lo, hi]. */
int ae_get_number(const json_t *obj, const char *key, const char *pointer,
                  double lo, double hi, int excl_lo, double *out,
                  ae_problem *p);

/* "an integer", "a string", ... for error details. */
const char *ae_json_type_name(const json_t *j);

#endif
