#!/bin/sh
# mke export, status, runs and cancel on what the pipeline really records.
#
# A short twomoon run (mpirun -np 2, private redis) gives a real database.
# A copy of it (sqlite3 .backup, so nothing in the WAL is missed) gets a
# second, "hostile" run: text with commas, quotes, CR LF, formula-like
# cells, negative numbers, NaN, a label phase in progress and live ranks.
# Every export (CSV and JSON, every table) is read back with Python's csv and
# json modules and compared cell by cell with SQLite; status --json is
# checked against numbers computed by hand.
. tests/integration/lib.sh
command -v sqlite3 >/dev/null || { echo "sqlite3 CLI not installed"; exit 77; }
CHECK="$PY $ROOT/tests/integration/export_check.py"

# ---- a real run -----------------------------------------------------------------
mkconfig deploy/examples/twomoon.json "$T/c.json" \
	'c["teacher"]["epochs"] = 200; c["student"]["epochs"] = 100; c["seeds"] = [81, 14]'
"$MKE" run "$T/c.json" --ranks 2 -q >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "mke run failed"; }
RUN=$(run_id_of "$T/out")
DB="$MKE_RUNS/$RUN/mke.db"
[ -n "$RUN" ] && [ -f "$DB" ] || fail "no run id or database from mke run"
ok "run $RUN"

"$MKE" runs >"$T/runs.txt" || fail "mke runs failed"
grep -q "^$RUN .* done .*vs teacher" "$T/runs.txt" || { cat "$T/runs.txt"; fail "mke runs does not list $RUN as done with a result"; }
"$MKE" runs --json | "$PY" -c 'import json,sys; r=json.load(sys.stdin); assert r[0]["id"]==sys.argv[1] and r[0]["status"]=="done", r' "$RUN" \
	|| fail "mke runs --json"
ok "mke runs lists the run"

"$MKE" status "$RUN" --json >"$T/status.json" || fail "mke status --json failed"
$CHECK status-real "$DB" "$RUN" "$T/status.json" || fail "status --json of the real run"
"$MKE" status >"$T/status.txt" || fail "mke status (newest run) failed"
grep -q "^run  *$RUN" "$T/status.txt" || fail "mke status without RUN does not show the newest run"
grep -q "^result .*teacher" "$T/status.txt" || { cat "$T/status.txt"; fail "mke status shows no result line"; }
# a unique prefix of the id is enough
"$MKE" status "$(echo "$RUN" | cut -c1-12)" --json >/dev/null || fail "mke status with a prefix of the run id"
# --watch on a finished run prints once and returns
timeout 10 "$MKE" status "$RUN" --watch 1 >"$T/watch.txt" || fail "mke status --watch on a done run"
[ "$(grep -c '^run ' "$T/watch.txt")" = 1 ] || fail "--watch redrew a finished run"

for t in metrics shards params events runs; do
	"$MKE" export "$RUN" --$t --format csv -o "$T/$t.csv" 2>/dev/null || fail "export --$t csv"
	"$MKE" export "$RUN" --$t --format json >"$T/$t.json" || fail "export --$t json"
	$CHECK compare "$DB" "$RUN" $t "$T/$t.csv" "$T/$t.json" || fail "export --$t of the real run"
done
[ "$(stat -c %a "$T/metrics.csv")" = 640 ] || fail "export -o file mode $(stat -c %a "$T/metrics.csv"), want 640"
ls "$T" | grep -q '\.tmp\.' && fail "export left a temp file"
ok "exports of the real run equal SQLite"

"$MKE" cancel "$RUN" >"$T/cancel.txt" || fail "cancel of a finished run should exit 0"
grep -q "already ended" "$T/cancel.txt" || fail "cancel of a finished run: $(cat "$T/cancel.txt")"

