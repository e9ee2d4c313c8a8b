#!/bin/sh
# remote_data.sh - manifest cells that are URLs (common/fetch.h,
# docs/remote-data.md), against tests/integration/http_server.py:
#   - http:// npy cells run through `mke shard` with every row accepted,
#     including a path whose first two transfers are cut short (resumed with
#     a Range request, answered 206) and one that answers 500 twice;
#   - wrong bytes under a sha256 column and unsupported schemes (s3://,
#     ftp:// with credentials, which never show) are quarantined with clear
#     messages, and the run goes on;
#   - a second run is served by the cache: the server sees no new request;
#   - data.cache_dir in the config puts the cache where it says.
. tests/integration/lib.sh
[ -x /usr/bin/python3 ] || { echo "no /usr/bin/python3 for the test server"; exit 77; }

SRV="$T/srv"
mkdir -p "$SRV"
export MKE_CACHE="$T/cache"

# npy files (float32, shape (2,)) written with the stdlib; digests printed
"$PY" - "$SRV" >"$T/sums" <<'PYEOF'
import hashlib, os, struct, sys
d = sys.argv[1]
def npy(vals):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % len(vals)
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + \
        struct.pack("<%df" % len(vals), *vals)
for i in range(8):
    b = npy([float(i), float(-i)])
    open(os.path.join(d, "s%d.npy" % i), "wb").write(b)
    print("s%d.npy %s" % (i, hashlib.sha256(b).hexdigest()))
PYEOF
sum_of() { sed -n "s/^$1 //p" "$T/sums"; }

"$PY" tests/integration/http_server.py "$SRV" "$T/port" "$T/srv.log" &
echo $! >"$T/server.pid"
wait_for 10 test -s "$T/port" || fail "the test HTTP server did not start"
PORT=$(cat "$T/port")
U="http://127.0.0.1:$PORT"

mkconfig deploy/examples/twomoon.json "$T/cfg.json" '
c["data"]["modalities"] = {"a": {"column": "x", "kind": "npy"}}
del c["models"]["mm"]
c["variants"] = {"um_student": {"model": "um"}}'

cat >"$T/good.csv" <<CSV
id,label,x,sha256
r0,0,$U/files/s0.npy,
r1,1,$U/files/s1.npy,$(sum_of s1.npy)
r2,0,$U/drop/2/s2.npy,$(sum_of s2.npy)
r3,1,$U/error/2/s3.npy,
r4,0,$U/redirect/s4.npy,
r5,1,$U/files/s5.npy,
CSV

MKE_PROGRESS_INTERVAL=0.05 "$MKE" shard "$T/good.csv" --run r1 --config "$T/cfg.json" >"$T/out1" 2>"$T/err1" ||
	{ cat "$T/err1"; fail "mke shard on http:// cells failed"; }
cat "$T/out1" "$T/err1"
grep -q "quarantined" "$T/err1" && fail "rows were quarantined: $(cat "$T/err1")"
grep -q "6 URLs: 0 from the cache, 6 downloaded, 0 failed" "$T/err1" ||
	fail "expected 6 URLs downloaded"
grep -q ": 6 rows (0 bad" "$T/out1" || fail "expected 6 rows in: $(cat "$T/out1")"
ok "http:// npy cells: every row accepted"
# the retries take over a second: the fetch meter prints plain lines (stderr
# is a file) and its last one is the batch's end
grep -q "^fetch: [0-9]*% ([0-6]/6 files, [0-9.]* [kM]*B, " "$T/err1" || fail "no fetch progress: $(cat "$T/err1")"
grep "^fetch: " "$T/err1" | tail -n 1 | grep -q "^fetch: 100% (6/6 files" ||
	fail "last fetch line: $(grep "^fetch: " "$T/err1" | tail -n 1)"
ok "fetch progress lines with files, bytes and rate"

grep -q "GET /drop/2/s2.npy range=bytes=[1-9][0-9]*- status=206" "$T/srv.log" ||
	fail "the dropped transfer was not resumed with a Range request: $(cat "$T/srv.log")"
[ "$(grep -c "GET /error/2/s3.npy .*status=500" "$T/srv.log")" = 2 ] ||
	fail "expected two 500s before the file"
ok "dropped transfers resumed with Range (206); 500s retried"

ls "$MKE_CACHE"/sha256 | grep -q . || fail "nothing in $MKE_CACHE/sha256"
[ "$(stat -c %a "$MKE_CACHE/sha256/$(sum_of s1.npy)")" = 640 ] || fail "cached file not 0640"
[ -z "$(ls "$MKE_CACHE/partial")" ] || fail "partial files left: $(ls "$MKE_CACHE/partial")"

cat >"$T/bad.csv" <<CSV
id,label,x,sha256
g0,0,$U/files/s6.npy,$(sum_of s6.npy)
w1,1,$U/wrong/s7.npy,$(sum_of s7.npy)
s2,0,s3://bucket/s7.npy,
f3,1,ftp://user:secret@127.0.0.1/s7.npy,
CSV
"$MKE" shard "$T/bad.csv" --run r2 --config "$T/cfg.json" >"$T/out2" 2>"$T/err2" ||
	{ cat "$T/err2"; fail "mke shard with bad URL cells failed (they must be quarantined)"; }
cat "$T/out2" "$T/err2"
grep -qF "bad.csv:3: column 'x': sha256 mismatch for '$U/wrong/s7.npy': expected $(sum_of s7.npy), got " "$T/err2" ||
	fail "no clear sha256 mismatch message"
grep -qF "bad.csv:4: column 'x': unsupported URL scheme 's3' in 's3://bucket/s7.npy'" "$T/err2" ||
	fail "s3:// not refused clearly"
grep -qF "bad.csv:5: column 'x': unsupported URL scheme 'ftp' in 'ftp://127.0.0.1/s7.npy'" "$T/err2" ||
	fail "ftp:// not refused clearly"
grep -q secret "$T/err2" "$T/out2" && fail "a password from a URL was printed"
grep -q "3 rows quarantined" "$T/err2" || fail "expected 3 rows quarantined"
[ -e "$MKE_CACHE/sha256/$(sum_of s7.npy)" ] && fail "wrong bytes were stored"
ok "wrong bytes and unsupported schemes quarantined"

n=$(wc -l <"$T/srv.log")
"$MKE" shard "$T/good.csv" --run r3 --config "$T/cfg.json" >"$T/out3" 2>"$T/err3" ||
	{ cat "$T/err3"; fail "second run failed"; }
grep -q "6 URLs: 6 from the cache, 0 downloaded, 0 failed" "$T/err3" ||
	fail "second run not served by the cache: $(cat "$T/err3")"
[ "$(wc -l <"$T/srv.log")" = "$n" ] || fail "the second run made requests: $(tail -n +$((n + 1)) "$T/srv.log")"
ok "second run: cache hits, no request"

mkconfig "$T/cfg.json" "$T/cfg2.json" 'c["data"]["cache_dir"] = "cache2"'
"$MKE" shard "$T/good.csv" --run r4 --config "$T/cfg2.json" >"$T/out4" 2>"$T/err4" ||
	{ cat "$T/err4"; fail "run with data.cache_dir failed"; }
[ -e "$T/cache2/sha256/$(sum_of s1.npy)" ] || fail "data.cache_dir not used"
ok "data.cache_dir"

kill "$(cat "$T/server.pid")" 2>/dev/null || true
rm -f "$T/server.pid"
