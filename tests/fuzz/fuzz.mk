# tests/fuzz/fuzz.mk - build the libFuzzer targets (docs/fuzzing.md).
# Run from the repository root:  make -f tests/fuzz/fuzz.mk -j2
#
# The project's library is compiled again with clang, coverage
# instrumentation (-fsanitize=fuzzer-no-link) and ASan + UBSan into
# build-fuzz/libmke-fuzz.a; objects from build/ (gcc) are never reused.
# Each tests/fuzz/fuzz_NAME.c becomes build-fuzz/fuzz_NAME.

FUZZ_CC   ?= clang
O         := build-fuzz
# the main Makefile's package flags (tests/fuzz/vars.mk)
VARS      := make -s --no-print-directory -f Makefile -f tests/fuzz/vars.mk
PKG_CFLAGS := $(shell $(VARS) fuzz-cflags)
PKG_LIBS   := $(shell $(VARS) fuzz-libs)
SAN       := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
CFLAGS    := -std=c11 -Wall -Wextra -pedantic -O1 -g -D_GNU_SOURCE -Icommon $(PKG_CFLAGS) $(SAN)
LDLIBS    := $(PKG_LIBS)

# store.c needs the generated SQLite migrations and no parser needs the
# store; the library takes every other module.
LIB_SRC   := $(filter-out common/store.c,$(wildcard common/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(O)/%.o)
LIB       := $(O)/libmke-fuzz.a
TARGETS   := $(patsubst tests/fuzz/%.c,$(O)/%,$(wildcard tests/fuzz/fuzz_*.c))

all: $(TARGETS) $(O)/.gitignore

# build-fuzz/ ignores itself, so that nothing built here is ever committed
$(O)/.gitignore:
	@mkdir -p $(O)
	@echo '*' > $@

$(O)/common/%.o: common/%.c $(wildcard common/*.h) tests/fuzz/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(O)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard tests/fuzz/*.h) $(LIB)
	$(FUZZ_CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB) $(LDLIBS)

.PHONY: all
.SECONDARY:
