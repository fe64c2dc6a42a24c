/* cli_io.c: the CLI's one reader of input files: a whole file, or standard
 * input for "-", into one NUL-terminated buffer, with a size limit.
 * Single-threaded, like the rest of the CLI; the buffer belongs to the
 * caller. */
#include "clients/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/status.h"

int ae_cli_read_file(const char *path, size_t max, char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) return AE_EIO;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  int rc = buf ? AE_OK : AE_ENOMEM;
  while (rc == AE_OK) {
    if (n == cap) {
      if (cap >= max) {
        rc = AE_EINVAL;
        break;
      }
      char *grown = realloc(buf, cap * 2 + 1);
      if (!grown) {
        rc = AE_ENOMEM;
        break;
      }
      buf = grown;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) rc = AE_EIO;
      break;
    }
  }
  if (f != stdin) fclose(f);
  if (rc == AE_OK && n > max) rc = AE_EINVAL;
  if (rc) {
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return AE_OK;
}
