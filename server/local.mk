# server/local.mk: archevald, the daemon (libmicrohttpd on a libuv loop,
# one worker thread per engine, the SQLite job store).
bin_PROGRAMS += server/archevald
server_archevald_SOURCES = server/main.c server/http.c server/jobs.c \
	server/metrics.c server/util.c server/daemon.h \
	server/store_sqlite.c server/store.h
server_archevald_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS) \
	$(SQLITE_CFLAGS)
server_archevald_LDADD = $(ENGINE_LIBS) $(MHD_LIBS) $(UV_LIBS) \
	$(SQLITE_LIBS)

# Unit tests of the daemon's utilities.
check_PROGRAMS += server/test_util
TESTS += server/test_util
server_test_util_SOURCES = server/test_util.c server/util.c server/metrics.c \
	server/daemon.h
server_test_util_CFLAGS = $(TEST_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS)
server_test_util_LDADD = api/libaeapi.a $(JANSSON_LIBS) $(CHECK_LIBS)
