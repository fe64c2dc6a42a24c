# api/local.mk: the wire-format library (owned by the api/ work).
api_libaeapi_a_SOURCES += api/status.c api/status.h api/problem.h api/arch.h \
	api/request.h api/scorecard.h
