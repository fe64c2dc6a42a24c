/* options.c: archevald's options table, and from it the defaults, the
 * getopt_long parser and the --help text.
 *
 * Every flag is one row of `options` below: its name, its type, where it
 * lands in ae_options, its default, its bounds and its help.  Adding a flag
 * is adding a row (and a field); README.md's "### Flags" section is this
 * file's --help, checked by tests/integration/test_flags.py.
 *
 * Threads: main thread only, before the loop starts. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/status.h"
#include "gpu/engine.h"
#include "server/options.h"

typedef enum {
  OPT_STRING, /* const char * */
  OPT_INT,    /* int, within [min, max] */
  OPT_LLONG,  /* long long, within [min, max] */
  OPT_SIZE,   /* long long bytes: "8388608", "8MiB", "512K", "1G"; >= min */
  OPT_CHOICE, /* int: the value of one of choices */
  OPT_LIST,   /* repeatable: appended to o->datasets */
  OPT_CLEAR,  /* no argument: sets the const char * field to NULL */
  OPT_SET,    /* no argument: sets the int field to 1 */
  OPT_HELP,
  OPT_VERSION
} option_type;

typedef struct {
  const char *name;
  int value;
  int alias; /* accepted, not listed in --help */
} option_choice;

typedef struct {
  const char *name;
  option_type type;
  size_t offset; /* of the field in ae_options */
  const char *metavar;
  long long def; /* default of OPT_INT, OPT_LLONG, OPT_SIZE, OPT_CHOICE */
  const char *def_string; /* default of OPT_STRING */
  long long min, max;
  const option_choice *choices;
  const char *help;
  /* The default in words, where the value alone would not say it (a
   * sentinel, or a default decided at start); else generated. */
  const char *default_words;
  /* Appended to the generated default ("auto: cuda when ..."). */
  const char *default_note;
} option_spec;

#define FIELD(f) offsetof(ae_options, f)

static const option_choice backend_choices[] = {
    {"auto", AE_BACKEND_AUTO, 0},
    {"host", AE_BACKEND_ONLY_HOST, 0},
    {"cuda", AE_BACKEND_ONLY_CUDA, 0},
    {NULL, 0, 0}};
static const option_choice worker_sched_choices[] = {
    {"other", AE_WORKER_SCHED_OTHER, 0},
    {"batch", AE_WORKER_SCHED_BATCH, 0},
    {"idle", AE_WORKER_SCHED_IDLE, 0},
    {NULL, 0, 0}};
static const option_choice log_format_choices[] = {
    {"text", 0, 0}, {"json", 1, 0}, {NULL, 0, 0}};
static const option_choice log_level_choices[] = {
    {"debug", AE_LOG_DEBUG, 0}, {"info", AE_LOG_INFO, 0},
    {"warn", AE_LOG_WARN, 0},   {"warning", AE_LOG_WARN, 1},
    {"error", AE_LOG_ERROR, 0}, {NULL, 0, 0}};
static const option_choice store_sync_choices[] = {
    {"full", 0, 0}, {"normal", 1, 0}, {NULL, 0, 0}};

