#!/bin/sh
# bad_inputs.sh - the loaders refuse bad inputs (tests/bad/, see its README)
# with a message that names the file and the line or key, never crash, and
# keep counting the good rows of a manifest (bad rows are skipped, not fatal).
#
# Through the real CLI:
#   mke shard tests/bad/csv/X.csv --run X --config CFG   CSV manifests (inline cells)
#   mke shard tests/bad/npy_cells.csv --run npy --config CFG_NPY
#                                    npy cells pointing at bad .npy/.safetensors
#                                    files, URLs, ../ and absolute paths
#   mke experiment BADCONFIG         configs with wrong types, unknown keys, bad JSON
# CFG is deploy/examples/twomoon.json with data.root made absolute; CFG_NPY
# also makes modality a (column x) an npy column.
#
# What does not give a clear answer today is printed as "note:" and passes;
# MKE_BAD_STRICT=1 makes those notes failures (for whoever fixes them).
. tests/integration/lib.sh

B=tests/bad
strict=${MKE_BAD_STRICT:-0}
nfail=0
note() {
	if [ "$strict" = 1 ]; then echo "FAIL (strict): $*"; nfail=$((nfail + 1)); else echo "note: $*"; fi
}
bad() { echo "FAIL: $*"; nfail=$((nfail + 1)); }

# run NAME CMD...: run it, keep stdout/stderr in $T/NAME.{out,err}, set $rc;
# a signal, a sanitizer report or an abort is always a failure.
run() {
	_r=$1; shift
	rc=0
	"$@" >"$T/$_r.out" 2>"$T/$_r.err" || rc=$?
	if [ "$rc" -ge 124 ] || grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|Assertion|Aborted' "$T/$_r.err"; then
		bad "$_r: crashed or hung (exit $rc)"
		sed 's/^/  | /' "$T/$_r.err" | head -n 20
	fi
}
# has NAME TEXT: stderr of NAME holds TEXT (fixed string)
has() {
	if grep -qF -- "$2" "$T/$1.err"; then :; else
		bad "$1: stderr lacks: $2"
		sed 's/^/  | /' "$T/$1.err" | head -n 12
	fi
}
# status NAME WANT: exit status WANT
status() { [ "$rc" -eq "$2" ] || bad "$1: exit status $rc, want $2"; }
# rows NAME GOOD BAD: stdout reports GOOD rows and BAD skipped; a wrong bad
# count alone is a note (see csv_level below)
rows() {
	if ! grep -q "^[^ ]*: $2 rows (" "$T/$1.out"; then
		bad "$1: want $2 good rows counted, stdout: $(cat "$T/$1.out")"
	elif ! grep -q "^[^ ]*: $2 rows ($3 bad" "$T/$1.out"; then
		note "$1: $3 bad rows skipped but the summary says: $(cut -d: -f2- "$T/$1.out")"
	fi
}

mkconfig deploy/examples/twomoon.json "$T/inline.json" 'pass'
mkconfig deploy/examples/twomoon.json "$T/npy.json" \
	'c["data"]["modalities"]["a"] = {"column": "x", "kind": "npy"}'

# ---- CSV manifests: 3 good rows (lines 2-4), bad ones from line 5 -----------------
# name|good|bad|CSV-level|"line: reason" expected on stderr, several separated by '|'
"$PY" - "$T/huge_field.csv" <<'PYEOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write("id,label,split,x,y\ng1,0,labeled,0.5,1.5\ng2,1,labeled,-0.5,2\ng3,,unlabeled,1,-1\n")
    f.write("b1,0,labeled,\"" + "1 " * 600000 + "\",1\n")   # a 1.2 MB field
PYEOF
while IFS='|' read -r name good nbad csv_level lines; do
	[ -n "$name" ] || continue
	case $name in \#*) continue ;; esac
	f=$B/csv/$name.csv
	[ "$name" = huge_field ] && f=$T/huge_field.csv
	run "csv_$name" "$MKE" shard "$f" --run "csv_$name" --config "$T/inline.json"
	status "csv_$name" 0
	rows "csv_$name" "$good" "$nbad"
	# the CSV-only path (no --config) counts CSV-level bad rows in its summary
	if [ "$csv_level" = y ]; then
		run "csvonly_$name" "$MKE" shard "$f" --run "csvonly_$name"
		status "csvonly_$name" 0
		grep -q ": $good rows ($nbad bad" "$T/csvonly_$name.out" ||
			bad "csvonly_$name: want $good rows, $nbad bad: $(cat "$T/csvonly_$name.out")"
	fi
	echo "$lines" | tr '|' '\n' | while IFS= read -r l; do
		[ -n "$l" ] && { grep -qF -- "$f:$l" "$T/csv_$name.err" || echo "$name: stderr lacks: $f:$l"; }
	done >"$T/miss"
	if [ -s "$T/miss" ]; then
		bad "$(cat "$T/miss")"; sed 's/^/  | /' "$T/csv_$name.err" | head -n 12
	fi
