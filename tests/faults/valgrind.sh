#!/bin/bash
# tests/faults/valgrind.sh - end-to-end runs under valgrind's memcheck
# (issue 7, "an end-to-end run under valgrind with no errors and no definite
# leaks"; docs/faults.md, "Valgrind").
#
#   bash tests/faults/valgrind.sh [experiment] [run]    (default: both)
#
# Run from the repository root after `make` (uses bin/, or MKE_BINDIR).
#   experiment  `mke experiment` on a shortened TwoMoon config (teacher,
#               pseudo-labels, two students), the whole process under memcheck
#   run         `mke run` with 2 MPI ranks through a private Redis: the
#               coordinator under memcheck, and one worker rank
#               (MKE_VG_RANK, default 1; "all" for both) under memcheck through
#               a wrapper named by MKE_WORKER; the other rank runs natively
#
# Each process writes its report to $MKE_VG_OUT (default /tmp/mke-valgrind)
# /NAME.vg.txt (a worker rank: worker-rankR-PID.vg.txt, one per job start:
# a rank with a memcheck error exits 99, and the coordinator restarts the
# job). A process passes with no memcheck error and no "definitely lost"
# block; "indirectly" and "possibly" lost blocks and reachable memory are not
# errors (the blocks Open MPI's suppressed leaks point to are "indirectly").
# Open MPI's own suppressions (/usr/share/openmpi/openmpi-valgrind.supp) and
# tests/faults/valgrind.supp (library noise, each entry with its reason) are
# applied. Exit status: 0 every process passed, 1 otherwise, 77 valgrind or
# mpirun is missing. Takes a few minutes on 2 cores (memcheck is ~30x slower).
set -u
ROOT=$(pwd)
BIN=${MKE_BINDIR:-bin}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
OUT=${MKE_VG_OUT:-/tmp/mke-valgrind}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
command -v valgrind >/dev/null 2>&1 || { echo "skip: valgrind is not installed"; exit 77; }
[ -x "$BIN/mke" ] && [ -x "$BIN/mke-worker" ] || { echo "error: build first (make): no $BIN/mke"; exit 2; }

T=$(mktemp -d /tmp/mke-vg-XXXXXX)
# a private copy of the binaries: a concurrent `make` must not swap them mid-run
mkdir -p "$T/bin" && cp "$BIN/mke" "$BIN/mke-worker" "$T/bin/" || exit 2
BIN=$T/bin
export MKE_RUNS="$T/runs" MKE_CACHE="$T/cache"
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1   # one thread: faster, fewer reports
cleanup() {
	pkill -9 -f "^[^ ]*(mpirun|mke-worker|valgrind[^ ]*) .*$T" 2>/dev/null || true
	pkill -9 -f "^redis-server unixsocket:$T" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$OUT"
rm -f "$OUT"/*.vg.txt

SUPP=(--suppressions="$ROOT/tests/faults/valgrind.supp")
[ -f /usr/share/openmpi/openmpi-valgrind.supp ] &&
	SUPP+=(--suppressions=/usr/share/openmpi/openmpi-valgrind.supp)
# --errors-for-leak-kinds=definite: a definite leak makes the exit status 99;
# --error-exitcode: so does any memcheck error
VG=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite
	--errors-for-leak-kinds=definite --error-exitcode=99 --num-callers=30
	--track-origins=yes "${SUPP[@]}")

# A shortened TwoMoon: one seed, two students, a few hundred epochs, shards
# of 30 rows (9 shards), checkpoints every 50 epochs.
"$PY" - "$ROOT/deploy/examples/twomoon.json" "$T/c.json" <<'PYEOF'
import json, os, sys
src, dst = sys.argv[1:3]
c = json.load(open(src))
c["data"]["root"] = os.path.join(os.path.dirname(os.path.abspath(src)), c["data"]["root"])
c["teacher"]["epochs"] = 200
c["student"]["epochs"] = 200
c["seeds"] = [81]
c["variants"] = {"um_student": {"model": "um"}, "mm_student": {"model": "mm"}}
c["pipeline"].update(shard_size=30, checkpoint_every=50)
json.dump(c, open(dst, "w"), indent=1)
PYEOF

# summary NAME: print the verdict of $OUT/NAME.vg.txt; 0 if it passed
summary() {
	local f="$OUT/$1.vg.txt" errs def
	if [ ! -s "$f" ]; then
		echo "FAIL  $1: no valgrind report ($f)"
		return 1
	fi
	errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -n 1)
	def=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 bytes in \2 blocks/p' "$f" | tail -n 1)
	if [ "${errs:-x}" = 0 ] && { [ -z "$def" ] || [ "${def%% *}" = 0 ]; }; then
		echo "ok    $1: 0 errors, definitely lost: ${def:-0 bytes} ($f)"
		return 0
	fi
	echo "FAIL  $1: ${errs:-?} errors, definitely lost: ${def:-?} ($f)"
	return 1
}

cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(experiment run)
rc=0
for c in "${cases[@]}"; do
	case $c in
	experiment)
		echo "== mke experiment under memcheck"
		"${VG[@]}" --log-file="$OUT/experiment.vg.txt" \
			"$BIN/mke" experiment "$T/c.json" --quiet >"$T/exp.out" 2>"$T/exp.err"
		r=$?
		cat "$T/exp.out"
		[ $r -eq 0 ] || { echo "  mke experiment exited $r"; tail -n 5 "$T/exp.err"; }
		summary experiment || rc=1
		;;
	run)
		command -v mpirun >/dev/null 2>&1 || { echo "skip: mpirun is not installed"; continue; }
		echo "== mke run --ranks 2 under memcheck (coordinator, worker rank ${MKE_VG_RANK:-1})"
		# the wrapper mpirun starts for each rank: memcheck on the chosen one
		cat >"$T/worker-vg" <<EOF
#!/bin/sh
r=\${OMPI_COMM_WORLD_RANK:-0}
if [ "${MKE_VG_RANK:-1}" = all ] || [ "\$r" = "${MKE_VG_RANK:-1}" ]; then
	exec $(printf '%q ' "${VG[@]}") --log-file="$OUT/worker-rank\$r-\$\$.vg.txt" "$BIN/mke-worker" "\$@"
fi
exec "$BIN/mke-worker" "\$@"
EOF
		chmod +x "$T/worker-vg"
		MKE_WORKER="$T/worker-vg" "${VG[@]}" --log-file="$OUT/coordinator.vg.txt" \
			"$BIN/mke" run "$T/c.json" --ranks 2 --run-dir "$T/run" >"$T/run.out" 2>"$T/run.err"
		r=$?
		st=$(sqlite3 -batch -noheader "$T/run/mke.db" "select status || ' ' || phase from runs" 2>/dev/null)
		echo "  mke run exited $r; run: ${st:-?}; integrity: $(sqlite3 -batch -noheader "$T/run/mke.db" 'pragma integrity_check' 2>/dev/null)"
		if [ $r -ne 0 ] || [ "$st" != "done done" ]; then
			tail -n 10 "$T/run.err"
			[ -f "$T/run/worker.log" ] && tail -n 10 "$T/run/worker.log"
			rc=1
		fi
		summary coordinator || rc=1
		for f in "$OUT"/worker-rank*.vg.txt; do
			[ -e "$f" ] || { echo "FAIL  worker: no valgrind report"; rc=1; continue; }
			n=$(basename "$f" .vg.txt)
			summary "$n" || rc=1
		done
		;;
	*) echo "error: unknown case '$c' (experiment, run)"; exit 2 ;;
	esac
done
exit $rc
