#!/bin/bash
# tests/faults/run.sh - fault injection (docs/faults.md). Run from the
# repository root: `make faults`, or `bash tests/faults/run.sh [CASE...]`.
#   MKE_FAULT_REPEATS   runs per case (default 20 for the kill cases 1, 2, 4;
#                       5 for 3 and 5)
#   MKE_FAULT_CASES     which cases (default "1 2 3 4 5"; also the arguments)
#   C5_WAIT             case 5: seconds the run may take to exit once the disk
#                       is full (default 30)
#   C5_RESUME_WAIT      case 5: seconds the resume after freeing space may
#                       take (default 600; it retrains the student)
# Each case prints "held K of N"; a summary table follows; exit 1 if any run
# did not hold, 77 if every case selected was skipped.
. tests/integration/lib.sh
set +e
# a private copy of the binaries: a concurrent `make` must not swap them mid-run
mkdir -p "$T/bin" && cp "$BIN/mke" "$BIN/mke-worker" "$T/bin/" || { echo "no binaries in $BIN (make all)" >&2; exit 2; }
MKE="$T/bin/mke"; export MKE_WORKER="$T/bin/mke-worker"
FAULTS="$ROOT/tests/faults"
DATA="$ROOT/deploy/data/twomoon"
CASES=${*:-${MKE_FAULT_CASES:-1 2 3 4 5}}
KEEP=${MKE_FAULT_KEEP:-}   # set: keep the temp dir of failed runs (copied to /tmp)

# rnd LO HI: a random integer in [LO, HI]
rnd() { echo $(($1 + ($RANDOM * 32768 + $RANDOM) % ($2 - $1 + 1))); }
# ms N: sleep N milliseconds
ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
repeats() { echo "${MKE_FAULT_REPEATS:-$1}"; }
done_count() { sqlite3 "$1" "select count(*) from shards where state = 'done'" 2>/dev/null || echo 0; }
phase_of() { sqlite3 "$1" "select phase from runs" 2>/dev/null; }
# wait_done_ge DB K SECONDS
wait_done_ge() {
	local i=0
	while [ "$(done_count "$1")" -lt "$2" ] 2>/dev/null || [ -z "$(done_count "$1")" ]; do
		i=$((i + 1)); [ "$i" -gt $(($3 * 20)) ] && return 1; sleep 0.05
	done
}
wait_phase() {   # DB PHASE SECONDS
	local i=0
	while [ "$(phase_of "$1")" != "$2" ]; do
		i=$((i + 1)); [ "$i" -gt $(($3 * 20)) ] && return 1; sleep 0.05
	done
}
# await PID SECONDS: wait for a child; on timeout SIGKILL it and return 124
await() {
	local i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt $(($2 * 10)) ]; then kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; return 124; fi
		sleep 0.1
	done
	wait "$1"
}
integrity() { [ "$(sqlite3 "$1" "pragma integrity_check" 2>&1)" = ok ] || fail "integrity_check: $(sqlite3 "$1" "pragma integrity_check" 2>&1 | head -n 3)"; }
ranks_of() { pgrep -f "^[^ ]*mke-worker --run $1" || true; }
mpirun_of() { pgrep -f "^[^ ]*mpirun .*mke-worker --run $1" || true; }
job_gone() { ! pgrep -f "^[^ ]*(mpirun|mke-worker) .*--run $1" >/dev/null; }
# shared redis-server with AOF on a unix socket in DIR: start_redis DIR
start_redis() {
	[ -f "$1/redis.conf" ] || cat >"$1/redis.conf" <<CONF
port 0
unixsocket $1/redis.sock
unixsocketperm 700
dir $1
save ""
appendonly yes
appendfsync everysec
CONF
	rm -f "$1/redis.sock"
	(exec redis-server "$1/redis.conf" >>"$1/redis.log" 2>&1) &
	echo $! >"$1/redis.pid"
	cp "$1/redis.pid" "$T/redis-$(basename "$1")-$!.pid"
	wait_for 10 test -S "$1/redis.sock"
}
stop_redis() { [ -f "$1/redis.pid" ] && kill -9 "$(cat "$1/redis.pid")" 2>/dev/null; wait "$(cat "$1/redis.pid")" 2>/dev/null || true; }
# common end-of-run checks for the label-phase cases: DB RUNDIR
check_run() {
	[ "$(sqlite3 "$1" "select status || ' ' || phase from runs")" = "done done" ] || fail "run not done: $(sqlite3 "$1" "select status, phase from runs")"
	[ "$(sqlite3 "$1" "select count(*) from shards")" = 27 ] || fail "shard count $(sqlite3 "$1" "select count(*) from shards")"
	[ "$(sqlite3 "$1" "select count(*) from shards where state <> 'done'")" = 0 ] || fail "shards not done: $(sqlite3 "$1" "select shard_id || ':' || state from shards where state <> 'done'" | tr '\n' ' ')"
	[ "$(sqlite3 "$1" "select sum(row_count) from shards")" = 270 ] || fail "sum(row_count) $(sqlite3 "$1" "select sum(row_count) from shards") != 270"
	"$PY" "$FAULTS/check_labels.py" "$1" "$2" "$DATA/unlabeled.csv" || fail "pseudo-labels"
	integrity "$1"
}
LABELCFG='c["seeds"] = [3]; c["variants"] = {"mm_student": {"model": "mm"}}; c["student"]["epochs"] = 500; c["pipeline"].update(shard_size=10, lease_ms=1500, heartbeat_ms=300)'

