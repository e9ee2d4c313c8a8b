#!/bin/sh
# Benchmarks of the network engine; `make bench` runs this from the repo root
# with MKE_BUILD (build dir) and MKE_BINDIR (where mke is).
#
#   1. the TwoMoon table (deploy/examples/twomoon-table2.json) with bin/mke on
#      one core: OPENBLAS_NUM_THREADS=1 and, where taskset exists, CPU 0;
#      wall and CPU seconds, median over MKE_BENCH_REPEATS runs (default 3)
#   2. the same protocol in PyTorch (tests/bench/twomoon_torch.py, one
#      thread; its TIME_S and CPU_S), skipped with a note without
#      python3-torch, and the ratio to mke
#   3. one training step of the TwoMoon MLPs per regularizer (microseconds,
#      CPU time) and GEMM throughput, from $MKE_BUILD/bench/bench_step
#
# MKE_BENCH_QUICK=1 runs 3 student seeds (81,14,3) on both sides (PyTorch's
# --quick, which also sweeps 3 teacher seeds as mke does with 3 seeds), so the
# ratio stays a ratio of identical work; the PyTorch run takes ~4 minutes
# in full. Times of the mke table cover the whole `mke experiment` (teacher
# sweep and evaluation included, a few tens of ms); PyTorch's TIME_S covers
# its training loops only, which favours PyTorch slightly.
#
# Prints one table and writes $MKE_BUILD/bench.csv (name,value,unit).
set -u
build=${MKE_BUILD:-build}
bindir=${MKE_BINDIR:-bin}
repeats=${MKE_BENCH_REPEATS:-3}
quick=${MKE_BENCH_QUICK:-0}
root=$(pwd)
csv="$build/bench.csv"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
pin=""
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then
	pin="taskset -c 0"
fi

echo "name,value,unit" >"$csv"
rows="$tmp/rows"
: >"$rows"
# row NAME VALUE UNIT
row() {
	echo "$1,$2,$3" >>"$csv"
	printf '%-44s %12s  %s\n' "$1" "$2" "$3" >>"$rows"
}
note() {
	printf '  note: %s\n' "$*" >>"$rows"
}
# median of the numbers on stdin
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a";
		else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---- 1. the TwoMoon table with mke ------------------------------------------
cfg="$tmp/twomoon.json"
seeds_note="10 seeds"
sed -e "s|\"root\": *\"[^\"]*\"|\"root\": \"$root/deploy/data/twomoon\"|" \
	deploy/examples/twomoon-table2.json >"$cfg"
if [ "$quick" = 1 ]; then
	sed -i -e 's|"seeds": *\[[^]]*\]|"seeds": [81, 14, 3]|' "$cfg"
	seeds_note="3 seeds (quick)"
fi
have_time=0
[ -x /usr/bin/time ] && have_time=1
: >"$tmp/wall"
: >"$tmp/cpu"
ok=1
i=0
while [ "$i" -lt "$repeats" ]; do
	i=$((i + 1))
	if [ "$have_time" = 1 ]; then
		/usr/bin/time -f "%e %U %S" -o "$tmp/t" $pin "$bindir/mke" experiment "$cfg" -q \
			>"$tmp/table.txt" 2>"$tmp/err" || { ok=0; break; }
		awk '{ print $1 }' "$tmp/t" >>"$tmp/wall"
		awk '{ printf "%.2f\n", $2 + $3 }' "$tmp/t" >>"$tmp/cpu"
	else
		t0=$(date +%s.%N)
		$pin "$bindir/mke" experiment "$cfg" -q >"$tmp/table.txt" 2>"$tmp/err" || { ok=0; break; }
		t1=$(date +%s.%N)
		echo "$t0 $t1" | awk '{ printf "%.2f\n", $2 - $1 }' >>"$tmp/wall"
	fi
done
if [ "$ok" = 1 ]; then
	mke_wall=$(median <"$tmp/wall")
	mke_cpu=$(median <"$tmp/cpu")
	row "twomoon_mke_wall" "$mke_wall" "s"
	row "twomoon_mke_cpu" "$mke_cpu" "s"
	note "mke: $seeds_note, median of $repeats, one core${pin:+ ($pin)}"
else
	mke_wall=n/a
	mke_cpu=n/a
	note "mke experiment failed: $(tail -n 1 "$tmp/err")"
fi

# ---- 2. the same protocol in PyTorch ----------------------------------------
if /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
	qarg=""
	[ "$quick" = 1 ] && qarg="--quick"
	if $pin /usr/bin/python3 tests/bench/twomoon_torch.py --loss double_softmax --threads 1 \
		$qarg >"$tmp/torch.txt" 2>&1; then
		tw=$(sed -n 's/^TIME_S=//p' "$tmp/torch.txt" | tail -n 1)
		tc=$(sed -n 's/^CPU_S=//p' "$tmp/torch.txt" | tail -n 1)
		row "twomoon_torch_wall" "${tw:-n/a}" "s"
		[ -n "$tc" ] && row "twomoon_torch_cpu" "$tc" "s"
		if [ -n "$tw" ] && [ "$mke_wall" != n/a ]; then
			row "twomoon_torch_over_mke_wall" "$(echo "$tw $mke_wall" | awk '{ printf "%.1f", $1 / $2 }')" "x"
		fi
		if [ -n "$tc" ] && [ "$mke_cpu" != n/a ] && [ "$mke_cpu" != "" ]; then
			row "twomoon_torch_over_mke_cpu" "$(echo "$tc $mke_cpu" | awk '{ printf "%.1f", $1 / $2 }')" "x"
		fi
		note "torch: tests/bench/twomoon_torch.py --loss double_softmax --threads 1 $qarg (one run)"
	else
		note "twomoon_torch.py failed: $(tail -n 1 "$tmp/torch.txt")"
	fi
else
	note "PyTorch skipped: /usr/bin/python3 has no torch (apt install python3-torch)"
fi

# ---- 3. training steps and kernels ------------------------------------------
if [ -x "$build/bench/bench_step" ]; then
	steps=400
	[ "$quick" = 1 ] && steps=100
	$pin "$build/bench/bench_step" "$steps" >"$tmp/steps.txt" 2>&1
	while read -r kind name reg val; do
		case "$kind" in
		step) row "step_${name}_${reg}" "$val" "us" ;;
		gflops) row "gflops_${name}" "$reg" "GFLOP/s" ;;
		esac
	done <"$tmp/steps.txt"
	note "step: zero grad + forward + double-softmax loss/backward + SGD on 270 rows, median of 7 x $steps steps, CPU time"
else
	note "no $build/bench/bench_step; run 'make bench'"
fi

printf '%-44s %12s  %s\n' "benchmark" "value" "unit"
cat "$rows"
echo "wrote $csv"