done <<'EOF_CASES'
# name|good|bad|CSV-level (y: rows the CSV reader drops)|line: reason|line: reason...
missing_column|3|1|y|5: expected 5 columns, got 4
extra_column|3|1|y|5: expected 5 columns, got 6
stray_quote|3|1|y|5: quote inside an unquoted field in column 'x'
text_after_quote|3|1|y|5: unexpected text after the closing quote in column 'x'
unterminated_quote|3|1|y|5: unterminated quote in column 'x' (opened at line 5); the rest of the file is skipped
nul_byte|3|1|y|5: NUL byte in column 'x'
empty_id|3|1|y|5: empty id
duplicate_id|3|1|y|5: duplicate id 'g2' (first at line 3)
huge_field|3|1|y|5: field longer than 1 MB in column 'x'
unknown_label|3|3|n|5: unknown label 'cat'|6: unknown label '7'|7: unknown label '-1'
nan_inf|3|4|n|5: column 'x': 'nan' is not a finite float|6: column 'y': 'inf' is not a finite float|7: column 'x': '-Infinity' is not a finite float|8: column 'x': '1e39' is not a finite float
not_a_number|3|3|n|5: column 'x': 'abc' is not a number|6: column 'x': '0x1p3q' is not a number|7: column 'x' is empty
wrong_width|3|1|n|5: column 'x': expected 1 values, got 3
EOF_CASES

# structural problems: the whole file is refused (exit 1) with a message naming it
while IFS='|' read -r name msg; do
	[ -n "$name" ] || continue
	run "fatal_$name" "$MKE" shard "$B/csv/$name.csv" --run "fatal_$name" --config "$T/inline.json"
	status "fatal_$name" 1
	has "fatal_$name" "$msg"
done <<'EOF_CASES'
no_id_column|error: manifest 'tests/bad/csv/no_id_column.csv' has no 'id' column (columns: name, label, split, x, y)
duplicate_column|error: manifest 'tests/bad/csv/duplicate_column.csv' line 1: column 'x' appears twice in the header (columns 3 and 4)
empty|error: manifest 'tests/bad/csv/empty.csv' is empty: a header line is required
header_only|error: manifest 'tests/bad/csv/header_only.csv' has no usable rows
all_rows_bad|error: manifest 'tests/bad/csv/all_rows_bad.csv' has no usable rows
EOF_CASES
has fatal_all_rows_bad "tests/bad/csv/all_rows_bad.csv:2: column 'x': 'nan' is not a finite float"
has fatal_all_rows_bad "tests/bad/csv/all_rows_bad.csv:3: unknown label '9'"

# ---- npy cells: bad .npy and .safetensors files, URLs, paths ------------------------
M=$B/npy_cells.csv
run npy "$MKE" shard "$M" --run npy --config "$T/npy.json"
status npy 0
# good: g1, g2 and e1 (../ path, see below); bad: 28 rows
rows npy 3 28
while IFS='|' read -r line file why; do
	[ -n "$line" ] || continue
	if [ -n "$why" ]; then
		has npy "$M:$line: column 'x': cannot load '$B/$file'"
		has npy "error: npy '$B/$file': $why"
	fi
done <<'EOF_CASES'
4|npy/truncated_data.npy|data is 10 bytes but the shape needs 16
5|npy/truncated_header.npy|header length 118 runs past the end of the file (40 bytes)
6|npy/magic_only.npy|not a .npy file
7|npy/bad_magic.npy|not a .npy file (bad magic)
8|npy/bad_version.npy|unsupported format version 9.0
9|npy/header_len_past_end.npy|header of 65535 bytes is longer than numpy's limit
10|npy/dict_garbage.npy|'descr' is not a simple type string
11|npy/unknown_dtype.npy|unsupported dtype '<c8'
12|npy/object_dtype.npy|unsupported dtype '|O'
13|npy/fortran_order.npy|fortran_order arrays are not supported
14|npy/negative_shape.npy|shape has a negative or too large dimension
15|npy/shape_overflow.npy|shape's element count overflows
16|npy/shape_beyond_data.npy|data is 16 bytes but the shape needs 4000000000
20|npy/empty_file.npy|not a .npy file
23|safetensors/offsets_past_end.safetensors|not a .npy file
24|safetensors/shape_overflow.safetensors|not a .npy file
25|safetensors/header_len_past_end.safetensors|not a .npy file
26|safetensors/overlap.safetensors|not a .npy file
EOF_CASES
has npy "$M:17: column 'x': '$B/npy/nan_value.npy' holds a non-finite value at index 1"
has npy "$M:18: column 'x': '$B/npy/inf_value.npy' holds a non-finite value at index 2"
has npy "$M:19: column 'x': '$B/npy/half_inf.npy' holds a non-finite value at index 3"
has npy "$M:21: column 'x': expected 4 values, got 3"
has npy "$M:22: column 'x': cannot load '$B/npy/does_not_exist.npy'"
has npy "cannot open '$B/npy/does_not_exist.npy'"
has npy "$M:27: column 'x': unsupported URL scheme 's3' in 's3://bucket/x.npy'"
has npy "$M:28: column 'x': cannot fetch 'https://example.invalid/x.npy': "
has npy "$M:29: column 'x': cannot load '/etc/passwd': the path leads outside the manifest's directory"
has npy "$M:30: column 'x': unsupported URL scheme 'gopher' in 'gopher://h/x.npy'"
# line 31: "../bad/npy/good4.npy" goes up and back into the manifest's own
# directory (tests/bad), so confinement lets it load: it must not be refused
if grep -qF "$M:31:" "$T/npy.err"; then
	fail "line 31 (inside the manifest's directory) was refused: $(grep -F "$M:31:" "$T/npy.err")"