static const option_spec options[] = {
    {.name = "http-address",
     .type = OPT_STRING,
     .offset = FIELD(http_address),
     .metavar = "ADDR",
     .def_string = "127.0.0.1",
     .help = "listen address"},
    {.name = "http-port",
     .type = OPT_INT,
     .offset = FIELD(http_port),
     .metavar = "PORT",
     .def = 8000,
     .min = 0,
     .max = 65535,
     .help = "listen port"},
    {.name = "backend",
     .type = OPT_CHOICE,
     .offset = FIELD(backend),
     .def = AE_BACKEND_AUTO,
     .choices = backend_choices,
     .help = "scoring backend",
     .default_note = "cuda when a device opens, else host"},
    {.name = "gpus",
     .type = OPT_STRING,
     .offset = FIELD(gpus),
     .metavar = "all|LIST",
     .def_string = "all",
     .help = "CUDA devices, e.g. 0,2"},
    {.name = "workers-per-gpu",
     .type = OPT_INT,
     .offset = FIELD(workers_per_gpu),
     .metavar = "N",
     .def = 1,
     .min = 1,
     .max = 64,
     .help = "workers per device"},
    {.name = "host-workers",
     .type = OPT_INT,
     .offset = FIELD(host_workers),
     .metavar = "N",
     .def = -1,
     .min = 0,
     .max = 1024,
     .help = "host workers",
     .default_words = "1 when a GPU serves, else the core count"},
    {.name = "worker-nice",
     .type = OPT_INT,
     .offset = FIELD(worker_nice),
     .metavar = "N",
     .def = 10,
     .min = 0,
     .max = 19,
     .help = "nice value of the worker threads (the loop and HTTP get a CPU "
             "first)"},
    {.name = "worker-sched",
     .type = OPT_CHOICE,
     .offset = FIELD(worker_sched),
     .def = AE_WORKER_SCHED_OTHER,
     .choices = worker_sched_choices,
     .help = "scheduling policy of the worker threads"},
    {.name = "worker-keep-ms",
     .type = OPT_LLONG,
     .offset = FIELD(worker_keep_ms),
     .metavar = "MS",
     .def = 5000,
     .min = 0,
     .max = 3600000,
     .help = "how long an idle host worker keeps its last job's buffers "
             "for the next job before it gives them back (0: at once)"},
    {.name = "max-queue",
     .type = OPT_LLONG,
     .offset = FIELD(max_queue),
     .metavar = "N",
     .def = 1024,
     .min = 0,
     .max = 100000000,
     .help = "queued jobs before 429"},
    {.name = "max-batch",
     .type = OPT_LLONG,
     .offset = FIELD(max_batch),
     .metavar = "N",
     .def = 256,
     .min = 1,
     .max = 1000000,
     .help = "jobs per POST /v1/jobs:batch"},
    {.name = "max-body-bytes",
     .type = OPT_SIZE,
     .offset = FIELD(max_body_bytes),
     .metavar = "SIZE",
     .def = 8LL << 20,
     .min = 1,
     .help = "request body limit"},
    {.name = "max-model-bytes",
     .type = OPT_SIZE,
     .offset = FIELD(max_model_bytes),
     .metavar = "SIZE",
     .def = 64LL << 20,
     .min = 1,
     .max = 1LL << 30,
     .help = "ONNX model upload limit (POST /v1/models)"},
    {.name = "max-job-memory",
     .type = OPT_SIZE,
     .offset = FIELD(max_job_memory),
     .metavar = "SIZE",
     .def = 0,
     .min = 1,
     .help = "estimated memory one job may need; larger requests get 422",
     .default_words = "half the RAM"},
    {.name = "max-jobs-memory",
     .type = OPT_SIZE,
     .offset = FIELD(max_jobs_memory),
     .metavar = "SIZE",
     .def = 0,
     .min = 1,
     .help = "memory all jobs together may hold (requests, results); past it "
             "POST gets 429",
     .default_words = "a quarter of the RAM"},
    {.name = "max-finished-jobs",
     .type = OPT_LLONG,
     .offset = FIELD(max_finished_jobs),
     .metavar = "N",
     .def = 10000,
     .min = 0,
     .max = 1LL << 40,
     .help = "finished jobs kept in memory; older ones are read from the "
             "store when asked for (with a store only)"},
    {.name = "default-timeout-ms",
     .type = OPT_LLONG,
     .offset = FIELD(default_timeout_ms),
     .metavar = "MS",
     .def = 600000,
     .min = 1,
     .max = 1LL << 40,
     .help = "a job's default timeout_ms"},
    {.name = "job-ttl-secs",
     .type = OPT_LLONG,
     .offset = FIELD(job_ttl_secs),
     .metavar = "S",
     .def = 3600,
     .min = 0,
     .max = 1LL << 32,
     .help = "finished jobs are kept S seconds"},
    {.name = "drain-timeout-secs",
     .type = OPT_INT,
     .offset = FIELD(drain_timeout_secs),
     .metavar = "S",
     .def = 25,
     .min = 0,
     .max = 86400,
     .help = "on SIGTERM, running jobs get S seconds"},
    {.name = "connection-timeout-secs",
     .type = OPT_INT,
     .offset = FIELD(connection_timeout_secs),
     .metavar = "S",
     .def = 30,
     .min = 0,
     .max = 86400,
     .help = "idle timeout, and the time a request may take to arrive in "
             "full"},
    {.name = "max-connections",
     .type = OPT_INT,
     .offset = FIELD(max_connections),
     .metavar = "N",
     .def = 1024,
     .min = 1,
     .max = 1000000,
     .help = "concurrent connections"},
    {.name = "max-connections-per-ip",
     .type = OPT_INT,
     .offset = FIELD(max_connections_per_ip),
     .metavar = "N",
     .def = 64,
     .min = 0,
     .max = 1000000,
     .help = "per client address"},
    {.name = "dataset",
     .type = OPT_LIST,
     .metavar = "NAME=PATH[,...]",
     .help = "register a dataset; repeatable",
     .default_words = "none beyond synthetic and an installed fashion-mnist"},
    {.name = "datasets-dir",
     .type = OPT_STRING,
     .offset = FIELD(datasets_dir),
     .metavar = "DIR",
     .help = "register every dataset found one level under DIR",
     .default_words = "none"},
    {.name = "log-format",
     .type = OPT_CHOICE,
     .offset = FIELD(log_json),
     .def = 0,
     .choices = log_format_choices,
     .help = "log line format"},
    {.name = "log-level",
     .type = OPT_CHOICE,
     .offset = FIELD(log_level),
     .def = AE_LOG_INFO,
     .choices = log_level_choices,
     .help = "the least severe level logged"},
    {.name = "log-file",
     .type = OPT_STRING,
     .offset = FIELD(log_file),
     .metavar = "PATH",
     .help = "append the log to PATH, reopened on SIGHUP (for rotation)",
     .default_words = "stderr"},
    {.name = "state-dir",
     .type = OPT_STRING,
     .offset = FIELD(state_dir),
     .metavar = "DIR",
     .help = "job store folder; '' disables the store",
     .default_words = "/var/lib/archeval as root, else ./archeval-state"},
    {.name = "no-store",
     .type = OPT_CLEAR,
     .offset = FIELD(state_dir),
     .help = "keep jobs in memory only",
     .default_words = "off"},
    {.name = "store",
     .type = OPT_STRING,
     .offset = FIELD(store_url),
     .metavar = "URL",
     .help = "a PostgreSQL job store instead of --state-dir: "
             "postgresql://... or a libpq conninfo",
     .default_words = "$ARCHEVAL_STORE_URL, else --state-dir"},
    {.name = "store-file",
     .type = OPT_STRING,
     .offset = FIELD(store_file),
     .metavar = "PATH",
     .help = "read the --store URL from a file (a mounted Secret)",
     .default_words = "none"},
    {.name = "fleet",
     .type = OPT_SET,
     .offset = FIELD(fleet),
     .help = "share the PostgreSQL store's queue with other daemons: jobs "
             "run on any of them, each answers for all",
     .default_words = "off"},
    {.name = "replica-id",
     .type = OPT_STRING,
     .offset = FIELD(replica_id),
     .metavar = "ID",
     .help = "this daemon's name in the fleet (leases, logs)",
     .default_words = "host-pid-random"},
    {.name = "lease-secs",
     .type = OPT_INT,
     .offset = FIELD(lease_secs),
     .metavar = "S",
     .def = 10,
     .min = 1,
     .max = 3600,
     .help = "with --fleet, a job whose daemon stopped renewing its lease "
             "for S seconds runs again elsewhere"},
    {.name = "max-attempts",
     .type = OPT_INT,
     .offset = FIELD(max_attempts),
     .metavar = "N",
     .def = 3,
     .min = 1,
     .max = 100,
     .help = "with --fleet, a job whose daemon died N times fails"},
    {.name = "store-sync",
     .type = OPT_CHOICE,
     .offset = FIELD(store_sync_normal),
     .def = 0,
     .choices = store_sync_choices,
     .help = "fsync every commit, or WAL normal"},
    {.name = "healthcheck",
     .type = OPT_SET,
     .offset = FIELD(healthcheck),
     .help = "GET /v1/health/ready on the configured address and exit 0 if "
             "ready, else 1"},
    {.name = "help", .type = OPT_HELP, .help = "this text"},
    {.name = "version", .type = OPT_VERSION, .help = "the version"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

/* Where --help's text column starts, and where lines end. */
#define HELP_COLUMN 31
#define HELP_WIDTH 79

static const char *default_state_dir(void) {
  return geteuid() == 0 ? "/var/lib/archeval" : "./archeval-state";
}

/* ---- values ---- */

static int parse_integer(const char *s, long long min, long long max,
                         long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return AE_EINVAL;
  *out = v;
  return AE_OK;
}

/* "8388608", "8MiB", "8M", "512KiB", "1G"; at most 1 TiB. */
static int parse_size(const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) return AE_EINVAL;
  long long unit;
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

static void format_size(long long bytes, char *buf, size_t len) {
  static const char *const units[] = {"GiB", "MiB", "KiB"};
  for (int i = 0; i < 3; i++) {
    long long unit = 1LL << (10 * (3 - i));
    if (bytes > 0 && bytes % unit == 0) {
      snprintf(buf, len, "%lld%s", bytes / unit, units[i]);
      return;
    }
  }
  snprintf(buf, len, "%lld", bytes);
}

static void *field(ae_options *o, const option_spec *spec) {
  return (char *)o + spec->offset;
}

/* ---- defaults ---- */

static void set_defaults(ae_options *o) {
  memset(o, 0, sizeof *o);
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const option_spec *s = &options[i];
    switch (s->type) {
    case OPT_STRING:
      *(const char **)field(o, s) = s->def_string;
      break;
    case OPT_INT:
    case OPT_CHOICE:
      *(int *)field(o, s) = (int)s->def;
      break;
    case OPT_LLONG:
    case OPT_SIZE:
      *(long long *)field(o, s) = s->def;
      break;
    default:
      break;
    }
  }
  o->state_dir = default_state_dir();
}

/* ---- --help ---- */

static void choices_metavar(const option_choice *c, char *buf, size_t len) {
  buf[0] = '\0';
  for (; c->name; c++) {
    if (c->alias) continue;
    size_t used = strlen(buf);
    snprintf(buf + used, len - used, "%s%s", used ? "|" : "", c->name);
  }
}

/* The default as --help shows it, or "" for an action without one. */
static void default_text(const option_spec *s, char *buf, size_t len) {
  char value[64] = "";
  if (s->default_words) {
    snprintf(buf, len, "%s", s->default_words);
    return;
  }
  switch (s->type) {
  case OPT_STRING:
    snprintf(value, sizeof value, "%s", s->def_string);
    break;
  case OPT_INT:
  case OPT_LLONG:
    snprintf(value, sizeof value, "%lld", s->def);
    break;
  case OPT_SIZE:
    format_size(s->def, value, sizeof value);
    break;
  case OPT_CHOICE:
    for (const option_choice *c = s->choices; c->name; c++)
      if (c->value == s->def) {
        snprintf(value, sizeof value, "%s", c->name);
        break;
      }
    break;
  default:
    break;
  }
  if (s->default_note && value[0])
    snprintf(buf, len, "%s: %s", value, s->default_note);
  else
    snprintf(buf, len, "%s", value);
}

/* Writes text from column `column` on, wrapping at HELP_WIDTH between
 * words; a \x01 is a space that does not break ("(default 25)"). */
static void write_wrapped(FILE *out, size_t column, const char *text) {
  const char *word = text;
  size_t at = column;
  int first = 1;
  while (*word) {
    size_t n = strcspn(word, " ");
    if (!first && at + 1 + n > HELP_WIDTH) {
      fprintf(out, "\n%*s", HELP_COLUMN, "");
      at = HELP_COLUMN;
      first = 1;
    }
    if (!first) fputc(' ', out);
    for (size_t i = 0; i < n; i++)
      fputc(word[i] == '\x01' ? ' ' : word[i], out);
    at += n + (first ? 0 : 1);
    first = 0;
    word += n;
    while (*word == ' ')
      word++;
  }
  fputc('\n', out);
}

static void usage(FILE *out) {
  fprintf(out, "Usage: archevald [OPTION]...\n"
               "Scores neural-network architectures without training them, "
               "over HTTP.\n\n");
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const option_spec *s = &options[i];
    char metavar[64], flag[96], def[128], text[512];
    if (s->type == OPT_CHOICE)
      choices_metavar(s->choices, metavar, sizeof metavar);
    else
      snprintf(metavar, sizeof metavar, "%s", s->metavar ? s->metavar : "");
    snprintf(flag, sizeof flag, "  --%s%s%s", s->name, metavar[0] ? "=" : "",
             metavar);
    default_text(s, def, sizeof def);
    if (def[0])
      snprintf(text, sizeof text, "%s (default\x01%s)", s->help, def);
    else
      snprintf(text, sizeof text, "%s", s->help);
    size_t width = strlen(flag);
    if (width + 2 > HELP_COLUMN) {
      fprintf(out, "%s  ", flag);
      width += 2;
    } else {
      fprintf(out, "%-*s", HELP_COLUMN, flag);
      width = HELP_COLUMN;
    }
    write_wrapped(out, width, text);
  }
}

