# gpu/engine.mk: the scoring engine (gpu/engine.c: lifetime and pipeline;
# gpu/batch.c: the batch and K(0); gpu/warmup.c: warm-up and the device
# parity gate; gpu/groups/: one file per metric group and the job's shared
# intermediates; gpu/executor.h: the executor interface), the dataset
# registry (gpu/dataset*.c), their unit tests and the scorecard benchmark.
# The dataset registry and its loaders (also compiled into the fuzzers).
AE_DATASET_SOURCES = gpu/dataset.c gpu/dataset.h gpu/dataset_internal.h \
	gpu/dataset_io.c gpu/dataset_raw.c gpu/dataset_cifar.c \
	gpu/dataset_pickle.c gpu/dataset_npy.c
gpu_libaeengine_a_SOURCES += gpu/engine.c gpu/engine.h gpu/philox.h gpu/lanes4.h \
	$(AE_DATASET_SOURCES) gpu/executor.h gpu/job_control.c \
	gpu/job_control.h gpu/batch.c gpu/batch.h gpu/warmup.c gpu/warmup.h \
	gpu/groups/group.h gpu/groups/job.c gpu/groups/table.c \
	gpu/groups/topology.c gpu/groups/expressivity.c \
	gpu/groups/convergence.c gpu/groups/generalization.c \
	gpu/groups/gradients.c gpu/groups/gradients.h gpu/groups/proxies.c \
	gpu/groups/trainability.c
# Without CUDA, the build links "no CUDA executor, no devices" instead.
if !HAVE_CUDA
gpu_libaeengine_a_SOURCES += gpu/cuda_absent.c
endif
EXTRA_DIST += gpu/cuda_absent.c

check_PROGRAMS += tests/unit/test_dataset_registry
TESTS += tests/unit/test_dataset_registry
tests_unit_test_dataset_registry_SOURCES = tests/unit/test_dataset_registry.c
tests_unit_test_dataset_registry_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_dataset_registry_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/unit/test_dataset_formats
TESTS += tests/unit/test_dataset_formats
tests_unit_test_dataset_formats_SOURCES = tests/unit/test_dataset_formats.c
tests_unit_test_dataset_formats_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_dataset_formats_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/unit/test_engine_score
TESTS += tests/unit/test_engine_score
tests_unit_test_engine_score_SOURCES = tests/unit/test_engine_score.c
tests_unit_test_engine_score_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_engine_score_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/unit/test_engine_tie
TESTS += tests/unit/test_engine_tie
tests_unit_test_engine_tie_SOURCES = tests/unit/test_engine_tie.c
tests_unit_test_engine_tie_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_engine_tie_LDADD = $(TEST_LIBS)

# archeval score end to end (runs the built clients/archeval).
check_PROGRAMS += tests/unit/test_engine_cli
TESTS += tests/unit/test_engine_cli
tests_unit_test_engine_cli_SOURCES = tests/unit/test_engine_cli.c
tests_unit_test_engine_cli_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_engine_cli_LDADD = $(TEST_LIBS)
EXTRA_DIST += tests/data/examples/README.md \
	tests/data/examples/nb201_cifar10.json tests/data/examples/mlp_dag.json \
	tests/data/examples/graph_resnet.json \
	tests/data/examples/batch_mlp_dags.json

# The offline CLI and the daemon agree bit for bit (issue 17).
TESTS += tests/integration/test_offline_vs_daemon.py
EXTRA_DIST += tests/integration/test_offline_vs_daemon.py

# make bench: the scorecard benchmark (numbers in tests/bench/RESULTS.md).
EXTRA_PROGRAMS += tests/bench/bench_scorecard
AE_BENCHES += tests/bench/bench_scorecard
tests_bench_bench_scorecard_SOURCES = tests/bench/bench_scorecard.c
tests_bench_bench_scorecard_CFLAGS = $(AM_CFLAGS) -O2
tests_bench_bench_scorecard_LDADD = $(ENGINE_LIBS)

# The forward-feature ranking metrics (ranking.md §1-3, issue 10) and
# their hand-checked unit test.
gpu_libaeengine_a_SOURCES += gpu/groups/features.c gpu/groups/features.h
check_PROGRAMS += tests/unit/test_rank_features
TESTS += tests/unit/test_rank_features
tests_unit_test_rank_features_SOURCES = tests/unit/test_rank_features.c
tests_unit_test_rank_features_CFLAGS = $(TEST_CFLAGS)
tests_unit_test_rank_features_LDADD = $(TEST_LIBS)

# The gradient metrics of ranking.md: hand cases, zico's second batch, the
# PyTorch reference (issue 10).
check_PROGRAMS += tests/unit/test_rank_gradients
TESTS += tests/unit/test_rank_gradients
tests_unit_test_rank_gradients_SOURCES = tests/unit/test_rank_gradients.c
tests_unit_test_rank_gradients_CFLAGS = $(TEST_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_rank_gradients_LDADD = $(TEST_LIBS)

# What lets a job compute less without changing a number (issue 11).
check_PROGRAMS += tests/unit/test_shared_forward
TESTS += tests/unit/test_shared_forward
tests_unit_test_shared_forward_SOURCES = tests/unit/test_shared_forward.c
tests_unit_test_shared_forward_CFLAGS = $(TEST_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_shared_forward_LDADD = $(TEST_LIBS)
