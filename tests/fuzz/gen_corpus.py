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


# ---- images: PNM, PNG, JPEG (common/media.c) ---------------------------------
# The small fixtures of tests/fixtures/gen_media.py, good and broken; the
# empty file is left out (libFuzzer tries it anyway).
for target, pattern in (("pnm", "media_*.p[gp]m"), ("png", "media_*.png"),
                        ("jpeg", "media_*.jpg")):
    for p in sorted(glob.glob("tests/fixtures/" + pattern)):
        if 0 < os.path.getsize(p) <= 4096:
            copy(target, p)
put("pnm", "gray8_comment.pgm", "P2\n# a comment\n3 2 # inline\n255\n0 1 2\n3 4 255\n")
put("pnm", "rgb16.ppm", b"P6 2 1 65535\n" + struct.pack(">6H", 0, 1, 256, 65535, 1000, 7))
put("pnm", "max1.pgm", b"P5\n4 1\n1\n\x00\x01\x01\x00")
put("pnm", "depth_mm.pgm", b"P5 2 2 65535 " + struct.pack(">4H", 0, 1000, 2500, 65535))


# ---- WAV (common/media.c through libsndfile) ---------------------------------
# The fixtures of tests/fixtures are 30-64 KB; libFuzzer works better with
# small inputs, so the seeds are short clips of each layout libsndfile reads
# in a WAV, written here by hand (Python's wave module cannot write float or
# extensible headers), plus the broken fixtures.
def wav(fmt_tag, channels, rate, bits, frames, block=None, ext_sub=None, extra=b"",
        fact=False):
    block = block or channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if ext_sub else fmt_tag, channels, rate,
                      rate * block, block, bits)
    if ext_sub:
        guid = struct.pack("<H", ext_sub) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, (1 << channels) - 1) + guid
    elif extra:
        fmt += struct.pack("<H", len(extra)) + extra
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if fact:
        chunks += b"fact" + struct.pack("<II", 4, len(frames) // block)
    chunks += b"data" + struct.pack("<I", len(frames)) + frames
    if len(frames) % 2:
        chunks += b"\0"
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


ramp = [2900 * ((i * 7) % 23 - 11) for i in range(64)]
put("wav", "pcm16_mono_16k.wav", wav(1, 1, 16000, 16, struct.pack("<64h", *ramp)))
put("wav", "pcm16_stereo_8k.wav", wav(1, 2, 8000, 16, struct.pack("<64h", *ramp)))
put("wav", "pcm8_mono_11k.wav", wav(1, 1, 11025, 8, bytes((v >> 8) + 128 for v in ramp)))
put("wav", "pcm24_stereo_44k.wav",
    wav(1, 2, 44100, 24, b"".join(struct.pack("<i", v << 8)[:3] for v in ramp)))
put("wav", "pcm32_mono_48k.wav", wav(1, 1, 48000, 32, struct.pack("<64i", *[v << 16 for v in ramp])))
put("wav", "f32_mono_48k.wav",
    wav(3, 1, 48000, 32, struct.pack("<64f", *[v / 40000 for v in ramp]), fact=True))
put("wav", "f64_stereo_22k.wav",
    wav(3, 2, 22050, 64, struct.pack("<64d", *[v / 30000 for v in ramp]), fact=True))
put("wav", "ext_pcm16_3ch.wav", wav(1, 3, 16000, 16, struct.pack("<63h", *ramp[:63]), ext_sub=1))
put("wav", "ext_f32_mono.wav", wav(3, 1, 32000, 32, struct.pack("<64f", *[v / 40000 for v in ramp]),
                                   ext_sub=3))
put("wav", "ulaw_mono_8k.wav", wav(7, 1, 8000, 8, bytes(range(0, 256, 4)), extra=b"", fact=True))
put("wav", "alaw_mono_8k.wav", wav(6, 1, 8000, 8, bytes(range(1, 256, 4)), fact=True))
put("wav", "nan_f32.wav", wav(3, 1, 16000, 32, struct.pack("<4f", 0, float("nan"), 1, 2)))
put("wav", "odd_rate_7k.wav", wav(1, 1, 7000, 16, struct.pack("<16h", *ramp[:16])))
for p in ("tests/fixtures/media_bad.wav", "tests/fixtures/media_trunc.wav"):
    copy("wav", p)
# regression seed: a binary sample over maxval read a released buffer
# (fuzz_pnm's first finding, fixed in common/media.c pnm_decode)
put("pnm", "over_maxval.pgm", b"P5\n2 1\n1000\n\x00\x01\x04\x00")
# regression seed: a FLAC header claiming 2^30 frames in 60 bytes made
# audio_load allocate 4 GiB up front (found by hand, fixed in media.c)
si_v = (16000 << 44) | (0 << 41) | (15 << 36) | ((1 << 30) - 1)
put("wav", "flac_claims_2e30.flac",
    b"fLaC\x80\x00\x00\x22" + struct.pack(">HH", 4096, 4096) + b"\0" * 6 +
    si_v.to_bytes(8, "big") + b"\0" * 16 + b"\xff\xf8" + b"\0" * 20)
