#!/bin/sh
# mke gen -> mke import -> mke shard, for every dataset kind.
#
# Each generator writes a small dataset in the real native format; the
# importer turns it into a manifest whose row count, labels and paths are
# checked against what the generator is documented to write (rows without
# media are reported as file:line and skipped); then `mke shard --config`
# decodes every modality cell (audio, image, depth) and must accept every
# row.
. tests/integration/lib.sh
D="$T/data"

# rows MANIFEST: data rows (the header is not counted)
rows() { echo $(( $(wc -l <"$1") - 1 )); }
# cfg FILE MANIFEST CLASSES MODALITIES-JSON: a minimal run config
cfg() {
	cat >"$1" <<CFGEOF
{"name": "gen", "data": {"labeled": "$2", "unlabeled": "$2", "classes": $3,
  "modalities": {$4}},
 "models": {"um": {"inputs": ["a"], "hidden": [8]}},
 "teacher": {"model": "um", "epochs": 1},
 "variants": {"um_student": {"model": "um"}}}
CFGEOF
}
# shard_all MANIFEST CONFIG N: mke shard accepts all N rows
shard_all() {
	"$MKE" shard "$1" --run "r$(basename "$1" .csv)$$" ${2:+--config "$2"} >"$T/shard.out" 2>"$T/shard.err" \
		|| { cat "$T/shard.err"; fail "mke shard $1 failed"; }
	grep -q "^$1: $3 rows (0 bad" "$T/shard.out" || { cat "$T/shard.out" "$T/shard.err"; fail "mke shard $1: not $3 clean rows"; }
}

# ---- twomoon ----------------------------------------------------------------------
"$MKE" gen twomoon -o "$D/tm" --n 200 --seed 5 >/dev/null || fail "gen twomoon"
[ "$(rows "$D/tm/labeled.csv")" = 12 ] && [ "$(rows "$D/tm/test.csv")" = 80 ] \
	&& [ "$(rows "$D/tm/unlabeled.csv")" = 108 ] || fail "twomoon split sizes"
cfg "$T/tm.json" "$D/tm/unlabeled.csv" 2 '"a": {"column": "x", "kind": "inline", "dim": 1}, "b": {"column": "y", "kind": "inline"}'
shard_all "$D/tm/unlabeled.csv" "$T/tm.json" 108
"$MKE" gen twomoon -o "$D/tm2" --n 200 --seed 5 >/dev/null
cmp -s "$D/tm/test.csv" "$D/tm2/test.csv" || fail "twomoon: the same seed gave different files"
ok "twomoon"

# ---- vggsound (40 clips, every 10th from the 8th has no media) -------------------------
"$MKE" gen vggsound -o "$D/vgg" --n 40 --seed 2 >/dev/null || fail "gen vggsound"
[ "$(wc -l <"$D/vgg/vggsound.csv")" = 40 ] || fail "vggsound.csv has no 40 rows"
"$MKE" import vggsound "$D/vgg/vggsound.csv" --media "$D/vgg/media" -o "$D/man/vgg.csv" \
	>"$T/imp.out" 2>"$T/imp.err" || { cat "$T/imp.err"; fail "import vggsound"; }
[ "$(rows "$D/man/vgg.csv")" = 36 ] || fail "vggsound manifest: $(rows "$D/man/vgg.csv") rows, not 36"
[ "$(grep -c 'vggsound.csv:[0-9]*: no clip' "$T/imp.err")" = 4 ] || { cat "$T/imp.err"; fail "vggsound: 4 missing clips not reported as file:line"; }
grep -q 'vggsound.csv:8: no clip' "$T/imp.err" || fail "vggsound: row 8 not reported"
head -n 1 "$D/man/vgg.csv" | grep -qx 'id,label,split,audio,frames' || fail "vggsound header"
[ "$(wc -l <"$D/man/vgg.csv.classes.txt")" = 4 ] || fail "vggsound: 4 classes"
grep -qx 'male speech, man speaking' "$D/man/vgg.csv.classes.txt" || fail "vggsound: quoted class name"
# labels are indices into the sorted class list; paths are relative to the manifest
"$PY" - "$D/man/vgg.csv" "$D/vgg/vggsound.csv" <<'PYEOF' || fail "vggsound manifest content"
import csv, os, sys
man, src = sys.argv[1:3]
names = sorted({r[2] for r in csv.reader(open(src))})
want = {"%s_%06d" % (r[0], int(r[1])): (names.index(r[2]), r[3]) for r in csv.reader(open(src))}
rows = list(csv.DictReader(open(man)))
assert len(rows) == 36
for r in rows:
    assert (int(r["label"]), r["split"]) == want[r["id"]], r
    assert os.path.isfile(os.path.join(os.path.dirname(man), r["audio"])), r
    assert os.path.isdir(os.path.join(os.path.dirname(man), r["frames"])), r
