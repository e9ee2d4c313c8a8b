"""export_check.py - helpers of export_csv.sh (python3 standard library only).

  export_check.py hostile DB RUN NOW_MS
      add run RUN to the database DB with text made to break exports: commas,
      quotes, CR LF, formula-like cells (= + - @ TAB), negative numbers, NaN,
      a label phase in progress with shards done in the last minute, and
      worker ranks that said hello (one of them bye).
  export_check.py compare DB RUN TABLE CSV JSON
      compare `mke export RUN --TABLE` as CSV and as JSON with the table read
      straight from SQLite: every row, every cell; CSV must be RFC 4180 with
      CRLF line ends and neutralized formula-like text cells.
  export_check.py status-real DB RUN JSON      `mke status --json` of a done run
  export_check.py status-hostile RUN NOW_MS JSON   ... of the hostile run
Exits non-zero with a message on the first difference.
"""
import csv
import io
import json
import math
import re
import sqlite3
import sys

# The columns `mke export` writes, in order, with their type and the SQL
# that reads them (ORDER BY as store.c walks them).
TABLES = {
    "metrics": (
        [("run_id", "t"), ("variant", "t"), ("key", "t"), ("step", "i"), ("value", "r"), ("ts_ms", "i")],
        "SELECT run_id, variant, key, step, CASE WHEN is_nan THEN NULL ELSE value END, ts_ms "
        "FROM metrics WHERE run_id = ? ORDER BY variant, key, step",
    ),
    "shards": (
        [("run_id", "t"), ("shard_id", "i"), ("first_row", "i"), ("row_count", "i"), ("state", "t"),
         ("attempts", "i"), ("worker", "t"), ("leased_ms", "i"), ("done_ms", "i"), ("sha256", "t"),
         ("path", "t"), ("error", "t"), ("updated_ms", "i")],
        "SELECT run_id, shard_id, first_row, row_count, state, attempts, worker, leased_ms, done_ms, "
        "sha256, path, error, updated_ms FROM shards WHERE run_id = ? ORDER BY shard_id",
    ),
    "params": (
        [("run_id", "t"), ("key", "t"), ("value", "t")],
        "SELECT run_id, key, value FROM params WHERE run_id = ? ORDER BY key",
    ),
    "events": (
        [("id", "i"), ("run_id", "t"), ("ts_ms", "i"), ("kind", "t"), ("rank", "i"), ("payload", "t"),
         ("source_id", "t")],
        "SELECT id, run_id, ts_ms, kind, rank, payload, source_id FROM events WHERE run_id = ? "
        "ORDER BY ts_ms, id",
    ),
    "runs": (
        [("id", "t"), ("name", "t"), ("status", "t"), ("phase", "t"), ("created_ms", "i"),
         ("started_ms", "i"), ("ended_ms", "i"), ("host", "t"), ("git_rev", "t"), ("run_dir", "t"),
         ("config_path", "t"), ("slurm_job_id", "t"), ("error", "t")],
        "SELECT id, name, status, phase, created_ms, started_ms, ended_ms, host, git_rev, run_dir, "
        "config_path, slurm_job_id, error FROM runs WHERE id = ?",
    ),
}

PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")


def die(msg):
    sys.stderr.write("export_check: %s\n" % msg)
    sys.exit(1)


def neutralized(s):
    """What a text cell should look like in the CSV."""
    if s and s[0] in "=+-@\t\r" and not PLAIN_NUMBER.match(s):
        return "'" + s
    return s


