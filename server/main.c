/* main.c: archevald, the archeval daemon: flags, start-up, signals and the
 * staged shutdown.
 *
 * Start-up runs on the main thread, which then becomes the libuv loop
 * thread and owns the ae_server for life (see daemon.h).  SIGTERM/SIGINT
 * arrive through uv_signal_t: the first starts the drain (jobs.c), which
 * calls ae_server_shutdown once no job runs; shutdown joins the workers,
 * stops MHD and closes every handle so uv_run returns and main frees the
 * rest.  A second signal exits at once. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "api/status.h"
#include "server/daemon.h"
#include "gpu/host/blas_env.h"

enum {
  OPT_HTTP_ADDRESS = 256,
  OPT_HTTP_PORT,
  OPT_BACKEND,
  OPT_GPUS,
  OPT_WORKERS_PER_GPU,
  OPT_HOST_WORKERS,
  OPT_MAX_QUEUE,
  OPT_MAX_BATCH,
  OPT_MAX_BODY_BYTES,
  OPT_MAX_JOB_MEMORY,
  OPT_DEFAULT_TIMEOUT_MS,
  OPT_JOB_TTL_SECS,
  OPT_DRAIN_TIMEOUT_SECS,
  OPT_CONNECTION_TIMEOUT_SECS,
  OPT_MAX_CONNECTIONS,
  OPT_MAX_CONNECTIONS_PER_IP,
  OPT_DATASET,
  OPT_LOG_FORMAT,
  OPT_LOG_LEVEL,
  OPT_STATE_DIR,
  OPT_NO_STORE,
  OPT_STORE_SYNC,
  OPT_HEALTHCHECK,
  OPT_HELP,
  OPT_VERSION
};

static const struct option long_options[] = {
    {"http-address", required_argument, NULL, OPT_HTTP_ADDRESS},
    {"http-port", required_argument, NULL, OPT_HTTP_PORT},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"gpus", required_argument, NULL, OPT_GPUS},
    {"workers-per-gpu", required_argument, NULL, OPT_WORKERS_PER_GPU},
    {"host-workers", required_argument, NULL, OPT_HOST_WORKERS},
    {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
    {"max-batch", required_argument, NULL, OPT_MAX_BATCH},
    {"max-body-bytes", required_argument, NULL, OPT_MAX_BODY_BYTES},
    {"max-job-memory", required_argument, NULL, OPT_MAX_JOB_MEMORY},
    {"default-timeout-ms", required_argument, NULL, OPT_DEFAULT_TIMEOUT_MS},
    {"job-ttl-secs", required_argument, NULL, OPT_JOB_TTL_SECS},
    {"drain-timeout-secs", required_argument, NULL, OPT_DRAIN_TIMEOUT_SECS},
    {"connection-timeout-secs", required_argument, NULL,
     OPT_CONNECTION_TIMEOUT_SECS},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"max-connections-per-ip", required_argument, NULL,
     OPT_MAX_CONNECTIONS_PER_IP},
    {"dataset", required_argument, NULL, OPT_DATASET},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"no-store", no_argument, NULL, OPT_NO_STORE},
    {"store-sync", required_argument, NULL, OPT_STORE_SYNC},
    {"healthcheck", no_argument, NULL, OPT_HEALTHCHECK},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0}};

static const char *default_state_dir(void) {
  return geteuid() == 0 ? "/var/lib/archeval" : "./archeval-state";
}

static void usage(FILE *out) {
  fprintf(
      out,
      "Usage: archevald [OPTION]...\n"
      "Scores neural-network architectures without training them, over HTTP.\n"
      "\n"
      "  --http-address=ADDR          listen address (default 127.0.0.1)\n"
      "  --http-port=PORT             listen port (default 8000)\n"
      "  --backend=auto|host|cuda     scoring backend (default auto: cuda when "
      "a\n"
      "                               device opens, else host)\n"
      "  --gpus=all|LIST              CUDA devices, e.g. 0,2 (default all)\n"
      "  --workers-per-gpu=N          workers per device (default 1)\n"
      "  --host-workers=N             host workers (default 1 when a GPU "
      "serves,\n"
      "                               else the core count)\n"
      "  --max-queue=N                queued jobs before 429 (default 1024)\n"
      "  --max-batch=N                jobs per POST /v1/jobs:batch (default "
      "256)\n"
      "  --max-body-bytes=SIZE        request body limit (default 8MiB)\n"
      "  --max-job-memory=SIZE        estimated memory one job may need; larger\n"
      "                               requests get 422 (default half the RAM)\n"
      "  --default-timeout-ms=MS      a job's default timeout_ms (default "
      "600000)\n"
      "  --job-ttl-secs=S             finished jobs are kept S seconds\n"
      "                               (default 3600)\n"
      "  --drain-timeout-secs=S       on SIGTERM, running jobs get S seconds\n"
      "                               (default 25)\n"
      "  --connection-timeout-secs=S  idle timeout, and the time a request may\n"
      "                               take to arrive in full (default 30)\n"
      "  --max-connections=N          concurrent connections (default 1024)\n"
      "  --max-connections-per-ip=N   per client address (default 64)\n"
      "  --dataset=NAME=PATH[,...]    register a dataset (repeatable; default\n"
      "                               none beyond synthetic and an installed\n"
      "                               fashion-mnist)\n"
      "  --log-format=text|json       log line format (default text)\n"
      "  --log-level=debug|info|warn|error  (default info)\n"
      "  --state-dir=DIR              job store folder (default %s;\n"
      "                               '' disables the store)\n"
      "  --no-store                   keep jobs in memory only (default off)\n"
      "  --store-sync=full|normal     fsync every commit, or WAL normal\n"
      "                               (default full)\n"
      "  --healthcheck                GET /v1/health/ready on the configured\n"
      "                               address and exit 0 if ready, else 1\n"
      "  --help                       this text\n"
      "  --version                    the version\n",
      default_state_dir());
}

static int parse_long(const char *s, long long min, long long max,
                      long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return AE_EINVAL;
  *out = v;
  return AE_OK;
}

/* "8388608", "8MiB", "8M", "512KiB", "1G". */
static int parse_size(const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) return AE_EINVAL;
  long long unit = 1;
  if (!strcmp(end, "") || !strcasecmp(end, "B"))
    unit = 1;
  else if (!strcasecmp(end, "K") || !strcasecmp(end, "KiB") ||
           !strcasecmp(end, "KB"))
    unit = 1024;
  else if (!strcasecmp(end, "M") || !strcasecmp(end, "MiB") ||
           !strcasecmp(end, "MB"))
    unit = 1024 * 1024;
  else if (!strcasecmp(end, "G") || !strcasecmp(end, "GiB") ||
           !strcasecmp(end, "GB"))
    unit = 1024LL * 1024 * 1024;
  else
    return AE_EINVAL;
  if (v > (1LL << 40) / unit) return AE_EINVAL;
  *out = v * unit;
  return AE_OK;
}

