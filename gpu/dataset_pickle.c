/* dataset_pickle.c: reads the pickled batches of CIFAR-10
 * (cifar-10-batches-py/data_batch_N, test_batch), CIFAR-100
 * (cifar-100-python/train, test) and NAS-Bench-201's ImageNet16-120
 * (train_data_batch_N, val_data) without a Python interpreter.
 *
 * A pickle is a program for a small stack machine.  This file runs the
 * subset of it that those files use (protocols 2 to 5: dicts, lists,
 * tuples, ints, floats, byte and text strings, the memo, and NumPy arrays
 * rebuilt through numpy.core.multiarray._reconstruct, numpy's
 * _frombuffer, or _codecs.encode for Python 3's protocol 2), builds a small
 * object graph in a bounded arena, and takes "data" and "labels" (or
 * "fine_labels") out of the top dict.  Any other opcode or callable is
 * rejected, with its byte offset: nothing in the file can run code.  Every
 * count (objects, stack, marks, memo, arrays, lengths) is bounded, and every
 * read is checked against the end of the buffer.
 *
 * Runs on the thread that builds the registry (or a fuzzer's); no state of
 * its own. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "gpu/dataset.h"
#include "gpu/dataset_internal.h"

/* Bounds on what one pickle may build. */
#define PK_MAX_OBJECTS (1 << 21)
#define PK_MAX_STACK (1 << 21)
#define PK_MAX_MARKS 64
#define PK_MAX_MEMO (1 << 21)
#define PK_MAX_ARRAYS 16
#define PK_MAX_DIMS 4
#define PK_MAX_OWNED 64

enum pk_type {
  PK_NONE,
  PK_BOOL,
  PK_INT,
  PK_FLOAT,
  PK_BYTES, /* bytes, bytearray, a Python 2 str */
  PK_TEXT,  /* a Python 3 str (UTF-8) */
  PK_TUPLE,
  PK_LIST,
  PK_DICT, /* items: key, value, key, value... */
  PK_GLOBAL,
  PK_ARRAY, /* a NumPy array: arrays[aux] */
  PK_DTYPE, /* a NumPy dtype: descr in the string, byte order in aux */
};

/* The callables a pickle may name. */
enum pk_global {
  PKG_RECONSTRUCT, /* numpy.core.multiarray._reconstruct */
  PKG_NDARRAY,     /* numpy.ndarray */
  PKG_DTYPE,       /* numpy.dtype */
  PKG_FROMBUFFER,  /* numpy.core.numeric._frombuffer */
  PKG_ENCODE,      /* _codecs.encode */
  PKG_SCALAR,      /* numpy.core.multiarray.scalar: a NumPy int or float */
};

typedef struct {
  uint8_t type;
  int32_t aux; /* PK_GLOBAL: enum pk_global; PK_ARRAY: index; PK_DTYPE:
                  byte order character */
  int32_t n, cap;
  union {
    int64_t i;
    double f;
    struct {
      const uint8_t *p;
      size_t len;
    } s;
    int32_t *items;
  } u;
} pk_obj;

typedef struct {
  int ndim;
  long long dims[PK_MAX_DIMS];
  int32_t dtype; /* a PK_DTYPE object, or -1 */
  int fortran;
  const uint8_t *data;
  size_t len;
  int built;
} pk_array;

typedef struct {
  const uint8_t *buf;
  size_t len, pos, op_at;
  pk_obj *objs;
  int32_t n_objs, cap_objs;
  int32_t *stack;
  int32_t n_stack, cap_stack;
  int32_t marks[PK_MAX_MARKS];
  int n_marks;
  int32_t *memo;
  int32_t cap_memo, n_memo; /* slots, slots set */
  pk_array arrays[PK_MAX_ARRAYS];
  int n_arrays;
  uint8_t *owned[PK_MAX_OWNED]; /* latin-1 decodings */
  int n_owned;
  ae_error *err;
} pk_vm;

static int pk_fail(pk_vm *vm, const char *what) {
  return ae_error_set(vm->err, AE_EINVAL, NULL, "%s at byte %zu", what,
                      vm->op_at);
}

static int pk_nomem(pk_vm *vm) {
  return ae_error_set(vm->err, AE_ENOMEM, NULL, "out of memory");
}

/* Grows *p (n used of *cap elements of size sz) to hold one more. */
static int grow(void **p, int32_t *cap, int32_t n, size_t sz, int32_t max) {
  if (n < *cap) return AE_OK;
  if (n >= max) return AE_EINVAL;
  int32_t next = *cap ? *cap * 2 : 16;
  if (next > max) next = max;
  void *q = realloc(*p, (size_t)next * sz);
  if (!q) return AE_ENOMEM;
  *p = q;
  *cap = next;
  return AE_OK;
}

static int pk_new(pk_vm *vm, int type, int32_t *id) {
  int rc = grow((void **)&vm->objs, &vm->cap_objs, vm->n_objs, sizeof *vm->objs,
                PK_MAX_OBJECTS);
  if (rc == AE_EINVAL) return pk_fail(vm, "too many objects");
  if (rc) return pk_nomem(vm);
  pk_obj *o = &vm->objs[vm->n_objs];
  memset(o, 0, sizeof *o);
  o->type = (uint8_t)type;
  *id = vm->n_objs++;
  return AE_OK;
}

