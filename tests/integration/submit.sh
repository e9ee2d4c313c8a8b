#!/bin/sh
# `mke submit`: the sbatch and mpirun scripts it writes (--dry-run) hold the
# expected #SBATCH, module, srun/mpirun lines and pass `bash -n`; every
# contradictory or malformed option is rejected with a message naming it,
# before anything is written; a fake `sbatch` on PATH receives
# `--parsable SCRIPT` as its argv and its job id is printed. The fake sbatch
# then runs the script as Slurm would (SLURM_JOB_ID set) with a fake `srun`
# that hands the ranks to mpirun: the run ends done and `mke status` shows
# the Slurm job id. The mpirun scheduler runs its script in the background
# with --hostfile and MKE_MPIRUN_ARGS reaching mpirun's argv.
# No real Slurm cluster is involved.
. tests/integration/lib.sh

CFG=$ROOT/deploy/examples/twomoon.json
mkconfig "$CFG" "$T/quick.json" '
c["seeds"] = [81]
c["teacher"]["epochs"] = 100
c["student"]["epochs"] = 100'

# ---- slurm --dry-run ----
"$MKE" submit "$CFG" --scheduler slurm --nodes 2 --ntasks-per-node 4 --time 01:30:00 \
	--partition gpu --account proj-1 --module openmpi/4.1.5 --module hdf5 \
	--run-dir "$T/sl run" --db "$T/shared.db" --redis redis://head:6379 --dry-run >"$T/sb.out" 2>"$T/sb.err" \
	|| { cat "$T/sb.err"; fail "slurm --dry-run failed"; }
S="$T/sl run/mke.sbatch"
[ -f "$S" ] || fail "no script at $S"
cmp -s "$S" "$T/sb.out" || fail "--dry-run printed something else than it wrote"
for want in '#SBATCH --nodes=2' '#SBATCH --ntasks-per-node=4' '#SBATCH --time=01:30:00' \
	'#SBATCH --partition=gpu' '#SBATCH --account=proj-1' '#SBATCH --job-name=mke-twomoon' \
	"module load 'openmpi/4.1.5'" "module load 'hdf5'"; do
	grep -qxF "$want" "$S" || fail "sbatch script lacks '$want'"
done
grep -q "^exec '.*/mke' run '$CFG' --ranks 8 --launcher srun --run-dir '$T/sl run' --db '$T/shared.db' --redis 'redis://head:6379'\$" "$S" \
	|| fail "sbatch script's mke run line: $(grep '^exec' "$S")"
head -n 1 "$S" | grep -qx '#!/bin/bash' || fail "no bash shebang"
# every #SBATCH line comes before the first command
awk '/^#SBATCH/ { if (cmd) exit 1 } /^[^#]/ { cmd = 1 }' "$S" || fail "an #SBATCH line after a command"
bash -n "$S" || fail "sbatch script is not valid bash"
grep -q "not submitted" "$T/sb.err" || fail "--dry-run does not say it did not submit"
ok "slurm --dry-run writes the #SBATCH, module and srun lines; bash -n passes"

# ---- mpirun --dry-run ----
printf 'localhost slots=8\n' >"$T/hosts"
"$MKE" submit "$CFG" --scheduler mpirun --nodes 1 --ntasks-per-node 3 --hostfile "$T/hosts" \
	--module gcc -o "$T/it's here.sh" --dry-run >"$T/mp.out" 2>"$T/mp.err" || { cat "$T/mp.err"; fail "mpirun --dry-run failed"; }
M="$T/it's here.sh"
grep -qxF "module load 'gcc'" "$M" || fail "mpirun script lacks the module line"
grep -q "^exec '.*/mke' run '$CFG' --ranks 3 --launcher mpirun --hostfile '$T/hosts'\$" "$M" \
	|| fail "mpirun script's mke run line: $(grep '^exec' "$M")"
grep -q '^#SBATCH' "$M" && fail "mpirun script has #SBATCH lines"
sh -n "$M" && bash -n "$M" || fail "mpirun script is not valid sh"
ok "mpirun --dry-run writes mke run --ranks N*R --launcher mpirun --hostfile; sh -n passes"

