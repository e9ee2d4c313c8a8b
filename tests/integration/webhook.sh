#!/bin/sh
# `mke run --notify URL`: when the run ends, its summary is POSTed as JSON to
# a listener on loopback that answers 503 first and 200 next (one retry);
# the body names the run, its status, the phase timings and the metrics, and
# equals the "end" event of `--json`, whose every stdout line is one JSON
# object. A failed run and a cancelled one are announced too; a webhook that
# nobody answers never changes a run's exit status; the URL's path (a token)
# never reaches the output.
# Bad --notify values and --quiet with --json are usage errors.
. tests/integration/lib.sh

mkconfig deploy/examples/twomoon.json "$T/c.json" '
c["seeds"] = [81]
c["teacher"]["epochs"] = 100
c["student"]["epochs"] = 100'

# listen PLAN: a one-thread HTTP server on 127.0.0.1 that answers POSTs with the
# status codes of PLAN in turn (the last one repeats), keeping each request
# as $T/hook/post-N.json (body) and post-N.hdr (method, path, headers)
listen() {
	rm -rf "$T/hook"; mkdir -p "$T/hook"
	"$PY" - "$T/hook" "$1" <<'PYEOF' &
import http.server, os, sys
d, plan = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
n = [0]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        k = n[0]; n[0] += 1
        open(os.path.join(d, "post-%d.hdr" % k), "w").write(
            "%s %s\n%s" % (self.command, self.path, self.headers))
        open(os.path.join(d, "post-%d.json" % k), "wb").write(body)
        code = plan[min(k, len(plan) - 1)]
        self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(os.path.join(d, "port.tmp"), "w").write(str(s.server_address[1]))
os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
s.serve_forever()
PYEOF
	echo $! >"$T/listener.pid"
	wait_for 10 test -s "$T/hook/port" || fail "the listener did not start"
	PORT=$(cat "$T/hook/port")
}
stop_listener() { kill "$(cat "$T/listener.pid")" 2>/dev/null || true; rm -f "$T/listener.pid"; }

# ---- usage errors ----
for bad in "ftp://127.0.0.1/x" "127.0.0.1:8080" "http://a b/"; do
	rc=0; "$MKE" run "$T/c.json" --notify "$bad" >/dev/null 2>"$T/u.err" || rc=$?
	[ "$rc" = 2 ] && grep -q "error: --notify" "$T/u.err" || fail "--notify '$bad': exit $rc, $(cat "$T/u.err")"
done
rc=0; "$MKE" run "$T/c.json" --quiet --json >/dev/null 2>"$T/u.err" || rc=$?
[ "$rc" = 2 ] && grep -q "contradict" "$T/u.err" || fail "--quiet --json: exit $rc, $(cat "$T/u.err")"
ok "bad --notify URLs and --quiet with --json are usage errors (exit 2)"

# ---- a run with --json and a webhook that fails once ----
listen 503,200
"$MKE" run "$T/c.json" --ranks 2 --run-dir "$T/run" --json --notify "http://127.0.0.1:$PORT/hook/s3cr3t-t0ken" \
	>"$T/out.jsonl" 2>"$T/err" || { cat "$T/err"; fail "mke run --json --notify failed"; }
stop_listener
[ -f "$T/hook/post-1.json" ] || fail "no second POST after the 503: $(ls "$T/hook")"
[ ! -f "$T/hook/post-2.json" ] || fail "POSTed again after the 200"
grep -q '^POST /hook/s3cr3t-t0ken$' "$T/hook/post-1.hdr" || fail "request line: $(head -n 1 "$T/hook/post-1.hdr")"
grep -qi '^Content-Type: application/json' "$T/hook/post-1.hdr" || fail "no JSON content type: $(cat "$T/hook/post-1.hdr")"
cmp -s "$T/hook/post-0.json" "$T/hook/post-1.json" || fail "the retry sent another body"
if grep -q s3cr3t "$T/out.jsonl" "$T/err"; then fail "the webhook URL's token reached the output"; fi
"$PY" - "$T/out.jsonl" "$T/hook/post-1.json" "$T/run/mke.db" <<'PYEOF' || fail "the --json events or the webhook body"
import json, sqlite3, sys
lines = open(sys.argv[1]).read().splitlines()
ev = [json.loads(l) for l in lines]          # every line is one JSON object
kinds = [e["event"] for e in ev]
assert kinds[0] == "run" and kinds[-1] == "end", kinds
assert all(isinstance(e["ts"], (int, float)) and e["run"] == ev[0]["run"] for e in ev)
phases = [e["phase"] for e in ev if e["event"] == "phase"]
assert phases == ["teacher", "shard", "label", "student", "eval", "done"], phases
assert "job" in kinds
for e in ev:
    if e["event"] == "progress":
        assert e["phase"] in ("teacher", "label", "student"), e
        assert 0 <= e.get("fraction", 0) <= 1, e
