#!/bin/sh
# Lazily decoded datasets give the results of resident ones, bit for bit
# (docs/formats.md "Memory"): `mke experiment` over the small RAVDESS files
# (face images + voice WAVs; every variant, the noisy student's D_u + D_l
# included) with the default cache (everything resident) and with
# data.cache_mb 1 (every media modality decoded per batch), with and without
# prefetch: the printed tables (teacher, pseudo-labels, each variant's test
# accuracy and rectification) are identical. Epochs are cut to keep it short.
. tests/integration/lib.sh
MKE="$MKE" sh "$ROOT/deploy/examples/prepare-small.sh" ravdess "$T/data" >"$T/prepare.log" 2>&1 ||
	{ tail -n 20 "$T/prepare.log"; fail "prepare-small.sh ravdess"; }
for v in resident lazy lazy_noprefetch; do
	case $v in
	resident) extra="" ;;
	lazy) extra="c['data']['cache_mb'] = 1" ;;
	lazy_noprefetch) extra="c['data']['cache_mb'] = 1; c['data']['prefetch'] = False" ;;
	esac
	mkconfig "$ROOT/deploy/examples/ravdess-small.json" "$T/$v.json" "c['data']['root'] = '$T/data'; c['teacher']['epochs'] = 3; c['student']['epochs'] = 2
$extra"
	"$MKE" experiment "$T/$v.json" --format csv >"$T/$v.csv" 2>"$T/$v.err" ||
		{ tail -n 20 "$T/$v.err"; fail "mke experiment ($v)"; }
done
[ -s "$T/resident.csv" ] || fail "no results"
grep -q "decoding per batch" "$T/resident.err" && fail "the default cache did not hold the small set"
grep -q "decoding per batch" "$T/lazy.err" || { cat "$T/lazy.err"; fail "cache_mb 1 did not make the data lazy"; }
lines=$(wc -l <"$T/resident.csv")
[ "$lines" -ge 5 ] || fail "only $lines result lines"
cmp -s "$T/resident.csv" "$T/lazy.csv" || { diff "$T/resident.csv" "$T/lazy.csv"; fail "lazy results differ from resident ones"; }
cmp -s "$T/resident.csv" "$T/lazy_noprefetch.csv" ||
	{ diff "$T/resident.csv" "$T/lazy_noprefetch.csv"; fail "lazy results without prefetch differ"; }
ok "resident, lazy and lazy without prefetch: identical results ($lines lines)"