def hostile(db, run, now):
    now = int(now)
    c = sqlite3.connect(db)
    c.execute("PRAGMA foreign_keys = ON")
    c.execute(
        "INSERT INTO runs (id, name, config, config_path, status, phase, created_ms, started_ms, host, "
        "git_rev, run_dir, error) VALUES (?, ?, '{}', ?, 'running', 'label', ?, ?, ?, ?, ?, ?)",
        (run, '=HYPERLINK("http://evil.example","click")', "/tmp/a,b/c.json", now - 100000,
         now - 90000, "node,1", "-rev", '/tmp/dir "quoted"', "@SUM(A1:A9)"))
    for k, v in [("redis_url", "unix:///nonexistent/redis.sock"), ("formula", "-2+3"), ("neg", "-5"),
                 ("negf", "-0.25"), ("tab", "\tx"), ("cr", "\rx"), ("multi", "line1\r\nline2, \"q\""),
                 ("plus", "+1"), ("at", "@x"), ("eq", "=1+1"), ("empty", ""), ("utf8", "ünïcødé ±")]:
        c.execute("INSERT INTO params (run_id, key, value) VALUES (?, ?, ?)", (run, k, v))
    for ph, st, a, b in [("teacher", "done", now - 90000, now - 60000), ("shard", "done", now - 60000, now - 30000),
                         ("label", "running", now - 30000, None)]:
        c.execute("INSERT INTO phases (run_id, phase, status, started_ms, ended_ms, detail) VALUES (?, ?, ?, ?, ?, ?)",
                  (run, ph, st, a, b, "detail, with \"comma\"" if ph == "shard" else None))
    # 10 shards of 16 rows: 4 done in the last 30 s, 1 leased, 1 dead, 4 ready
    states = ["done"] * 4 + ["leased", "dead"] + ["ready"] * 4
    for i, s in enumerate(states):
        done = now - 25000 + 5000 * i if s == "done" else None
        leased = now - 28000 + 5000 * i if s in ("done", "leased", "dead") else None
        c.execute(
            "INSERT INTO shards (run_id, shard_id, first_row, row_count, state, attempts, worker, leased_ms, "
            "done_ms, sha256, path, error, updated_ms) VALUES (?, ?, ?, 16, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run, i, 16 * i, s, 3 if s == "dead" else (1 if leased else 0),
             "host,x:12:%d" % (i % 2) if leased else None, leased, done,
             ("%064x" % (i + 1)) if s == "done" else None,
             "/runs/x/labels/shard-%d.npy" % i if s == "done" else None,
             '=1+1,"boom"\r\nline' if s == "dead" else None, now - 1000))
    metrics = [
        ("", "x,y", -3, -1.5), ("", "quote\"d", 1, 0.1), ("+cmd", "-k", 2, 1e-300),
        ("nan", "n", 0, None), ("teacher", "test_accuracy", 10, 0.7),
        ("teacher", "pseudo_label_accuracy", 0, 0.65), ("teacher", "train_loss", 10, 0.5),
        ("mm_student/1", "test_accuracy", 20, 0.8), ("mm_student/2", "test_accuracy", 20, 0.9),
        ("mm_student/1", "rectification", 20, 0.5), ("mm_student/2", "rectification", 20, 0.7),
        ("mm_student/1", "train_loss", 5, 0.9), ("mm_student/1", "train_loss", 20, 0.25),
        ("um_student/1", "test_accuracy", 20, 0.6), ("mm_student_sup/1", "test_accuracy", 20, 0.99),
        ("@weird", "=x", 7, 1.0 / 3.0),
    ]
    for v, k, step, val in metrics:
        c.execute("INSERT INTO metrics (run_id, variant, key, step, value, is_nan, ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (run, v, k, step, val, 1 if val is None else 0, now - 2000))
    events = [
        (now - 80000, "hello", 5, '{"type":"hello","rank":5,"host":"old","pid":1}', "1-0"),
        (now - 70000, "job_start", None, '{"pid":42,"ranks":2,"restarts":1}', None),
        (now - 69000, "hello", 0, '{"type":"hello","rank":0,"host":"node,1","pid":100}', "2-0"),
        (now - 69000, "hello", 1, '{"type":"hello","rank":1,"host":"node2","pid":101}', "2-1"),
        (now - 10000, "bye", 1, '{"type":"bye","rank":1,"status":"done"}', "3-0"),
        (now - 9000, "log", 0, '{"type":"log","text":"=cmd|\' /C calc\'!A0, \\"x\\"\\r\\n"}', "=4-0"),
        (now - 8000, "progress", 0, '{"type":"progress","phase":"label","done":4,"total":10}', "5-0"),
    ]
    for ts, kind, rank, payload, src in events:
        c.execute("INSERT INTO events (run_id, ts_ms, kind, rank, payload, source_id) VALUES (?, ?, ?, ?, ?, ?)",
                  (run, ts, kind, rank, payload, src))
    c.commit()
    c.close()


def same_number(cell, want, kind, where):
    if kind == "i":
        if cell != str(want):
            die("%s: %r, want %r" % (where, cell, want))
    else:
        got = float(cell)
        if not (got == want or (math.isinf(want) and got == want)):
            die("%s: %r reads back as %r, want %r" % (where, cell, got, want))


def compare(db, run, table, csv_path, json_path):
    cols, sql = TABLES[table]
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    rows = c.execute(sql, (run,)).fetchall()
    c.close()
    if not rows:
        die("%s: the database has no rows for run %s: nothing would be tested" % (table, run))

    raw = open(csv_path, "rb").read()
    if not raw.endswith(b"\r\n"):
        die("%s: the CSV does not end with CRLF" % table)
    # every record ends with CRLF: no LF outside a quoted cell lacks its CR
    outside, prev = True, b""
    for i in range(len(raw)):
        ch = raw[i:i + 1]
        if ch == b'"':
            outside = not outside
        elif ch == b"\n" and outside and prev != b"\r":
            die("%s: a bare LF ends a CSV record at byte %d" % (table, i))
        prev = ch
    text = raw.decode("utf-8")
    recs = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    if recs[0] != [n for n, _ in cols]:
        die("%s: CSV header %r, want %r" % (table, recs[0], [n for n, _ in cols]))
    recs = recs[1:]
    if len(recs) != len(rows):
        die("%s: CSV has %d rows, the database %d" % (table, len(recs), len(rows)))
    js = json.load(open(json_path, encoding="utf-8"))
    if not isinstance(js, list) or len(js) != len(rows):
        die("%s: JSON is not an array of %d objects" % (table, len(rows)))
    for r, (rec, obj, row) in enumerate(zip(recs, js, rows)):
        if len(rec) != len(cols):
            die("%s row %d: %d cells, want %d: %r" % (table, r, len(rec), len(cols), rec))
        if list(obj.keys()) != [n for n, _ in cols]:
            die("%s row %d: JSON keys %r" % (table, r, list(obj.keys())))
        for (name, kind), cell, want in zip(cols, rec, row):
            where = "%s row %d column %s" % (table, r, name)
            got = obj[name]
            if want is None:
                if cell != "":
                    die("%s: CSV %r, want an empty cell (NULL)" % (where, cell))
                if got is not None:
                    die("%s: JSON %r, want null" % (where, got))
            elif kind == "t":
                if cell != neutralized(want):
                    die("%s: CSV %r, want %r" % (where, cell, neutralized(want)))
                if got != want:
                    die("%s: JSON %r, want %r" % (where, got, want))
            else:
                same_number(cell, want, kind, where + " (CSV)")
                if kind == "i" and (not isinstance(got, int) or got != want):
                    die("%s: JSON %r, want %r" % (where, got, want))
                if kind == "r" and got != want:
                    die("%s: JSON %r, want %r" % (where, got, want))
    print("ok: %s: %d rows equal in CSV and JSON" % (table, len(rows)))


def near(a, b, tol=1e-9):
    return a is not None and b is not None and abs(a - b) <= tol


def status_real(db, run, path):
    s = json.load(open(path))
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    teacher = c.execute("SELECT value FROM metrics WHERE run_id = ? AND variant = 'teacher' "
                        "AND key = 'test_accuracy'", (run,)).fetchone()[0]
    mm = [v for (v,) in c.execute("SELECT value FROM metrics WHERE run_id = ? AND variant LIKE "
                                  "'mm\\_student/%' ESCAPE '\\' AND key = 'test_accuracy'", (run,))]
    c.close()
    assert s["id"] == run and s["status"] == "done" and s["phase"] == "done", (s["status"], s["phase"])
    assert [p["phase"] for p in s["phases"]] == ["teacher", "shard", "label", "student", "eval"]
    assert all(p["status"] == "done" for p in s["phases"] if p["phase"] != "label"), s["phases"]
    assert s["shards"]["done"] == s["shards"]["total"] > 0, s["shards"]
    kinds = {v["kind"]: v for v in s["variants"]}
    assert near(kinds["teacher"]["test_accuracy_mean"], teacher), (kinds["teacher"], teacher)
    m = kinds["mm_student"]
    assert m["seeds"] == len(mm) == 2, (m, mm)
    assert near(m["test_accuracy_mean"], sum(mm) / 2), (m, mm)
    assert near(m["test_accuracy_std"], abs(mm[0] - mm[1]) / math.sqrt(2)), (m, mm)
    assert near(m["gain_points"], 100 * (sum(mm) / 2 - teacher)), m
    assert s["best_student"] and not s["best_student"]["kind"].endswith("_sup"), s["best_student"]
    assert s["ranks"] == [], s["ranks"]
    print("ok: status --json of the real run: done, phases, shards, variants (mm_student %.2f%% vs teacher %.2f%%)"
          % (100 * m["test_accuracy_mean"], 100 * teacher))


def status_hostile(run, now, path):
    now = int(now)
    s = json.load(open(path))
    assert s["id"] == run and s["status"] == "running" and s["phase"] == "label", s
    assert s["name"] == '=HYPERLINK("http://evil.example","click")', s["name"]
    ph = {p["phase"]: p for p in s["phases"]}
    assert ph["label"]["status"] == "running" and ph["student"]["status"] == "pending", ph
    assert ph["label"]["progress"] == {"done": 4, "total": 10}, ph["label"]
    assert ph["shard"]["detail"] == 'detail, with "comma"', ph["shard"]
    sh = s["shards"]
    assert (sh["done"], sh["leased"], sh["dead"], sh["ready"], sh["total"]) == (4, 1, 1, 4, 10), sh
    assert (sh["samples_done"], sh["samples_total"]) == (64, 160), sh
    assert [(r["rank"], r["host"], r["pid"]) for r in s["ranks"]] == [(0, "node,1", 100)], s["ranks"]
    assert s["job_restarts"] == 1, s["job_restarts"]
    tp = s["throughput"]
    # 4 shards done since the label phase began 30 s ago: 4/30 shards/s, 5 left
    assert tp["window"] == "last_minute", tp
    assert 30 <= tp["window_s"] < 40, tp
    rate = 4 / tp["window_s"]
    assert near(tp["shards_per_s"], rate, 1e-9) and near(tp["samples_per_s"], 16 * rate, 1e-9), tp
    assert near(tp["label_eta_s"], 5 / rate, 1e-6), tp
    kinds = {v["kind"]: v for v in s["variants"]}
    assert list(kinds)[:4] == ["teacher", "um_student", "mm_student", "mm_student_sup"], list(kinds)
    m = kinds["mm_student"]
    assert m["seeds"] == 2 and near(m["test_accuracy_mean"], 0.85), m
    assert near(m["test_accuracy_std"], math.sqrt(0.005)), m
    assert near(m["rectification_mean"], 0.6) and near(m["rectification_std"], math.sqrt(0.02)), m
    assert near(m["gain_points"], 15.0), m
    assert near(s["teacher_accuracy"], 0.7) and near(s["pseudo_label_accuracy"], 0.65), s
    # the *_sup upper bound is trained on true labels: not the headline
    assert s["best_student"]["kind"] == "mm_student" and s["best_student"]["beats_teacher"] is True, s["best_student"]
    lm = {(x["variant"], x["key"]): x for x in s["metrics"]}
    assert lm[("mm_student/1", "train_loss")]["step"] == 20 and near(lm[("mm_student/1", "train_loss")]["value"], 0.25)
    assert lm[("nan", "n")]["value"] is None
    print("ok: status --json of the hostile run: phase, shards, ranks, rate %.3f shards/s, ETA %.0f s, variants"
          % (tp["shards_per_s"], tp["label_eta_s"]))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        if cmd == "hostile":
            hostile(*args)
        elif cmd == "compare":
            compare(*args)
        elif cmd == "status-real":
            status_real(*args)
        elif cmd == "status-hostile":
            status_hostile(*args)
        else:
            die("unknown command %r" % cmd)
    except AssertionError as e:
        die("%s: %s" % (cmd, e))


if __name__ == "__main__":
    main()
