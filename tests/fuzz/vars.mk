# tests/fuzz/vars.mk - print the main Makefile's package flags, so that the
# fuzz build (tests/fuzz/fuzz.mk) links what the project links when
# libraries are added. Used as: make -s -f Makefile -f tests/fuzz/vars.mk fuzz-cflags
fuzz-cflags:
	@echo '$(PKG_CFLAGS)'
fuzz-libs:
	@echo '$(LDLIBS)'
.PHONY: fuzz-cflags fuzz-libs
