/* fuzz_idx.c: libFuzzer harness for ae_idx_parse, the parser of the IDX
 * files (Fashion-MNIST layout) that the dataset loader reads from disk.
 *
 * The bytes are copied into a buffer of exactly their size (so ASan sees
 * any read past the end) and parsed; on success the harness checks what
 * dataset.h promises: 1-4 positive dims whose product is the number of
 * bytes after the header, and a data pointer inside the buffer.  No state;
 * single-threaded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/error.h"
#include "api/status.h"
#include "gpu/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);
  int ndims = -1, dims[4] = {-1, -1, -1, -1};
  const uint8_t *pix = NULL;
  ae_error err = AE_ERROR_INIT;
  if (ae_idx_parse(buf, size, &ndims, dims, &pix, &err) == AE_OK) {
    if (err.code != AE_OK) abort();
    if (ndims < 1 || ndims > 4 || !pix) abort();
    if (pix < buf || pix > buf + size) abort();
    unsigned long long count = 1;
    for (int k = 0; k < ndims; k++) {
      if (dims[k] < 1) abort();
      count *= (unsigned long long)dims[k];
    }
    if (count != (unsigned long long)(buf + size - pix)) abort();
    /* Read every pixel, as the loader does. */
    unsigned sum = 0;
    for (unsigned long long i = 0; i < count; i++)
      sum += pix[i];
    if (sum == 0xffffffffu) abort();
  } else if (err.code != AE_EINVAL || !err.reason) {
    abort();
  }
  ae_error_clear(&err);
  free(buf);
  return 0;
}
