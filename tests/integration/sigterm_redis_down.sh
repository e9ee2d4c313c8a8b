#!/bin/sh
# SIGTERM to `mke run` while its Redis is gone: the coordinator stops trying
# to reconnect at once (it does not sit out the reconnect backoff), gives the
# workers CANCEL_WAIT_S (15 s) to see a cancel they cannot read, stops the
# job itself, and exits 3 with the run recorded as cancelled; no worker is
# left behind; the database is intact and `mke resume` finishes the run.
. tests/integration/lib.sh

EPOCHS=600000
case "$BIN" in *build-san*) EPOCHS=60000 ;; esac
mkconfig deploy/examples/twomoon.json "$T/c.json" 'c["seeds"] = [17]; c["student"]["epochs"] = '$EPOCHS'; c["variants"] = {"um_student": {"model": "um"}}'
run_in_background "$T/c.json" "$T/run"
wait_phase "$DB" student
rpid=$(cat "$T/run/redis/redis.pid")
kill -9 "$rpid"
ok "private redis-server (pid $rpid) killed in the student phase"
sleep 1
t0=$(date +%s)
kill -TERM $pid
rc=0
wait $pid || rc=$?
t1=$(date +%s)
[ "$rc" = 3 ] || { tail -n 20 "$T/run.err"; fail "exit status $rc, expected 3 (cancelled)"; }
# CANCEL_WAIT_S plus the job's SIGTERM/SIGKILL grace (5 s) and slack; the
# reconnect backoff alone used to take about 40 s
[ $((t1 - t0)) -le 30 ] || fail "took $((t1 - t0)) s to stop after SIGTERM"
[ "$(sql "$DB" "select status from runs")" = cancelled ] || fail "run not recorded as cancelled"
sql "$DB" "select error from runs" | grep -q "signal 15" || fail "the cancel reason does not name the signal"
RUN=$(run_id_of "$T/run.out")
wait_for 10 sh -c "! pgrep -f '^[^ ]*(mpirun|mke-worker) .*--run [$(echo "$RUN" | cut -c1)]$(echo "$RUN" | cut -c2-)'" ||
	fail "workers outlived the coordinator"
[ "$(sql "$DB" "pragma integrity_check")" = ok ] || fail "integrity"
ok "stopped $((t1 - t0)) s after SIGTERM with Redis down: exit 3, cancelled, no workers left, integrity ok"

# the cancelled run continues: a fresh private Redis (from its AOF), the
# cancel of the last attempt cleared, the student from its checkpoint
"$MKE" resume "$RUN" --db "$DB" >"$T/out2" 2>"$T/err2" || { tail -n 30 "$T/err2"; fail "resume of the cancelled run failed"; }
[ "$(sql "$DB" "select status || ' ' || phase from runs")" = "done done" ] || fail "not done after resume"
[ "$(sql "$DB" "select count(*) from metrics where key = 'test_accuracy' and variant like '%/%'")" = 1 ] || fail "student metrics"
ok "mke resume finished the cancelled run"