static int pk_push(pk_vm *vm, int32_t id) {
  int rc = grow((void **)&vm->stack, &vm->cap_stack, vm->n_stack,
                sizeof *vm->stack, PK_MAX_STACK);
  if (rc == AE_EINVAL) return pk_fail(vm, "stack too deep");
  if (rc) return pk_nomem(vm);
  vm->stack[vm->n_stack++] = id;
  return AE_OK;
}

/* Creates an object of the type and pushes it; *id may be NULL. */
static int pk_push_new(pk_vm *vm, int type, int32_t *id) {
  int32_t k;
  int rc = pk_new(vm, type, &k);
  if (!rc) rc = pk_push(vm, k);
  if (!rc && id) *id = k;
  return rc;
}

static int pk_pop(pk_vm *vm, int32_t *id) {
  int floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
  if (vm->n_stack <= floor) return pk_fail(vm, "stack underflow");
  *id = vm->stack[--vm->n_stack];
  return AE_OK;
}

static int pk_top(pk_vm *vm, int32_t *id) {
  int floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
  if (vm->n_stack <= floor) return pk_fail(vm, "stack underflow");
  *id = vm->stack[vm->n_stack - 1];
  return AE_OK;
}

/* Appends item to the container's items. */
static int pk_add_item(pk_vm *vm, int32_t container, int32_t item) {
  pk_obj *o = &vm->objs[container];
  int rc = grow((void **)&o->u.items, &o->cap, o->n, sizeof *o->u.items,
                PK_MAX_OBJECTS);
  if (rc == AE_EINVAL) return pk_fail(vm, "container too large");
  if (rc) return pk_nomem(vm);
  o->u.items[o->n++] = item;
  return AE_OK;
}

/* Reads n bytes of operand; NULL (and the error) past the end. */
static const uint8_t *pk_read(pk_vm *vm, uint64_t n) {
  if (n > vm->len - vm->pos) {
    ae_error_set(vm->err, AE_EINVAL, NULL,
                 "truncated at byte %zu (the opcode at byte %zu needs %llu "
                 "more bytes)",
                 vm->len, vm->op_at, (unsigned long long)n);
    return NULL;
  }
  const uint8_t *p = vm->buf + vm->pos;
  vm->pos += (size_t)n;
  return p;
}

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int k = n - 1; k >= 0; k--)
    v = v << 8 | p[k];
  return v;
}

/* A string operand whose length has lbytes little-endian bytes. */
static int pk_string(pk_vm *vm, int lbytes, int type) {
  const uint8_t *l = pk_read(vm, (uint64_t)lbytes);
  if (!l) return AE_EINVAL;
  uint64_t n = le(l, lbytes);
  if (lbytes == 4 && type == PK_BYTES && (n >> 31))
    return pk_fail(vm, "negative string length");
  const uint8_t *p = pk_read(vm, n);
  if (!p) return AE_EINVAL;
  int32_t id;
  int rc = pk_push_new(vm, type, &id);
  if (rc) return rc;
  vm->objs[id].u.s.p = p;
  vm->objs[id].u.s.len = (size_t)n;
  return AE_OK;
}

static int pk_int(pk_vm *vm, int64_t v) {
  int32_t id;
  int rc = pk_push_new(vm, PK_INT, &id);
  if (!rc) vm->objs[id].u.i = v;
  return rc;
}

static int str_is(const pk_obj *o, const char *s) {
  size_t n = strlen(s);
  return (o->type == PK_BYTES || o->type == PK_TEXT) && o->u.s.len == n &&
         !memcmp(o->u.s.p, s, n);
}

/* Resolves module.name to an allowed callable and pushes it. */
static int pk_global(pk_vm *vm, const uint8_t *mod, size_t ml,
                     const uint8_t *name, size_t nl) {
  static const struct {
    const char *mod, *name;
    int kind;
  } allowed[] = {
      {"numpy.core.multiarray", "_reconstruct", PKG_RECONSTRUCT},
      {"numpy._core.multiarray", "_reconstruct", PKG_RECONSTRUCT},
      {"numpy", "ndarray", PKG_NDARRAY},
      {"numpy", "dtype", PKG_DTYPE},
      {"numpy.core.numeric", "_frombuffer", PKG_FROMBUFFER},
      {"numpy._core.numeric", "_frombuffer", PKG_FROMBUFFER},
      {"_codecs", "encode", PKG_ENCODE},
      {"numpy.core.multiarray", "scalar", PKG_SCALAR},
      {"numpy._core.multiarray", "scalar", PKG_SCALAR},
  };
  for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
    if (strlen(allowed[i].mod) != ml || memcmp(allowed[i].mod, mod, ml) ||
        strlen(allowed[i].name) != nl || memcmp(allowed[i].name, name, nl))
      continue;
    int32_t id;
    int rc = pk_push_new(vm, PK_GLOBAL, &id);
    if (!rc) vm->objs[id].aux = allowed[i].kind;
    return rc;
  }
  char what[160];
  snprintf(what, sizeof what, "unsupported pickle global '%.*s.%.*s'",
           (int)(ml > 60 ? 60 : ml), (const char *)mod,
           (int)(nl > 60 ? 60 : nl), (const char *)name);
  return pk_fail(vm, what);
}