/* ---- parsing ---- */

static int parse_value(const option_spec *s, const char *arg, ae_options *o) {
  long long v;
  switch (s->type) {
  case OPT_STRING:
    *(const char **)field(o, s) = arg;
    return AE_OK;
  case OPT_INT:
  case OPT_LLONG:
    if (parse_integer(arg, s->min, s->max, &v)) {
      fprintf(stderr,
              "archevald: --%s: '%s' is not an integer in [%lld, %lld]\n",
              s->name, arg, s->min, s->max);
      return AE_EINVAL;
    }
    if (s->type == OPT_INT)
      *(int *)field(o, s) = (int)v;
    else
      *(long long *)field(o, s) = v;
    return AE_OK;
  case OPT_SIZE:
    if (parse_size(arg, &v) || v < s->min) {
      fprintf(stderr,
              "archevald: --%s: '%s' is not a size like 8MiB from %lld "
              "bytes to 1TiB\n",
              s->name, arg, s->min);
      return AE_EINVAL;
    }
    *(long long *)field(o, s) = v;
    return AE_OK;
  case OPT_CHOICE: {
    for (const option_choice *c = s->choices; c->name; c++)
      if (!strcmp(arg, c->name)) {
        *(int *)field(o, s) = c->value;
        return AE_OK;
      }
    char names[128];
    choices_metavar(s->choices, names, sizeof names);
    fprintf(stderr, "archevald: --%s: '%s' is not one of %s\n", s->name, arg,
            names);
    return AE_EINVAL;
  }
  case OPT_LIST: {
    const char **fresh =
        realloc(o->datasets, (o->n_datasets + 1) * sizeof *fresh);
    if (!fresh) {
      fprintf(stderr, "archevald: out of memory\n");
      return AE_ENOMEM;
    }
    o->datasets = fresh;
    o->datasets[o->n_datasets++] = arg;
    return AE_OK;
  }
  case OPT_CLEAR:
    *(const char **)field(o, s) = NULL;
    return AE_OK;
  case OPT_SET:
    *(int *)field(o, s) = 1;
    return AE_OK;
  default:
    return AE_EINTERNAL;
  }
}