fi
# line 32: an absolute path outside the data is refused by confinement
has npy "$M:32: column 'x': cannot load '/etc/hostname': the path leads outside"

# ---- configs: mke experiment BADCONFIG fails naming the file and the key -------------
n=0
while IFS='|' read -r key expr want; do
	[ -n "$key" ] || continue
	n=$((n + 1))
	cfg=$T/bad$n.json
	mkconfig deploy/examples/twomoon.json "$cfg" "$expr"
	sed -i 's/"__INF__"/1e999/' "$cfg"
	run "config_$n" "$MKE" experiment "$cfg"
	status "config_$n" 1
	has "config_$n" "error: config '$cfg': key '$key' $want"
done <<'EOF_CASES'
teacher.epochs|c["teacher"]["epochs"] = "many"|must be a non-negative integer, got string
teacher.epochs|c["teacher"]["epochs"] = 1e20|must be at most 2147483647
teacher.seed|c["teacher"]["seed"] = -1|must be a non-negative integer
models.mm.hiden|c["models"]["mm"]["hiden"] = [4]|is not known
models.teacher.hidden[0]|c["models"]["teacher"]["hidden"] = [0, 32]|must be a positive integer, got 0
data.classes|c["data"]["classes"] = "two"|must be an integer >= 2 or an array of class names, got string
data.labeled|c["data"]["labeled"] = ["a.csv"]|must be a string, got array
data.modalities.a.kind|c["data"]["modalities"]["a"]["kind"] = "video"|must be one of
seeds[1]|c["seeds"] = [1, "x"]|must be a non-negative integer
student.optimizer.lr|c["student"]["optimizer"]["lr"] = -1|must be a positive number, got -1
student.optimizer.lr|c["student"]["optimizer"]["lr"] = "__INF__"|must be a positive number
regularizer.input_noise|c["regularizer"]["input_noise"] = "loud"|must be a non-negative number, got string
pipeline.shard_size|c["pipeline"]["shard_size"] = 1.5|must be a positive integer, got 1.5
pipeline.lease_ms|c["pipeline"]["lease_ms"] = True|must be a positive integer, got boolean
pipeline.redis|c["pipeline"]["redis"] = "http://127.0.0.1:6379"|must be redis://host:port or unix:///path
pipeline.redis|c["pipeline"]["redis"] = "rediss://127.0.0.1:6379"|must be redis://host:port or unix:///path
variants.mm_student.model|c["variants"]["mm_student"]["model"] = "nope"|names model 'nope', which is not defined
name|c["name"] = 5|must be a string, got number
EOF_CASES
# the same parser behind mke shard --config
run shard_badcfg "$MKE" shard "$B/csv/missing_column.csv" --run shard_badcfg --config "$T/bad1.json"
status shard_badcfg 1
has shard_badcfg "error: config '$T/bad1.json': key 'teacher.epochs'"
# not JSON / not an object
run config_syntax "$MKE" experiment "$B/config/syntax_error.json"
status config_syntax 1
has config_syntax "error: config '$B/config/syntax_error.json': not valid JSON near line 3, column 26"
run config_array "$MKE" experiment "$B/config/not_an_object.json"
status config_array 1
has config_array "error: config '$B/config/not_an_object.json': the top level must be an object, got array"
run config_empty "$MKE" experiment "$B/config/empty.json"
status config_empty 1
has config_empty "error: config '$B/config/empty.json': not valid JSON near line 1"
run config_missing "$MKE" experiment "$B/config/does_not_exist.json"
status config_missing 1
has config_missing "$B/config/does_not_exist.json"

[ "$nfail" -eq 0 ] || fail "$nfail bad-input check(s) failed"
ok "bad inputs refused with file and line/key; good rows still counted"