# ---- contradictions and bad values: exit 2, a message naming the option, nothing written ----
reject() { # reject WORDS-IN-MESSAGE ARGS...
	msg=$1; shift
	if "$MKE" submit "$@" -o "$T/never.sh" >"$T/rj.out" 2>"$T/rj.err"; then fail "accepted: $*"; fi
	rc=0; "$MKE" submit "$@" -o "$T/never.sh" >/dev/null 2>&1 || rc=$?
	[ "$rc" = 2 ] || fail "exit $rc (not 2) for: $*"
	grep -q -e "$msg" "$T/rj.err" || fail "no '$msg' in the message for: $* -> $(cat "$T/rj.err")"
	[ -e "$T/never.sh" ] && fail "a script was written for: $*"
	return 0
}
reject '--hostfile is for --scheduler mpirun' "$CFG" --scheduler slurm --nodes 1 --ntasks-per-node 1 --hostfile "$T/hosts"
reject '--partition is for --scheduler slurm' "$CFG" --scheduler mpirun --nodes 1 --ntasks-per-node 1 --partition gpu
reject '--time is for --scheduler slurm' "$CFG" --scheduler mpirun --nodes 1 --ntasks-per-node 1 --time 10
reject '--account is for --scheduler slurm' "$CFG" --scheduler mpirun --nodes 1 --ntasks-per-node 1 --account a
reject 'needs --hostfile' "$CFG" --scheduler mpirun --nodes 2 --ntasks-per-node 1
reject '--nodes must be a positive number' "$CFG" --scheduler slurm --nodes 0 --ntasks-per-node 1
reject '--ntasks-per-node must be a positive number' "$CFG" --scheduler slurm --nodes 1 --ntasks-per-node -2
reject '--nodes N is required' "$CFG" --scheduler slurm --ntasks-per-node 1
reject '--scheduler slurm|mpirun is required' "$CFG" --nodes 1 --ntasks-per-node 1
reject '--scheduler must be slurm or mpirun' "$CFG" --scheduler pbs --nodes 1 --ntasks-per-node 1
reject 'at most 4096' "$CFG" --scheduler slurm --nodes 100 --ntasks-per-node 100
reject '--time must be a Slurm time' "$CFG" --scheduler slurm --nodes 1 --ntasks-per-node 1 --time '1;reboot'
reject "--partition 'a b' has characters" "$CFG" --scheduler slurm --nodes 1 --ntasks-per-node 1 --partition 'a b'
reject 'is not a module name' "$CFG" --scheduler slurm --nodes 1 --ntasks-per-node 1 --module 'x;rm -rf /'
reject 'must not carry a password' "$CFG" --scheduler slurm --nodes 1 --ntasks-per-node 1 --redis redis://:pw@h:1
reject 'control character' "$CFG" --scheduler slurm --nodes 1 --ntasks-per-node 1 --run-dir "$(printf 'a\nb')"
reject 'needs a CONFIG' --scheduler slurm --nodes 1 --ntasks-per-node 1
reject "unknown option '--nodez'" "$CFG" --scheduler slurm --nodez 1 --ntasks-per-node 1
reject 'cannot' "$T/no-such.json" --scheduler slurm --nodes 1 --ntasks-per-node 1
# all problems at once, not just the first
"$MKE" submit "$CFG" --scheduler mpirun --nodes 0 --ntasks-per-node 1 --partition p --time 5 2>"$T/all.err" && fail "accepted"
[ "$(grep -c '^error' "$T/all.err")" -ge 3 ] || fail "not every problem reported: $(cat "$T/all.err")"
ok "contradictory and malformed options are rejected (exit 2) with messages naming them"