/* GLOBAL: "module\nname\n". */
static int pk_op_global(pk_vm *vm) {
  const uint8_t *start[2];
  size_t n[2];
  for (int k = 0; k < 2; k++) {
    start[k] = vm->buf + vm->pos;
    const uint8_t *nl = memchr(start[k], '\n', vm->len - vm->pos);
    if (!nl || nl - start[k] > 200)
      return pk_fail(vm, "GLOBAL without a short newline-ended name");
    n[k] = (size_t)(nl - start[k]);
    vm->pos += n[k] + 1;
  }
  return pk_global(vm, start[0], n[0], start[1], n[1]);
}

/* The items above the topmost mark, which is removed. */
static int pk_pop_mark(pk_vm *vm, int32_t *from) {
  if (!vm->n_marks) return pk_fail(vm, "no MARK to pop to");
  *from = vm->marks[--vm->n_marks];
  return AE_OK;
}

/* A tuple of the n topmost items (n < 0: down to the mark). */
static int pk_tuple(pk_vm *vm, int n) {
  int32_t from = 0;
  int rc;
  if (n < 0) {
    rc = pk_pop_mark(vm, &from);
  } else {
    int floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
    if (vm->n_stack - floor < n) return pk_fail(vm, "stack underflow");
    from = vm->n_stack - n;
    rc = AE_OK;
  }
  int32_t id;
  if (!rc) rc = pk_new(vm, PK_TUPLE, &id);
  for (int32_t k = from; !rc && k < vm->n_stack; k++)
    rc = pk_add_item(vm, id, vm->stack[k]);
  if (rc) return rc;
  vm->n_stack = from;
  return pk_push(vm, id);
}

/* APPEND(S) and SETITEM(S): items above the mark (or the last one or two)
 * into the container below them. */
static int pk_fill(pk_vm *vm, int marked, int pairs) {
  int32_t from = 0;
  int rc;
  if (marked) {
    rc = pk_pop_mark(vm, &from);
  } else {
    int floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
    from = vm->n_stack - (pairs ? 2 : 1);
    rc = from - 1 < floor ? pk_fail(vm, "stack underflow") : AE_OK;
  }
  if (rc) return rc;
  int below = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
  if (from - 1 < below) return pk_fail(vm, "stack underflow");
  int32_t c = vm->stack[from - 1];
  int want = pairs ? PK_DICT : PK_LIST;
  if (vm->objs[c].type != want)
    return pk_fail(vm,
                   pairs ? "SETITEM on a non-dict" : "APPEND on a non-list");
  if (pairs && (vm->n_stack - from) % 2)
    return pk_fail(vm, "SETITEMS with an odd number of items");
  for (int32_t k = from; !rc && k < vm->n_stack; k++)
    rc = pk_add_item(vm, c, vm->stack[k]);
  vm->n_stack = from;
  return rc;
}

static int pk_memo_put(pk_vm *vm, uint64_t key) {
  if (key >= PK_MAX_MEMO) return pk_fail(vm, "memo index too large");
  int32_t top = -1;
  int rc = pk_top(vm, &top);
  if (rc) return rc;
  if ((int32_t)key >= vm->cap_memo) {
    int32_t cap = vm->cap_memo ? vm->cap_memo : 64;
    while (cap <= (int32_t)key)
      cap *= 2;
    int32_t *m = realloc(vm->memo, (size_t)cap * sizeof *m);
    if (!m) return pk_nomem(vm);
    for (int32_t k = vm->cap_memo; k < cap; k++)
      m[k] = -1;
    vm->memo = m;
    vm->cap_memo = cap;
  }
  if (vm->memo[key] < 0) vm->n_memo++;
  vm->memo[key] = top;
  return AE_OK;
}

static int pk_memo_get(pk_vm *vm, uint64_t key) {
  if (key >= (uint64_t)vm->cap_memo || vm->memo[key] < 0)
    return pk_fail(vm, "memo GET of an unset index");
  return pk_push(vm, vm->memo[key]);
}

/* The integer value of an object (ints and bools). */
static int pk_as_int(const pk_obj *o, int64_t *v) {
  if (o->type != PK_INT && o->type != PK_BOOL) return 0;
  *v = o->u.i;
  return 1;
}

/* A shape tuple into arr. */
static int pk_shape(pk_vm *vm, int32_t tuple, pk_array *arr) {
  const pk_obj *t = &vm->objs[tuple];
  if (t->type != PK_TUPLE || t->n > PK_MAX_DIMS)
    return pk_fail(vm, "array shape is not a tuple of at most 4 ints");
  arr->ndim = t->n;
  for (int k = 0; k < t->n; k++) {
    int64_t d;
    if (!pk_as_int(&vm->objs[t->u.items[k]], &d) || d < 0 ||
        d > (int64_t)AE_DATASET_MAX_BYTES)
      return pk_fail(vm, "array dimension out of range");
    arr->dims[k] = d;
  }
  return AE_OK;
}

