# lib.sh - shared by the integration tests (sourced). Each test is a shell
# script run from the repository root; exit 0 passes, 77 skips, else fails.
set -eu
ROOT=${MKE_ROOT:-$(pwd)}
BIN=${MKE_BINDIR:-bin}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
MKE="$BIN/mke"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
T=$(mktemp -d /tmp/mke-it-XXXXXX)
export MKE_RUNS="$T/runs"
export MKE_CACHE="$T/cache"   # URL cells (docs/remote-data.md): never the user's cache
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Under `make check SANITIZE=...` the MPI worker runs sanitized too; Open MPI
# and OpenBLAS leak at exit (from dlopen'ed modules that LSan cannot name), so
# leak checking stays with the unit tests; every other check stays on.
case "$BIN" in *build-san*) export ASAN_OPTIONS=detect_leaks=0 ;; esac
cleanup() {
	# stop anything a test left behind (the coordinator stops its own Redis)
	for p in $(cat "$T"/*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	pkill -9 -f "^[^ ]*(mpirun|mke-worker) .*$T" 2>/dev/null || true
	pkill -9 -f "^redis-server unixsocket:$T" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# A copy of a config with changes: mkconfig SRC DST 'python-expression-on-c'
mkconfig() {
	"$PY" - "$1" "$2" "$3" "$ROOT" <<'PYEOF'
import json, os, sys
src, dst, expr, root = sys.argv[1:5]
c = json.load(open(src))
c["data"]["root"] = os.path.join(os.path.dirname(os.path.abspath(src)), c["data"].get("root", "."))
exec(expr)
json.dump(c, open(dst, "w"), indent=1)
PYEOF
}

# sql DB QUERY: one value per line
sql() { sqlite3 -batch -noheader "$1" "$2"; }

# run_id_of LOG: the id `mke run` printed
run_id_of() { sed -n 's/^run \([^ ]*\)$/\1/p' "$1" | head -n 1; }

# wait_for SECONDS COMMAND...: poll until the command succeeds
wait_for() {
	local limit=$1; shift
	local i=0
	while ! "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -gt $((limit * 10)) ] && return 1
		sleep 0.1
	done
	return 0
}

# run_in_background CONFIG DIR [ARG...]: `mke run CONFIG --ranks 2 --run-dir
# DIR ARG...` in the background, stdout in DIR.out, stderr in DIR.err; sets
# pid (also kept for cleanup) and DB (DIR/mke.db)
run_in_background() {
	local cfg=$1 dir=$2; shift 2
	"$MKE" run "$cfg" --ranks 2 --run-dir "$dir" "$@" >"$dir.out" 2>"$dir.err" &
	pid=$!
	echo $pid >"$T/coord.pid"
	DB="$dir/mke.db"
}

# wait_phase DB PHASE [SECONDS]: until the run in DB is in PHASE (default 120 s)
wait_phase() {
	wait_for "${3:-120}" sh -c "[ \"\$(sqlite3 $1 \"select phase from runs\" 2>/dev/null)\" = $2 ]" ||
		fail "never reached the $2 phase: $(tail -n 3 "${1%/mke.db}.err" 2>/dev/null)"
}

# start_redis [CONFIG-LINE...]: a private redis-server on $T/redis.sock (no
# TCP port, no persistence, extra config lines appended, the file 0600), its
# pid in $T/redis.pid for cleanup; fails the test if it does not come up
start_redis() {
	{
		printf 'port 0\nunixsocket %s/redis.sock\nunixsocketperm 700\ndir %s\nsave ""\nappendonly no\n' "$T" "$T"
		for l in "$@"; do printf '%s\n' "$l"; done
	} >"$T/redis.conf"
	chmod 600 "$T/redis.conf"
	redis-server "$T/redis.conf" >"$T/redis.log" 2>&1 &
	echo $! >"$T/redis.pid"
	wait_for 10 test -S "$T/redis.sock" || fail "redis-server did not start: $(tail -n 3 "$T/redis.log")"
}

# small_example KIND: the small version of deploy/examples/KIND.json end to
# end - `mke gen` files in the dataset's native format, `mke import`, `mke
# split` (deploy/examples/prepare-small.sh), then `mke run --ranks 2` through
# a private redis-server and mpirun -np 2. Checks the run is done with every
# shard labeled and prints the paper's comparison; sets TEACHER, MM, UM, SUP
# (the task's test metric) for the caller's checks.
small_example() {
	MKE="$MKE" sh "$ROOT/deploy/examples/prepare-small.sh" "$1" "$T/data" >"$T/prepare.log" 2>&1 ||
		{ tail -n 20 "$T/prepare.log"; fail "prepare-small.sh $1"; }
	mkconfig "$ROOT/deploy/examples/$1-small.json" "$T/c.json" "c['data']['root'] = os.path.join('$T/data', os.path.relpath(c['data']['root'], os.path.join(os.path.dirname(os.path.abspath(src)), 'small/$1')))"
	"$MKE" run "$T/c.json" --ranks 2 --run-dir "$T/run" --quiet >"$T/out" 2>"$T/err" ||
		{ tail -n 30 "$T/err"; fail "mke run $1-small failed"; }
	DB="$T/run/mke.db"
	[ "$(sql "$DB" "select status || ' ' || phase from runs")" = "done done" ] || fail "run not done"
	[ "$(sql "$DB" "select count(*) from shards where state <> 'done'")" = 0 ] || fail "shards not done"
	metric() { sql "$DB" "select printf('%.2f', 100*value) from metrics where variant = '$1' and key = 'test_accuracy' order by step desc limit 1"; }
	TEACHER=$(metric teacher)
	UM=$(metric um_student/0)
	MM=$(metric mm_student/0)
	SUP=$(metric mm_student_sup/0)
	echo "$1-small: teacher $TEACHER, um_student $UM, noisy_student $(metric noisy_student/0), mm_student_noreg $(metric mm_student_noreg/0), mm_student $MM, mm_student_sup $SUP; pseudo-labels $(sql "$DB" "select printf('%.2f', 100*value) from metrics where variant = 'teacher' and key = 'pseudo_label_accuracy' limit 1")"
	[ -n "$TEACHER" ] && [ -n "$MM" ] || fail "metrics missing"
}

# gt A B: A > B for decimal numbers
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
