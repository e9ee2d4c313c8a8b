#!/usr/bin/python3
"""Write the seed corpus of the fuzz targets: tests/fuzz/corpus/<target>/.

Run from the repository root: /usr/bin/python3 tests/fuzz/gen_corpus.py
Only the standard library is used. Seeds are valid (or nearly valid) inputs
so that the fuzzer starts deep inside each parser; libFuzzer's mutations do
the rest. Crash inputs never go here (they live in tests/fuzz/crashes/).
"""
import glob
import json
import os
import shutil
import struct

OUT = "tests/fuzz/corpus"


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy(target, src, name=None):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(src, os.path.join(d, name or os.path.basename(src)))


# ---- manifest CSV ----------------------------------------------------------
for split in ("labeled", "unlabeled", "test"):
    with open("deploy/data/twomoon/%s.csv" % split) as f:
        put("manifest", "twomoon_%s_head.csv" % split, "".join(f.readlines()[:12]))
put("manifest", "quoted.csv",
    'id,label,x\r\n"a,1",0,"1 2 3"\r\n"b ""q""",1,"4\n5 6"\r\nc,,7 8 9\r\n')
put("manifest", "names_npy.csv",
    "id,label,split,x,y\nr1,cat,labeled,a/1.npy,1 2\nr2,dog,test,/abs/2.npy,3 4\n"
    "r3,2,unlabeled,s3://bucket/k.npy,5 6\n")
put("manifest", "bad_rows.csv",
    "id,label,x\nr1,0,1\nr2,0\nr3,0,1,2\n,0,1\nr1,0,1\n\"open,0,1\n")
put("manifest", "bom_minimal.csv", "\xef\xbb\xbfid\nonly\n")

# ---- npy --------------------------------------------------------------------
for p in sorted(glob.glob("tests/fixtures/npy_*.npy")):
    if os.path.getsize(p) <= 1024:
        copy("npy", p)

# ---- safetensors ------------------------------------------------------------
copy("safetensors", "tests/fixtures/st_torch.safetensors")


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype, shape, raw bytes), written in order."""
    hdr, data = {}, b""
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape,
                     "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "f32_2x3.safetensors",
    safetensors([("w", "F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6))],
                {"format": "pt"}))
put("safetensors", "mixed.safetensors",
    safetensors([("a.weight", "F64", [2], struct.pack("<2d", 0.5, -1)),
                 ("b.bias", "F16", [3], struct.pack("<3e", 1, 2, 3)),
                 ("c", "BF16", [2], b"\x80\x3f\x00\x40"),
                 ("d", "I64", [1], struct.pack("<q", 7)),
                 ("e", "I32", [1, 1], struct.pack("<i", -3)),
                 ("f", "I16", [2], struct.pack("<2h", 1, -1)),
                 ("g", "I8", [1], b"\x05"),
                 ("h", "U8", [2], b"\x01\xff"),
                 ("i", "BOOL", [1], b"\x01")],
                {"step": "100", "mke": "1"}))
put("safetensors", "empty_tensor.safetensors",
    safetensors([("z", "F32", [0, 4], b""), ("s", "F32", [], struct.pack("<f", 1))]))
put("safetensors", "header_only.safetensors", safetensors([], {}))

# ---- run config -------------------------------------------------------------
for p in sorted(glob.glob("deploy/examples/*.json") + glob.glob("tests/fixtures/config_*.json")):
    copy("config", p)
put("config", "minimal.json", json.dumps({
    "data": {"labeled": "l.csv", "classes": 3,
             "modalities": {"a": {"column": "x", "kind": "npy", "dim": 4}}},
    "models": {"t": {"inputs": ["a"], "hidden": [8]}},
    "teacher": {"model": "t"}}))
put("config", "bad_type.json", '{"teacher": {"epochs": "many"}}')
put("config", "syntax.json", '{\n  "name": "x",\n  "data": {\n')

# ---- queue messages (schemas/queue-message.schema.json) ----------------------
sha = "0" * 63 + "a"
msgs = {
    "metric": {"type": "metric", "ts": 1700000000000, "rank": 0, "worker": "h:1:0",
               "variant": "mm_student", "step": 10, "key": "loss", "value": 0.25},
    "metric_null": {"type": "metric", "ts": 1, "rank": 3, "variant": "", "step": 0,
                    "key": "acc", "value": None},
    "progress": {"type": "progress", "ts": 2, "rank": 1, "phase": "label", "done": 5,
                 "total": 10},
    "log": {"type": "log", "ts": 3, "rank": 0, "level": "warning",
            "text": "manifest 'u.csv' line 4: quarantined"},
    "shard": {"type": "shard", "ts": 4, "shard": 12, "from": "leased", "to": "done",
              "attempt": 1, "worker": "h:2:1", "sha256": sha,
              "path": "runs/x/labels/12.npy"},
    "shard_fail": {"type": "shard", "ts": 5, "shard": 3, "from": "leased",
                   "to": "delayed", "attempt": 2, "error": "lease expired",
                   "due_ms": 99, "deadline_ms": 98},
    "hello": {"type": "hello", "ts": 6, "rank": 0, "host": "node1", "pid": 4242},
    "bye": {"type": "bye", "ts": 7, "rank": 0, "status": "ok", "extra": [1, {"x": 2}]},
}
for name, m in msgs.items():
    put("queue_msg", name + ".json", json.dumps(m))


# ---- pseudo-label shards (common/labels.c format) ----------------------------
def labels(ids, probs):
    idlen = max([1] + [len(i) for i in ids])
    classes = len(probs[0]) if probs else 1
    d = ("{'descr': [('id', 'S%d'), ('probs', '<f4', (%d,))], "
         "'fortran_order': False, 'shape': (%d,), }" % (idlen, classes, len(ids)))
    total = (10 + len(d) + 1 + 63) // 64 * 64
    h = d + " " * (total - 10 - len(d) - 1) + "\n"
    out = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode()
    for i, p in zip(ids, probs):
        out += i.encode().ljust(idlen, b"\0") + struct.pack("<%df" % classes, *p)
    return out


put("labels", "two.npy", labels(["u-000", "u-001"], [[0.9, 0.1], [0.2, 0.8]]))
put("labels", "three_classes.npy", labels(["a", "bb", "ccc"],
                                          [[0.5, 0.25, 0.25], [0, 1, 0], [0, 0, 1]]))
put("labels", "empty.npy", labels([], []))