# ---- case 1: SIGKILL of one worker rank mid-label -------------------------
case1() {
	local D=$1
	mkconfig deploy/examples/twomoon.json "$D/c.json" "$LABELCFG"
	MKE_TEST_LABEL_DELAY_MS=150 "$MKE" run "$D/c.json" --ranks 2 --run-dir "$D/run" >"$D/out" 2>"$D/err" &
	local pid=$!; echo $pid >"$T/c1-$pid.pid"
	local DB="$D/run/mke.db" k=$(rnd 0 22)
	wait_phase "$DB" label 60 || fail "never reached the label phase"
	wait_done_ge "$DB" "$k" 60 || fail "label phase never reached $k shards"
	ms "$(rnd 0 150)"
	local RUN=$(run_id_of "$D/out")
	local victim=$(ranks_of "$RUN" | shuf -n 1)
	[ -n "$victim" ] || fail "no worker rank found"
	local at=$(done_count "$DB")
	[ "$(phase_of "$DB")" = label ] || fail "label phase already over before the kill (k=$k)"
	kill -9 "$victim"
	echo "  killed rank pid $victim after $at/27 shards done"
	await $pid 180 || { tail -n 20 "$D/err"; fail "run failed (or hung: exit 124) after the kill"; }
	check_run "$DB" "$D/run"
	[ "$(sqlite3 "$DB" "select count(*) from events where kind = 'job_exit'")" -ge 1 ] || fail "job_exit not recorded"
	local re=$(sqlite3 "$DB" "select count(*) from shards where attempts > 1")
	[ "$(sqlite3 "$DB" "select count(*) from shards where attempts < 1")" = 0 ] || fail "a done shard with attempts 0"
	[ "$re" -ge 1 ] || fail "no redelivery recorded (attempts > 1) after the kill"
	echo "  done; $re shard(s) with attempts > 1; job_exit recorded; integrity ok"
}