/* Decodes UTF-8 text of code points below 256 (what _codecs.encode(s,
 * "latin1") was given) into owned bytes. */
static int pk_latin1(pk_vm *vm, const pk_obj *text, int32_t *out) {
  if (vm->n_owned == PK_MAX_OWNED)
    return pk_fail(vm, "too many _codecs.encode calls");
  uint8_t *b = malloc(text->u.s.len ? text->u.s.len : 1);
  if (!b) return pk_nomem(vm);
  size_t n = 0;
  for (size_t i = 0; i < text->u.s.len; i++) {
    uint8_t c = text->u.s.p[i];
    if (c < 0x80) {
      b[n++] = c;
    } else if ((c == 0xc2 || c == 0xc3) && i + 1 < text->u.s.len &&
               (text->u.s.p[i + 1] & 0xc0) == 0x80) {
      b[n++] = (uint8_t)(((c & 0x03) << 6) | (text->u.s.p[i + 1] & 0x3f));
      i++;
    } else {
      free(b);
      return pk_fail(vm, "_codecs.encode of text that is not latin-1");
    }
  }
  vm->owned[vm->n_owned++] = b;
  int32_t id;
  int rc = pk_push_new(vm, PK_BYTES, &id);
  if (rc) return rc;
  vm->objs[id].u.s.p = b;
  vm->objs[id].u.s.len = n;
  return AE_OK;
}

static int pk_new_array(pk_vm *vm, int32_t *id) {
  if (vm->n_arrays == PK_MAX_ARRAYS) return pk_fail(vm, "too many arrays");
  int rc = pk_push_new(vm, PK_ARRAY, id);
  if (rc) return rc;
  pk_array *a = &vm->arrays[vm->n_arrays];
  memset(a, 0, sizeof *a);
  a->dtype = -1;
  vm->objs[*id].aux = vm->n_arrays++;
  return AE_OK;
}

/* The kind ('u', 'i', 'f', 'b') and item size of a dtype object; 0 when
 * it is not one of those (or big endian). */
static int dtype_kind(const pk_obj *d, char *kind, int *size) {
  if (d->type != PK_DTYPE) return 0;
  const uint8_t *s = d->u.s.p;
  size_t n = d->u.s.len;
  if (n == 3) { /* "<u1" and the like */
    if (s[0] != '<' && s[0] != '|' && s[0] != '=') return 0;
    s++, n--;
  }
  if (n != 2 || s[1] < '1' || s[1] > '8') return 0;
  if (d->aux == '>' && s[1] != '1') return 0; /* big endian */
  *kind = (char)s[0];
  *size = s[1] - '0';
  return (*kind == 'u' || *kind == 'i' || *kind == 'f' || *kind == 'b') &&
         (*size == 1 || *size == 2 || *size == 4 || *size == 8);
}

/* numpy.core.multiarray.scalar(dtype, bytes): a NumPy int or float, as
 * Python lists of NumPy values pickle them. */
static int pk_scalar(pk_vm *vm, int32_t dtype, int32_t bytes) {
  char kind;
  int size;
  const pk_obj *b = &vm->objs[bytes];
  if (!dtype_kind(&vm->objs[dtype], &kind, &size) || b->type != PK_BYTES ||
      b->u.s.len != (size_t)size)
    return pk_fail(vm, "scalar other than (int or float dtype, its bytes)");
  uint64_t u = le(b->u.s.p, size);
  int32_t id;
  if (kind == 'f') {
    if (size != 4 && size != 8) return pk_fail(vm, "unsupported float size");
    int rc = pk_push_new(vm, PK_FLOAT, &id);
    if (rc) return rc;
    if (size == 4) {
      uint32_t w = (uint32_t)u;
      float f;
      memcpy(&f, &w, sizeof f);
      vm->objs[id].u.f = f;
    } else {
      memcpy(&vm->objs[id].u.f, &u, sizeof u);
    }
    return AE_OK;
  }
  int64_t v = (int64_t)u;
  if (kind == 'i' && size < 8 && (u >> (8 * size - 1)) & 1)
    v = (int64_t)(u | (~0ull << (8 * size)));
  if (kind == 'u' && size == 8 && (u >> 63))
    return pk_fail(vm, "scalar beyond int64");
  return pk_int(vm, v);
}

