/* sha256.h: SHA-256 (FIPS 180-4) in lowercase hex.  Pure; any thread. */
#ifndef AE_SHA256_H
#define AE_SHA256_H

#include <stddef.h>

/* Lowercase hex SHA-256 of data into hex (65 bytes, NUL-terminated). */
void ae_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