# ---- case 2: SIGKILL of the whole MPI job mid-student ---------------------
STUDCFG='c["seeds"] = [5]; c["variants"] = {"um_student": {"model": "um"}, "mm_student": {"model": "mm"}}; c["student"]["epochs"] = 30000; c["pipeline"].update(checkpoint_every=2000)'
accs() { sqlite3 "$1" "select variant || '=' || value from metrics where key = 'test_accuracy' and variant like '%/%' order by variant"; }
case2_ref() {
	local D=$T/ref2; mkdir -p "$D"
	mkconfig deploy/examples/twomoon.json "$D/c.json" "$STUDCFG"
	"$MKE" run "$D/c.json" --ranks 2 --run-dir "$D/run" >"$D/out" 2>"$D/err" &
	local pid=$! t1 t2
	# measure the student phase: the kill lands in its first 70 %
	wait_phase "$D/run/mke.db" student 60; t1=$(date +%s%N)
	while [ "$(phase_of "$D/run/mke.db")" = student ]; do sleep 0.02; done; t2=$(date +%s%N)
	wait $pid || { tail "$D/err"; echo "reference run failed"; return 1; }
	REF2_MS=$(((t2 - t1) / 1000000))
	STUD_MS=${STUD_MS:-$((REF2_MS * 7 / 10))}
	REF2=$(accs "$D/run/mke.db")
	echo "reference (uninterrupted, student phase ${REF2_MS} ms; kills within 0-${STUD_MS} ms of it): $(echo $REF2)"
	[ -n "$REF2" ]
}
case2() {
	local D=$1
	mkconfig deploy/examples/twomoon.json "$D/c.json" "$STUDCFG"
	"$MKE" run "$D/c.json" --ranks 2 --run-dir "$D/run" >"$D/out" 2>"$D/err" &
	local pid=$!; echo $pid >"$T/c2-$pid.pid"
	local DB="$D/run/mke.db"
	wait_phase "$DB" student 60 || fail "never reached the student phase"
	ms "$(rnd 0 "${STUD_MS:-2000}")"
	local RUN=$(run_id_of "$D/out") ph
	ph=$(phase_of "$DB")
	[ "$ph" = student ] || fail "student phase over before the kill (phase $ph); STUD_MS too long"
	local pids="$(mpirun_of "$RUN") $(ranks_of "$RUN")"
	[ -n "$(echo $pids)" ] || fail "no job found"
	kill -9 $pids 2>/dev/null || fail "the job ended before the kill"
	echo "  killed the job (pids $(echo $pids)) in phase $ph, $(ls "$D/run/students" 2>/dev/null | wc -l) checkpoint file(s) present"
	await $pid 180 || { tail -n 20 "$D/err"; fail "run failed (or hung: exit 124) after the kill"; }
	[ "$(sqlite3 "$DB" "select status || ' ' || phase from runs")" = "done done" ] || fail "run not done"
	[ "$(sqlite3 "$DB" "select count(*) from events where kind = 'job_exit'")" -ge 1 ] || fail "job_exit not recorded"
	local got=$(accs "$DB")
	"$PY" - "$REF2" "$got" <<'PYEOF' || fail "accuracies differ from the reference: got $(echo $got), want $(echo $REF2)"
import sys
ref = dict(l.split("=") for l in sys.argv[1].split())
got = dict(l.split("=") for l in sys.argv[2].split())
sys.exit(0 if ref.keys() == got.keys() and all(abs(float(ref[k]) - float(got[k])) <= 0.005 + 1e-9 for k in ref) else 1)
PYEOF
	integrity "$DB"
	local resumed=$(sqlite3 "$DB" "select count(*) from events where kind = 'log' and payload like '%resumed from its checkpoint%'")
	echo "  done; accuracies $(echo $got) match the reference; $resumed student(s) resumed from a checkpoint"
}

# ---- case 3: the shared Redis killed -9 mid-label and restarted ----------
case3() {
	local D=$1; mkdir -p "$D/redis"
	start_redis "$D/redis" || fail "redis-server did not start"
	mkconfig deploy/examples/twomoon.json "$D/c.json" "$LABELCFG"
	MKE_TEST_LABEL_DELAY_MS=150 "$MKE" run "$D/c.json" --ranks 2 --run-dir "$D/run" --redis "unix://$D/redis/redis.sock" >"$D/out" 2>"$D/err" &
	local pid=$!; echo $pid >"$T/c3-$pid.pid"
	local DB="$D/run/mke.db" k=$(rnd 0 20)
	wait_phase "$DB" label 60 || fail "never reached the label phase"
	wait_done_ge "$DB" "$k" 60 || fail "label phase never reached $k shards"
	ms "$(rnd 0 150)"
	[ "$(phase_of "$DB")" = label ] || fail "label phase over before the kill"
	local at=$(done_count "$DB") down=$(rnd 500 2000)
	stop_redis "$D/redis"
	ms "$down"
	start_redis "$D/redis" || fail "redis-server did not restart"
	echo "  redis killed after $at/27 shards done, down ${down} ms, restarted"
	await $pid 180 || { tail -n 20 "$D/err"; fail "run failed (or hung: exit 124) after the Redis restart"; }
	check_run "$DB" "$D/run"
	echo "  done; $(sqlite3 "$DB" "select count(*) from shards where attempts > 1") shard(s) with attempts > 1; integrity ok"
	stop_redis "$D/redis"
}

