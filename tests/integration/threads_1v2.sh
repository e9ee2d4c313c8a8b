#!/bin/sh
# Threads inside a process (decision 22): `mke experiment` on the small
# RAVDESS example (conv3 CNNs, batch norm over micro-batches of 8, batches of
# 16 and 32; 10 and 5 epochs, two students) with --threads 1 and
# --threads 2 gives the same table. Two
# threads sum the batch's statistics and gradients in another float order
# than one, so the runs are not bitwise equal; a test accuracy may differ by
# one sample at most.
. tests/integration/lib.sh

MKE="$MKE" sh "$ROOT/deploy/examples/prepare-small.sh" ravdess "$T/data" 240 >"$T/prepare.log" 2>&1 ||
	{ tail -n 20 "$T/prepare.log"; fail "prepare-small.sh ravdess"; }
mkconfig "$ROOT/deploy/examples/ravdess-small.json" "$T/c.json" "c['data']['root'] = '$T/data'; c['variants'] = {k: c['variants'][k] for k in ('um_student', 'mm_student')}; c['teacher']['epochs'] = 10; c['student']['epochs'] = 5"
for n in 1 2; do
	OPENBLAS_NUM_THREADS=1 "$MKE" experiment "$T/c.json" --threads $n --format csv -q >"$T/out$n" 2>"$T/err$n" ||
		{ tail -n 20 "$T/err$n"; fail "mke experiment --threads $n failed"; }
done
"$PY" - "$T/out1" "$T/out2" <<'PYEOF' || fail "the tables differ: $(cat "$T/out1" "$T/out2")"
import csv, sys
a = list(csv.DictReader(open(sys.argv[1])))
b = list(csv.DictReader(open(sys.argv[2])))
assert len(a) == len(b) and a, (len(a), len(b))
worst = 0.0
for x, y in zip(a, b):
    assert (x["setting"], x["variant"]) == (y["setting"], y["variant"]), (x, y)
    d = abs(float(x["mean"]) - float(y["mean"]))
    worst = max(worst, d)
    # percentages: one test sample of at least 24 is 4.2 points
    assert d <= 4.2, (x, y)
print("%d rows, largest difference %.2f points" % (len(a), worst))
PYEOF
ok "the same table on 1 and 2 threads"
