#!/usr/bin/env python3
"""check_labels.py DB RUN_DIR MANIFEST: every unlabeled sample has exactly one
pseudo-label entry across labels/shard-*.npy; every done shard's file has the
digest SQLite recorded; no temp files. Prints a one-line summary, exit 1 on
any problem."""
import csv, glob, hashlib, os, sqlite3, sys

import numpy as np

db, run_dir, manifest = sys.argv[1:4]
errs = []
ids_want = [r["id"] for r in csv.DictReader(open(manifest, newline=""))]
seen = {}
files = sorted(glob.glob(os.path.join(run_dir, "labels", "shard-*.npy")))
for f in files:
    a = np.load(f)
    for i in a["id"]:
        k = i.decode()
        seen[k] = seen.get(k, 0) + 1
    p = a["probs"]
    if not np.all(np.isfinite(p)) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        errs.append("%s: probabilities not a distribution" % os.path.basename(f))
dup = [k for k, n in seen.items() if n > 1]
missing = [k for k in ids_want if k not in seen]
extra = [k for k in seen if k not in set(ids_want)]
if dup:
    errs.append("%d sample(s) labeled more than once, e.g. %s" % (len(dup), dup[:3]))
if missing:
    errs.append("%d sample(s) without a label, e.g. %s" % (len(missing), missing[:3]))
if extra:
    errs.append("%d unknown id(s), e.g. %s" % (len(extra), extra[:3]))
tmp = [n for n in os.listdir(os.path.join(run_dir, "labels")) if not n.endswith(".npy")]
if tmp:
    errs.append("temp files left: %s" % tmp[:3])
con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
rows = con.execute("select shard_id, state, sha256, path from shards").fetchall()
for sid, state, sha, path in rows:
    if state != "done":
        continue
    f = path if path and os.path.isabs(path) else os.path.join(run_dir, "labels", "shard-%06d.npy" % sid)
    if not os.path.exists(f):
        errs.append("shard %d done but %s is missing" % (sid, f))
        continue
    h = hashlib.sha256(open(f, "rb").read()).hexdigest()
    if h != sha:
        errs.append("shard %d: file digest %s != recorded %s" % (sid, h[:12], (sha or "")[:12]))
if len(files) != len(rows):
    errs.append("%d shard files for %d shards" % (len(files), len(rows)))
if errs:
    for e in errs:
        print("labels: " + e)
    sys.exit(1)
print("labels: %d samples, each labeled once, in %d files; digests match" % (len(ids_want), len(files)))
