/* main.c: archevald, the archeval daemon: start-up, --healthcheck, signals
 * and the staged shutdown.  The flags are options.c's.
 *
 * Start-up runs on the main thread, which then becomes the libuv loop
 * thread and owns the ae_server for life (see daemon.h).  SIGTERM/SIGINT
 * arrive through uv_signal_t: the first starts the drain (drain.c), which
 * calls srv->on_drained (shutdown_server, registered here) once no job
 * runs; that joins the workers, stops MHD and closes every handle so
 * uv_run returns and main frees the rest.  A second signal exits at once.
 * SIGHUP reopens --log-file (after a rotation; with the log on stderr it
 * is logged and ignored); SIGPIPE is ignored, so that a log pipe whose
 * reader went away does not end the daemon (writes fail with EPIPE).
 * Before listening, --max-connections is held to what RLIMIT_NOFILE
 * leaves once the store, the loop, MHD and the workers have their files. */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "api/error.h"
#include "api/status.h"
#include "gpu/host/blas_env.h"
#include "gpu/host/cpu_class.h"
#include "server/cache.h"
#include "server/daemon.h"
#include "server/drain.h"
#include "server/fleet.h"
#include "server/http.h"
#include "server/job_load.h"
#include "server/job_state.h"
#include "server/loop_watch.h"
#include "server/models.h"
#include "server/options.h"
#include "server/study.h"
#include "server/util.h"
#include "server/workers.h"

/* GET /v1/health/ready with a plain socket: 0 when it answers 200. */
static int healthcheck(const ae_options *o) {
  const char *address = o->http_address;
  if (!strcmp(address, "0.0.0.0"))
    address = "127.0.0.1";
  else if (!strcmp(address, "::"))
    address = "::1";
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  char port[16];
  snprintf(port, sizeof port, "%d", o->http_port);
  if (getaddrinfo(address, port, &hints, &ai)) return 1;
  int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  int ok = 0;
  if (fd >= 0) {
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (!connect(fd, ai->ai_addr, ai->ai_addrlen)) {
      const char req[] = "GET /v1/health/ready HTTP/1.0\r\n"
                         "Host: localhost\r\nConnection: close\r\n\r\n";
      char buf[64] = {0};
      if (write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
        size_t got = 0;
        ssize_t n;
        while (got < sizeof buf - 1 &&
               (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
          got += (size_t)n;
        ok = !strncmp(buf, "HTTP/1.", 7) && !strncmp(buf + 8, " 200", 4);
      }
    }
    close(fd);
  }
  freeaddrinfo(ai);
  return ok ? 0 : 1;
}

/* ---- signals and shutdown ---- */

static void on_signal(uv_signal_t *handle, int signum) {
  ae_server *srv = handle->data;
  srv->signals++;
  if (srv->signals > 1) {
    static const char msg[] = "archevald: second signal, exiting now\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
      /* nothing left to do */
    }
    _exit(130);
  }
  ae_log(AE_LOG_INFO, "signal %d: draining", signum);
  ae_drain_start(srv);
}

/* SIGHUP: reopen the log file, as daemons do after a rotation. */
static void on_hangup(uv_signal_t *handle, int signum) {
  ae_server *srv = handle->data;
  (void)signum;
  const char *path = srv->opt->log_file;
  if (!path || !*path) {
    ae_log(AE_LOG_INFO, "SIGHUP: the log is stderr, nothing to reopen");
    return;
  }
  char err[512];
  if (ae_log_open_file(path, err, sizeof err))
    ae_log(AE_LOG_ERROR, "SIGHUP: cannot reopen the log: %s", err);
  else
    ae_log(AE_LOG_INFO, "SIGHUP: log file %s reopened", path);
}

/* Files the daemon holds besides its connections: stdio, the store (the
 * database, its WAL and shared memory, a journal), the loop (epoll, its
 * async and signal pipes, timers), MHD (epoll, the listening socket, its
 * inter-thread pipe), and per worker a few (a CUDA context opens some),
 * with a margin for logs and /proc reads. */
#define AE_FILES_RESERVED 48
#define AE_FILES_PER_WORKER 4

/* Lowers opt->max_connections to what RLIMIT_NOFILE leaves, after trying
 * to raise the soft limit to the hard one.  AE_EINVAL when not even one
 * connection would fit. */
static int fit_connections_to_file_limit(ae_options *opt, size_t n_workers) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) {
    ae_log(AE_LOG_WARN, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    return AE_OK;
  }
  rlim_t reserved = AE_FILES_RESERVED + (rlim_t)n_workers * AE_FILES_PER_WORKER;
  rlim_t wanted = (rlim_t)opt->max_connections + reserved;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < wanted) {
    struct rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > wanted
                          ? wanted
                          : rl.rlim_max;
    if (!setrlimit(RLIMIT_NOFILE, &raised)) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= wanted) return AE_OK;
  if (rl.rlim_cur <= reserved) {
    ae_log(AE_LOG_ERROR,
           "the open-file limit (%llu) leaves no room for connections "
           "beside the %llu files the daemon needs: raise ulimit -n",
           (unsigned long long)rl.rlim_cur, (unsigned long long)reserved);
    return AE_EINVAL;
  }
  int fit = (int)(rl.rlim_cur - reserved);
  ae_log(AE_LOG_WARN,
         "--max-connections %d lowered to %d: the open-file limit is %llu "
         "and the daemon keeps %llu files for itself",
         opt->max_connections, fit, (unsigned long long)rl.rlim_cur,
         (unsigned long long)reserved);
  opt->max_connections = fit;
  return AE_OK;
}