# ---- case 4: the coordinator SIGKILLed at a random moment, then resume ----
case4() {
	local D=$1
	mkconfig deploy/examples/twomoon.json "$D/c.json" "$LABELCFG"'; c["student"]["epochs"] = 60000; c["pipeline"]["checkpoint_every"] = 4000'
	MKE_TEST_LABEL_DELAY_MS=150 "$MKE" run "$D/c.json" --ranks 2 --run-dir "$D/run" >"$D/out" 2>"$D/err" &
	local pid=$!; echo $pid >"$T/c4-$pid.pid"
	local DB="$D/run/mke.db"
	wait_for 30 test -s "$D/out" || fail "no run id"
	case $(rnd 0 2) in   # a random moment of a random phase
	0) ms "$(rnd 0 1500)" ;;
	1) wait_phase "$DB" label 60 || fail "never reached the label phase"; wait_done_ge "$DB" "$(rnd 0 26)" 60 || fail "label stalled" ;;
	2) wait_phase "$DB" student 60 || fail "never reached the student phase"; ms "$(rnd 0 600)" ;;
	esac
	local ph=$(phase_of "$DB") at=$(done_count "$DB")
	[ "$ph" = done ] && fail "run already done before the kill"
	kill -9 $pid; wait $pid 2>/dev/null || true
	local RUN=$(run_id_of "$D/out")
	echo "  coordinator killed in phase $ph with $at/27 shards done"
	if [ "$(sqlite3 "$DB" "select status from runs")" = done ]; then
		# the kill landed after the run was marked done (its phase still read eval):
		# resume must say so, record no resume and leave the run complete
		"$MKE" resume "$RUN" --db "$DB" >"$D/out2" 2>"$D/err2" || fail "resume of a done run failed"
		grep -q "already done" "$D/err2" || fail "resume of a done run did not say 'already done'"
		check_run "$DB" "$D/run"
		[ "$(sqlite3 "$DB" "select count(*) from events where kind = 'resume'")" = 0 ] || fail "a done run was resumed"
		echo "  the run was done before the kill landed; resume said so; integrity ok"
		return 0
	fi
	wait_for 20 job_gone "$RUN" || fail "workers outlived the coordinator"
	local before=$(sqlite3 "$DB" "select shard_id || ':' || attempts || ':' || sha256 from shards where state = 'done' order by shard_id")
	[ -f "$D/run/redis/redis.pid" ] && kill -9 "$(cat "$D/run/redis/redis.pid")" 2>/dev/null   # the coordinator's private Redis dies with it on a node loss
	MKE_TEST_LABEL_DELAY_MS=150 timeout -s KILL 180 "$MKE" resume "$RUN" --db "$DB" >"$D/out2" 2>"$D/err2" || { tail -n 20 "$D/err2"; fail "resume failed"; }
	check_run "$DB" "$D/run"
	local after=$(sqlite3 "$DB" "select shard_id || ':' || attempts || ':' || sha256 from shards where state = 'done' order by shard_id")
	local changed=$(comm -23 <(echo "$before" | grep . | sort) <(echo "$after" | sort) | tr '\n' ' ')
	[ -z "$changed" ] || fail "shards done before the kill changed across the resume: $changed"
	[ "$(sqlite3 "$DB" "select count(*) from events where kind = 'resume'")" = 1 ] || fail "resume not recorded"
	echo "  resumed to done; the $(echo "$before" | grep -c :) shard(s) done before the kill unchanged; integrity ok"
}