/* REDUCE: callable(*args) for the allowed callables. */
static int pk_reduce(pk_vm *vm) {
  int32_t args = -1, fn = -1;
  int rc = pk_pop(vm, &args);
  if (!rc) rc = pk_pop(vm, &fn);
  if (rc) return rc;
  const pk_obj *f = &vm->objs[fn], *a = &vm->objs[args];
  if (f->type != PK_GLOBAL || a->type != PK_TUPLE)
    return pk_fail(vm, "REDUCE of something other than an allowed global");
  const int32_t *it = a->u.items;
  int32_t id;
  switch (f->aux) {
  case PKG_RECONSTRUCT:
    if (a->n != 3 || vm->objs[it[0]].type != PK_GLOBAL ||
        vm->objs[it[0]].aux != PKG_NDARRAY)
      return pk_fail(vm, "_reconstruct of something other than ndarray");
    return pk_new_array(vm, &id);
  case PKG_DTYPE: {
    if (a->n < 1 ||
        (vm->objs[it[0]].type != PK_TEXT && vm->objs[it[0]].type != PK_BYTES))
      return pk_fail(vm, "dtype without a type string");
    const pk_obj *d = &vm->objs[it[0]];
    if (d->u.s.len < 2 || d->u.s.len > 3)
      return pk_fail(vm, "unsupported dtype");
    rc = pk_push_new(vm, PK_DTYPE, &id);
    if (rc) return rc;
    vm->objs[id].u.s = vm->objs[it[0]].u.s;
    vm->objs[id].aux = '|';
    return AE_OK;
  }
  case PKG_ENCODE:
    if (a->n != 2 || vm->objs[it[0]].type != PK_TEXT ||
        !(str_is(&vm->objs[it[1]], "latin1") ||
          str_is(&vm->objs[it[1]], "latin-1")))
      return pk_fail(vm, "_codecs.encode other than (text, 'latin1')");
    return pk_latin1(vm, &vm->objs[it[0]], &id);
  case PKG_FROMBUFFER: {
    /* _frombuffer(buffer, dtype, shape, order) */
    if (a->n != 4 || vm->objs[it[0]].type != PK_BYTES ||
        vm->objs[it[1]].type != PK_DTYPE || !str_is(&vm->objs[it[3]], "C"))
      return pk_fail(vm, "_frombuffer other than (bytes, dtype, shape, 'C')");
    int32_t buf = it[0], dt = it[1], shape = it[2];
    rc = pk_new_array(vm, &id);
    if (rc) return rc;
    pk_array *arr = &vm->arrays[vm->objs[id].aux];
    rc = pk_shape(vm, shape, arr);
    if (rc) return rc;
    arr->dtype = dt;
    arr->data = vm->objs[buf].u.s.p;
    arr->len = vm->objs[buf].u.s.len;
    arr->built = 1;
    return AE_OK;
  }
  case PKG_SCALAR:
    if (a->n != 2) return pk_fail(vm, "scalar other than (dtype, bytes)");
    return pk_scalar(vm, it[0], it[1]);
  default:
    return pk_fail(vm, "REDUCE of a global that cannot be called");
  }
}

/* BUILD: the state of an array or a dtype. */
static int pk_build(pk_vm *vm) {
  int32_t state = -1, target = -1;
  int rc = pk_pop(vm, &state);
  if (!rc) rc = pk_top(vm, &target);
  if (rc) return rc;
  const pk_obj *s = &vm->objs[state];
  pk_obj *t = &vm->objs[target];
  if (s->type != PK_TUPLE) return pk_fail(vm, "BUILD state is not a tuple");
  const int32_t *it = s->u.items;
  if (t->type == PK_DTYPE) {
    /* (version, byteorder, subdescr, names, fields, elsize, alignment,
     * flags) */
    if (s->n < 2 ||
        (vm->objs[it[1]].type != PK_TEXT && vm->objs[it[1]].type != PK_BYTES) ||
        vm->objs[it[1]].u.s.len != 1)
      return pk_fail(vm, "dtype state without a byte order");
    t->aux = vm->objs[it[1]].u.s.p[0];
    return AE_OK;
  }
  if (t->type != PK_ARRAY) return pk_fail(vm, "BUILD of an unsupported object");
  /* (version, shape, dtype, is_fortran, data) */
  pk_array *arr = &vm->arrays[t->aux];
  if (s->n != 5 || vm->objs[it[2]].type != PK_DTYPE ||
      vm->objs[it[4]].type != PK_BYTES)
    return pk_fail(vm, "array state other than (version, shape, dtype, "
                       "fortran, bytes)");
  rc = pk_shape(vm, it[1], arr);
  if (rc) return rc;
  int64_t fortran;
  if (!pk_as_int(&vm->objs[it[3]], &fortran))
    return pk_fail(vm, "array state without a fortran flag");
  arr->fortran = fortran != 0;
  arr->dtype = it[2];
  arr->data = vm->objs[it[4]].u.s.p;
  arr->len = vm->objs[it[4]].u.s.len;
  arr->built = 1;
  return AE_OK;
}

