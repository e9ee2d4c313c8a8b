#!/usr/bin/python3
"""Write the bad-input corpus in tests/bad/ (see tests/bad/README.md).

Run from the repository root: /usr/bin/python3 tests/bad/gen.py
Standard library only. The files are committed; this script documents how
each was made and regenerates them. The > 1 MB field is not committed:
tests/integration/bad_inputs.sh makes it in a temp dir.
"""
import json
import os
import struct

B = "tests/bad"
HDR = "id,label,split,x,y\n"
GOOD = "g1,0,labeled,0.5,1.5\ng2,1,labeled,-0.5,2\ng3,,unlabeled,1,-1\n"


def put(rel, data):
    p = os.path.join(B, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# ---- CSV manifests: three good rows (g1-g3) and bad ones after them ------------
# Lines: 1 header, 2-4 good rows, 5.. the bad rows.
put("csv/missing_column.csv", HDR + GOOD + "b1,0,labeled,0.5\n")
put("csv/extra_column.csv", HDR + GOOD + "b1,0,labeled,0.5,1,9\n")
put("csv/stray_quote.csv", HDR + GOOD + 'b1,0,labeled,0"5,1\n')
put("csv/text_after_quote.csv", HDR + GOOD + 'b1,0,labeled,"0.5"x,1\n')
# the quote opened on line 5 never closes: line 6 (a good-looking row) is
# swallowed with it
put("csv/unterminated_quote.csv", HDR + GOOD + 'b1,0,labeled,"0.5,1\ng4,0,labeled,1,1\n')
put("csv/nul_byte.csv", HDR + GOOD + "b1,0,labeled,0\x005,1\n")
put("csv/unknown_label.csv", HDR + GOOD + "b1,cat,labeled,0.5,1\nb2,7,labeled,0.5,1\nb3,-1,labeled,1,1\n")
put("csv/nan_inf.csv", HDR + GOOD + "b1,0,labeled,nan,1\nb2,0,labeled,1,inf\nb3,0,labeled,-Infinity,1\n"
    "b4,0,labeled,1e39,1\n")
put("csv/not_a_number.csv", HDR + GOOD + "b1,0,labeled,abc,1\nb2,0,labeled,0x1p3q,1\nb3,0,labeled,,1\n")
put("csv/wrong_width.csv", HDR + GOOD + "b1,0,labeled,1 2 3,1\n")
put("csv/empty_id.csv", HDR + GOOD + ",0,labeled,1,1\n")
put("csv/duplicate_id.csv", HDR + GOOD + "g2,0,labeled,1,1\n")
# structural: the whole file is refused
put("csv/no_id_column.csv", "name,label,split,x,y\nr1,0,labeled,1,1\n")
put("csv/duplicate_column.csv", "id,label,x,x,y\nr1,0,1,1,1\n")
put("csv/empty.csv", "")
put("csv/header_only.csv", HDR)
put("csv/all_rows_bad.csv", HDR + "b1,0,labeled,nan,1\nb2,9,labeled,1,1\n")


# ---- NPY files -----------------------------------------------------------------
def npy(descr, shape, payload, fortran=False, version=1, header=None):
    if header is None:
        header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
            descr, "True" if fortran else "False",
            "(%s)" % "".join("%d," % s for s in shape) if shape else "()")
    pre = 10 if version == 1 else 12
    h = header + " " * (-(pre + len(header) + 1) % 64) + "\n"
    if version == 1:
        out = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h))
    else:
        out = b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(h))
    return out + h.encode() + payload


