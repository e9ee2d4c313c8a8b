# mke - Multimodal Knowledge Expansion at cluster scale.
#
#   make                 build bin/mke and bin/mke-worker
#   make deps            install the Debian packages (deploy/packages.txt)
#   make check           build and run every test; ends with "N passed, N failed"
#   make unit            unit tests only
#   make check SANITIZE=address,undefined   the same under sanitizers (build-san/)
#   make DEV=1           -Werror
#   make bench           benchmarks (tests/bench), side by side with PyTorch when present
#   make fixtures        regenerate the PyTorch fixtures (needs python3-torch)

CC      ?= cc
PKGS    := libcjson hiredis sqlite3 openblas libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)

OPT     ?= -O2
CFLAGS  := -std=c11 -Wall -Wextra -pedantic $(OPT) -g -D_GNU_SOURCE -Icommon $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lm -lpthread
ifdef DEV
CFLAGS  += -Werror
endif

ifdef SANITIZE
O       := build-san
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
BIN     := $(O)/bin
else
O       := build
BIN     := bin
endif

LIB_SRC    := $(wildcard common/*.c)
LIB_OBJ    := $(LIB_SRC:%.c=$(O)/%.o)
LIB        := $(O)/libmke.a
MKE_SRC    := $(wildcard coordinator/*.c)
MKE_OBJ    := $(MKE_SRC:%.c=$(O)/%.o)
WORKER_SRC := $(wildcard worker/*.c)
WORKER_OBJ := $(WORKER_SRC:%.c=$(O)/%.o)
TEST_SRC   := $(wildcard tests/unit/test_*.c)
TEST_BIN   := $(TEST_SRC:tests/unit/%.c=$(O)/tests/%)
BENCH_SRC  := $(wildcard tests/bench/*.c)
BENCH_BIN  := $(BENCH_SRC:tests/bench/%.c=$(O)/bench/%)

all: $(BIN)/mke $(BIN)/mke-worker

$(O)/%.o: %.c $(wildcard common/*.h coordinator/*.h worker/*.h tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(O)/worker/%.o: worker/%.c $(wildcard common/*.h worker/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/mke: $(MKE_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(MKE_OBJ) $(LIB) $(LDLIBS)

$(BIN)/mke-worker: $(WORKER_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(WORKER_OBJ) $(LIB) $(MPI_LIBS) $(LDLIBS)

$(O)/tests/%: tests/unit/%.c $(LIB) tests/unit/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Itests/unit -o $@ $< $(LIB) $(LDLIBS)

$(O)/bench/%: tests/bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

deps:
	@sh deploy/install-deps.sh

unit: $(TEST_BIN)
	@MKE_BUILD=$(O) sh tests/run.sh unit

check: all $(TEST_BIN)
	@MKE_BUILD=$(O) MKE_BINDIR=$(BIN) sh tests/run.sh all

bench: all $(BENCH_BIN)
	@MKE_BUILD=$(O) MKE_BINDIR=$(BIN) sh tests/bench/run.sh

fixtures:
	/usr/bin/python3 tests/fixtures/gen_fixtures.py tests/fixtures

clean:
	rm -rf build build-san bin

.PHONY: all deps unit check bench fixtures clean
.SECONDARY:

# The README's two set-up commands: each installs what it needs first.
test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory -j2 check

example:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory -j2 all
	$(BIN)/mke experiment deploy/examples/twomoon-table2.json

.PHONY: test example