end = ev[-1]
body = json.load(open(sys.argv[2]))
assert body["event"] == "run_end", body["event"]
for k in ("run", "status", "phases", "metrics", "result", "seconds", "slurm_job"):
    assert body[k] == end[k], k
db = sqlite3.connect(sys.argv[3])
run, status = db.execute("select id, status from runs").fetchone()
assert body["run"] == run and body["status"] == status == "done", (body["run"], body["status"])
assert [p["phase"] for p in body["phases"]] == ["teacher", "shard", "label", "student", "eval"]
assert all(p["status"] == "done" and p["seconds"] >= 0 for p in body["phases"]), body["phases"]
acc = db.execute("select value from metrics where variant = 'teacher' and key = 'test_accuracy'").fetchone()[0]
assert abs(body["metrics"]["teacher"]["test_accuracy"] - acc) < 1e-9
assert abs(body["result"]["teacher_accuracy"] - acc) < 1e-9
assert body["result"]["best_student"]["kind"].endswith("student") or "student" in body["result"]["best_student"]["kind"]
print("events:", len(ev), "webhook body:", len(open(sys.argv[2]).read()), "bytes")
PYEOF
ok "--json prints one JSON object per event; the webhook got the run's summary after one retry"

# ---- nobody listens: the run still ends done (exit 0) with a warning ----
listen 200
DEAD=$PORT
stop_listener
"$MKE" run "$T/c.json" --ranks 2 --run-dir "$T/run2" -q --notify "http://127.0.0.1:$DEAD/x/s3cr3t" \
	>"$T/out2" 2>"$T/err2" || { cat "$T/err2"; fail "mke run with a dead webhook failed"; }
grep -q "^warning: webhook http://127.0.0.1:$DEAD: not delivered" "$T/err2" || fail "no warning: $(cat "$T/err2")"
if grep -q s3cr3t "$T/out2" "$T/err2"; then fail "the token reached the output"; fi
# --quiet: the summary on stdout, nothing but the warning on stderr
RUN=$(run_id_of "$T/out2")
[ -n "$RUN" ] && grep -q '^  status  done in .*: teacher .*, eval ' "$T/out2" || fail "quiet summary: $(cat "$T/out2")"
[ "$(grep -vc '^warning: webhook' "$T/err2")" = 0 ] || fail "--quiet printed more than the warning: $(cat "$T/err2")"
ok "a dead webhook is a warning; the run ends done; --quiet prints the summary only"

# ---- a failed run is announced too, and still exits 1 ----
listen 200
printf '#!/bin/sh\nexit 3\n' >"$T/badworker"; chmod +x "$T/badworker"
rc=0
MKE_WORKER="$T/badworker" MKE_NOTIFY_URL="http://127.0.0.1:$PORT/f" "$MKE" run "$T/c.json" --ranks 1 \
	--run-dir "$T/run3" --max-restarts 1 -q >"$T/out3" 2>"$T/err3" || rc=$?
stop_listener
[ "$rc" = 1 ] || { cat "$T/err3"; fail "a failed run exited $rc, want 1"; }
"$PY" -c 'import json,sys; b = json.load(open(sys.argv[1])); assert b["status"] == "failed" and b["error"], b' \
	"$T/hook/post-0.json" || fail "the failed run's webhook body: $(cat "$T/hook/post-0.json")"
ok "a failed run POSTs status failed (from MKE_NOTIFY_URL) and exits 1"

# ---- a cancelled run (SIGTERM to the coordinator) is announced, exit 3 ----
mkconfig deploy/examples/twomoon.json "$T/long.json" '
c["seeds"] = [81]
c["teacher"]["epochs"] = 100
c["student"]["epochs"] = 200000
c["variants"] = {"um_student": {"model": "um"}}'
listen 200
run_in_background "$T/long.json" "$T/run4" --notify "http://127.0.0.1:$PORT/c"
wait_phase "$DB" student
kill -TERM $pid
rc=0; wait $pid || rc=$?
stop_listener
[ "$rc" = 3 ] || { tail -n 20 "$T/run4.err"; fail "a cancelled run exited $rc, want 3"; }
"$PY" -c 'import json,sys; b = json.load(open(sys.argv[1])); assert b["status"] == "cancelled", b["status"]' \
	"$T/hook/post-0.json" || fail "the cancelled run's webhook body: $(cat "$T/hook/post-0.json")"
grep -q '^  status  cancelled in ' "$T/run4.out" || fail "no summary after the cancel: $(cat "$T/run4.out")"
ok "a cancelled run POSTs status cancelled and exits 3"