good4 = npy("<f4", [4], struct.pack("<4f", 1, 2, 3, 4))
put("npy/good4.npy", good4)
put("npy/good4_again.npy", good4)
put("npy/truncated_data.npy", good4[:-6])                 # 4 floats announced, 2.5 present
put("npy/truncated_header.npy", good4[:40])               # stops inside the dict
put("npy/magic_only.npy", b"\x93NUMPY")
put("npy/bad_magic.npy", b"\x93NUMPZ" + good4[6:])
put("npy/bad_version.npy", good4[:6] + b"\x09\x00" + good4[8:])
put("npy/header_len_past_end.npy", good4[:8] + b"\xff\xff" + good4[10:])
put("npy/dict_garbage.npy", npy(None, None, b"\0" * 16, header="{'descr': <f4, 'shape': (4,)"))
put("npy/unknown_dtype.npy", npy("<c8", [4], b"\0" * 32))
put("npy/object_dtype.npy", npy("|O", [4], b"\0" * 32))
put("npy/fortran_order.npy", npy("<f4", [2, 2], struct.pack("<4f", 1, 2, 3, 4), fortran=True))
put("npy/negative_shape.npy", npy("<f4", [-4], struct.pack("<4f", 1, 2, 3, 4)))
# 2^32 * 2^32 elements: the count overflows 64 bits
put("npy/shape_overflow.npy", npy("<f4", [1 << 32, 1 << 32], struct.pack("<4f", 1, 2, 3, 4)))
# a plausible count (10^9 floats) that the 16 bytes present cannot hold
put("npy/shape_beyond_data.npy", npy("<f4", [1000000000], struct.pack("<4f", 1, 2, 3, 4)))
put("npy/nan_value.npy", npy("<f4", [4], struct.pack("<4f", 1, float("nan"), 3, 4)))
put("npy/inf_value.npy", npy("<f8", [4], struct.pack("<4d", 1, 2, float("inf"), 4)))
put("npy/half_inf.npy", npy("<f2", [4], struct.pack("<4e", 1, 2, 3, 65504) [:6] + b"\x00\x7c"))
put("npy/empty_file.npy", b"")
put("npy/wrong_width.npy", npy("<f4", [3], struct.pack("<3f", 1, 2, 3)))


# ---- safetensors files (fed to the same npy cells: refused as not .npy) ---------
def st(hdr, data):
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors/offsets_past_end.safetensors",
    st({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4096]}}, b"\0" * 16))
put("safetensors/shape_overflow.safetensors",
    st({"w": {"dtype": "F32", "shape": [1 << 32, 1 << 32, 16], "data_offsets": [0, 16]}},
       b"\0" * 16))
put("safetensors/header_len_past_end.safetensors",
    struct.pack("<Q", 1 << 40) + b'{"w":{}}')
put("safetensors/overlap.safetensors",
    st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12))

# ---- the manifest whose npy cells point at the files above ----------------------
# columns: id, label, split, x (npy, modality a), y (inline, modality b)
rows = [
    ("g1", "npy/good4.npy"), ("g2", "npy/good4_again.npy"),
    ("t1", "npy/truncated_data.npy"), ("t2", "npy/truncated_header.npy"),
    ("t3", "npy/magic_only.npy"), ("t4", "npy/bad_magic.npy"),
    ("t5", "npy/bad_version.npy"), ("t6", "npy/header_len_past_end.npy"),
    ("t7", "npy/dict_garbage.npy"), ("t8", "npy/unknown_dtype.npy"),
    ("t9", "npy/object_dtype.npy"), ("t10", "npy/fortran_order.npy"),
    ("t11", "npy/negative_shape.npy"), ("t12", "npy/shape_overflow.npy"),
    ("t13", "npy/shape_beyond_data.npy"), ("t14", "npy/nan_value.npy"),
    ("t15", "npy/inf_value.npy"), ("t16", "npy/half_inf.npy"),
    ("t17", "npy/empty_file.npy"), ("t18", "npy/wrong_width.npy"),
    ("t19", "npy/does_not_exist.npy"),
    ("s1", "safetensors/offsets_past_end.safetensors"),
    ("s2", "safetensors/shape_overflow.safetensors"),
    ("s3", "safetensors/header_len_past_end.safetensors"),
    ("s4", "safetensors/overlap.safetensors"),
    ("u1", "s3://bucket/x.npy"), ("u2", "https://example.invalid/x.npy"),
    ("u3", "file:///etc/passwd"), ("u4", "gopher://h/x.npy"),
    # escapes the manifest's directory with ../ and comes back: loaded today
    ("e1", "../bad/npy/good4.npy"),
    ("e2", "/etc/hostname"),
]
put("npy_cells.csv", "id,label,split,x,y\n" + "".join(
    "%s,0,labeled,%s,1.5\n" % (i, p) for i, p in rows))

# ---- configs that are not valid JSON (the typed cases are built by the test) ----
put("config/syntax_error.json", '{\n  "name": "x",\n  "data": {"classes": 2,,}\n}\n')
put("config/not_an_object.json", "[1, 2, 3]\n")
put("config/empty.json", "")
