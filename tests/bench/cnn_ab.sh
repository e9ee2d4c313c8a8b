#!/bin/sh
# cnn_ab.sh [ROUNDS] - the convolutional models, Winograd against im2col
# against PyTorch, interleaved: in each round, for each model and 1 and 2
# threads, bench_cnn (Winograd on), bench_cnn with MKE_BENCH_WINOGRAD=0
# (im2col) and tests/bench/cnn_torch.py, one line each:
#   rR MODEL tT | wino train S infer S | im2col train S infer S | torch train S infer S
# (samples/s, wall time). Run from the repository root after `make bench`
# has built build/bench/bench_cnn; takes about 4 minutes a round.
# MKE_AB_IM2COL=0 leaves the im2col column out (about 3 minutes a round);
# MKE_AB_MODELS="nyu_rgbd ..." times those models only.
# docs/results.md gives the medians of the per-round ratios
# (tests/bench/cnn_ab_summary.py computes them from this output).
rounds=${1:-3}
im2col=${MKE_AB_IM2COL:-1}
models=${MKE_AB_MODELS:-ravdess_teacher ravdess_fusion nyu_rgbd vggsound_audio}
b=${MKE_BUILD:-build}/bench/bench_cnn
r=1
while [ "$r" -le "$rounds" ]; do
	for spec in ravdess_teacher:5:3 ravdess_fusion:5:3 nyu_rgbd:2:3 vggsound_audio:1:3; do
		m=${spec%%:*}; it=${spec#*:}; rp=${it#*:}; it=${it%%:*}
		case " $models " in *" $m "*) ;; *) continue ;; esac
		for th in 1 2; do
			cpus=0; [ "$th" = 2 ] && cpus=0,1
			a=$(OPENBLAS_NUM_THREADS=$th taskset -c $cpus "$b" "$m" "$th" "$it" "$rp" | tr '\n' ' ')
			w=skipped
			[ "$im2col" = 0 ] || w=$(MKE_BENCH_WINOGRAD=0 OPENBLAS_NUM_THREADS=$th taskset -c $cpus "$b" "$m" "$th" "$it" "$rp" | tr '\n' ' ')
			t=$(OPENBLAS_NUM_THREADS=$th OMP_NUM_THREADS=$th taskset -c $cpus /usr/bin/python3 \
				tests/bench/cnn_torch.py "$m" "$th" "$it" "$rp" | tr '\n' ' ')
			echo "r$r $m t$th | wino $a | im2col $w | torch $t"
		done
	done
	r=$((r + 1))
done
