# gpu/engine.mk: build fragment (included by Makefile.am).
