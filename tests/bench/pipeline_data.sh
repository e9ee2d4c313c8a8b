# tests/bench/pipeline_data.sh - sourced by run.sh and label_ab.sh: the
# TwoMoon-shaped pipeline run of `make bench` section 4.
#
# pipeline_data DIR ROWS EPOCHS writes DIR/data (the example's labeled and
# test points, ROWS unlabeled points: the example's, jittered) and
# DIR/run.json (MLP teacher (32,32), MM student (128,128) for EPOCHS epochs,
# batch 512, input noise 2, default shard size). Run from the repository root.
pipeline_data() {
	mkdir -p "$1/data"
	cp deploy/data/twomoon/labeled.csv deploy/data/twomoon/test.csv "$1/data/"
	awk -F, -v N="$2" 'NR == 1 { print; next } { r[++n] = $0 }
		END { srand(7); for (i = 0; i < N; i++) { split(r[i % n + 1], f, ",");
		printf "u-%07d,%s,unlabeled,%.6f,%.6f\n", i, f[2], f[4] + (rand() - 0.5) * 0.1,
			f[5] + (rand() - 0.5) * 0.1 } }' deploy/data/twomoon/unlabeled.csv >"$1/data/unlabeled.csv"
	cat >"$1/run.json" <<JSON
{
  "name": "bench-pipeline",
  "data": {"root": "$1/data", "labeled": "labeled.csv", "unlabeled": "unlabeled.csv", "test": "test.csv",
    "classes": 2, "modalities": {"a": {"column": "x", "kind": "inline"}, "b": {"column": "y", "kind": "inline"}}},
  "models": {"teacher": {"inputs": ["a"], "hidden": [32, 32]},
    "mm": {"inputs": ["a", "b"], "fusion": "early", "hidden": [128, 128]}},
  "teacher": {"model": "teacher", "seed": 0, "epochs": 100, "optimizer": {"type": "sgd", "lr": 0.01}},
  "student": {"epochs": $3, "batch_size": 512, "optimizer": {"type": "sgd", "lr": 0.01}},
  "loss": "ce", "pseudo_labels": "hard", "regularizer": {"input_noise": 2},
  "variants": {"mm_student": {"model": "mm"}},
  "seeds": [81],
  "pipeline": {"checkpoint_every": 1000000}
}
JSON
}
