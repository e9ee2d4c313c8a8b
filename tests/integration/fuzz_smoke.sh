#!/bin/sh
# fuzz_smoke.sh - build the libFuzzer targets (tests/fuzz/) and fuzz each one
# for ${MKE_FUZZ_SECONDS:-30} seconds from its committed seed corpus; any
# crash, sanitizer report, leak, timeout or out-of-memory fails the test.
# Skips (77) when clang or libFuzzer (libclang-rt-14-dev) is missing; `make
# deps` installs both. Targets run two at a time: about 10 x 30 s / 2 plus the
# sanitized build of the library (~1 min on 2 cores).
set -u
secs=${MKE_FUZZ_SECONDS:-30}
sh tests/fuzz/run.sh -t "$secs" -j "${MKE_FUZZ_JOBS:-2}"
rc=$?
if [ "$rc" -eq 77 ]; then
	exit 77
fi
if [ "$rc" -ne 0 ]; then
	echo "fuzz smoke: a target crashed; reproduce with build-fuzz/fuzz_NAME INPUT (docs/fuzzing.md)"
	exit 1
fi
echo "fuzz smoke: no crash in ${secs}s per target"
