#!/bin/sh
# Progress of long work outside `mke run` (common/meter.h): `mke shard` of
# 30,000 one-row shards into a private redis-server prints plain "record:"
# and "push:" lines when stderr is not a terminal (MKE_PROGRESS_INTERVAL
# makes them frequent), each count rising to 30000/30000, and "decode:"
# lines while `mke shard --config` validates the rows; --quiet prints
# none; on a terminal (script(1) gives one) the meter is a live line redrawn
# with \r and erased at the end, and no live line is drawn into a file. Fetching URL cells is checked in
# remote_data.sh.
. tests/integration/lib.sh

start_redis

awk 'BEGIN { print "id,label,x,y"; for (i = 0; i < 30000; i++) printf "r%05d,,%d,%d\n", i, i, -i }' >"$T/m.csv"

MKE_PROGRESS_INTERVAL=0.001 "$MKE" shard "$T/m.csv" --run p1 --shard-size 1 \
	--redis "unix://$T/redis.sock" >"$T/out1" 2>"$T/err1" || { cat "$T/err1"; fail "mke shard failed"; }
grep -q "30000 new, 30000 pushed" "$T/out1" || fail "summary: $(cat "$T/out1")"
for what in record push; do
	n=$(grep -c "^$what: [0-9]*% ([0-9]*/30000 shards" "$T/err1" || true)
	[ "$n" -ge 2 ] || fail "expected several '$what:' lines, got $n: $(cat "$T/err1")"
	grep "^$what: " "$T/err1" | tail -n 1 | grep -q "^$what: 100% (30000/30000 shards, [0-9]* shards/s)" ||
		fail "last '$what:' line is not the end: $(grep "^$what: " "$T/err1" | tail -n 1)"
	# the counts never go down
	grep "^$what: " "$T/err1" | sed 's/.*(\([0-9]*\)\/.*/\1/' |
		awk 'NR > 1 && $1 < p { exit 1 } { p = $1 }' || fail "'$what:' counts went down"
done
ok "plain progress lines for recording and pushing, ending at 30000/30000"

# decoding a manifest's rows (the validation pass of `mke shard --config`,
# the shard phase and every worker's load)
mkconfig deploy/examples/twomoon.json "$T/c.json" 'pass'
MKE_PROGRESS_INTERVAL=0.001 "$MKE" shard "$T/m.csv" --run p0 --shard-size 100 --config "$T/c.json" \
	>"$T/out0" 2>"$T/err0" || { cat "$T/err0"; fail "mke shard --config failed"; }
grep -q "30000 rows (0 bad" "$T/out0" || fail "summary: $(cat "$T/out0")"
grep "^decode: " "$T/err0" | tail -n 1 | grep -q "^decode: 100% (30000/30000 rows, [0-9]* rows/s)" ||
	fail "no decode progress ending at 30000/30000: $(tail -n 3 "$T/err0")"
ok "decode progress lines while a manifest is validated"

MKE_PROGRESS_INTERVAL=0.001 "$MKE" shard "$T/m.csv" --run p2 --shard-size 1 --quiet \
	--redis "unix://$T/redis.sock" >"$T/out2" 2>"$T/err2" || { cat "$T/err2"; fail "mke shard --quiet failed"; }
[ -s "$T/err2" ] && fail "--quiet printed: $(cat "$T/err2")"
grep -q "30000 new, 30000 pushed" "$T/out2" || fail "--quiet lost the summary: $(cat "$T/out2")"
ok "--quiet: no progress, the summary stays"

if script -qec "true" /dev/null >/dev/null 2>&1; then
	script -qec "'$MKE' shard '$T/m.csv' --run p3 --shard-size 1 2>'$T/err3' >'$T/out3'" /dev/null >/dev/null ||
		{ cat "$T/err3"; fail "mke shard on a terminal failed"; }
	# stderr was redirected to a file above, so it is not a terminal: no live line
	grep -q "$(printf '\r')" "$T/err3" && fail "a live line was drawn on a file"
	MKE_PROGRESS_INTERVAL=0.001 script -qec "'$MKE' shard '$T/m.csv' --run p4 --shard-size 1 >'$T/out4'" \
		"$T/tty4" >/dev/null || fail "mke shard on a terminal failed: $(cat "$T/tty4")"
	grep -q "30000 new" "$T/out4" || fail "summary on a terminal: $(cat "$T/out4")"
	grep -q "$(printf '\r\033')\[Krecord \[#" "$T/tty4" || fail "no live bar on the terminal: $(cat -v "$T/tty4")"
	grep -q "^record: " "$T/tty4" && fail "plain lines on a terminal"
	# the last thing the meter writes is the erase of its line
	tr '\r' '\n' <"$T/tty4" | grep -v '^$' | tail -n 1 | grep -q "record\|push" &&
		fail "the live line was left on the terminal"
	ok "live line redrawn in place (CR) and erased on a terminal"
else
	echo "skip: script(1) cannot run here (no terminal test)"
fi
