#!/bin/sh
# A worker rank killed with SIGKILL in the middle of the label phase: the
# coordinator restarts the job, expired leases are redelivered, the run
# completes, every sample has exactly one pseudo-label, the attempt is recorded.
. tests/integration/lib.sh

mkconfig deploy/examples/twomoon.json "$T/c.json" 'c["seeds"] = [3]; c["variants"] = {"mm_student": {"model": "mm"}}; c["pipeline"].update(shard_size=10, lease_ms=1500, heartbeat_ms=300)'
MKE_TEST_LABEL_DELAY_MS=150 "$MKE" run "$T/c.json" --ranks 2 --run-dir "$T/run" >"$T/out" 2>"$T/err" &
echo $! >"$T/coord.pid"
DB="$T/run/mke.db"
wait_for 60 sh -c "[ \"\$(sqlite3 $DB \"select count(*) from shards where state = 'done'\" 2>/dev/null)\" -ge 4 ]" || fail "label phase never progressed"
# a rank, not mpirun (whose command line also names mke-worker)
victim=$(pgrep -f "^[^ ]*mke-worker --run $(run_id_of "$T/out")" | head -n 1)
[ -n "$victim" ] || fail "no worker rank found"
kill -9 "$victim"
ok "killed worker rank pid $victim mid-label"
wait "$(cat "$T/coord.pid")" || { tail -n 30 "$T/err"; fail "run failed after the kill"; }
[ "$(sql "$DB" "select status from runs")" = done ] || fail "run not done"
[ "$(sql "$DB" "select count(*) from shards where state <> 'done'")" = 0 ] || fail "shards left"
[ "$(sql "$DB" "select sum(row_count) from shards")" = 270 ] || fail "rows"
[ "$(sql "$DB" "select count(*) from events where kind = 'job_exit'")" -ge 1 ] || fail "the job's death is not recorded"
redone=$(sql "$DB" "select count(*) from shards where attempts > 1")
ok "run done; $redone shard(s) delivered again after the kill; job_exit recorded"
n=$(ls "$T/run/labels"/shard-*.npy | wc -l)
[ "$n" = 27 ] || fail "$n shard files, want 27"
ls "$T/run/labels" | grep -q tmp && fail "a temp file was left"
ok "27 shard files, no temp files"