# ---- hostile text in a shared database ---------------------------------------------
SH="$T/shared.db"
sqlite3 "$DB" ".backup '$SH'" || fail "sqlite3 .backup"
NOW=$("$PY" -c 'import time; print(int(time.time() * 1000))')
H=hostile-run.1
$CHECK hostile "$SH" "$H" "$NOW" || fail "making the hostile run"
for t in metrics shards params events runs; do
	"$MKE" export "$H" --db "$SH" --$t --format csv -o "$T/h-$t.csv" 2>/dev/null || fail "export --$t csv (hostile)"
	"$MKE" export "$H" --db "$SH" --$t --format json -o "$T/h-$t.json" 2>/dev/null || fail "export --$t json (hostile)"
	$CHECK compare "$SH" "$H" $t "$T/h-$t.csv" "$T/h-$t.json" || fail "export --$t of the hostile run"
done
# spot checks of the raw CSV: formulas neutralized, numbers left alone
grep -q "^hostile-run.1,\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\",running," "$T/h-runs.csv" \
	|| { cat "$T/h-runs.csv"; fail "formula in a run name not neutralized"; }
grep -q "^hostile-run.1,,\"x,y\",-3,-1.5,[0-9]*$(printf '\r')\$" "$T/h-metrics.csv" \
	|| fail "negative numbers in numeric columns must stay numbers"
grep -q "^hostile-run.1,'+cmd,'-k,2,1e-300," "$T/h-metrics.csv" || fail "+cmd / -k not neutralized"
grep -q "^hostile-run.1,neg,-5" "$T/h-params.csv" || fail "a plain negative number in a text cell was changed"
grep -q "^hostile-run.1,formula,'-2+3" "$T/h-params.csv" || fail "-2+3 not neutralized"
ok "formula-like cells neutralized, numbers kept"

MKE_DB="$SH" "$MKE" status "$H" --json >"$T/h-status.json" || fail "mke status of the hostile run (via MKE_DB)"
$CHECK status-hostile "$H" "$NOW" "$T/h-status.json" || fail "status --json of the hostile run"
"$MKE" status "$H" --db "$SH" >"$T/h-status.txt" || fail "mke status (text) of the hostile run"
grep -q "label ETA" "$T/h-status.txt" || { cat "$T/h-status.txt"; fail "no label ETA in status"; }
"$MKE" runs --db "$SH" --json | "$PY" -c '
import json, sys
ids = [r["id"] for r in json.load(sys.stdin)]
assert ids == [sys.argv[1], sys.argv[2]], ids' "$RUN" "$H" || fail "mke runs --db lists both runs, newest first"
"$MKE" export --runs --db "$SH" --format json | "$PY" -c '
import json, sys
assert [r["id"] for r in json.load(sys.stdin)] == [sys.argv[1], sys.argv[2]]' "$RUN" "$H" || fail "export --runs without RUN"
ok "status, runs and export --runs on a shared database"

# ---- errors ----------------------------------------------------------------------------
set +e
"$MKE" cancel "$H" --db "$SH" >/dev/null 2>"$T/e1"; rc=$?
[ $rc = 1 ] && grep -q "coordinator is probably dead" "$T/e1" || { cat "$T/e1"; fail "cancel with Redis unreachable: exit $rc"; }
"$MKE" status nosuch-run >/dev/null 2>"$T/e2"; rc=$?
[ $rc = 1 ] && grep -q "^error: no run 'nosuch-run' in '.*nosuch-run/mke.db'; see 'mke runs'" "$T/e2" \
	|| { cat "$T/e2"; fail "status of a missing run: exit $rc"; }
"$MKE" export "$RUN" --metrics --shards >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || fail "two tables at once: exit $rc, want 2"
"$MKE" export "$RUN" --format xml >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || fail "--format xml: exit $rc, want 2"
"$MKE" status ../etc >/dev/null 2>&1; rc=$?
[ $rc = 1 ] || fail "a run id with a slash: exit $rc, want 1"
set -e
ok "errors: exit codes and messages"
