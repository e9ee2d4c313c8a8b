#!/bin/sh
# `mke status --prometheus`: after a quick 2-rank TwoMoon run the output is
# valid Prometheus text exposition (checked line by line by a small parser:
# every sample belongs to a family announced by # HELP and # TYPE gauge just
# before it, names and labels match the format's grammar, label values use
# only the \\ \" \n escapes, values are floats or NaN/+Inf/-Inf), and it holds
# the run's info, its shards (all done), throughput, train loss and test
# accuracy per variant. A label value with a quote, a backslash and a newline
# (the run's name) round-trips through the escaping.
. tests/integration/lib.sh

command -v mpirun >/dev/null 2>&1 || { echo "mpirun is not installed"; exit 77; }
command -v redis-server >/dev/null 2>&1 || { echo "redis-server is not installed"; exit 77; }
mkconfig deploy/examples/twomoon.json "$T/c.json" '
c["name"] = "two\"moon\\\\x\ny"
c["seeds"] = [81]
c["teacher"]["epochs"] = 100
c["student"]["epochs"] = 100'
"$MKE" run "$T/c.json" --ranks 2 --run-dir "$T/r" -q >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "mke run failed"; }
"$MKE" status --db "$T/r/mke.db" --prometheus >"$T/prom" || fail "mke status --prometheus failed"
"$MKE" status --db "$T/r/mke.db" --prometheus --json >/dev/null 2>"$T/err2" && fail "--prometheus --json accepted"
grep -q "pick one" "$T/err2" || fail "no message for --prometheus with --json: $(cat "$T/err2")"
"$PY" - "$T/prom" "$T/c.json" <<'PYEOF' || { cat "$T/prom"; fail "not valid Prometheus text"; }
import json, re, sys
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(r"^(%s)(?:\{(%s(?:,%s)*)\})? (\S+)$" % (NAME, LABEL, LABEL))
VALUE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|NaN|[+-]Inf)$")
def unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], v)
helped, typed, seen, samples = set(), {}, [], []
current = None
for n, line in enumerate(open(sys.argv[1], encoding="utf-8").read().split("\n")[:-1], 1):
    m = re.match(r"^# (HELP|TYPE) (%s) (.+)$" % NAME, line)
    if m:
        kind, name, rest = m.groups()
        if kind == "HELP":
            assert name not in helped, (n, "second HELP", name)
            helped.add(name)
        else:
            assert rest in ("gauge", "counter", "untyped"), (n, rest)
            assert name not in typed, (n, "second TYPE", name)
            typed[name] = rest
        assert name not in seen or current == name, (n, "family split", name)
        current = name
        continue
    assert not line.startswith("#"), (n, line)
    m = SAMPLE.match(line)
    assert m, (n, "bad sample line", line)
    name, value = m.group(1), line.rsplit(" ", 1)[1]
    assert VALUE.match(value), (n, "bad value", value)
    assert name == current and name in typed and name in helped, (n, "sample outside its family", name)
    labels = {}
    if "{" in line:
        body = line[line.index("{") + 1:line.rindex("}")]
        for k, v in re.findall(LABEL, body):
            assert k not in labels, (n, "label twice", k)
            labels[k] = unescape(v)
    if name not in seen:
        seen.append(name)
    samples.append((name, labels, value))
def find(name, **kv):
    return [s for s in samples if s[0] == name and all(s[1].get(k) == v for k, v in kv.items())]
info = find("mke_run_info")
assert len(info) == 1 and info[0][2] == "1", info
lab = info[0][1]
assert lab["name"] == json.load(open(sys.argv[2]))["name"], repr(lab["name"])
assert lab["status"] == "done" and lab["phase"] == "done", lab
run = lab["run"]
assert all(s[1]["run"] == run for s in samples)
done = find("mke_shards", state="done")
assert len(done) == 1 and float(done[0][2]) >= 1, done
assert float(find("mke_shards", state="dead")[0][2]) == 0
sps = find("mke_samples_per_second")
assert len(sps) == 1 and (sps[0][2] == "NaN" or float(sps[0][2]) > 0), sps
loss = find("mke_train_loss")
acc = find("mke_test_accuracy")
assert loss and acc, (len(loss), len(acc))
assert any(s[1]["variant"].startswith("mm_student/") for s in acc), acc
assert all(0 <= float(s[2]) <= 1 for s in acc), acc
for name in ("mke_run_info", "mke_shards", "mke_samples_per_second", "mke_train_loss", "mke_test_accuracy"):
    assert typed.get(name) == "gauge", name
print("ok: %d samples in %d families; %d variants with a test accuracy" % (len(samples), len(seen), len(acc)))
PYEOF
ok "mke status --prometheus is valid text exposition with the run's shards, throughput, losses and accuracies"
