# server/local.mk: archevald, the daemon (libmicrohttpd on a libuv loop,
# one worker thread per engine, the SQLite job store).  Files from the
# lowest (util, options, route, queue, job_table, metrics, outcome) to the
# highest (main); tests/check_layers.sh checks that no two call each other.
ARCHEVALD_CORE = server/util.c server/util.h server/options.c \
	server/options.h server/route.c server/route.h server/queue.c \
	server/queue.h server/event.h server/job.h server/job_table.c \
	server/loop_watch.c server/loop_watch.h \
	server/metrics.c server/metrics.h server/outcome.c server/outcome.h \
	server/daemon.h server/job_state.c server/job_state.h \
	server/job_load.c server/job_load.h server/job_render.c \
	server/job_render.h server/workers.c server/workers.h server/drain.c \
	server/drain.h server/cache.c server/cache.h server/study.c \
	server/study.h server/models.c server/models.h server/http.c \
	server/http.h \
	server/store_sqlite.c server/store.h
bin_PROGRAMS += server/archevald
server_archevald_SOURCES = server/main.c $(ARCHEVALD_CORE)
server_archevald_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS) \
	$(SQLITE_CFLAGS)
server_archevald_LDADD = api/libaeonnx.a $(ENGINE_LIBS) $(MHD_LIBS) \
	$(UV_LIBS) $(SQLITE_LIBS) $(PROTOBUF_C_LIBS)

# Unit tests of the daemon's utilities.
check_PROGRAMS += server/test_util
TESTS += server/test_util
server_test_util_SOURCES = server/test_util.c server/util.c server/util.h \
	server/metrics.c server/metrics.h server/route.c server/route.h
server_test_util_CFLAGS = $(TEST_CFLAGS)
server_test_util_LDADD = api/libaeapi.a $(JANSSON_LIBS) $(CHECK_LIBS)

# Unit tests of the job queue.
check_PROGRAMS += server/test_queue
TESTS += server/test_queue
server_test_queue_SOURCES = server/test_queue.c server/queue.c server/queue.h
server_test_queue_CFLAGS = $(TEST_CFLAGS)
server_test_queue_LDADD = $(CHECK_LIBS)

# No circle of includes or calls between the files of server/ or of gpu/,
# no include against the layers.
TESTS += tests/check_layers.sh
EXTRA_DIST += tests/check_layers.sh

# The options table against README.md's flag list and today's bounds.
TESTS += tests/integration/test_flags.py
EXTRA_DIST += tests/integration/test_flags.py

# The whole tree's C and CUDA sources stay formatted by .clang-format.
TESTS += tests/check_format.sh
EXTRA_DIST += tests/check_format.sh


# Reliability (issue 14): signals, limits, log escaping, the small HTTP
# fixes, drain states, store faults, memory bounds and estimates.
TESTS += tests/integration/test_reliability_signals.py \
	tests/integration/test_reliability_http.py \
	tests/integration/test_reliability_drain.py \
	tests/integration/test_reliability_loop.py \
	tests/integration/test_reliability_memory.py \
	tests/integration/test_reliability_memory_load.py
EXTRA_DIST += tests/integration/test_reliability_signals.py \
	tests/integration/test_reliability_http.py \
	tests/integration/test_reliability_drain.py \
	tests/integration/test_reliability_loop.py \
	tests/integration/test_reliability_memory.py \
	tests/integration/test_reliability_memory_load.py
include tests/fault/local.mk

# Studies, the result cache (issue 13): the study API against a daemon
# and the offline ranking, and the 15,625 NB201 cells deduplicated.
TESTS += tests/integration/test_studies.py \
	tests/integration/test_studies_pg.sh \
	tests/integration/test_cli_study.py \
	tests/integration/test_python_study.py \
	tests/integration/test_study_cache.py
EXTRA_DIST += tests/integration/test_studies.py \
	tests/integration/test_studies_pg.sh \
	tests/integration/test_cli_study.py \
	tests/integration/test_python_study.py \
	tests/integration/test_study_cache.py

# The /ui/ page (issue 13): server/ui/ embedded in the binary as C arrays
# by server/ui/embed.sh; no file is read at run time.
AE_UI_FILES = server/ui/index.html server/ui/app.js server/ui/style.css
server_archevald_SOURCES += server/ui_assets.h
nodist_server_archevald_SOURCES = server/ui_assets.c
CLEANFILES += server/ui_assets.c
EXTRA_DIST += server/ui/embed.sh $(AE_UI_FILES)
server/ui_assets.c: $(srcdir)/server/ui/embed.sh \
		$(AE_UI_FILES:%=$(srcdir)/%)
	$(MKDIR_P) server
	$(SHELL) $(srcdir)/server/ui/embed.sh $(srcdir)/server/ui > $@.tmp
	mv $@.tmp $@

# The page in a real browser: headless Chromium against a daemon with a
# study (skips, 77, without chromium).
TESTS += tests/integration/test_ui.py
EXTRA_DIST += tests/integration/test_ui.py
