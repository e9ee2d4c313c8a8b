#!/bin/sh
# mke report on what the pipeline really records, then in a browser.
#
# A short twomoon run (mpirun -np 2, private redis) gives a real database;
# `mke report` turns it into one HTML page that report_check.py parses with
# html.parser: balanced tags, nothing loaded from elsewhere, the variants
# table with every row of the paper's layout, at least 2 inline <svg> charts
# with paths. A copy of the database with markup planted in the run's name,
# error, a variant and a metric key must come out escaped. When
# /usr/bin/chromium is installed (`make deps`), the page is rendered headless
# and the screenshot must not be blank (decoded PNG: more than 10 distinct
# pixel values, some share of non-background pixels).
. tests/integration/lib.sh
CHECK="$PY $ROOT/tests/integration/report_check.py"

# ---- a real run ------------------------------------------------------------------
"$MKE" run deploy/examples/twomoon.json --ranks 2 --run-dir "$T/run" -q >"$T/out" 2>"$T/err" \
	|| { cat "$T/err"; fail "mke run failed"; }
RUN=$(run_id_of "$T/out")
DB="$T/run/mke.db"
[ -n "$RUN" ] && [ -f "$DB" ] || fail "no run id or database from mke run"
ok "run $RUN"

# ---- the report --------------------------------------------------------------------
"$MKE" report "$RUN" --db "$DB" -o "$T/report.html" 2>"$T/err" || { cat "$T/err"; fail "mke report failed"; }
[ "$(stat -c %a "$T/report.html")" = 640 ] || fail "report mode is $(stat -c %a "$T/report.html"), not 640"
ls "$T"/report.html.tmp.* >/dev/null 2>&1 && fail "a temp file was left beside the report"
$CHECK html "$T/report.html" || fail "the report does not pass the HTML checks"
grep -q "$RUN" "$T/report.html" || fail "the report does not name the run"
ok "report parses, has the variants table and the charts"

# usage errors
rc=0; "$MKE" report "$RUN" --db "$DB" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "mke report without -o: exit $rc, not 2"
rc=0; "$MKE" report nosuchrun --db "$DB" -o "$T/x.html" 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "mke report of an unknown run: exit $rc, not 1"
[ -e "$T/x.html" ] && fail "a failed report left a file"
"$MKE" report --help | grep -q "^usage: mke report" || fail "mke report --help"
ok "usage and errors"

# ---- hostile strings are escaped ---------------------------------------------------------
if command -v sqlite3 >/dev/null; then
	H="$T/hostile.db"
	sqlite3 "$DB" ".backup '$H'"
	sqlite3 "$H" "UPDATE runs SET name = '<script>alert(\"name\")</script>',
			error = '<b>boom</b> & ''co''', host = 'h\"><svg onload=alert(2)>';
		INSERT INTO metrics (run_id, variant, key, step, value, ts_ms) VALUES
			('$RUN', '<img src=x onerror=alert(1)>/1', 'test_accuracy', 10, 0.5, 1),
			('$RUN', '<img src=x onerror=alert(1)>/1', 'train_loss', 1, 0.9, 1),
			('$RUN', '<img src=x onerror=alert(1)>/1', 'train_loss', 10, 0.3, 1),
			('$RUN', 'mm_student/81', 'class_accuracy/<i>0</i>', 2000, 0.75, 1);
		UPDATE shards SET attempts = 2 WHERE shard_id = 1;" || fail "sqlite3 could not plant the strings"
	"$MKE" report "$RUN" --db "$H" -o "$T/hostile.html" 2>"$T/err" || { cat "$T/err"; fail "mke report (hostile) failed"; }
	$CHECK html "$T/hostile.html" --hostile || fail "the hostile report does not pass the checks"
	grep -q "class_accuracy/&lt;i&gt;0&lt;/i&gt;" "$T/hostile.html" || fail "per-class metrics are not shown"
	ok "strings from the database are escaped"
else
	echo "note: sqlite3 CLI not installed; the escaping check is skipped"
fi

# ---- rendered in a browser --------------------------------------------------------------
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
	timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$T/chrome" --screenshot="$T/shot.png" --window-size=1200,1600 \
		"file://$T/report.html" >"$T/chrome.log" 2>&1 || { tail -20 "$T/chrome.log"; fail "chromium failed"; }
	[ -s "$T/shot.png" ] || { tail -20 "$T/chrome.log"; fail "chromium wrote no screenshot"; }
	$CHECK png "$T/shot.png" || fail "the rendered report looks blank"
	ok "chromium renders the report ($(stat -c %s "$T/shot.png") byte screenshot)"
else
	echo "note: $CHROMIUM not installed (Debian package chromium, 'make deps'): HTML checks only"
fi
echo "PASS report"
