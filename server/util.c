/* util.c: archevald's small utilities: clocks, thread priorities, RFC 3339
 * timestamps, job ids and the log lines (SHA-256 is api/sha256.c).
 *
 * The log goes to stderr.  With --log-file, stderr itself is pointed at
 * the file (dup2), so that MHD's own messages land there too, and a
 * reopen (SIGHUP, after rotation) is one dup2: atomic for the threads that
 * write at the same moment.  Every logged field is escaped so that bytes
 * from a client (a URL with %0a) cannot forge a line.
 *
 * Threads: the log functions may be called from any thread (each line is
 * one fprintf, which stdio locks); the id generator and the random state
 * belong to the loop thread. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/status.h"
#include "server/util.h"

static ae_log_level log_min_level = AE_LOG_INFO;
static int log_as_json;

void ae_log_setup(ae_log_level level, int json) {
  log_min_level = level;
  log_as_json = json;
}

static int log_enabled(ae_log_level level) {
  return level >= log_min_level;
}

static const char *log_level_name(ae_log_level level) {
  switch (level) {
  case AE_LOG_DEBUG:
    return "debug";
  case AE_LOG_INFO:
    return "info";
  case AE_LOG_WARN:
    return "warn";
  default:
    return "error";
  }
}

int ae_log_open_file(const char *path, char *err, size_t errlen) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return AE_EIO;
  }
  fflush(stderr);
  int rc = dup2(fd, STDERR_FILENO) < 0 ? AE_EIO : AE_OK;
  if (rc) snprintf(err, errlen, "%s: dup2: %s", path, strerror(errno));
  close(fd);
  return rc;
}

size_t ae_log_escape(const char *in, char *out, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t at = 0;
  if (!len) return 0;
  for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
    int plain = *p >= 0x20 && *p < 0x7f && *p != '\\';
    size_t need = plain ? 1 : 4;
    if (at + need >= len) break;
    if (plain) {
      out[at++] = (char)*p;
    } else {
      out[at++] = '\\';
      out[at++] = 'x';
      out[at++] = hex[*p >> 4];
      out[at++] = hex[*p & 15];
    }
  }
  out[at] = '\0';
  return at;
}

void ae_log(ae_log_level level, const char *fmt, ...) {
  if (!log_enabled(level)) return;
  char raw[1024], msg[4096], ts[40];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  ae_log_escape(raw, msg, sizeof msg);
  ae_format_rfc3339(ae_now_ms(), ts, sizeof ts);
  if (log_as_json) {
    json_t *line = json_pack("{s:s, s:s, s:s}", "ts", ts, "level",
                             log_level_name(level), "msg", msg);
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    if (text) fprintf(stderr, "%s\n", text);
    free(text);
    json_decref(line);
  } else {
    fprintf(stderr, "%s %s %s\n", ts, log_level_name(level), msg);
  }
}

void ae_log_request(const char *request_id, const char *method,
                    const char *path, int status, double duration_ms,
                    const char *job_id) {
  ae_log_level level = status == 500 ? AE_LOG_WARN : AE_LOG_INFO;
  if (!log_enabled(level)) return;
  char ts[40], safe_id[600], safe_method[80], safe_path[4096];
  ae_format_rfc3339(ae_now_ms(), ts, sizeof ts);
  ae_log_escape(request_id, safe_id, sizeof safe_id);
  ae_log_escape(method, safe_method, sizeof safe_method);
  ae_log_escape(path, safe_path, sizeof safe_path);
  request_id = safe_id;
  method = safe_method;
  path = safe_path;
  if (log_as_json) {
    json_t *line = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:f}", "ts", ts,
                             "level", log_level_name(level), "request_id",
                             request_id, "method", method, "path", path,
                             "status", status, "duration_ms", duration_ms);
    if (line && job_id && job_id[0])
      json_object_set_new(line, "job_id", json_string(job_id));
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    if (text) fprintf(stderr, "%s\n", text);
    free(text);
    json_decref(line);
  } else {
    fprintf(stderr, "%s %s request_id=%s %s %s %d %.3fms%s%s\n", ts,
            log_level_name(level), request_id, method, path, status,
            duration_ms, job_id && job_id[0] ? " job=" : "",
            job_id && job_id[0] ? job_id : "");
  }
}

long long ae_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ae_thread_set_nice(int nice) {
  /* Linux keeps a nice value per thread: PRIO_PROCESS with the thread's id
   * (0: the caller) sets the calling thread's alone. */
  if (setpriority(PRIO_PROCESS, 0, nice)) return AE_EIO;
  return AE_OK;
}

int ae_thread_set_background(int batch) {
  struct sched_param param = {.sched_priority = 0};
  /* Linux: a policy is per thread; 0 is the caller. */
  if (sched_setscheduler(0, batch ? SCHED_BATCH : SCHED_IDLE, &param))
    return AE_EIO;
  return AE_OK;
}

long long ae_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void ae_format_rfc3339(long long ms, char *buf, size_t len) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)(ms % 1000));
}

static uint64_t random_state[2];
static int random_seeded;

uint64_t ae_random_u64(void) {
  if (!random_seeded) {
    if (getrandom(random_state, sizeof random_state, 0) !=
        (ssize_t)sizeof random_state) {
      random_state[0] = (uint64_t)ae_mono_ns() ^ 0x9e3779b97f4a7c15ULL;
      random_state[1] = (uint64_t)ae_now_ms() * 0xbf58476d1ce4e5b9ULL;
    }
    if (!random_state[0] && !random_state[1]) random_state[1] = 1;
    random_seeded = 1;
  }
  /* xorshift128+ */
  uint64_t s1 = random_state[0];
  const uint64_t s0 = random_state[1];
  random_state[0] = s0;
  s1 ^= s1 << 23;
  random_state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return random_state[1] + s0;
}

/* Lowercase Crockford base32: sorts like the numbers it encodes. */
static const char base32_digits[] = "0123456789abcdefghjkmnpqrstvwxyz";

static void base32_put(char *out, uint64_t value, int digits) {
  for (int i = digits - 1; i >= 0; i--) {
    out[i] = base32_digits[value & 31];
    value >>= 5;
  }
}

void ae_job_id_new(char *buf, size_t len) {
  static long long last_ms;
  static unsigned counter;
  long long ms = ae_now_ms();
  if (ms <= last_ms) {
    ms = last_ms;
    counter++;
    if (counter >= (1u << 20)) { /* borrow the next millisecond */
      ms++;
      counter = 0;
    }
  } else {
    counter = 0;
  }
  last_ms = ms;
  char id[32] = "j_";
  base32_put(id + 2, (uint64_t)ms & ((1ULL << 50) - 1), 10);
  base32_put(id + 12, counter, 4);
  base32_put(id + 16, ae_random_u64() & ((1ULL << 40) - 1), 8);
  id[24] = '\0';
  snprintf(buf, len, "%s", id);
}