/* Runs the pickle to its STOP; *result is the object left on the stack. */
static int pk_run(pk_vm *vm, int32_t *result) {
  int rc = AE_OK;
  while (rc == AE_OK) {
    vm->op_at = vm->pos;
    if (vm->pos >= vm->len)
      return ae_error_set(vm->err, AE_EINVAL, NULL,
                          "truncated at byte %zu (no STOP opcode)", vm->len);
    uint8_t op = vm->buf[vm->pos++];
    const uint8_t *p;
    int32_t id;
    switch (op) {
    case 0x80: /* PROTO */
      if (!(p = pk_read(vm, 1))) return AE_EINVAL;
      if (p[0] < 2 || p[0] > 5)
        return pk_fail(vm, "pickle protocol other than 2 to 5");
      break;
    case 0x95: /* FRAME */
      if (!pk_read(vm, 8)) return AE_EINVAL;
      break;
    case '.': /* STOP */
      if (vm->n_marks) return pk_fail(vm, "STOP inside a MARK");
      return pk_pop(vm, result);
    case '(': /* MARK */
      if (vm->n_marks == PK_MAX_MARKS) return pk_fail(vm, "too many MARKs");
      vm->marks[vm->n_marks++] = vm->n_stack;
      break;
    case '}':
      rc = pk_push_new(vm, PK_DICT, NULL);
      break;
    case ']':
      rc = pk_push_new(vm, PK_LIST, NULL);
      break;
    case ')':
      rc = pk_push_new(vm, PK_TUPLE, NULL);
      break;
    case 't':
      rc = pk_tuple(vm, -1);
      break;
    case 0x85:
    case 0x86:
    case 0x87:
      rc = pk_tuple(vm, op - 0x84);
      break;
    case 'a':
      rc = pk_fill(vm, 0, 0);
      break;
    case 'e':
      rc = pk_fill(vm, 1, 0);
      break;
    case 's':
      rc = pk_fill(vm, 0, 1);
      break;
    case 'u':
      rc = pk_fill(vm, 1, 1);
      break;
    case 'N':
      rc = pk_push_new(vm, PK_NONE, NULL);
      break;
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */
      rc = pk_push_new(vm, PK_BOOL, &id);
      if (!rc) vm->objs[id].u.i = op == 0x88;
      break;
    case 'K': /* BININT1 */
      if (!(p = pk_read(vm, 1))) return AE_EINVAL;
      rc = pk_int(vm, p[0]);
      break;
    case 'M': /* BININT2 */
      if (!(p = pk_read(vm, 2))) return AE_EINVAL;
      rc = pk_int(vm, (int64_t)le(p, 2));
      break;
    case 'J': /* BININT */
      if (!(p = pk_read(vm, 4))) return AE_EINVAL;
      rc = pk_int(vm, (int32_t)(uint32_t)le(p, 4));
      break;
    case 0x8a: { /* LONG1 */
      if (!(p = pk_read(vm, 1))) return AE_EINVAL;
      int n = p[0];
      if (n > 8) return pk_fail(vm, "integer wider than 64 bits");
      if (!(p = pk_read(vm, (uint64_t)n))) return AE_EINVAL;
      uint64_t v = n ? le(p, n) : 0;
      if (n && n < 8 && (p[n - 1] & 0x80)) v |= ~0ull << (8 * n);
      rc = pk_int(vm, (int64_t)v);
      break;
    }
    case 'G': { /* BINFLOAT, big-endian */
      if (!(p = pk_read(vm, 8))) return AE_EINVAL;
      uint64_t bits = 0;
      for (int k = 0; k < 8; k++)
        bits = bits << 8 | p[k];
      rc = pk_push_new(vm, PK_FLOAT, &id);
      if (!rc) memcpy(&vm->objs[id].u.f, &bits, sizeof bits);
      break;
    }
    case 'U': /* SHORT_BINSTRING */
    case 'C': /* SHORT_BINBYTES */
      rc = pk_string(vm, 1, PK_BYTES);
      break;
    case 'T': /* BINSTRING */
    case 'B': /* BINBYTES */
      rc = pk_string(vm, 4, PK_BYTES);
      break;
    case 0x8e: /* BINBYTES8 */
    case 0x96: /* BYTEARRAY8 */
      rc = pk_string(vm, 8, PK_BYTES);
      break;
    case 0x8c: /* SHORT_BINUNICODE */
      rc = pk_string(vm, 1, PK_TEXT);
      break;
    case 'X': /* BINUNICODE */
      rc = pk_string(vm, 4, PK_TEXT);
      break;
    case 0x8d: /* BINUNICODE8 */
      rc = pk_string(vm, 8, PK_TEXT);
      break;
    case 'c':
      rc = pk_op_global(vm);
      break;
    case 0x93: { /* STACK_GLOBAL */
      int32_t mod = -1, name = -1;
      rc = pk_pop(vm, &name);
      if (!rc) rc = pk_pop(vm, &mod);
      if (rc) return rc;
      const pk_obj *m = &vm->objs[mod], *n = &vm->objs[name];
      if (m->type != PK_TEXT || n->type != PK_TEXT)
        return pk_fail(vm, "STACK_GLOBAL of non-strings");
      rc = pk_global(vm, m->u.s.p, m->u.s.len, n->u.s.p, n->u.s.len);
      break;
    }
    case 'q': /* BINPUT */
      if (!(p = pk_read(vm, 1))) return AE_EINVAL;
      rc = pk_memo_put(vm, p[0]);
      break;
    case 'r': /* LONG_BINPUT */
      if (!(p = pk_read(vm, 4))) return AE_EINVAL;
      rc = pk_memo_put(vm, le(p, 4));
      break;
    case 0x94: /* MEMOIZE: at the memo's size, as Python does */
      rc = pk_memo_put(vm, (uint64_t)vm->n_memo);
      break;
    case 'h': /* BINGET */
      if (!(p = pk_read(vm, 1))) return AE_EINVAL;
      rc = pk_memo_get(vm, p[0]);
      break;
    case 'j': /* LONG_BINGET */
      if (!(p = pk_read(vm, 4))) return AE_EINVAL;
      rc = pk_memo_get(vm, le(p, 4));
      break;
    case 'R':
      rc = pk_reduce(vm);
      break;
    case 'b':
      rc = pk_build(vm);
      break;
    case '0': /* POP */
      rc = pk_pop(vm, &id);
      break;
    default: {
      char what[64];
      snprintf(what, sizeof what, "unsupported pickle opcode 0x%02x", op);
      return pk_fail(vm, what);
    }
    }
  }
  return rc;
}

