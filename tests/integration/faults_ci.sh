#!/bin/sh
# A short subset of `make faults` (tests/faults/run.sh, docs/faults.md): two
# runs each of a worker rank killed mid-label (1), Redis restarted mid-label
# (3) and the coordinator killed then resumed (4). About a minute.
command -v bash >/dev/null 2>&1 || { echo "skip: no bash"; exit 77; }
MKE_FAULT_REPEATS=${MKE_FAULT_REPEATS:-2} exec bash tests/faults/run.sh 1 3 4
