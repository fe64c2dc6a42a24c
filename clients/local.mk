# clients/local.mk: the archeval CLI (offline `score` and the HTTP client).
bin_PROGRAMS += clients/archeval
clients_archeval_SOURCES = clients/archeval.c clients/cli.h clients/cli_score.c
clients_archeval_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS)
clients_archeval_LDADD = $(ENGINE_LIBS) $(CURL_LIBS)