/* The loop's stall meter (loop_watch.c): a turn of the loop busy longer
 * than this is logged; its summary is logged at the stop.  50 ms is what
 * issue 14 allows a liveness probe. */
#define AE_LOOP_STALL_MS 50
static ae_loop_watch loop_watch;

/* Giving memory back: glibc keeps the pages of freed small blocks (a
 * finished job's JSON nodes, freed on the loop, parsed on the pool's
 * threads and so in their arenas) until malloc_trim.  Every
 * TRIM_EVERY_MS, when the jobs' count of held bytes fell by
 * TRIM_AFTER_BYTES since the last trim (jobs expired or were deleted) or
 * a large body was parsed on the pool since, every arena is trimmed on a
 * pool thread (the walk is not the loop's to pay; one trim at a time):
 * measured, 6 expired jobs of 2.4 MB inputs left RSS 75 MiB over its start
 * without it, 2 MiB with it (their count said 2.6 MB each: the rest is the
 * parse's freed nodes).  A 2.7 MB body's JSON nodes are tens of MB: at a
 * trim a second, a client posting several a second kept that much
 * garbage over the jobs' budget; hence a tenth of a second. */
#define TRIM_EVERY_MS 100
#define TRIM_AFTER_BYTES ((size_t)1 << 20)
static uv_timer_t trim_timer;
static uv_work_t trim_work;
static int trim_running; /* trim_work is on the pool */
static size_t trim_mark; /* the most held since the last trim */

static long long trim_parsed; /* ae_http_bodies_parsed at the last trim */

/* On a pool thread. */
static void trim_on_pool(uv_work_t *work) {
  (void)work;
  malloc_trim(0);
}

static void trim_done(uv_work_t *work, int status) {
  (void)work;
  (void)status;
  trim_running = 0;
}

static void on_trim_timer(uv_timer_t *timer) {
  ae_server *srv = timer->data;
  size_t held = srv->jobs.held_bytes;
  long long parsed = ae_http_bodies_parsed(srv);
  /* A large body parsed on the pool leaves its JSON nodes' pages in that
   * thread's arena once the loop freed them. */
  int fell = held < trim_mark && trim_mark - held >= TRIM_AFTER_BYTES;
  if (held > trim_mark) trim_mark = held;
  if (trim_running || (!fell && parsed == trim_parsed)) return;
  if (uv_queue_work(timer->loop, &trim_work, trim_on_pool, trim_done))
    malloc_trim(0); /* the pool refused: here, as before */
  else
    trim_running = 1;
  trim_mark = held;
  trim_parsed = parsed;
}

/* The drain's forced exit (jobs that ignored their cancel): the loop's
 * summary, then the answers in flight. */
static void before_forced_exit(ae_server *srv) {
  ae_loop_watch_log(&loop_watch);
  ae_http_flush(srv);
}

static void close_if_open(uv_handle_t *h) {
  if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}

/* Stops the workers and the HTTP server and closes every handle, so that
 * uv_run returns: the drain's on_drained, or a failed start. */