/* The value of key in the dict d, or -1. */
static int32_t dict_get(const pk_vm *vm, const pk_obj *d, const char *key) {
  for (int32_t k = 0; k + 1 < d->n; k += 2)
    if (str_is(&vm->objs[d->u.items[k]], key)) return d->u.items[k + 1];
  return -1;
}

/* The dtype of an array: kind ('u', 'i', 'f', 'b') and item size. */
static int array_dtype(const pk_vm *vm, const pk_array *a, char *kind,
                       int *size) {
  return a->dtype >= 0 && dtype_kind(&vm->objs[a->dtype], kind, size);
}

/* Checks an array's data against its shape; *count is its element count. */
static int array_count(pk_vm *vm, const pk_array *a, int item, const char *key,
                       long long *count) {
  unsigned long long c = 1;
  for (int k = 0; k < a->ndim; k++) {
    c *= (unsigned long long)a->dims[k];
    if (c > AE_DATASET_MAX_BYTES)
      return ae_error_set(vm->err, AE_EINVAL, NULL,
                          "wrong shape (\"%s\" is too large)", key);
  }
  if (!a->built || a->fortran)
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "\"%s\" is not a C-order array", key);
  if (c * (unsigned long long)item != a->len)
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "\"%s\": its shape needs %llu bytes, it holds %zu", key,
                        c * (unsigned long long)item, a->len);
  *count = (long long)c;
  return AE_OK;
}

/* Copies integer labels (a list of ints, or an integer array) out. */
static int take_labels(pk_vm *vm, int32_t v, const char *key,
                       ae_pickle_batch *out) {
  const pk_obj *o = &vm->objs[v];
  long long n;
  if (o->type == PK_LIST) {
    n = o->n;
    out->labels = malloc((size_t)(n ? n : 1) * sizeof *out->labels);
    if (!out->labels) return pk_nomem(vm);
    for (long long i = 0; i < n; i++) {
      int64_t x;
      if (!pk_as_int(&vm->objs[o->u.items[i]], &x) || x < INT32_MIN ||
          x > INT32_MAX)
        return ae_error_set(vm->err, AE_EINVAL, NULL,
                            "\"%s\"[%lld] is not a small integer", key, i);
      out->labels[i] = (int32_t)x;
    }
  } else if (o->type == PK_ARRAY) {
    const pk_array *a = &vm->arrays[o->aux];
    char kind;
    int size;
    if (!array_dtype(vm, a, &kind, &size) || (kind != 'u' && kind != 'i') ||
        a->ndim != 1)
      return ae_error_set(vm->err, AE_EINVAL, NULL,
                          "\"%s\" is not a 1-D integer array", key);
    int rc = array_count(vm, a, size, key, &n);
    if (rc) return rc;
    out->labels = malloc((size_t)(n ? n : 1) * sizeof *out->labels);
    if (!out->labels) return pk_nomem(vm);
    for (long long i = 0; i < n; i++) {
      uint64_t u = le(a->data + (size_t)i * (size_t)size, size);
      int64_t x = (int64_t)u;
      if (kind == 'i' && size < 8 && (u >> (8 * size - 1)) & 1)
        x = (int64_t)(u | (~0ull << (8 * size)));
      if ((kind == 'u' && u > INT32_MAX) || x < INT32_MIN || x > INT32_MAX)
        return ae_error_set(vm->err, AE_EINVAL, NULL,
                            "\"%s\"[%lld] is not a small integer", key, i);
      out->labels[i] = (int32_t)x;
    }
  } else {
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "\"%s\" is neither a list nor an array", key);
  }
  if (n != out->n)
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "%lld labels for %lld rows of \"data\"", n, out->n);
  return AE_OK;
}

