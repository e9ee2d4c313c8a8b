#!/bin/sh
# Data-parallel invariance: the same seed on 1 and on 2 ranks ends with
# student weights equal within 1e-4 relative and the same test accuracy.
. tests/integration/lib.sh

mkconfig deploy/examples/twomoon.json "$T/c.json" 'c["seeds"] = [14]; c["variants"] = {"mm_student": {"model": "mm"}, "um_student": {"model": "um"}}'
for n in 1 2; do
	"$MKE" run "$T/c.json" --ranks $n --run-dir "$T/r$n" -q >"$T/out$n" 2>"$T/err$n" || { cat "$T/err$n"; fail "mke run --ranks $n failed"; }
done
for v in mm_student um_student; do
	a=$(sql "$T/r1/mke.db" "select value from metrics where variant = '$v/14' and key = 'test_accuracy'")
	b=$(sql "$T/r2/mke.db" "select value from metrics where variant = '$v/14' and key = 'test_accuracy'")
	[ -n "$a" ] && [ "$a" = "$b" ] || fail "$v accuracy: 1 rank $a, 2 ranks $b"
	"$PY" - "$T/r1/students/$v-seed14.safetensors" "$T/r2/students/$v-seed14.safetensors" <<'PYEOF' || fail "$v weights differ"
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__" or not k.startswith(("branch", "trunk", "head")):
            continue
        s, e = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and a
worst = 0.0
for k in a:
    for x, y in zip(a[k], b[k]):
        worst = max(worst, abs(x - y) / max(1e-3, abs(x), abs(y)))
print("largest relative difference:", worst)
assert worst <= 1e-4, worst
PYEOF
	ok "$v: 1 and 2 ranks agree (accuracy $a)"
done
