/* util.h: archevald's small utilities: the log, clocks, RFC 3339 times,
 * job ids and SHA-256.  The lowest unit of server/: it includes no other
 * file of server/.
 *
 * Threads: the log functions may be called from any thread; the id
 * generator and the random state belong to the loop thread. */
#ifndef AE_SERVER_UTIL_H
#define AE_SERVER_UTIL_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  AE_LOG_DEBUG,
  AE_LOG_INFO,
  AE_LOG_WARN,
  AE_LOG_ERROR
} ae_log_level;

void ae_log_setup(ae_log_level level, int json);
/* One free-text line at a level (not a request line). */
void ae_log(ae_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line per HTTP request. */
void ae_log_request(const char *request_id, const char *method,
                    const char *path, int status, double duration_ms,
                    const char *job_id);

long long ae_now_ms(void);  /* Unix epoch milliseconds */
long long ae_mono_ns(void); /* CLOCK_MONOTONIC nanoseconds */
/* "2026-11-23T00:25:34.123Z" into buf (>= 32 bytes). */
void ae_format_rfc3339(long long ms, char *buf, size_t len);
uint64_t ae_random_u64(void); /* loop thread only */
/* A new time-sortable id "j_" + 22 chars into buf (>= 32 bytes). */
void ae_job_id_new(char *buf, size_t len);
/* Lowercase hex SHA-256 of data into hex (65 bytes). */
void ae_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