PYEOF
cfg "$T/vgg.json" "$D/man/vgg.csv" 4 '"a": {"column": "audio", "kind": "audio", "sample_rate": 16000, "seconds": 1}'
shard_all "$D/man/vgg.csv" "$T/vgg.json" 36
ok "vggsound"

# ---- vggsound-mp4 (the same rows; each clip one MP4, both its audio and frames cell) ----
"$MKE" gen vggsound-mp4 -o "$D/vggm" --n 40 --seed 2 >/dev/null || fail "gen vggsound-mp4"
cmp -s "$D/vgg/vggsound.csv" "$D/vggm/vggsound.csv" || fail "vggsound-mp4: not the vggsound.csv of vggsound"
[ "$(ls "$D/vggm/media" | wc -l)" = 36 ] && [ "$(ls "$D/vggm/media" | grep -c '_[0-9]\{6\}\.mp4$')" = 36 ] \
	|| fail "vggsound-mp4: not 36 <id>_<start:06d>.mp4 clips"
"$MKE" import vggsound "$D/vggm/vggsound.csv" --media "$D/vggm/media" -o "$D/man/vggm.csv" \
	>"$T/imp.out" 2>"$T/imp.err" || { cat "$T/imp.err"; fail "import vggsound (mp4)"; }
[ "$(rows "$D/man/vggm.csv")" = 36 ] || fail "vggsound-mp4 manifest: $(rows "$D/man/vggm.csv") rows, not 36"
[ "$(grep -c 'vggsound.csv:[0-9]*: no clip' "$T/imp.err")" = 4 ] || { cat "$T/imp.err"; fail "vggsound-mp4: 4 missing clips not reported"; }
! grep -q '^warning' "$T/imp.err" || { cat "$T/imp.err"; fail "vggsound-mp4: the import warned"; }
head -n 1 "$D/man/vggm.csv" | grep -qx 'id,label,split,audio,frames' || fail "vggsound-mp4 header"
"$PY" - "$D/man/vggm.csv" "$D/man/vgg.csv" <<'PYEOF' || fail "vggsound-mp4 manifest content"
import csv, os, sys
mp4, wav = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert [(r["id"], r["label"], r["split"]) for r in mp4] == [(r["id"], r["label"], r["split"]) for r in wav]
for r in mp4:
    assert r["audio"] == r["frames"] and r["audio"].endswith(r["id"] + ".mp4"), r
    assert os.path.isfile(os.path.join(os.path.dirname(sys.argv[1]), r["audio"])), r
PYEOF
shard_all "$D/man/vggm.csv" "" 36
ok "vggsound-mp4"

# ---- audioset (the same clips; 32 train segments, 4 of them without media) -------------
A="$D/vgg/audioset"
head -n 1 "$A/balanced_train_segments.csv" | grep -q '^#' || fail "audioset: no comment header"
"$MKE" import audioset "$A/balanced_train_segments.csv" --labels "$A/class_labels_indices.csv" \
	--media "$D/vgg/media" -o "$D/man/as.csv" >"$T/imp.out" 2>"$T/imp.err" || { cat "$T/imp.err"; fail "import audioset"; }
