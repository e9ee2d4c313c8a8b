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
