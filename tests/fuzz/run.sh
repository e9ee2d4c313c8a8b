#!/bin/sh
# tests/fuzz/run.sh - build the libFuzzer targets and fuzz each for a while.
#
#   sh tests/fuzz/run.sh [-t SECONDS] [-j JOBS] [TARGET...]
#
# Run from the repository root. TARGET is a name such as npy (default: every
# tests/fuzz/fuzz_*.c). Each target runs -max_total_time=SECONDS (default
# $FUZZ_SECONDS, else 300), JOBS targets at a time (default: the number of
# CPUs). Inputs found along the way are kept in build-fuzz/corpus/NAME (not
# committed); the committed seeds in tests/fuzz/corpus/NAME are only read.
# A crash leaves its input in build-fuzz/artifacts/NAME/ and the report in
# build-fuzz/logs/NAME.log, and makes the script exit 1.
#
# Exit status: 0 no crash, 1 a crash (or a target that did not run), 77
# clang/libFuzzer is missing (nothing was run).
set -u
secs=${FUZZ_SECONDS:-300}
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
while getopts t:j: o; do
	case $o in
	t) secs=$OPTARG ;;
	j) jobs=$OPTARG ;;
	*) echo "usage: $0 [-t SECONDS] [-j JOBS] [TARGET...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
O=build-fuzz
cc=${FUZZ_CC:-clang}

# One target (called back through xargs below).
if [ "${MKE_FUZZ_ONE:-}" ]; then
	name=$MKE_FUZZ_ONE
	mkdir -p "$O/corpus/$name" "$O/artifacts/$name" "$O/logs"
	log=$O/logs/$name.log
	# -rss_limit_mb: the parsers must refuse, not allocate, for hostile sizes;
	# -timeout: a single input taking 10 s is a hang worth a report.
	"$O/fuzz_$name" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$O/artifacts/$name/" \
		"$O/corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	ft=$(grep -ao 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	if [ "$rc" -eq 0 ]; then
		echo "ok    $name: ${execs:-?} executions in ${secs}s, cov ${cov:-?}, ft ${ft:-?}, corpus $(ls "$O/corpus/$name" | wc -l)"
	else
		echo "CRASH $name (exit $rc) after ${execs:-?} executions; input: $(ls "$O/artifacts/$name" | head -n 1); report: $log"
		grep -a -m 1 -E 'ERROR: (AddressSanitizer|libFuzzer)|runtime error' "$log" | sed 's/^/      /'
		grep -a -m 3 -E '^ *#[0-9]+ 0x' "$log" | sed 's/^/      /'
	fi
	exit "$rc"
fi

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "skip: $cc is not installed (make deps installs clang and libclang-rt-14-dev)"
	exit 77
fi
probe=$(mktemp -d)
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" >/dev/null 2>&1; then
	rm -rf "$probe"
	echo "skip: $cc cannot link -fsanitize=fuzzer,address,undefined (libFuzzer missing: install libclang-rt-14-dev)"
	exit 77
fi
rm -rf "$probe"

if ! make --no-print-directory -s -f tests/fuzz/fuzz.mk -j"$jobs" FUZZ_CC="$cc"; then
	echo "error: building the fuzz targets failed"
	exit 1
fi

if [ $# -eq 0 ]; then
	set -- $(ls tests/fuzz/fuzz_*.c | sed 's|tests/fuzz/fuzz_\(.*\)\.c|\1|')
fi
for t in "$@"; do
	if [ ! -x "$O/fuzz_$t" ]; then
		echo "error: no fuzz target '$t' (tests/fuzz/fuzz_$t.c)"
		exit 2
	fi
done
echo "fuzzing $# targets for ${secs}s each, $jobs at a time"
printf '%s\n' "$@" | MKE_FUZZ_ONE= xargs -P "$jobs" -I{} env MKE_FUZZ_ONE={} FUZZ_SECONDS="$secs" sh "$0"
rc=$?
# xargs exits 123 when any command failed
[ "$rc" -eq 0 ] || exit 1
exit 0