[ "$(rows "$D/man/as.csv")" = 28 ] || fail "audioset manifest: $(rows "$D/man/as.csv") rows, not 28"
[ "$(grep -c 'segments.csv:[0-9]*: no clip' "$T/imp.err")" = 4 ] || fail "audioset: missing clips not reported"
grep -q ',0;1,train,' "$D/man/as.csv" || fail "audioset: no multi-label row '0;1'"
"$MKE" import audioset "$A/eval_segments.csv" --labels "$A/class_labels_indices.csv" \
	--media "$D/vgg/media" -o "$D/man/as_eval.csv" >/dev/null 2>&1 || fail "import audioset eval"
[ "$(rows "$D/man/as_eval.csv")" = 8 ] && ! grep -q ',train,' "$D/man/as_eval.csv" || fail "audioset eval: 8 test rows"
# multi-label cells are not decoded by dataset_load yet: check the CSV only
shard_all "$D/man/as.csv" "" 28
ok "audioset"

# ---- nyuv2 ------------------------------------------------------------------------------
"$MKE" gen nyuv2 -o "$D/nyu" --n 10 --seed 4 >/dev/null || fail "gen nyuv2"
head -c 10 "$D/nyu/nyu_depth_v2_labeled.mat" | grep -q 'MATLAB 7.3' || fail "nyuv2: no MATLAB 7.3 header"
"$MKE" gen nyuv2 -o "$D/nyu_again" --n 10 --seed 4 >/dev/null || fail "gen nyuv2 again"
for f in splits classMapping40; do
	head -c 19 "$D/nyu/$f.mat" | grep -q 'MATLAB 5.0 MAT-file' || fail "nyuv2: $f.mat is not MATLAB v5"
done
for f in nyu_depth_v2_labeled splits classMapping40; do
	cmp -s "$D/nyu/$f.mat" "$D/nyu_again/$f.mat" || fail "nyuv2: $f.mat differs for the same seed"
done
# the generated v5 files as scipy reads them: the real names, shapes, dtypes
if /usr/bin/python3 -c 'import scipy.io' 2>/dev/null; then
	/usr/bin/python3 - "$D/nyu" <<'PYEOF' || fail "nyuv2: scipy.io.loadmat of splits.mat / classMapping40.mat"
import sys, numpy as np, scipy.io as sio
d = sys.argv[1]
s = sio.loadmat(d + "/splits.mat")
assert s["trainNdxs"].shape == (5, 1) and s["trainNdxs"].dtype == np.float64, s["trainNdxs"]
assert s["testNdxs"].shape == (5, 1) and s["testNdxs"].dtype == np.float64, s["testNdxs"]
assert list(s["testNdxs"].ravel()) == [2, 4, 6, 8, 10], s["testNdxs"]
m = sio.loadmat(d + "/classMapping40.mat")
mc, cn = m["mapClass"], m["className"]
assert mc.shape == (1, 894) and mc.dtype == np.float64, (mc.shape, mc.dtype)
assert mc.min() == 1 and mc.max() == 40 and (mc == np.round(mc)).all()
assert cn.shape == (1, 40) and cn.dtype == object, (cn.shape, cn.dtype)
assert [str(x[0]) for x in cn[0, :3]] == ["wall", "floor", "cabinet"], cn[0, :3]
PYEOF
	ok "nyuv2: scipy reads the v5 splits.mat and classMapping40.mat"
else
	echo "skip: nyuv2 scipy check (no python3-scipy)"
fi
IMP="$D/nyu/nyu_depth_v2_labeled.mat"
"$MKE" import nyuv2 "$IMP" --split "$D/nyu/splits.mat" --class-map "$D/nyu/classMapping40.mat" \
	-o "$D/nyu_out" >/dev/null 2>"$T/imp.err" || { cat "$T/imp.err"; fail "import nyuv2"; }