static int option_int(const char *name, const char *arg, long long min,
                      long long max, long long *out) {
  if (parse_long(arg, min, max, out)) {
    fprintf(stderr,
            "archevald: --%s: '%s' is not an integer in [%lld, "
            "%lld]\n",
            name, arg, min, max);
    return AE_EINVAL;
  }
  return AE_OK;
}

/* Parses argv into o; 0, 1 for --help/--version (exit 0), 2 for
 * --healthcheck, or -1 for a usage error. */
static int parse_options(int argc, char **argv, ae_options *o) {
  int healthcheck = 0;
  int c;
  long long v;
  while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
    const char *name = NULL;
    for (size_t i = 0; long_options[i].name; i++)
      if (long_options[i].val == c) name = long_options[i].name;
    switch (c) {
    case OPT_HTTP_ADDRESS:
      o->http_address = optarg;
      break;
    case OPT_HTTP_PORT:
      if (option_int(name, optarg, 0, 65535, &v)) return -1;
      o->http_port = (int)v;
      break;
    case OPT_BACKEND:
      if (strcmp(optarg, "auto") && strcmp(optarg, "host") &&
          strcmp(optarg, "cuda")) {
        fprintf(stderr, "archevald: --backend: auto, host or cuda\n");
        return -1;
      }
      o->backend = optarg;
      break;
    case OPT_GPUS:
      o->gpus = optarg;
      break;
    case OPT_WORKERS_PER_GPU:
      if (option_int(name, optarg, 1, 64, &v)) return -1;
      o->workers_per_gpu = (int)v;
      break;
    case OPT_HOST_WORKERS:
      if (option_int(name, optarg, 0, 1024, &v)) return -1;
      o->host_workers = (int)v;
      break;
    case OPT_MAX_QUEUE:
      if (option_int(name, optarg, 0, 100000000, &v)) return -1;
      o->max_queue = (long)v;
      break;
    case OPT_MAX_BATCH:
      if (option_int(name, optarg, 1, 1000000, &v)) return -1;
      o->max_batch = (long)v;
      break;
    case OPT_MAX_BODY_BYTES:
      if (parse_size(optarg, &v) || v < 1) {
        fprintf(stderr, "archevald: --max-body-bytes: a size like 8MiB\n");
        return -1;
      }
      o->max_body_bytes = v;
      break;
    case OPT_MAX_JOB_MEMORY:
      if (parse_size(optarg, &v) || v < 1) {
        fprintf(stderr, "archevald: --max-job-memory: a size like 16GiB\n");
        return -1;
      }
      o->max_job_memory = v;
      break;
    case OPT_DEFAULT_TIMEOUT_MS:
      if (option_int(name, optarg, 1, 1LL << 40, &v)) return -1;
      o->default_timeout_ms = v;
      break;
    case OPT_JOB_TTL_SECS:
      if (option_int(name, optarg, 0, 1LL << 32, &v)) return -1;
      o->job_ttl_secs = v;
      break;
    case OPT_DRAIN_TIMEOUT_SECS:
      if (option_int(name, optarg, 0, 86400, &v)) return -1;
      o->drain_timeout_secs = (int)v;
      break;
    case OPT_CONNECTION_TIMEOUT_SECS:
      if (option_int(name, optarg, 0, 86400, &v)) return -1;
      o->connection_timeout_secs = (int)v;
      break;
    case OPT_MAX_CONNECTIONS:
      if (option_int(name, optarg, 1, 1000000, &v)) return -1;
      o->max_connections = (int)v;
      break;
    case OPT_MAX_CONNECTIONS_PER_IP:
      if (option_int(name, optarg, 0, 1000000, &v)) return -1;
      o->max_connections_per_ip = (int)v;
      break;
    case OPT_DATASET: {
      char **fresh = realloc(o->datasets, (o->n_datasets + 1) * sizeof *fresh);
      if (!fresh) return -1;
      o->datasets = fresh;
      o->datasets[o->n_datasets++] = optarg;
      break;
    }
    case OPT_LOG_FORMAT:
      if (!strcmp(optarg, "json")) {
        o->log_json = 1;
      } else if (!strcmp(optarg, "text")) {
        o->log_json = 0;
      } else {
        fprintf(stderr, "archevald: --log-format: text or json\n");
        return -1;
      }
      break;
    case OPT_LOG_LEVEL:
      if (!strcmp(optarg, "debug"))
        o->log_level = AE_LOG_DEBUG;
      else if (!strcmp(optarg, "info"))
        o->log_level = AE_LOG_INFO;
      else if (!strcmp(optarg, "warn") || !strcmp(optarg, "warning"))
        o->log_level = AE_LOG_WARN;
      else if (!strcmp(optarg, "error"))
        o->log_level = AE_LOG_ERROR;
      else {
        fprintf(stderr, "archevald: --log-level: debug, info, warn or "
                        "error\n");
        return -1;
      }
      break;
    case OPT_STATE_DIR:
      o->state_dir = optarg;
      break;
    case OPT_NO_STORE:
      o->state_dir = NULL;
      break;
    case OPT_STORE_SYNC:
      if (!strcmp(optarg, "normal")) {
        o->store_sync_normal = 1;
      } else if (!strcmp(optarg, "full")) {
        o->store_sync_normal = 0;
      } else {
        fprintf(stderr, "archevald: --store-sync: full or normal\n");
        return -1;
      }
      break;
    case OPT_HEALTHCHECK:
      healthcheck = 1;
      break;
    case OPT_HELP:
      usage(stdout);
      return 1;
    case OPT_VERSION:
      printf("archevald %s (engine %s, cuda %s)\n", PACKAGE_VERSION,
             AE_ENGINE_VERSION,
#ifdef HAVE_CUDA
             "yes"
#else
             "no"
#endif
      );
      return 1;
    default:
      fprintf(stderr, "Try 'archevald --help'.\n");
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "archevald: unexpected argument '%s'\n", argv[optind]);
    return -1;
  }
  return healthcheck ? 2 : 0;
}

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

