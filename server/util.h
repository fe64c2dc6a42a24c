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
/* Points stderr (the log) at path, appending, creating it 0640: at start
 * for --log-file and again on SIGHUP after a rotation.  AE_OK, or AE_EIO
 * with err filled (the old stderr stays). */
int ae_log_open_file(const char *path, char *err, size_t errlen);
/* Copies in to out (len bytes with the NUL) with every control byte, byte
 * over 0x7e and backslash as \xHH, truncating at a character boundary:
 * what a log line may hold of a client's bytes.  Returns the length. */
size_t ae_log_escape(const char *in, char *out, size_t len);
/* One free-text line at a level (not a request line). */
void ae_log(ae_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line per HTTP request. */
void ae_log_request(const char *request_id, const char *method,
                    const char *path, int status, double duration_ms,
                    const char *job_id);

/* The nice values of the threads: the loop thread answers every request
 * and must not wait for a CPU behind the scoring; worker threads run the
 * engine below the default.  Raising a priority (a nice below the
 * current one) needs CAP_SYS_NICE; without it the loop stays at 0. */
#define AE_LOOP_NICE (-5)
/* Sets the calling thread's nice value (Linux: per thread, inherited by
 * the threads it starts afterwards).  AE_OK, or AE_EIO with errno. */
int ae_thread_set_nice(int nice);
/* Sets the calling thread's scheduling policy to SCHED_BATCH (batch) or
 * SCHED_IDLE (idle, when batch is 0), keeping its nice value.  AE_OK, or
 * AE_EIO with errno. */
int ae_thread_set_background(int batch);

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
