#!/bin/sh
# prepare-small.sh KIND DIR [N]: the small version of an example, in the
# dataset's native format. `mke gen` writes KIND's files (RAVDESS WAVs and face
# PNGs; the NYU Depth V2 .mat (HDF5), splits.mat and classMapping40.mat (MATLAB
# v5; the generator's own 894 -> 40 mapping, not the official one); VGGSound MP4 clips, H.264
# video + AAC audio, and vggsound.csv), `mke import` turns them into a
# manifest, and `mke split` cuts it into the labeled / unlabeled / test
# manifests deploy/examples/KIND-small.json reads from DIR:
#
#   deploy/examples/prepare-small.sh ravdess deploy/examples/small/ravdess
#   mke run deploy/examples/ravdess-small.json --ranks 2
#
# MKE (bin/mke by default) names the mke binary.
set -eu
KIND=$1
DIR=$2
MKE=${MKE:-$(dirname "$0")/../../bin/mke}
mkdir -p "$DIR"
case "$KIND" in
ravdess)
	"$MKE" gen ravdess -o "$DIR/raw" --n "${3:-720}" --seed 7
	"$MKE" import ravdess "$DIR/raw" -o "$DIR/ravdess.csv"
	"$MKE" split "$DIR/ravdess.csv" --labeled 0.1 --seed 7
	;;
nyuv2)
	"$MKE" gen nyuv2 -o "$DIR/raw" --n "${3:-240}" --seed 7
	"$MKE" import nyuv2 "$DIR/raw/nyu_depth_v2_labeled.mat" --split "$DIR/raw/splits.mat" \
		--class-map "$DIR/raw/classMapping40.mat" -o "$DIR/nyu"
	"$MKE" split "$DIR/nyu/manifest.csv" --labeled 0.1 --seed 7
	;;
vggsound)
	"$MKE" gen vggsound-mp4 -o "$DIR/raw" --n "${3:-480}" --seed 7
	"$MKE" import vggsound "$DIR/raw/vggsound.csv" --media "$DIR/raw/media" -o "$DIR/vggsound.csv"
	"$MKE" split "$DIR/vggsound.csv" --labeled 0.1 --seed 7
	;;
*)
	echo "usage: prepare-small.sh ravdess|nyuv2|vggsound DIR [N]" >&2
	exit 2
	;;
esac