M="$D/nyu_out/manifest.csv"
[ "$(rows "$M")" = 10 ] || fail "nyuv2: 10 rows"
[ "$(grep -c ',test,' "$M")" = 5 ] || fail "nyuv2: splits.mat's 5 test samples"
for k in rgb depth label; do [ -f "$D/nyu_out/$k/0009.png" ] || fail "nyuv2: no $k/0009.png"; done
[ "$(wc -l <"$M.classes.txt")" = 41 ] && [ "$(sed -n 2p "$M.classes.txt")" = wall ] || fail "nyuv2: className's 40 names"
cfg "$T/nyu.json" "$M" 41 '"a": {"column": "rgb", "kind": "image", "channels": 3}, "b": {"column": "depth", "kind": "depth"}'
shard_all "$M" "$T/nyu.json" 10
"$MKE" import nyuv2 "$IMP" --class-map "$D/nyu/classMapping40.mat" -o "$D/nyu_out2" >/dev/null 2>&1 \
	|| fail "import nyuv2 without splits"
[ "$(grep -c ',test,' "$D/nyu_out2/manifest.csv")" = 5 ] || fail "nyuv2: default split round(10*654/1449) = 5"
# no mapping: refused, naming the option and where to get the official file
if "$MKE" import nyuv2 "$IMP" -o "$D/nyu_out3" >/dev/null 2>"$T/imp.err"; then fail "nyuv2 without --class-map must fail"; fi
grep -q -- '--class-map classMapping40.mat' "$T/imp.err" && grep -q 'nyuv2-meta-data' "$T/imp.err" \
	&& grep -q -- '--classes 894' "$T/imp.err" || { cat "$T/imp.err"; fail "nyuv2: the no-mapping message"; }
# --classes 894: the raw ids (the generator writes ids above 40)
"$MKE" import nyuv2 "$IMP" --classes 894 -o "$D/nyu_raw" >/dev/null 2>&1 || fail "import nyuv2 --classes 894"
[ "$(wc -l <"$D/nyu_raw/manifest.csv.classes.txt")" = 895 ] || fail "nyuv2 --classes 894: 895 class lines"
# a CSV mapping gives the same label maps as the .mat
awk 'BEGIN { print "nyu_id,class40"; for (k = 1; k <= 894; k++) print k "," ((k - 1) % 40) + 1 }' >"$T/map.csv"
"$MKE" import nyuv2 "$IMP" --split "$D/nyu/splits.mat" --class-map "$T/map.csv" -o "$D/nyu_csv" >/dev/null 2>&1 \
	|| fail "import nyuv2 --class-map CSV"
cmp -s "$D/nyu_out/label/0003.png" "$D/nyu_csv/label/0003.png" || fail "nyuv2: CSV and .mat mappings differ"
cmp -s "$D/nyu_out/label/0003.png" "$D/nyu_raw/label/0003.png" && fail "nyuv2: raw and mapped labels are the same"
ok "nyuv2"

# ---- ravdess (48 clips over 24 actors, every 12th from the 12th without a face) ---------
"$MKE" gen ravdess -o "$D/rav" --n 48 --seed 6 >/dev/null || fail "gen ravdess"
[ "$(ls "$D/rav" | grep -c '^Actor_')" = 24 ] || fail "ravdess: 24 actor folders"
"$MKE" import ravdess "$D/rav" -o "$D/man/rav.csv" >/dev/null 2>"$T/imp.err" || { cat "$T/imp.err"; fail "import ravdess"; }
[ "$(rows "$D/man/rav.csv")" = 44 ] || fail "ravdess: 44 rows"
[ "$(grep -c 'no face' "$T/imp.err")" = 4 ] || fail "ravdess: 4 clips without a face reported"
"$PY" - "$D/man/rav.csv" <<'PYEOF' || fail "ravdess manifest content"
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    f = [int(x) for x in r["id"].split("-")]
    assert f[0] == 3 and int(r["label"]) == f[2] - 1, r
    assert r["split"] == ("train" if f[6] <= 20 else "test"), r
    assert r["face"].endswith("01-" + r["id"][3:] + ".png"), r
PYEOF
cfg "$T/rav.json" "$D/man/rav.csv" 8 '"a": {"column": "face", "kind": "image", "channels": 1}, "b": {"column": "audio", "kind": "audio", "seconds": 0.5}'
shard_all "$D/man/rav.csv" "$T/rav.json" 44
ok "ravdess"