/* ---- workers ---- */

static int plan_workers(ae_server *srv) {
  ae_options *o = srv->opt;
  int n_gpu = 0;
  int use_cuda = 0;
  if (strcmp(o->backend, "host")) {
    n_gpu = ae_cuda_device_count();
    use_cuda = n_gpu > 0;
    if (!use_cuda && !strcmp(o->backend, "cuda")) {
      ae_log(AE_LOG_ERROR, "--backend cuda: no usable CUDA device in this "
                           "build or machine");
      return AE_EUNSUPPORTED;
    }
  }
  int devices[256];
  int n_devices = 0;
  if (use_cuda) {
    if (!strcmp(o->gpus, "all")) {
      for (int d = 0; d < n_gpu && d < 256; d++)
        devices[n_devices++] = d;
    } else {
      const char *s = o->gpus;
      while (*s && n_devices < 256) {
        char *end;
        long d = strtol(s, &end, 10);
        if (end == s || d < 0 || d >= n_gpu) {
          ae_log(AE_LOG_ERROR, "--gpus %s: devices are 0 to %d", o->gpus,
                 n_gpu - 1);
          return AE_EINVAL;
        }
        devices[n_devices++] = (int)d;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
          ae_log(AE_LOG_ERROR, "--gpus %s: a comma-separated list", o->gpus);
          return AE_EINVAL;
        }
      }
    }
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  int host = o->host_workers >= 0 ? o->host_workers
             : n_devices > 0      ? 1
                                  : (int)cores;
  size_t n = (size_t)n_devices * (size_t)o->workers_per_gpu + (size_t)host;
  srv->workers = calloc(n ? n : 1, sizeof *srv->workers);
  if (!srv->workers) return AE_ENOMEM;
  srv->n_workers = n;
  size_t k = 0;
  for (int d = 0; d < n_devices; d++)
    for (int i = 0; i < o->workers_per_gpu; i++, k++) {
      ae_worker *w = &srv->workers[k];
      w->cfg = (ae_engine_config){AE_BACKEND_CUDA, devices[d], (int)k};
      w->allow_fallback = !strcmp(o->backend, "auto");
      snprintf(w->name, sizeof w->name, "cuda:%d", devices[d]);
      snprintf(w->device, sizeof w->device, "cuda device %d", devices[d]);
    }
  for (int i = 0; i < host; i++, k++) {
    ae_worker *w = &srv->workers[k];
    w->cfg = (ae_engine_config){AE_BACKEND_HOST, 0, i};
    snprintf(w->name, sizeof w->name, "host:%d", i);
    snprintf(w->device, sizeof w->device, "cpu (%ld cores)", cores);
  }
  for (size_t i = 0; i < n; i++) {
    srv->workers[i].srv = srv;
    srv->workers[i].index = (int)i;
    atomic_init(&srv->workers[i].memory_used, 0);
  }
  if (n == 0) ae_log(AE_LOG_WARN, "no workers: jobs will wait in the queue");
  ae_log(AE_LOG_INFO,
         "%d cuda device(s), %zu workers (%d host, one BLAS thread "
         "each)",
         n_devices, n, host);
  return AE_OK;
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
  ae_server_drain(srv);
}

