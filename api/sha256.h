/* sha256.h: SHA-256 (FIPS 180-4) in lowercase hex.  Pure; any thread. */
#ifndef AE_SHA256_H
#define AE_SHA256_H

#include <stddef.h>

#include <stdint.h>

/* Lowercase hex SHA-256 of data into hex (65 bytes, NUL-terminated). */
void ae_sha256_hex(const void *data, size_t len, char hex[65]);

/* The same over data given in pieces (a text streamed, never held whole):
 * init, update for each piece in order, final. */
typedef struct {
  uint32_t h[8];
  uint64_t len;      /* bytes so far */
  uint8_t block[64]; /* len % 64 bytes waiting for a full block */
} ae_sha256_ctx;

void ae_sha256_init(ae_sha256_ctx *c);
void ae_sha256_update(ae_sha256_ctx *c, const void *data, size_t len);
void ae_sha256_final_hex(ae_sha256_ctx *c, char hex[65]);

#endif
