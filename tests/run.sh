#!/bin/sh
# Run the test suite and end with "N passed, N failed".
#   tests/run.sh unit    unit test binaries in $MKE_BUILD/tests
#   tests/run.sh all     unit + integration (tests/integration/*.sh)
# Unit binaries print PASS/FAIL lines per test; an integration script is one
# test: exit 0 passes, 77 skips (a component the machine lacks), else fails.
set -u
mode=${1:-all}
build=${MKE_BUILD:-build}
export MKE_BINDIR=${MKE_BINDIR:-bin}
export MKE_ROOT=$(pwd)
pass=0; fail=0; skip=0
log=$(mktemp)
for t in "$build"/tests/test_*; do
	[ -x "$t" ] || continue
	"$t" >"$log" 2>&1
	rc=$?
	cat "$log"
	p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
	pass=$((pass + p)); fail=$((fail + f))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL $(basename "$t") (exit $rc)"
		fail=$((fail + 1))
	fi
done
if [ "$mode" = all ]; then
	for t in tests/integration/*.sh; do
		[ "$(basename "$t")" = lib.sh ] && continue
		[ -f "$t" ] || continue
		name=$(basename "$t" .sh)
		start=$(date +%s)
		sh "$t" >"$log" 2>&1
		rc=$?
		secs=$(( $(date +%s) - start ))
		if [ "$rc" -eq 0 ]; then
			echo "PASS $name (${secs}s)"; pass=$((pass + 1))
		elif [ "$rc" -eq 77 ]; then
			echo "SKIP $name: $(tail -n 1 "$log")"; skip=$((skip + 1))
		else
			sed 's/^/  | /' "$log" | tail -n 40
			echo "FAIL $name (exit $rc, ${secs}s)"; fail=$((fail + 1))
		fi
	done
fi
rm -f "$log"
if [ "$skip" -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
