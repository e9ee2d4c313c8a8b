#!/bin/sh
# `mke cancel RUN` stops a run cleanly: the workers exit, the coordinator
# records status cancelled and stops its private Redis.
. tests/integration/lib.sh

mkconfig deploy/examples/twomoon.json "$T/c.json" 'c["seeds"] = [5]; c["student"]["epochs"] = 200000; c["variants"] = {"mm_student": {"model": "mm"}}'
run_in_background "$T/c.json" "$T/run"
wait_phase "$DB" student
RUN=$(run_id_of "$T/run.out")
"$MKE" cancel "$RUN" --db "$DB" --reason "test cancel" || fail "mke cancel failed"
rc=0
wait $pid || rc=$?
[ "$rc" = 3 ] || { tail -n 20 "$T/run.err"; fail "mke run exited $rc, want 3 (cancelled)"; }
[ "$(sql "$DB" "select status from runs")" = cancelled ] || fail "status $(sql "$DB" "select status from runs")"
pgrep -f "^[^ ]*(mpirun|mke-worker) .*$T" >/dev/null && fail "workers still running"
pgrep -f "^redis-server unixsocket:$T" >/dev/null && fail "private redis still running"
[ "$(sql "$DB" "select count(*) from phases where status = 'cancelled'")" = 1 ] || fail "the phase is not marked cancelled"
ok "cancelled: workers gone, redis stopped, status recorded"