# ---- case 5: disk full (tmpfs run dir) while writing labels / checkpoints -
# safetensors_ok FILE: the header parses and the data size matches
st_ok() {
	"$PY" - "$1" <<'PYEOF'
import json, os, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
sys.exit(0 if 8 + n + end == len(b) else 1)
PYEOF
}
fill() { dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null || true; sync; }
case5() {
	local D=$1 mode=$2; mkdir -p "$D/mnt" "$D/redis"
	mount -t tmpfs -o size=2m tmpfs "$D/mnt" || return 77
	echo "$D/mnt" >>"$T/mounts"
	start_redis "$D/redis" || fail "redis-server did not start"
	mkconfig deploy/examples/twomoon.json "$D/c.json" "$LABELCFG"'; c["student"]["epochs"] = 100000; c["pipeline"]["checkpoint_every"] = 1000'
	local DB="$D/mke.db" R="$D/mnt/run"
	MKE_TEST_LABEL_DELAY_MS=150 "$MKE" run "$D/c.json" --ranks 2 --run-dir "$R" --db "$DB" --redis "unix://$D/redis/redis.sock" >"$D/out" 2>"$D/err" &
	local pid=$!; echo $pid >"$T/c5-$pid.pid"
	local what
	if [ "$mode" = label ]; then
		wait_phase "$DB" label 60 || fail "never reached the label phase"
		wait_done_ge "$DB" "$(rnd 0 15)" 60 || fail "label phase stalled"
		what="label phase, $(done_count "$DB")/27 shards done"
	else
		wait_phase "$DB" student 60 || fail "never reached the student phase"
		wait_for 30 sh -c "ls $R/students/*.safetensors" || fail "no student checkpoint"
		ms "$(rnd 0 1000)"
		what="student phase"
	fi
	local tsha=$(sha256sum <"$R/teacher.safetensors")
	fill "$D/mnt"
	echo "  disk filled in the $what ($(df -k "$D/mnt" | awk 'NR==2 {print $4}') KiB left)"
	local rc=0; await $pid "${C5_WAIT:-30}" || rc=$?
	local RUN=$(run_id_of "$D/out") hung=
	if [ "$rc" = 124 ]; then
		hung="the run hung with the disk full (no exit in ${C5_WAIT:-30} s; coordinator killed)"
		echo "  $hung; phase $(phase_of "$DB"), shards: $(sqlite3 "$DB" "select state || '=' || count(*) from shards group by state" | tr '\n' ' ')"
		wait_for 20 job_gone "$RUN"
	elif [ "$rc" = 0 ]; then
		# possible only when nothing more had to be written after the fill
		fail "the run completed although the disk was full while it had checkpoints to write"
	fi
	if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
		grep -rqi "no space left\|ENOSPC" "$D/err" "$R/worker.log" <(sqlite3 "$DB" "select payload from events; select error from shards where error is not null") 2>/dev/null \
			|| { tail -n 10 "$D/err"; fail "no clear 'No space left on device' error (exit $rc)"; }
		echo "  run exited $rc: $( (grep -hi "no space" "$D/err" "$R/worker.log" 2>/dev/null; sqlite3 "$DB" "select 'shard ' || shard_id || ' (' || state || '): ' || error from shards where error like '%space%'") | head -n 1 | cut -c1-160)"
	fi
	integrity "$DB"
	[ "$(sha256sum <"$R/teacher.safetensors")" = "$tsha" ] || fail "the teacher checkpoint changed"
	local f; for f in "$R"/students/*.safetensors; do
		[ -e "$f" ] || continue
		st_ok "$f" || fail "checkpoint $(basename "$f") damaged"
	done
	ls "$R/labels" 2>/dev/null | grep -v '\.npy$' | grep -q . && echo "  note: temp label files left on the full disk: $(ls "$R/labels" | grep -v '\.npy$' | tr '\n' ' ')"
	echo "  teacher unchanged, student checkpoints valid"
	rm -f "$D/mnt/filler"
	if [ "$rc" != 0 ]; then
		# the resume retrains the student (100000 epochs): seconds on an idle
		# machine, minutes on a busy one (2 MPI ranks spinning on 2 shared
		# cores); C5_RESUME_WAIT is a hang detector, not a speed check
		local rrc=0
		timeout -s KILL "${C5_RESUME_WAIT:-600}" "$MKE" resume "$RUN" --db "$DB" >"$D/out2" 2>"$D/err2" || rrc=$?
		if [ "$rrc" != 0 ]; then
			tail -n 20 "$D/err2"
			echo "  last student step: $(sqlite3 "$DB" "select max(step) from metrics where key = 'train_loss' and variant != 'teacher'")"
			fail "resume after freeing space failed (exit $rrc; 137: still running after ${C5_RESUME_WAIT:-600} s)"
		fi
	fi
	echo "  space freed; resume: $(sqlite3 "$DB" "select status || ' ' || phase from runs"), shards: $(sqlite3 "$DB" "select state || '=' || count(*) from shards group by state" | tr '\n' ' ')"
	stop_redis "$D/redis"
	[ -z "$hung" ] || fail "$hung"
	check_run "$DB" "$R"
	echo "  resume completed; integrity ok"
	umount "$D/mnt"
}

# ---- driver ---------------------------------------------------------------
umount_all() { for m in $(cat "$T/mounts" 2>/dev/null); do umount -l "$m" 2>/dev/null; done; }
trap 'umount_all; cleanup' EXIT
declare -A HELD TOTAL SKIP
names=([1]="kill one worker rank mid-label" [2]="kill the MPI job mid-student" [3]="restart Redis mid-label" [4]="kill the coordinator, resume" [5]="disk full (labels/checkpoint)")
for c in $CASES; do
	case $c in 1|2|4) n=$(repeats 20) ;; 3|5) n=$(repeats 5) ;; *) echo "no case $c" >&2; exit 2 ;; esac
	echo "== case $c: ${names[$c]} ($n runs)"
	HELD[$c]=0; TOTAL[$c]=0; SKIP[$c]=0
	if [ "$c" = 2 ]; then
		case2_ref || { echo "held 0 of $n"; TOTAL[$c]=$n; continue; }
	fi
	for i in $(seq 1 "$n"); do
		D="$T/c$c-$i"; mkdir -p "$D"
		t0=$(date +%s)
		if [ "$c" = 5 ]; then
			mode=label; [ $((i % 2)) = 0 ] && mode=student
			( set -e; case5 "$D" "$mode" ) 2>&1 | sed 's/^/  /'; rc=${PIPESTATUS[0]}
		else
			( set -e; "case$c" "$D" ) 2>&1 | sed 's/^/  /'; rc=${PIPESTATUS[0]}
		fi
		# anything the run left behind
		pkill -9 -f "^[^ ]*(mpirun|mke-worker) .*$D" 2>/dev/null
		for p in $(cat "$T"/c$c-*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		rm -f "$T"/c$c-*.pid
		mountpoint -q "$D/mnt" 2>/dev/null && umount -l "$D/mnt"
		[ -f "$D/redis/redis.pid" ] && kill -9 "$(cat "$D/redis/redis.pid")" 2>/dev/null
		[ -f "$D/run/redis/redis.pid" ] && kill -9 "$(cat "$D/run/redis/redis.pid")" 2>/dev/null   # a private Redis orphaned by a killed coordinator
		if [ "$rc" = 77 ]; then
			SKIP[$c]=1; echo "  run $i: skipped (cannot mount a tmpfs here)"; break
		fi
		TOTAL[$c]=$((TOTAL[$c] + 1))
		if [ "$rc" = 0 ]; then
			HELD[$c]=$((HELD[$c] + 1)); echo "  run $i: held ($(($(date +%s) - t0)) s)"
			rm -rf "$D"
		else
			echo "  run $i: DID NOT HOLD ($(($(date +%s) - t0)) s)"
			[ -n "$KEEP" ] && cp -a "$D" "/tmp/mke-fault-c$c-$i-$$" && echo "  kept in /tmp/mke-fault-c$c-$i-$$"
			rm -rf "$D"
		fi
	done
	[ "${SKIP[$c]}" = 1 ] && echo "case $c: skipped" || echo "case $c: held ${HELD[$c]} of ${TOTAL[$c]}"
done

echo
printf '%-5s %-34s %s\n' case fault held
status=0; ran=0
for c in $CASES; do
	if [ "${SKIP[$c]}" = 1 ]; then
		printf '%-5s %-34s %s\n' "$c" "${names[$c]}" "skipped (77)"
		continue
	fi
	ran=1
	printf '%-5s %-34s %s of %s\n' "$c" "${names[$c]}" "${HELD[$c]}" "${TOTAL[$c]}"
	[ "${HELD[$c]}" = "${TOTAL[$c]}" ] || status=1
done
[ "$ran" = 0 ] && exit 77
exit $status