static void shutdown_server(ae_server *srv) {
  ae_log(AE_LOG_INFO, "drained: stopping workers and the HTTP server");
  ae_workers_stop(srv);
  ae_http_stop(srv);
  ae_loop_watch_stop(&loop_watch);
  close_if_open((uv_handle_t *)&trim_timer);
  ae_jobs_close(srv);
  ae_fleet_close(srv);
  ae_drain_close(srv);
  close_if_open((uv_handle_t *)&srv->sig_term);
  close_if_open((uv_handle_t *)&srv->sig_int);
  close_if_open((uv_handle_t *)&srv->sig_hup);
}

/* ---- main ---- */

/* --datasets-dir: what was registered (info) or skipped (warning). */
static void log_dataset_found(void *ctx, int warning, const char *message) {
  (void)ctx;
  ae_log(warning ? AE_LOG_WARN : AE_LOG_INFO, "--datasets-dir: %s", message);
}

int main(int argc, char **argv) {
  /* OpenBLAS picks its kernels at load: name this CPU's core first. */
  ae_blas_tune_and_reexec(argc, argv);
  ae_options opt;
  switch (ae_options_parse(argc, argv, &opt)) {
  case AE_OPTIONS_RUN:
    break;
  case AE_OPTIONS_EXIT:
    ae_options_free(&opt);
    return 0;
  default:
    ae_options_free(&opt);
    return 2;
  }
  if (opt.healthcheck) {
    int rc = healthcheck(&opt);
    ae_options_free(&opt);
    return rc;
  }
  ae_log_setup((ae_log_level)opt.log_level, opt.log_json);
  /* A log pipe whose reader left must not end the daemon. */
  signal(SIGPIPE, SIG_IGN);
  if (opt.log_file && *opt.log_file) {
    char err[512];
    if (ae_log_open_file(opt.log_file, err, sizeof err)) {
      fprintf(stderr, "archevald: --log-file %s\n", err);
      ae_options_free(&opt);
      return 1;
    }
  }

  static ae_server server;
  ae_server *srv = &server;
  srv->opt = &opt;
  srv->on_drained = shutdown_server;
  srv->before_exit = before_forced_exit;
  uv_loop_t loop;
  int status = 1;
  int loop_open = 0, jobs_open = 0, registry_open = 0, metrics_open = 0;
  ae_error derr = AE_ERROR_INIT;

  if (ae_dataset_registry_init(&srv->registry, 1, &derr)) {
    ae_log(AE_LOG_ERROR, "datasets: %s", derr.reason ? derr.reason : "failed");
    goto out;
  }
  registry_open = 1;
  for (size_t i = 0; i < opt.n_datasets; i++)
    if (ae_dataset_registry_add(&srv->registry, opt.datasets[i], &derr)) {
      ae_log(AE_LOG_ERROR, "--dataset %s: %s", opt.datasets[i],
             derr.reason ? derr.reason : "failed");
      goto out;
    }
  if (opt.datasets_dir &&
      ae_dataset_registry_add_dir(&srv->registry, opt.datasets_dir,
                                  log_dataset_found, NULL, &derr)) {
    ae_log(AE_LOG_ERROR, "--datasets-dir: %s",
           derr.reason ? derr.reason : "failed");
    goto out;
  }
  srv->catalog = ae_dataset_registry_catalog(&srv->registry);
  ae_limits_default(&srv->limits);
  srv->limits.default_timeout_ms = opt.default_timeout_ms;
  srv->limits.max_working_set_bytes = opt.max_job_memory > 0
                                          ? (double)opt.max_job_memory
                                          : ae_engine_default_job_memory();

  if (ae_workers_plan(srv)) goto out;
  if (fit_connections_to_file_limit(&opt, srv->n_workers)) goto out;
  if (uv_loop_init(&loop)) goto out;
  loop_open = 1;
  srv->loop = &loop;
  if (ae_jobs_init(srv)) goto out;
  jobs_open = 1;
  if (ae_metrics_init(&srv->metrics, srv->n_workers)) goto out;
  metrics_open = 1;
  if (ae_workers_init(srv) || ae_drain_init(srv)) goto out;
  if (ae_fleet_configure(srv)) goto out;
  /* --fleet: the store's result cache, without the in-flight map (a job
   * runs on whichever replica claims it; cache.c). */
  if (ae_cache_init(srv) || ae_studies_init(srv) || ae_models_init(srv))
    goto out;

  /* The store: --store (or --store-file, or $ARCHEVAL_STORE_URL unless
   * --no-store) names a PostgreSQL store; else --state-dir's SQLite. */
  int store_wanted = opt.state_dir && opt.state_dir[0];
  char store_url[4096], store_shown[4096], store_err[512] = "";
  if (ae_store_resolve_url(opt.store_url,
                           store_wanted ? getenv("ARCHEVAL_STORE_URL") : NULL,
                           opt.store_file, store_url, sizeof store_url,
                           store_err, sizeof store_err)) {
    ae_log(AE_LOG_ERROR, "store: %s", store_err);
    goto out;
  }
  const char *store = store_url[0] ? store_url : opt.state_dir;
  if (srv->fleet && !(store_url[0] && ae_store_backend_of(store_url) ==
                                          AE_STORE_BACKEND_POSTGRESQL)) {
    ae_log(AE_LOG_ERROR, "--fleet needs a PostgreSQL store (--store)");
    goto out;
  }
  if (store && store[0]) {
    ae_store_redact_url(store, store_shown, sizeof store_shown);
    int open_rc =
        srv->fleet
            ? ae_store_open_shared(store, srv->replica_id, &srv->store,
                                   store_err, sizeof store_err)
            : ae_store_open_url(store,
                                opt.store_sync_normal ? AE_STORE_SYNC_NORMAL
                                                      : AE_STORE_SYNC_FULL,
                                &srv->store, store_err, sizeof store_err);
    if (open_rc) {
      ae_log(AE_LOG_ERROR, "store %s: %s", store_shown, store_err);
      goto out;
    }
    ae_log(AE_LOG_INFO, "store: %s (%s)", store_shown,
           ae_store_backend_name(srv->store));
    if (ae_jobs_load(srv) || ae_studies_load(srv)) goto out;
  }
  if (ae_fleet_start(srv)) goto out;

  uv_signal_init(&loop, &srv->sig_term);
  uv_signal_init(&loop, &srv->sig_int);
  uv_signal_init(&loop, &srv->sig_hup);
  srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
  uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
  uv_signal_start(&srv->sig_int, on_signal, SIGINT);
  uv_signal_start(&srv->sig_hup, on_hangup, SIGHUP);

  if (ae_http_start(srv)) goto out;
  /* Before the workers start: they inherit it, then lower their own. */
  if (ae_thread_set_nice(AE_LOOP_NICE))
    ae_log(AE_LOG_DEBUG, "the loop thread keeps nice 0: %s", strerror(errno));
  if (ae_workers_start(srv)) goto out;
  if (!uv_timer_init(&loop, &trim_timer)) {
    trim_timer.data = srv;
    uv_timer_start(&trim_timer, on_trim_timer, TRIM_EVERY_MS, TRIM_EVERY_MS);
    uv_unref((uv_handle_t *)&trim_timer);
  }
  if (ae_loop_watch_start(&loop_watch, &loop, AE_LOOP_STALL_MS))
    ae_log(AE_LOG_WARN, "the loop's stall meter could not start");
  /* The host kernels' class decides the last digits of float32 numbers
   * (AE_CPU_CLASS=avx2 lowers it; docs/operations.md). */
  const char *cpu_cap = ae_cpu_class_unknown_cap();
  if (cpu_cap)
    ae_log(AE_LOG_WARN, "AE_CPU_CLASS=%s: only avx2 is known; ignored",
           cpu_cap);
  ae_log(AE_LOG_INFO, "archevald %s started (host kernels: the %s class)",
         PACKAGE_VERSION, ae_cpu_class_name(ae_cpu_class_get()));
  uv_run(&loop, UV_RUN_DEFAULT);
  status = 0;

out:
  ae_error_clear(&derr);
  if (loop_open) {
    /* On a start-up failure the loop never ran: stop what is open. */
    if (!srv->stopping) {
      srv->stopping = 1;
      shutdown_server(srv);
    }
    if (jobs_open) uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop))
      ae_log(AE_LOG_WARN, "the loop still had open handles");
  }
  ae_models_free(srv);
  ae_studies_free(srv);
  ae_cache_free(srv);
  ae_fleet_free(srv);
  if (jobs_open) ae_jobs_free(srv);
  if (metrics_open) ae_metrics_free(&srv->metrics);
  ae_workers_free(srv);
  if (srv->store) ae_store_close(srv->store);
  if (registry_open) ae_dataset_registry_free(&srv->registry);
  ae_options_free(&opt);
  if (status == 0) ae_log(AE_LOG_INFO, "archevald stopped");
  return status;
}
