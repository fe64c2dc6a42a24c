# tests/fuzz/local.mk: libFuzzer harnesses (make fuzz) and their short CI run.
#
# Each harness is compiled by clang in one command with the parser sources
# it exercises (not the gcc-built libraries), with libFuzzer, ASan and
# UBSan.  `make fuzz-build` builds them into tests/fuzz/fuzz_<name>;
# `make fuzz` runs each for $(FUZZ_SECONDS) on a copy of its seed corpus;
# `make check` runs tests/fuzz/ci-fuzz.sh (15 s each plus the regressions).
FUZZ_SECONDS = 600
FUZZ_NAMES = fuzz_request fuzz_graph fuzz_idx fuzz_dataset fuzz_router fuzz_onnx

EXTRA_DIST += tests/fuzz/fuzz_request.c tests/fuzz/fuzz_graph.c tests/fuzz/fuzz_nb201.h \
	tests/fuzz/fuzz_idx.c tests/fuzz/fuzz_dataset.c tests/fuzz/fuzz_router.c \
	tests/fuzz/run.sh tests/fuzz/ci-fuzz.sh tests/fuzz/FINDINGS.md \
	tests/fuzz/slow_client.py \
	tests/fuzz/corpus tests/fuzz/regressions
EXTRA_DIST += tests/fuzz/fuzz_onnx.c
CLEANFILES += tests/fuzz/fuzz_onnx
TESTS += tests/fuzz/ci-fuzz.sh
CLEANFILES += tests/fuzz/fuzz_request tests/fuzz/fuzz_graph \
	tests/fuzz/fuzz_idx tests/fuzz/fuzz_dataset tests/fuzz/fuzz_router

if HAVE_CLANG
FUZZ_CC = $(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -fno-omit-frame-pointer -std=gnu11 \
	-pthread $(AM_CPPFLAGS) $(JANSSON_CFLAGS)
FUZZ_LIBS = $(JANSSON_LIBS) $(ZLIB_LIBS) -lm

# The C files among the prerequisites ($^, already found through VPATH).
FUZZ_SRCS = srcs=; for f in $^; do case $$f in \
	*.c) srcs="$$srcs $$f" ;; esac; done

tests/fuzz/fuzz_request: tests/fuzz/fuzz_request.c $(api_libaeapi_a_SOURCES)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CC)$(FUZZ_SRCS); $(FUZZ_CC) -o $@ $$srcs $(FUZZ_LIBS)

tests/fuzz/fuzz_graph: tests/fuzz/fuzz_graph.c $(api_libaeapi_a_SOURCES)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CC)$(FUZZ_SRCS); $(FUZZ_CC) -o $@ $$srcs $(FUZZ_LIBS)

tests/fuzz/fuzz_idx: tests/fuzz/fuzz_idx.c $(AE_DATASET_SOURCES) \
		$(api_libaeapi_a_SOURCES)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CC)$(FUZZ_SRCS); $(FUZZ_CC) -o $@ $$srcs $(FUZZ_LIBS)

tests/fuzz/fuzz_dataset: tests/fuzz/fuzz_dataset.c $(AE_DATASET_SOURCES) \
		$(api_libaeapi_a_SOURCES)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CC)$(FUZZ_SRCS); $(FUZZ_CC) -o $@ $$srcs $(FUZZ_LIBS)

# The router (server/route.c) has no other dependency in the daemon: the
# harness links it alone, in a CUDA build too.
tests/fuzz/fuzz_router: tests/fuzz/fuzz_router.c server/route.c server/route.h
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CC)$(FUZZ_SRCS); $(FUZZ_CC) -o $@ $$srcs $(FUZZ_LIBS)

# The ONNX importer with the protobuf-c code protoc-c generated (the
# libaeonnx.a sources, built first for that).
tests/fuzz/fuzz_onnx: tests/fuzz/fuzz_onnx.c $(api_libaeonnx_a_SOURCES) \
		api/onnx.pb-c.c api/onnx.pb-c.h $(api_libaeapi_a_SOURCES)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CC)$(FUZZ_SRCS); $(FUZZ_CC) $(PROTOBUF_C_CFLAGS) -o $@ $$srcs \
		$(PROTOBUF_C_LIBS) $(FUZZ_LIBS)

fuzz-build: tests/fuzz/fuzz_request tests/fuzz/fuzz_graph \
	tests/fuzz/fuzz_idx tests/fuzz/fuzz_dataset tests/fuzz/fuzz_router \
	tests/fuzz/fuzz_onnx

fuzz: fuzz-build
	$(SHELL) $(top_srcdir)/tests/fuzz/run.sh $(abs_top_srcdir) \
		$(abs_top_builddir) $(FUZZ_SECONDS) $(FUZZ_NAMES)
else
fuzz-build fuzz:
	@echo "make $@: clang was not found by configure; nothing to do"
endif

# The CI run builds the harnesses itself (so `make check` needs no extra
# target) through these variables.
AM_TESTS_ENVIRONMENT += FUZZ_MAKE='$(MAKE)'; export FUZZ_MAKE; \
	FUZZ_NAMES='$(FUZZ_NAMES)'; export FUZZ_NAMES; \
	FUZZ_CLANG='$(CLANG)'; export FUZZ_CLANG;

.PHONY: fuzz fuzz-build