/* Takes "data" and the labels out of the top dict. */
static int take_batch(pk_vm *vm, int32_t top, ae_pickle_batch *out) {
  const pk_obj *d = &vm->objs[top];
  if (d->type != PK_DICT)
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "the pickle holds no dict (not a CIFAR or "
                        "ImageNet16 batch)");
  int32_t data = dict_get(vm, d, "data");
  if (data < 0)
    return ae_error_set(vm->err, AE_EINVAL, NULL, "no \"data\" key");
  if (vm->objs[data].type != PK_ARRAY)
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "\"data\" is not a NumPy array");
  const pk_array *a = &vm->arrays[vm->objs[data].aux];
  char kind;
  int size;
  if (!array_dtype(vm, a, &kind, &size) || kind != 'u' || size != 1)
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "\"data\" is not a uint8 array");
  if (a->ndim != 2 && a->ndim != 4)
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "wrong shape (\"data\" has %d dimensions; N x D or "
                        "N x C x H x W)",
                        a->ndim);
  long long count;
  int rc = array_count(vm, a, 1, "data", &count);
  if (rc) return rc;
  out->n = a->dims[0];
  out->row_bytes = out->n ? count / out->n : 0;
  out->pixels = a->data;
  int32_t lab = dict_get(vm, d, "fine_labels");
  out->fine = lab >= 0;
  if (lab < 0) lab = dict_get(vm, d, "labels");
  if (lab < 0)
    return ae_error_set(vm->err, AE_EINVAL, NULL,
                        "no \"labels\" or \"fine_labels\" key");
  rc = take_labels(vm, lab, out->fine ? "fine_labels" : "labels", out);
  if (rc) return rc;
  /* Keep the decoded buffer that holds the pixels. */
  for (int k = 0; k < vm->n_owned; k++)
    if (vm->owned[k] == out->pixels) {
      out->owned = vm->owned[k];
      vm->owned[k] = NULL;
    }
  return AE_OK;
}

int ae_pickle_batch_parse(const uint8_t *buf, size_t len, ae_pickle_batch *out,
                          ae_error *err) {
  memset(out, 0, sizeof *out);
  if (len < 1 || buf[0] != 0x80)
    return ae_error_set(err, AE_EINVAL, NULL,
                        "wrong magic (not a pickle of protocol 2 or later)");
  pk_vm vm;
  memset(&vm, 0, sizeof vm);
  vm.buf = buf;
  vm.len = len;
  vm.err = err;
  int32_t top = -1;
  int rc = pk_run(&vm, &top);
  if (!rc && vm.pos != len)
    rc = ae_error_set(err, AE_EINVAL, NULL, "%zu bytes after the STOP opcode",
                      len - vm.pos);
  if (!rc) rc = take_batch(&vm, top, out);
  for (int32_t k = 0; k < vm.n_objs; k++)
    if (vm.objs[k].type == PK_TUPLE || vm.objs[k].type == PK_LIST ||
        vm.objs[k].type == PK_DICT)
      free(vm.objs[k].u.items);
  for (int k = 0; k < vm.n_owned; k++)
    free(vm.owned[k]);
  free(vm.objs);
  free(vm.stack);
  free(vm.memo);
  if (rc) ae_pickle_batch_free(out);
  return rc;
}

void ae_pickle_batch_free(ae_pickle_batch *b) {
  if (!b) return;
  free(b->labels);
  free(b->owned);
  memset(b, 0, sizeof *b);
}

int dataset_load_pickle(dataset_build *b, const char *file, ae_error *err) {
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = dataset_read_file(file, &buf, &len, err);
  if (rc) return rc;
  ae_pickle_batch pb;
  ae_error sub = AE_ERROR_INIT;
  rc = ae_pickle_batch_parse(buf, len, &pb, &sub);
  if (rc) {
    rc = ae_error_set(err, sub.code, NULL, "%s: %s", file,
                      sub.reason ? sub.reason : "cannot read the pickle");
    ae_error_clear(&sub);
    free(buf);
    return rc;
  }
  int shape[3] = {3, 32, 32}, classes, first = 0;
  const char *format;
  if (pb.fine && pb.row_bytes == 3072) {
    format = "cifar100-pickle", classes = 100;
  } else if (!pb.fine && pb.row_bytes == 3072) {
    format = "cifar10-pickle", classes = 10;
  } else if (!pb.fine && pb.row_bytes == 768) {
    format = "imagenet16-pickle", classes = 120, first = 1;
    shape[1] = shape[2] = 16;
  } else {
    rc = ae_error_set(err, AE_EINVAL, NULL,
                      "%s: wrong shape (rows of %lld bytes; CIFAR has 3072, "
                      "3x32x32, and ImageNet16 768, 3x16x16)",
                      file, pb.row_bytes);
    goto done;
  }
  if (b->format && strcmp(b->format, format)) {
    rc = ae_error_set(err, AE_EINVAL, NULL, "%s: a %s batch among %s batches",
                      file, format, b->format);
    goto done;
  }
  rc = dataset_build_shape(b, shape, 3, file, err);
  if (!rc) rc = dataset_build_reserve(b, pb.n, file, err);
  if (rc) goto done;
  for (long long i = 0; i < pb.n; i++) {
    int32_t label = pb.labels[i] - first;
    if (label < 0 || label >= classes) {
      rc = ae_error_set(err, AE_EINVAL, NULL,
                        "%s: label %d out of range %d..%d (sample %lld)", file,
                        pb.labels[i], first, classes - 1 + first, i);
      goto done;
    }
    b->y[b->n + i] = (uint8_t)label;
  }
  float *x = b->x + b->n * b->per;
  for (long long i = 0; i < pb.n * pb.row_bytes; i++)
    x[i] = (float)pb.pixels[i];
  b->n += pb.n;
  b->num_classes = classes;
  b->format = format;
done:
  ae_pickle_batch_free(&pb);
  free(buf);
  return rc;
}
