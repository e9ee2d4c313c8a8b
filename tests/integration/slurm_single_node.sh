#!/bin/sh
# A real single-node Slurm cluster, started and stopped by this test: a
# private munged (its own key and socket), slurmctld and slurmd in the
# foreground (pids recorded), one node "localhost" with this machine's CPUs
# and memory, one partition, no accounting, every state file and port its own.
# `mke submit twomoon.json --scheduler slurm --nodes 1 --ntasks-per-node 2`
# hands the sbatch script to the real sbatch; the batch step runs the
# coordinator, which starts the worker ranks with the real srun (PMIx). The
# job is followed with `scontrol show job` until it ends, and the run must end
# `done` with the Slurm job id in `mke status`. A second job does the same
# with `--launcher mpirun` (Open MPI's mpirun inside the allocation).
# The config is deploy/examples/twomoon.json with one seed and 400 student
# epochs, so that both jobs fit in the time box on a busy 2-core machine.
# Needs root (slurmd runs jobs as their user) and Debian's slurm-wlm (slurmctld,
# slurmd, slurm-client) and munge; otherwise exit 77 (skip) with the reason.
# Every daemon, and any job step left behind, is stopped by pid on exit.
. tests/integration/lib.sh

skip() { echo "skip: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "a single-node Slurm cluster needs root (slurmd); run as root"
for b in munged slurmctld slurmd sbatch srun scontrol scancel; do
	command -v "$b" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin"
	command -v "$b" >/dev/null 2>&1 || skip "'$b' is not installed (apt-get install slurm-wlm munge)"
done
command -v mpirun >/dev/null 2>&1 || skip "mpirun is not installed"
command -v redis-server >/dev/null 2>&1 || skip "redis-server is not installed"

S="$T/slurm"
mkdir -p "$S/munge" "$S/ctld" "$S/slurmd" "$S/log" "$S/tmp"
chmod 0700 "$S/munge"
DEADLINE=$(( $(date +%s) + 170 ))   # the whole test: about 3 minutes at most
JOB=""

# Stop what this test started, by pid: the job (scancel), the step daemons
# the slurmd forked (found by the marker in their environment), slurmd,
# slurmctld, munged; then lib.sh's cleanup removes $T.
MARK="MKE_SLURM_TEST=$S"
pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
stop_pid() { # stop_pid PID: SIGTERM, up to 5 s, then SIGKILL
	pid_alive "$1" || return 0
	kill "$1" 2>/dev/null || true
	i=0
	while pid_alive "$1" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	kill -9 "$1" 2>/dev/null || true
}
marked_pids() { # processes started under our slurmd (slurmstepd, the job's tasks)
	for e in /proc/[0-9]*/environ; do
		p=${e#/proc/}; p=${p%/environ}
		[ "$p" = $$ ] && continue
		{ tr '\0' '\n' <"$e"; } 2>/dev/null | grep -qxF "$MARK" && echo "$p"
	done
	return 0
}
slurm_cleanup() {
	rc=$?
	trap - EXIT INT TERM
	if [ -n "$JOB" ] && pid_alive "$CTLD_PID"; then
		scancel "$JOB" 2>/dev/null || true
		i=0
		while [ $i -lt 50 ] && scontrol show job "$JOB" 2>/dev/null | grep -q 'JobState=\(RUNNING\|PENDING\|COMPLETING\)'; do
			sleep 0.1; i=$((i + 1))
		done
	fi
	stop_pid "${SLURMD_PID:-}"
	stop_pid "${CTLD_PID:-}"
	for p in $(marked_pids); do kill -9 "$p" 2>/dev/null || true; done
	stop_pid "${MUNGED_PID:-}"
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		for f in "$S"/log/*.log; do
			[ -f "$f" ] && { echo "--- $(basename "$f") (last lines)"; tail -n 15 "$f"; }
		done
	fi
	cleanup
	exit "$rc"
}
trap slurm_cleanup EXIT
trap 'exit 1' INT TERM

# two free TCP ports on loopback for slurmctld and slurmd (not 6817/6818: a
# real cluster, or another run of this test, may hold those)
PORTS=$("$PY" -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
CTLD_PORT=${PORTS% *}
SLURMD_PORT=${PORTS#* }

# ---- munge: a fresh key, a private socket ----
dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 0400 "$S/munge/munge.key"
munged --foreground --force --key-file="$S/munge/munge.key" --socket="$S/munge/munge.sock" \
	--pid-file="$S/munge/munged.pid" --seed-file="$S/munge/munged.seed" \
	--log-file="$S/log/munged.log" >>"$S/log/munged.log" 2>&1 &
MUNGED_PID=$!
wait_for 10 test -S "$S/munge/munge.sock" || fail "munged did not start (see above)"
munge --socket="$S/munge/munge.sock" -n </dev/null | unmunge --socket="$S/munge/munge.sock" >/dev/null \
	|| fail "munge cannot encode and decode a credential"
ok "munged (pid $MUNGED_PID) on a private socket with a fresh key"

# ---- slurm.conf: one node, one partition, no accounting ----
CPUS=$(nproc)
[ "$CPUS" -ge 2 ] || CPUS=2   # two tasks; config_overrides lets a 1-CPU machine run them
MEM=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
HOST=$(hostname -s)
FIRST_JOB=$(( 1000 + $$ % 100000 ))   # job ids of their own, should another run of this test be on
cat >"$S/slurm.conf" <<EOF
# written by tests/integration/slurm_single_node.sh
ClusterName=mketest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge/munge.sock
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/slurmd
TmpFS=$S/tmp
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$S/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
KillWait=5
MinJobAge=600
FirstJobId=$FIRST_JOB
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=mke Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
: >"$S/plugstack.conf"
export SLURM_CONF="$S/slurm.conf"

# ---- the daemons, in the foreground, in the background of this shell ----
env "$MARK" slurmctld -D -i -f "$SLURM_CONF" >>"$S/log/slurmctld.out" 2>&1 &
CTLD_PID=$!
wait_for 20 scontrol ping || fail "slurmctld did not answer 'scontrol ping'"
env "$MARK" slurmd -D -N localhost -f "$SLURM_CONF" >>"$S/log/slurmd.out" 2>&1 &
SLURMD_PID=$!
node_idle() { scontrol show node localhost 2>/dev/null | grep -q 'State=IDLE'; }
wait_for 30 node_idle || fail "node 'localhost' is not idle: $(scontrol show node localhost 2>&1 | grep State=)"
ok "slurmctld (pid $CTLD_PID, port $CTLD_PORT) and slurmd (pid $SLURMD_PID, port $SLURMD_PORT); node localhost idle, $CPUS CPUs"

# ---- real MKE runs through sbatch ----
mkconfig "$ROOT/deploy/examples/twomoon.json" "$T/twomoon.json" '
c["seeds"] = [81]
c["student"]["epochs"] = 400'
# two busy-polling ranks on a shared 2-core machine: let them yield when idle
export OMPI_MCA_mpi_yield_when_idle=1

# submit_and_wait LAUNCHER: one job through mke submit, followed with scontrol
# (no accounting, so no sacct) until it ends; then the run in mke status
submit_and_wait() {
	launcher=$1
	MKE_RUNS="$T/runs-$launcher" "$MKE" submit "$T/twomoon.json" --scheduler slurm --nodes 1 \
		--ntasks-per-node 2 --launcher "$launcher" >"$T/sub.out" 2>"$T/sub.err" \
		|| { cat "$T/sub.err"; fail "mke submit --launcher $launcher failed"; }
	JOB=$(sed -n 's/^job \([0-9][0-9]*\)$/\1/p' "$T/sub.out")
	[ -n "$JOB" ] || fail "mke submit printed no job id: $(cat "$T/sub.out")"
	SCRIPT=$(sed -n 's/^  script //p' "$T/sub.out")
	grep -q "^exec .* run .* --ranks 2 --launcher $launcher\$" "$SCRIPT" || fail "script: $(grep '^exec' "$SCRIPT")"
	start=$(date +%s)
	state=""
	while :; do
		state=$(scontrol show job "$JOB" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
		case "$state" in
		COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | PREEMPTED | BOOT_FAIL | DEADLINE) break ;;
		esac
		[ "$(date +%s)" -lt "$DEADLINE" ] || { state="still ${state:-unknown}"; break; }
		sleep 1
	done
	OUTF=$(dirname "$SCRIPT")/slurm-$JOB.out
	if [ "$state" != COMPLETED ]; then
		echo "--- job $JOB output"; tail -n 30 "$OUTF" 2>/dev/null
		for w in "$T/runs-$launcher"/*/worker.log; do [ -f "$w" ] && { echo "--- $w"; tail -n 20 "$w"; }; done
		fail "job $JOB ($launcher) ended $state, not COMPLETED"
	fi
	JOB_DONE=$JOB
	JOB=""
	# the run: done, the Slurm job id recorded, the workers started by the launcher
	MKE_RUNS="$T/runs-$launcher" "$MKE" status >"$T/status.txt" 2>&1 || { cat "$T/status.txt"; fail "mke status failed"; }
	grep -q '^status  *done' "$T/status.txt" || { cat "$T/status.txt" "$OUTF"; fail "the run did not end done"; }
	grep -qx "slurm job $JOB_DONE" "$T/status.txt" || { cat "$T/status.txt"; fail "mke status does not show slurm job $JOB_DONE"; }
	grep -q "worker job started ($launcher " "$OUTF" || { cat "$OUTF"; fail "the workers were not started with $launcher"; }
	grep -q '^  mm_student ' "$T/status.txt" || fail "no mm_student row in mke status"
	ok "job $JOB_DONE COMPLETED in $(( $(date +%s) - start ))s; the run ended done, 'slurm job $JOB_DONE' in mke status, ranks from $launcher"
}
submit_and_wait srun
submit_and_wait mpirun
