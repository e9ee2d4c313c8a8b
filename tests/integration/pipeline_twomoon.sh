#!/bin/sh
# The main job end to end through a private redis-server and mpirun -np 2:
# every sample gets exactly one pseudo-label, the run is recorded, and the
# pipeline's accuracies equal `mke experiment`'s for the same config.
. tests/integration/lib.sh

mkconfig deploy/examples/twomoon.json "$T/c.json" 'c["seeds"] = [81]'
"$MKE" run "$T/c.json" --ranks 2 --run-dir "$T/run" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "mke run failed"; }
RUN=$(run_id_of "$T/out")
DB="$T/run/mke.db"
[ "$(sql "$DB" "select status || ' ' || phase from runs")" = "done done" ] || fail "run not done"
[ "$(sql "$DB" "select count(*) from shards where state <> 'done'")" = 0 ] || fail "shards not done"
[ "$(sql "$DB" "select count(*) from shards where sha256 is null")" = 0 ] || fail "shard without digest"
[ "$(sql "$DB" "select count(*) from phases where status = 'done'")" = 5 ] || fail "phases: $(sql "$DB" "select phase || ':' || status from phases")"
[ ! -S "$T/run/redis/redis.sock" ] || fail "private redis socket left behind"
pgrep -f "redis-server unixsocket:$T" >/dev/null && fail "private redis-server still running"
ok "run $RUN done, shards done with digests, redis stopped"

# every unlabeled sample exactly once across the shard files
"$PY" - "$T/run/labels" deploy/data/twomoon/unlabeled.csv <<'PYEOF' || fail "pseudo-label files"
import csv, glob, os, struct, sys, ast
ids = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "shard-*.npy"))):
    b = open(f, "rb").read()
    hl = struct.unpack("<H", b[8:10])[0]
    h = ast.literal_eval(b[10:10 + hl].decode("latin1"))
    L = int(h["descr"][0][1][1:])       # ('id', 'S<L>')
    c = h["descr"][1][2][0]             # ('probs', '<f4', (C,))
    rec = L + 4 * c
    data = b[10 + hl:]
    assert len(data) == rec * h["shape"][0], f
    for i in range(h["shape"][0]):
        r = data[i * rec:(i + 1) * rec]
        ids.append(r[:L].rstrip(b"\0").decode())
        p = struct.unpack("<%df" % c, r[L:])
        assert abs(sum(p) - 1) < 1e-4, (f, p)
want = [r["id"] for r in csv.DictReader(open(sys.argv[2]))]
assert sorted(ids) == sorted(want), (len(ids), len(want))
assert len(set(ids)) == len(ids)
print("pseudo-labels:", len(ids), "samples, each once")
PYEOF

# the same config in one process gives the same accuracies
"$MKE" experiment "$T/c.json" --format csv -q >"$T/exp.csv" || fail "mke experiment failed"
for v in um_student mm_student mm_student_noreg mm_student_sup noisy_student; do
	a=$(sql "$DB" "select printf('%.4f', 100*value) from metrics where variant = '$v/81' and key = 'test_accuracy'")
	b=$(grep ",$v," "$T/exp.csv" | head -n 1 | cut -d, -f3)
	[ -n "$a" ] && [ "$a" = "$b" ] || fail "$v: pipeline $a vs experiment $b"
done
t1=$(sql "$DB" "select printf('%.4f', 100*value) from metrics where variant = 'teacher' and key = 'test_accuracy'")
t2=$(grep ",teacher," "$T/exp.csv" | head -n 1 | cut -d, -f3)
[ "$t1" = "$t2" ] || fail "teacher: pipeline $t1 vs experiment $t2"
ok "pipeline accuracies equal mke experiment's (teacher $t1)"

# the student beats its teacher
mm=$(sql "$DB" "select value > (select value from metrics where variant='teacher' and key='test_accuracy') from metrics where variant = 'mm_student/81' and key = 'test_accuracy'")
[ "$mm" = 1 ] || fail "mm_student did not beat the teacher"
ok "mm_student beats the teacher"