/* A replica id goes into logs and Prometheus labels unquoted: a short
 * name of safe characters (a host or pod name fits). */
static int replica_id_valid(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 63) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)id[i]) && !strchr("._-:", id[i])) return 0;
  return 1;
}

static int takes_argument(option_type type) {
  return type != OPT_CLEAR && type != OPT_SET && type != OPT_HELP &&
         type != OPT_VERSION;
}

ae_options_outcome ae_options_parse(int argc, char **argv, ae_options *o) {
  set_defaults(o);
  struct option long_options[N_OPTIONS + 1];
  for (size_t i = 0; i < N_OPTIONS; i++)
    long_options[i] = (struct option){
        options[i].name,
        takes_argument(options[i].type) ? required_argument : no_argument, NULL,
        256 + (int)i};
  long_options[N_OPTIONS] = (struct option){NULL, 0, NULL, 0};
  int c;
  while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
    if (c < 256 || c >= 256 + (int)N_OPTIONS) {
      fprintf(stderr, "Try 'archevald --help'.\n");
      return AE_OPTIONS_INVALID;
    }
    const option_spec *s = &options[c - 256];
    if (s->type == OPT_HELP) {
      usage(stdout);
      return AE_OPTIONS_EXIT;
    }
    if (s->type == OPT_VERSION) {
      printf("archevald %s (engine %s, cuda %s)\n", PACKAGE_VERSION,
             AE_ENGINE_VERSION,
#ifdef HAVE_CUDA
             "yes"
#else
             "no"
#endif
      );
      return AE_OPTIONS_EXIT;
    }
    if (parse_value(s, optarg, o)) return AE_OPTIONS_INVALID;
  }
  if (optind < argc) {
    fprintf(stderr, "archevald: unexpected argument '%s'\n", argv[optind]);
    return AE_OPTIONS_INVALID;
  }
  if (o->replica_id && !replica_id_valid(o->replica_id)) {
    fprintf(stderr,
            "archevald: --replica-id: '%s' is not 1 to 63 letters, digits, "
            "'.', '_', '-' or ':'\n",
            o->replica_id);
    return AE_OPTIONS_INVALID;
  }
  return AE_OPTIONS_RUN;
}

void ae_options_free(ae_options *o) {
  free(o->datasets);
  o->datasets = NULL;
  o->n_datasets = 0;
}
