# api/local.mk: the wire-format library (owned by the api/ work).
api_libaeapi_a_SOURCES += api/status.c api/status.h api/problem.h api/arch.h \
	api/error.h api/error.c \
	api/request.h api/scorecard.h api/api_internal.h api/problem.c \
	api/json_util.c api/json_fields.c api/activation.c api/arch.c \
	api/arch_cells.c api/arch_cells.h \
	api/lower.c api/request.c api/scorecard.c \
	api/rank.h api/rank.c api/metric_set.h api/metric_set.c \
	api/canon.c api/canon.h api/sha256.c api/sha256.h \
	api/onnx_nb201.c api/onnx_nb201.h

EXTRA_DIST += api/openapi.yaml

# The ONNX importer, a library of its own (it needs protobuf-c; the parsers
# above and their fuzzers do not).  protoc-c compiles Debian's onnx.proto
# ($(ONNX_PROTO), found by configure) into the build tree.
noinst_LIBRARIES += api/libaeonnx.a
api_libaeonnx_a_SOURCES = api/onnx.c api/onnx.h
nodist_api_libaeonnx_a_SOURCES = api/onnx.pb-c.c api/onnx.pb-c.h
api_libaeonnx_a_CFLAGS = $(AM_CFLAGS) $(PROTOBUF_C_CFLAGS)
ONNX_LIBS = api/libaeonnx.a $(PROTOBUF_C_LIBS)
CLEANFILES += api/onnx.pb-c.c api/onnx.pb-c.h

api/onnx.pb-c.c: $(ONNX_PROTO)
	@$(MKDIR_P) api
	$(AM_V_GEN)$(PROTOC_C) --proto_path=$$(dirname $(ONNX_PROTO)) \
		--c_out=api $(ONNX_PROTO)
api/onnx.pb-c.h: api/onnx.pb-c.c
api/libaeonnx_a-onnx.$(OBJEXT): api/onnx.pb-c.h

# The importer on ONNX files torch exports at test time (skips without
# torch) and on Debian's ONNX node tests.
check_PROGRAMS += tests/unit/test_onnx
TESTS += tests/unit/test_onnx
tests_unit_test_onnx_SOURCES = tests/unit/test_onnx.c
tests_unit_test_onnx_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_onnx_LDADD = $(ONNX_LIBS) api/libaeapi.a $(JANSSON_LIBS) \
	$(CHECK_LIBS) -lm
EXTRA_DIST += tests/data/onnx

# The NAS-Bench-201 matcher (api/onnx_nb201.c) on the committed exports of
# tests/data/onnx/nb201 (made by make_nb201.py; no torch at run time).
check_PROGRAMS += tests/unit/test_onnx_nb201
TESTS += tests/unit/test_onnx_nb201
tests_unit_test_onnx_nb201_SOURCES = tests/unit/test_onnx_nb201.c
tests_unit_test_onnx_nb201_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_onnx_nb201_LDADD = $(ONNX_LIBS) api/libaeapi.a \
	$(JANSSON_LIBS) $(CHECK_LIBS) -lm

# Unit tests of the wire format.
check_PROGRAMS += tests/unit/test_api_arch
TESTS += tests/unit/test_api_arch
tests_unit_test_api_arch_SOURCES = tests/unit/test_api_arch.c
tests_unit_test_api_arch_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_api_arch_LDADD = api/libaeapi.a $(JANSSON_LIBS) \
	$(CHECK_LIBS) -lm

# nb101 and darts: published parameter counts, structure, validation.
check_PROGRAMS += tests/unit/test_api_cells
TESTS += tests/unit/test_api_cells
tests_unit_test_api_cells_SOURCES = tests/unit/test_api_cells.c
tests_unit_test_api_cells_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_api_cells_LDADD = api/libaeapi.a $(JANSSON_LIBS) \
	$(CHECK_LIBS) -lm
EXTRA_DIST += tests/data/cells
# ... and held to the PyTorch references (77 without torch).
check_PROGRAMS += tests/ref/cell_params
tests_ref_cell_params_SOURCES = tests/ref/cell_params.c
tests_ref_cell_params_LDADD = api/libaeapi.a $(JANSSON_LIBS) -lm
TESTS += tests/ref/test_cells_torch.py
EXTRA_DIST += tests/ref/test_cells_torch.py tests/ref/nb101_torch.py \
	tests/ref/darts_torch.py

check_PROGRAMS += tests/unit/test_api_request
TESTS += tests/unit/test_api_request
tests_unit_test_api_request_SOURCES = tests/unit/test_api_request.c
tests_unit_test_api_request_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_api_request_LDADD = api/libaeapi.a $(JANSSON_LIBS) \
	$(CHECK_LIBS) -lm

# The malformed-request corpus, with the parsers compiled in under ASan and
# UBSan.
check_PROGRAMS += tests/unit/test_api_corpus
TESTS += tests/unit/test_api_corpus
tests_unit_test_api_corpus_SOURCES = tests/unit/test_api_corpus.c \
	api/status.c api/problem.c api/error.c api/json_util.c api/json_fields.c \
	api/activation.c api/arch.c api/arch_cells.c api/lower.c api/request.c \
	api/scorecard.c api/metric_set.c api/onnx_nb201.c
tests_unit_test_api_corpus_CFLAGS = $(TEST_CFLAGS) \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
tests_unit_test_api_corpus_LDFLAGS = -fsanitize=address,undefined
tests_unit_test_api_corpus_LDADD = $(JANSSON_LIBS) $(CHECK_LIBS) -lm
EXTRA_DIST += tests/data/bad_requests tests/data/requests

check_PROGRAMS += tests/unit/test_api_scorecard
TESTS += tests/unit/test_api_scorecard
tests_unit_test_api_scorecard_SOURCES = tests/unit/test_api_scorecard.c
tests_unit_test_api_scorecard_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_api_scorecard_LDADD = api/libaeapi.a $(JANSSON_LIBS) \
	$(CHECK_LIBS) -lm

# The OpenAPI description against the api.md contract and the examples.
check_SCRIPTS += tests/unit/test_api_openapi.py
TESTS += tests/unit/test_api_openapi.py
EXTRA_DIST += tests/unit/test_api_openapi.py

# The combined rank (api/rank.c) on hand-computable populations.
check_PROGRAMS += tests/unit/test_rank
TESTS += tests/unit/test_rank
tests_unit_test_rank_SOURCES = tests/unit/test_rank.c
tests_unit_test_rank_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_rank_LDADD = api/libaeapi.a $(JANSSON_LIBS) \
	$(CHECK_LIBS) -lm

# Canonical forms and keys: hand cases and the count of distinct NB201
# networks against an independent brute-force enumeration.
check_PROGRAMS += tests/unit/test_canon
TESTS += tests/unit/test_canon
tests_unit_test_canon_SOURCES = tests/unit/test_canon.c
tests_unit_test_canon_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_canon_LDADD = $(TEST_LIBS)

# The host executor on lowered nb101 and darts networks (their slices).
check_PROGRAMS += tests/unit/test_net_cells
TESTS += tests/unit/test_net_cells
tests_unit_test_net_cells_SOURCES = tests/unit/test_net_cells.c
tests_unit_test_net_cells_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_net_cells_LDADD = $(TEST_LIBS)
