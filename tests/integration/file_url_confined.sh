#!/bin/sh
# file:// URL cells read local files, so they are confined like path cells:
# one under the data root loads; one outside it, directly or through an
# escaped '..', is quarantined with the file, line, column and what to do.
. tests/integration/lib.sh
mkdir -p "$T/d"
"$PY" -c "
import struct
def npy(p):
    h = \"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\"
    h += ' ' * (63 - len(h)) + '\n'
    open(p, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + struct.pack('<3f', 1, 2, 3))
npy('$T/d/a.npy'); npy('$T/out.npy')"
printf 'id,label,x\ns1,0,file://%s/d/a.npy\ns2,1,file://%s/out.npy\ns3,1,file://%s/d/%%2E%%2E/out.npy\n' "$T" "$T" "$T" >"$T/d/m.csv"
cat >"$T/c.json" <<JSON
{"name": "t", "data": {"root": "d", "labeled": "m.csv", "classes": 2,
 "modalities": {"a": {"column": "x", "kind": "npy"}}},
 "models": {"m": {"inputs": ["a"], "hidden": [4]}}, "teacher": {"model": "m", "epochs": 1}}
JSON
"$MKE" shard "$T/d/m.csv" --run r --config "$T/c.json" --db "$T/db" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "mke shard failed"; }
grep -q "m.csv:3: column 'x': cannot load '$T/out.npy': the path leads outside" "$T/err" || { cat "$T/err"; fail "file:// outside the root not refused"; }
grep -q "m.csv:4: column 'x': cannot load '$T/d/../out.npy': the path leads outside" "$T/err" || { cat "$T/err"; fail "escaped .. not refused"; }
grep -q "1 rows (2 bad, skipped)" "$T/out" || { cat "$T/out"; fail "counts"; }
ok "file:// cells outside the data root quarantined (2 of 3), the one inside loads"
