#!/bin/sh
# tests/fuzz/coverage.sh - line coverage of each parser by its fuzz corpus.
#
#   sh tests/fuzz/coverage.sh
#
# Builds every target again with clang source-based coverage (no sanitizers)
# into build-fuzz/cov/, replays the committed seeds plus what fuzzing found
# (build-fuzz/corpus/NAME) once (-runs=0), and prints llvm-cov's summary for
# the source file that holds each parser. Run after tests/fuzz/run.sh.
set -eu
O=build-fuzz/cov
cc=${FUZZ_CC:-clang}
profdata=$(command -v llvm-profdata || command -v llvm-profdata-14)
llvmcov=$(command -v llvm-cov || command -v llvm-cov-14)
vars="make -s --no-print-directory -f Makefile -f tests/fuzz/vars.mk"
flags="-std=c11 -O1 -g -D_GNU_SOURCE -Icommon $($vars fuzz-cflags)"
libs=$($vars fuzz-libs)
cov="-fprofile-instr-generate -fcoverage-mapping"
mkdir -p "$O/obj"
objs=""
for f in common/*.c; do
	case $f in common/store.c) continue ;; esac
	o=$O/obj/$(basename "$f" .c).o
	if [ "$f" = common/rng.c ]; then   # see fuzz.mk: gcc, uninstrumented
		${RNG_CC:-gcc} -std=c11 -O2 -D_GNU_SOURCE -Icommon -c "$f" -o "$o"
	else
		$cc $flags $cov -fsanitize=fuzzer-no-link -c "$f" -o "$o"
	fi
	objs="$objs $o"
done
rm -f "$O/lib.a"
ar rcs "$O/lib.a" $objs
for t in config labels manifest npy queue_msg safetensors; do
	case $t in
	config) src=common/config.c ;; labels) src=common/labels.c ;;
	manifest) src=common/manifest.c ;; npy) src=common/npy.c ;;
	queue_msg) src=common/queue.c ;; safetensors) src=common/safetensors.c ;;
	esac
	$cc $flags $cov -fsanitize=fuzzer -o "$O/fuzz_$t" "tests/fuzz/fuzz_$t.c" "$O/lib.a" $libs
	mkdir -p "build-fuzz/corpus/$t"
	rm -f "$O/$t.profraw"
	LLVM_PROFILE_FILE="$O/$t.profraw" "$O/fuzz_$t" -runs=0 "build-fuzz/corpus/$t" \
		"tests/fuzz/corpus/$t" >/dev/null 2>&1
	$profdata merge -sparse "$O/$t.profraw" -o "$O/$t.profdata"
	echo "== $t ($src)"
	$llvmcov report "$O/fuzz_$t" -instr-profile="$O/$t.profdata" "$src" | tail -n 1 |
		awk '{printf "regions %s, functions %s, lines %s\n", $4, $7, $10}'
done
