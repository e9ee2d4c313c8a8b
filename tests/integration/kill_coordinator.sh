#!/bin/sh
# The coordinator killed with SIGKILL in the middle of the student phase;
# `mke resume` finishes the run without redoing finished shards.
. tests/integration/lib.sh

# a student phase of several seconds, so that the kill lands inside it on a
# fast machine too (60000 epochs took under a second in session 10; the
# sanitized build is ~10x slower)
EPOCHS=600000
case "$BIN" in *build-san*) EPOCHS=60000 ;; esac
mkconfig deploy/examples/twomoon.json "$T/c.json" 'c["seeds"] = [17]; c["student"]["epochs"] = '$EPOCHS'; c["variants"] = {"um_student": {"model": "um"}}; c["pipeline"]["checkpoint_every"] = 500'
run_in_background "$T/c.json" "$T/run"
wait_phase "$DB" student
wait_for 60 test -f "$T/run/students/um_student-seed17.safetensors" || fail "no student checkpoint"

kill -9 $pid
wait $pid 2>/dev/null || true
RUN=$(run_id_of "$T/run.out")
ok "coordinator of $RUN killed in the student phase"
before=$(sql "$DB" "select group_concat(shard_id || ':' || attempts || ':' || sha256, ',') from shards order by shard_id")
wait_for 20 sh -c "! pgrep -f '^[^ ]*(mpirun|mke-worker) .*--run [$(echo "$RUN" | cut -c1)]$(echo "$RUN" | cut -c2-)'" || fail "workers outlived the coordinator"
"$MKE" resume "$RUN" --db "$DB" >"$T/out2" 2>"$T/err2" || { tail -n 30 "$T/err2"; fail "resume failed"; }
[ "$(sql "$DB" "select status || ' ' || phase from runs")" = "done done" ] || fail "not done after resume"
after=$(sql "$DB" "select group_concat(shard_id || ':' || attempts || ':' || sha256, ',') from shards order by shard_id")
[ "$before" = "$after" ] || fail "shards changed across the resume"
[ "$(sql "$DB" "select count(*) from metrics where key = 'test_accuracy' and variant like '%/%'")" = 1 ] || fail "student metrics"
[ "$(sql "$DB" "select count(*) from events where kind = 'resume'")" = 1 ] || fail "resume not recorded"
sql "$DB" "select payload from events where kind = 'log'" | grep -q "resumed from its checkpoint at epoch" || fail "no student resumed from a checkpoint"
[ "$(sql "$DB" "pragma integrity_check")" = ok ] || fail "integrity"
ok "resumed to done; no shard redone; integrity ok"
