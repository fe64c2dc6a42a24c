/* net_signs.c: the Rademacher signs of ranking.md §2 (ae_rademacher_fill)
 * kept from job to job as bits, per thread.
 *
 * jacobian_trainability draws one sign per element of every block output
 * for each job (about ten million for a NAS-Bench-201 net at batch 64),
 * ten Philox rounds each: about a twentieth of the `rank` profile.  The
 * signs depend only on (seed, tensor, stream, count), and a sweep over a
 * space runs job after job with the same seed and block shapes, so the
 * worker keeps them as one bit per sign and the next job expands the bits
 * instead of running the rounds again.  The values are
 * ae_rademacher_fill's bit for bit (it draws every entry on a miss), as
 * float64 or, for the float32 net's backward, float32.
 *
 * The cache is bounded: at most SIGN_ENTRIES tensors and SIGN_BYTES of
 * bits per thread; a new seed drops the old seed's entries, and a tensor
 * that does not fit is drawn and not kept.  It belongs to the calling
 * thread (a pthread key; freed when the thread exits or by
 * ae_rademacher_release). */
#include "gpu/host/net.h"

#include "api/status.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIGN_ENTRIES 64
#define SIGN_BYTES ((size_t)4 << 20) /* 32 Mi signs */

typedef struct {
  uint64_t seed;
  uint32_t tensor, stream;
  size_t count;
  uint64_t *bits; /* bit e % 64 of word e / 64: the sign of entry e is + */
} sign_entry;

typedef struct {
  sign_entry e[SIGN_ENTRIES];
  int n;
  size_t bytes;
  int next; /* the entry a full cache replaces next */
} sign_cache;

static pthread_key_t sign_key;
static pthread_once_t sign_once = PTHREAD_ONCE_INIT;
static int sign_key_ok;

static void cache_clear(sign_cache *c) {
  for (int i = 0; i < c->n; i++)
    free(c->e[i].bits);
  c->n = 0;
  c->bytes = 0;
  c->next = 0;
}

static void cache_destroy(void *v) {
  sign_cache *c = v;
  cache_clear(c);
  free(c);
}

static void sign_key_init(void) {
  sign_key_ok = pthread_key_create(&sign_key, cache_destroy) == 0;
}

/* The calling thread's cache, created on first use; NULL when that fails
 * (the signs are then drawn every time). */
static sign_cache *thread_cache(void) {
  pthread_once(&sign_once, sign_key_init);
  if (!sign_key_ok) return NULL;
  sign_cache *c = pthread_getspecific(sign_key);
  if (c) return c;
  c = calloc(1, sizeof *c);
  if (c && pthread_setspecific(sign_key, c) != 0) {
    free(c);
    c = NULL;
  }
  return c;
}

static size_t words_of(size_t count) {
  return (count + 63) / 64;
}

/* name(bits, count, out): out[e] = +1 or -1 (of type T) from bit e, four
 * signs at a time from a table of the 16 patterns of four bits (one copy
 * each), then the tail.  One body for both types: +1 and -1 are exact in
 * each. */
#define DEFINE_EXPAND(name, T)                                                 \
  static void name(const uint64_t *bits, size_t count, T *out) {               \
    T table[16][4];                                                            \
    for (int q = 0; q < 16; q++)                                               \
      for (int b = 0; b < 4; b++)                                              \
        table[q][b] = (q >> b) & 1 ? (T)1 : (T)-1;                             \
    size_t e = 0;                                                              \
    for (; e + 64 <= count; e += 64) {                                         \
      uint64_t word = bits[e / 64];                                            \
      for (int q = 0; q < 16; q++)                                             \
        memcpy(out + e + 4 * (size_t)q, table[(word >> (4 * q)) & 15],         \
               sizeof table[0]);                                               \
    }                                                                          \
    for (; e < count; e++)                                                     \
      out[e] = (bits[e / 64] >> (e % 64)) & 1u ? (T)1 : (T)-1;                 \
  }
DEFINE_EXPAND(expand, double)
DEFINE_EXPAND(expand_f32, float)

/* The entry's bits from the drawn signs out[0 .. count-1]. */
static void pack(const double *out, size_t count, uint64_t *bits) {
  memset(bits, 0, words_of(count) * sizeof *bits);
  for (size_t e = 0; e < count; e++)
    if (out[e] > 0.0) bits[e / 64] |= (uint64_t)1 << (e % 64);
}

/* Keeps the drawn signs when they fit the cache's bounds. */
static void remember(sign_cache *c, uint64_t seed, uint32_t tensor,
                     uint32_t stream, size_t count, const double *out) {
  size_t bytes = words_of(count) * sizeof(uint64_t);
  if (bytes > SIGN_BYTES) return;
  /* Another seed: the old seed's signs are not asked for again soon. */
  if (c->n > 0 && c->e[0].seed != seed) cache_clear(c);
  while (c->n > 0 && (c->bytes + bytes > SIGN_BYTES || c->n == SIGN_ENTRIES)) {
    int i = c->next % c->n;
    c->bytes -= words_of(c->e[i].count) * sizeof(uint64_t);
    free(c->e[i].bits);
    c->e[i] = c->e[--c->n];
    c->next = i + 1;
  }
  uint64_t *bits = malloc(bytes > 0 ? bytes : 1);
  if (!bits) return;
  pack(out, count, bits);
  c->e[c->n++] = (sign_entry){seed, tensor, stream, count, bits};
  c->bytes += bytes;
}

/* The kept entry of these signs, or NULL. */
static const sign_entry *kept_entry(const sign_cache *c, uint64_t seed,
                                    uint32_t tensor, uint32_t stream,
                                    size_t count) {
  if (!c) return NULL;
  for (int i = 0; i < c->n; i++) {
    const sign_entry *s = &c->e[i];
    if (s->seed == seed && s->tensor == tensor && s->stream == stream &&
        s->count == count)
      return s;
  }
  return NULL;
}

void ae_rademacher_fill_kept(uint64_t seed, uint32_t tensor, uint32_t stream,
                             size_t count, double *out) {
  sign_cache *c = thread_cache();
  const sign_entry *s = kept_entry(c, seed, tensor, stream, count);
  if (s) {
    expand(s->bits, count, out);
    return;
  }
  ae_rademacher_fill(seed, tensor, stream, count, out);
  if (c) remember(c, seed, tensor, stream, count, out);
}

int ae_rademacher_fill_kept_f32(uint64_t seed, uint32_t tensor, uint32_t stream,
                                size_t count, float *out) {
  sign_cache *c = thread_cache();
  const sign_entry *s = kept_entry(c, seed, tensor, stream, count);
  if (s) {
    expand_f32(s->bits, count, out);
    return AE_OK;
  }
  double *d = malloc((count > 0 ? count : 1) * sizeof *d);
  if (!d) return AE_ENOMEM;
  ae_rademacher_fill(seed, tensor, stream, count, d);
  for (size_t e = 0; e < count; e++)
    out[e] = (float)d[e];
  if (c) remember(c, seed, tensor, stream, count, d);
  free(d);
  return AE_OK;
}

void ae_rademacher_release(void) {
  pthread_once(&sign_once, sign_key_init);
  if (!sign_key_ok) return;
  sign_cache *c = pthread_getspecific(sign_key);
  if (c) cache_clear(c);
}
