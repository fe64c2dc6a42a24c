# clients/local.mk: the archeval CLI (offline `score` and the HTTP client),
# the Python client and its example, the deploy kit, and their tests.
bin_PROGRAMS += clients/archeval
clients_archeval_SOURCES = clients/archeval.c clients/cli.h \
	clients/cli_score.c clients/cli_io.c clients/http_client.c clients/http_client.h \
	clients/http_commands.c clients/cli_rank.c clients/cli_canon.c \
	clients/cli_onnx.c clients/cli_study.c clients/cli_model.c
clients_archeval_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS)
clients_archeval_LDADD = api/libaeonnx.a $(ENGINE_LIBS) $(CURL_LIBS) \
	$(PROTOBUF_C_LIBS)

# Tests against a real archevald ($AE_BUILDDIR/server/archevald; each one
# skips with 77 when the daemon is not built) and the deploy kit's static
# checks.  Each prints "N passed, M failed" last.
AE_CLIENT_TESTS = tests/integration/test_cli.py \
	tests/integration/test_cli_models.py \
	tests/integration/test_cli_rank.py \
	tests/integration/test_python_client.py \
	tests/integration/test_python_nas.py \
	tests/integration/test_deploy.sh
check_SCRIPTS += $(AE_CLIENT_TESTS)
TESTS += $(AE_CLIENT_TESTS)
EXTRA_DIST += $(AE_CLIENT_TESTS) \
	clients/python/pyproject.toml clients/python/README.md \
	clients/python/archeval_client/__init__.py \
	clients/python/archeval_client/client.py \
	clients/python/archeval_client/errors.py \
	clients/python/archeval_client/models.py \
	clients/python/archeval_client/study.py \
	clients/python/examples/nas_search.py \
	deploy/Dockerfile deploy/Dockerfile.dockerignore deploy/compose.yaml \
	deploy/yamllint.yaml deploy/k8s/deployment.yaml \
	deploy/k8s/service.yaml deploy/k8s/kustomization.yaml \
	deploy/systemd/archevald.service