static void close_if_open(uv_handle_t *h) {
  if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}

void ae_server_shutdown(ae_server *srv) {
  ae_log(AE_LOG_INFO, "drained: stopping workers and the HTTP server");
  ae_workers_stop(srv);
  ae_http_stop(srv);
  close_if_open((uv_handle_t *)&srv->async);
  close_if_open((uv_handle_t *)&srv->sweep_timer);
  close_if_open((uv_handle_t *)&srv->drain_timer);
  close_if_open((uv_handle_t *)&srv->sig_term);
  close_if_open((uv_handle_t *)&srv->sig_int);
}

/* ---- main ---- */

int main(int argc, char **argv) {
  /* OpenBLAS picks its kernels at load: name this CPU's core first. */
  ae_blas_tune_and_reexec(argc, argv);
  ae_options opt = {.http_address = "127.0.0.1",
                    .http_port = 8000,
                    .backend = "auto",
                    .gpus = "all",
                    .workers_per_gpu = 1,
                    .host_workers = -1,
                    .max_queue = 1024,
                    .max_batch = 256,
                    .max_body_bytes = 8LL << 20,
                    .default_timeout_ms = 600000,
                    .job_ttl_secs = 3600,
                    .drain_timeout_secs = 25,
                    .connection_timeout_secs = 30,
                    .max_connections = 1024,
                    .max_connections_per_ip = 64,
                    .log_level = AE_LOG_INFO};
  opt.state_dir = (char *)default_state_dir();
  int parsed = parse_options(argc, argv, &opt);
  if (parsed < 0) {
    free(opt.datasets);
    return 2;
  }
  if (parsed == 1) {
    free(opt.datasets);
    return 0;
  }
  if (parsed == 2) {
    free(opt.datasets);
    return healthcheck(&opt);
  }
  ae_log_setup(opt.log_level, opt.log_json);

  static ae_server server;
  ae_server *srv = &server;
  srv->opt = &opt;
  uv_loop_t loop;
  int status = 1;
  int loop_open = 0, jobs_open = 0, registry_open = 0;
  ae_problem p = AE_PROBLEM_INIT;

  if (ae_dataset_registry_init(&srv->registry, 1, &p)) {
    ae_log(AE_LOG_ERROR, "datasets: %s", p.detail ? p.detail : "failed");
    goto out;
  }
  registry_open = 1;
  for (size_t i = 0; i < opt.n_datasets; i++)
    if (ae_dataset_registry_add(&srv->registry, opt.datasets[i], &p)) {
      ae_log(AE_LOG_ERROR, "--dataset %s: %s", opt.datasets[i],
             p.detail ? p.detail : "failed");
      goto out;
    }
  srv->catalog = ae_dataset_registry_catalog(&srv->registry);
  ae_limits_default(&srv->limits);
  srv->limits.default_timeout_ms = opt.default_timeout_ms;
  srv->limits.max_working_set_bytes =
      opt.max_job_memory > 0 ? (double)opt.max_job_memory
                             : ae_engine_default_job_memory();

  if (plan_workers(srv)) goto out;
  if (uv_loop_init(&loop)) goto out;
  loop_open = 1;
  srv->loop = &loop;
  if (ae_server_jobs_init(srv)) goto out;
  jobs_open = 1;
  if (ae_metrics_init(srv)) goto out;

  if (opt.state_dir && opt.state_dir[0]) {
    char err[256] = "";
    if (ae_store_open(opt.state_dir,
                      opt.store_sync_normal ? AE_STORE_SYNC_NORMAL
                                            : AE_STORE_SYNC_FULL,
                      &srv->store, err, sizeof err)) {
      ae_log(AE_LOG_ERROR, "store in %s: %s", opt.state_dir, err);
      goto out;
    }
    if (ae_jobs_load(srv)) goto out;
  }

  uv_signal_init(&loop, &srv->sig_term);
  uv_signal_init(&loop, &srv->sig_int);
  srv->sig_term.data = srv->sig_int.data = srv;
  uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
  uv_signal_start(&srv->sig_int, on_signal, SIGINT);

  if (ae_http_start(srv)) goto out;
  if (ae_workers_start(srv)) goto out;
  ae_log(AE_LOG_INFO, "archevald %s started", PACKAGE_VERSION);
  uv_run(&loop, UV_RUN_DEFAULT);
  status = srv->exit_code;

out:
  ae_problem_clear(&p);
  if (loop_open) {
    /* On a start-up failure the loop never ran: stop what is open. */
    if (!srv->stopping) {
      srv->stopping = 1;
      ae_server_shutdown(srv);
    }
    if (jobs_open) uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop))
      ae_log(AE_LOG_WARN, "the loop still had open handles");
  }
  if (jobs_open) ae_server_jobs_free(srv);
  ae_metrics_free(srv);
  free(srv->workers);
  if (srv->store) ae_store_close(srv->store);
  if (registry_open) ae_dataset_registry_free(&srv->registry);
  free(opt.datasets);
  if (status == 0) ae_log(AE_LOG_INFO, "archevald stopped");
  return status;
}
