#!/bin/sh
# tests/bench/label_ab.sh - the label loop of two builds side by side: the
# MLP run of `make bench` section 4 (TwoMoon points jittered, MLP teacher
# (32,32), shard size 64; one student epoch instead of 4, it is not measured
# here) with 1 and 2 ranks, the two builds interleaved, ROUNDS times.
#
#   sh tests/bench/label_ab.sh BINDIR_A BINDIR_B [ROUNDS [ROWS]]
#
# BINDIR_*: a directory with mke and mke-worker (e.g. a copy of bin/ made
# before a change). ROWS: unlabeled rows (default 64000, the full bench).
# Prints one line per run (build, ranks, the label loop's time in Redis over
# its work time summed over ranks, idle and heartbeat-thread fractions,
# samples/s over the slowest rank, work seconds) and the medians.
# Run from the repository root.
set -u
a=$1 b=$2 rounds=${3:-5} urows=${4:-64000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
. tests/bench/pipeline_data.sh
pipeline_data "$tmp" "$urows" 1
: >"$tmp/out"
# one NAME BINDIR RANKS: a run, one line
one() {
	r="$tmp/run"
	if "$2/mke" run "$tmp/run.json" --ranks "$3" --run-dir "$r" --db "$r.db" >/dev/null 2>"$tmp/err"; then
		rid=$("$2/mke" runs --db "$r.db" 2>/dev/null | awk 'NR == 2 { print $1 }')
		"$2/mke" export "$rid" --metrics --format csv --db "$r.db" 2>/dev/null | tr -d '\r' |
			awk -F, -v k="$1 $3" '$2 ~ /^rank[0-9]+$/ { v[$3] += $5; if ($3 == "label_work_seconds" && $5 > mw) mw = $5 }
			END { if (mw > 0 && v["label_work_seconds"] > 0) { w = v["label_work_seconds"]
				printf "%s %.4f %.4f %.4f %.0f %.3f\n", k, v["label_queue_seconds"] / w,
				v["label_idle_seconds"] / w, v["label_queue_thread_seconds"] / w, v["label_samples"] / mw, mw } }' |
			tee -a "$tmp/out"
	else
		echo "$1 $3: mke run failed: $(tail -n 1 "$tmp/err")"
	fi
	rm -rf "$r" "$r.db"*
}
echo "build ranks redis_fraction idle_fraction thread_fraction samples_per_s work_s"
i=0
while [ "$i" -lt "$rounds" ]; do
	i=$((i + 1))
	for np in 1 2; do
		one A "$a" "$np"
		one B "$b" "$np"
	done
done
# med K COLUMN: the median of a column over build and ranks K
med() {
	awk -v k="$1" -v c="$2" '$1 " " $2 == k { print $c }' "$tmp/out" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR) printf "%s (%s..%s, %d runs)", v[int((NR + 1) / 2)], v[1], v[NR], NR }'
}
echo "medians:"
for k in "A 1" "B 1" "A 2" "B 2"; do
	echo "$k ranks: redis $(med "$k" 3)  idle $(med "$k" 4)  samples/s $(med "$k" 6)"
done
