# tests/fault/local.mk: the store fault injection (issue 14 item 8): an
# LD_PRELOAD shim that fails writes under one folder on demand, and the
# test that toggles it under load.  Included by server/local.mk.  The shim
# is a plain shared object (no libtool in this tree), built without the
# sanitizer flags: the daemon under test brings its own.
check_DATA = tests/fault/libaefault.so
CLEANFILES += tests/fault/libaefault.so
EXTRA_DIST += tests/fault/fault_shim.c tests/fault/local.mk

tests/fault/libaefault.so: $(srcdir)/tests/fault/fault_shim.c
	@$(MKDIR_P) tests/fault
	$(AM_V_CC)$(CC) -std=gnu11 -shared -fPIC -O2 -Wall -Wextra -Werror \
		-o $@ $(srcdir)/tests/fault/fault_shim.c -ldl

TESTS += tests/integration/test_reliability_store.py
EXTRA_DIST += tests/integration/test_reliability_store.py
