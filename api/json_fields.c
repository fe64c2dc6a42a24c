/* json_fields.c: JSON pointer building and typed field readers for the
 * request parsers (api_internal.h).  Stateless; any thread. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"

void ae_ptr_key(char *out, size_t size, const char *base, const char *key) {
  size_t n = (size_t)snprintf(out, size, "%s/", base);
  if (n >= size) return;
  for (const char *c = key; *c && n + 3 < size; c++) {
    if (*c == '~') {
      out[n++] = '~';
      out[n++] = '0';
    } else if (*c == '/') {
      out[n++] = '~';
      out[n++] = '1';
    } else {
      out[n++] = *c;
    }
  }
  out[n] = '\0';
}

void ae_ptr_index(char *out, size_t size, const char *base, size_t index) {
  snprintf(out, size, "%s/%zu", base, index);
}

const char *ae_json_type_name(const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a real number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  case JSON_NULL:
    return "null";
  }
  return "unknown";
}

int ae_check_keys(const json_t *obj, const char *const *allowed,
                  const char *pointer, ae_problem *p) {
  int errors = 0;
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)obj, key, value) {
    (void)value;
    int known = 0;
    for (const char *const *a = allowed; *a; a++)
      if (strcmp(*a, key) == 0) known = 1;
    if (!known) {
      char ptr[AE_PTR_MAX];
      ae_ptr_key(ptr, sizeof ptr, pointer, key);
      ae_problem_add(p, ptr, "unknown field \"%s\"", key);
      errors++;
    }
  }
  return errors;
}

static int read_int(const json_t *v, const char *ptr, long long lo,
                    long long hi, long long *out, ae_problem *p) {
  if (!json_is_integer(v)) {
    ae_problem_add(p, ptr, "must be an integer, not %s", ae_json_type_name(v));
    return 1;
  }
  long long x = json_integer_value(v);
  if (x < lo || x > hi) {
    ae_problem_add(p, ptr, "must be between %lld and %lld, not %lld", lo, hi,
                   x);
    return 1;
  }
  *out = x;
  return 0;
}

int ae_get_int(const json_t *obj, const char *key, const char *pointer,
               long long lo, long long hi, long long *out, ae_problem *p) {
  const json_t *v = json_object_get(obj, key);
  if (!v) return 0;
  char ptr[AE_PTR_MAX];
  ae_ptr_key(ptr, sizeof ptr, pointer, key);
  return read_int(v, ptr, lo, hi, out, p);
}

int ae_get_int_req(const json_t *obj, const char *key, const char *pointer,
                   long long lo, long long hi, long long *out, ae_problem *p) {
  char ptr[AE_PTR_MAX];
  ae_ptr_key(ptr, sizeof ptr, pointer, key);
  const json_t *v = json_object_get(obj, key);
  if (!v) {
    ae_problem_add(p, ptr, "required field \"%s\" is missing", key);
    return 1;
  }
  return read_int(v, ptr, lo, hi, out, p);
}

int ae_get_bool(const json_t *obj, const char *key, const char *pointer,
                int *out, ae_problem *p) {
  const json_t *v = json_object_get(obj, key);
  if (!v) return 0;
  if (!json_is_boolean(v)) {
    char ptr[AE_PTR_MAX];
    ae_ptr_key(ptr, sizeof ptr, pointer, key);
    ae_problem_add(p, ptr, "must be a boolean, not %s", ae_json_type_name(v));
    return 1;
  }
  *out = json_is_true(v);
  return 0;
}

int ae_get_number(const json_t *obj, const char *key, const char *pointer,
                  double lo, double hi, int excl_lo, double *out,
                  ae_problem *p) {
  const json_t *v = json_object_get(obj, key);
  if (!v) return 0;
  char ptr[AE_PTR_MAX];
  ae_ptr_key(ptr, sizeof ptr, pointer, key);
  if (!json_is_number(v)) {
    ae_problem_add(p, ptr, "must be a number, not %s", ae_json_type_name(v));
    return 1;
  }
  double x = json_number_value(v);
  int low_bad = excl_lo ? !(x > lo) : !(x >= lo);
  if (!isfinite(x) || low_bad || !(x <= hi)) {
    ae_problem_add(p, ptr, "must be in %s%g, %g], not %g", excl_lo ? "(" : "[",
                   lo, hi, x);
    return 1;
  }
  *out = x;
  return 0;
}