# ---- a fake sbatch and srun: submit, run as Slurm would, job id recorded ----
mkdir -p "$T/fakebin"
REAL_MPIRUN=$(command -v mpirun || true)
cat >"$T/fakebin/sbatch" <<SH
#!/bin/sh
# fake sbatch: keep the argv, run the script as the batch step, print a job id
for a in "\$@"; do printf '%s\n' "\$a"; done >"$T/sbatch.argv"
script=\$2
SLURM_JOB_ID=4242 nohup bash "\$script" >"$T/job.out" 2>&1 </dev/null &
echo \$! >"$T/job.pid"
echo "4242;cluster1"
SH
cat >"$T/fakebin/srun" <<SH
#!/bin/sh
# fake srun: keep the argv, hand the tasks to mpirun
for a in "\$@"; do printf '%s\n' "\$a"; done >"$T/srun.argv"
[ "\$1" = --ntasks ] || exit 99
n=\$2; shift 2
while [ \$# -gt 0 ]; do case "\$1" in --mpi=*|--kill-on-bad-exit=*) shift ;; *) break ;; esac; done
root=""; [ "\$(id -u)" = 0 ] && root=--allow-run-as-root
exec "$REAL_MPIRUN" -np "\$n" --oversubscribe --bind-to none \$root "\$@"
SH
chmod +x "$T/fakebin/sbatch" "$T/fakebin/srun"
PATH="$T/fakebin:$PATH" "$MKE" submit "$T/quick.json" --scheduler slurm --nodes 1 --ntasks-per-node 2 \
	--run-dir "$T/slurm-run" >"$T/sub.out" 2>"$T/sub.err" || { cat "$T/sub.err"; fail "submit with a fake sbatch failed"; }
grep -qx 'job 4242' "$T/sub.out" || fail "job id not printed: $(cat "$T/sub.out")"
printf -- '--parsable\n%s\n' "$T/slurm-run/mke.sbatch" | cmp -s - "$T/sbatch.argv" \
	|| fail "sbatch argv: $(cat "$T/sbatch.argv")"
ok "a fake sbatch got '--parsable SCRIPT' and its job id was printed"
if [ -n "$REAL_MPIRUN" ] && command -v redis-server >/dev/null 2>&1; then
	i=0
	while :; do
		PATH="$T/fakebin:$PATH" "$MKE" status --db "$T/slurm-run/mke.db" --json >"$T/st.json" 2>/dev/null || true
		grep -q '"status":	"\(done\|failed\|cancelled\)"' "$T/st.json" && break
		i=$((i + 1)); [ $i -gt 600 ] && { cat "$T/job.out"; fail "the fake Slurm job did not finish"; }
		sleep 0.2
	done
	grep -q '"status":	"done"' "$T/st.json" || { cat "$T/job.out"; fail "the fake Slurm job's run did not end done"; }
	grep -q '"slurm_job_id":	"4242"' "$T/st.json" || fail "slurm_job_id not recorded: $(grep slurm "$T/st.json")"
	"$MKE" status --db "$T/slurm-run/mke.db" | grep -qx 'slurm job 4242' || fail "mke status does not show the Slurm job"
	head -n 5 "$T/srun.argv" | tr '\n' ' ' | grep -q '^--ntasks 2 --mpi=pmix --kill-on-bad-exit=1 [^ ]*mke-worker $' \
		|| fail "srun argv: $(tr '\n' ' ' <"$T/srun.argv")"
	ok "the batch step ran the coordinator, which started the workers with srun and recorded SLURM_JOB_ID"

	# ---- mpirun scheduler in the background, hostfile and MKE_MPIRUN_ARGS reach mpirun ----
	cat >"$T/fakebin/mpirun-rec" <<SH
#!/bin/sh
for a in "\$@"; do printf '%s\n' "\$a"; done >"$T/mpirun.argv"
exec "$REAL_MPIRUN" "\$@"
SH
	chmod +x "$T/fakebin/mpirun-rec"
	MKE_MPIRUN="$T/fakebin/mpirun-rec" MKE_MPIRUN_ARGS="--mca btl self,vader" "$MKE" submit "$T/quick.json" \
		--scheduler mpirun --nodes 1 --ntasks-per-node 2 --hostfile "$T/hosts" --run-dir "$T/mp-run" \
		>"$T/bg.out" 2>"$T/bg.err" || { cat "$T/bg.err"; fail "mpirun submit failed"; }
	pid=$(sed -n 's/^pid \([0-9]*\)$/\1/p' "$T/bg.out")
	[ -n "$pid" ] || fail "no pid printed: $(cat "$T/bg.out")"
	echo "$pid" >"$T/bg.pid"
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 600 ] && fail "the background run did not finish"
		sleep 0.2
	done
	[ "$(sql "$T/mp-run/mke.db" "select count(*) from runs where status = 'done'")" = 1 ] 2>/dev/null \
		|| "$MKE" status --db "$T/mp-run/mke.db" | grep -q '^status    done' \
		|| { cat "$T/mp-run/mke-run.sh.log"; fail "the background run did not end done"; }
	tr '\n' ' ' <"$T/mpirun.argv" | grep -q -- "--hostfile $T/hosts .*--mca btl self,vader .*mke-worker" \
		|| fail "mpirun argv: $(tr '\n' ' ' <"$T/mpirun.argv")"
	ok "the mpirun scheduler ran its script in the background; --hostfile and MKE_MPIRUN_ARGS reached mpirun"
else
	echo "skip: the fake Slurm job and the background run need mpirun and redis-server"
fi

# ---- the man page names every command and renders without warnings ----
for c in $("$MKE" help | awk '/^commands:/ { f = 1; next } f && /^  [a-z]/ { print $1 }'); do
	grep -q "^\.B mke $c\( \|\$\)" "$ROOT/docs/mke.1" || fail "docs/mke.1 does not document 'mke $c'"
done
if command -v groff >/dev/null 2>&1; then
	w=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$ROOT/docs/mke.1" 2>&1)
	[ -z "$w" ] || fail "groff warns about docs/mke.1: $w"
fi
ok "docs/mke.1 documents every command of 'mke help'"
