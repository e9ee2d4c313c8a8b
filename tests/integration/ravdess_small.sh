#!/bin/sh
# The small version of the RAVDESS example (face images + voice WAVs, the paper's 3-layer CNN pair, accuracy) end
# to end through Redis and mpirun -np 2, from files in the dataset's native
# format: the run is done, every shard labeled, and the MM student beats its
# teacher (MKE's result). See lib.sh small_example.
. tests/integration/lib.sh
small_example ravdess
gt "$MM" "$TEACHER" || fail "mm_student $MM does not beat the teacher $TEACHER"
ok "mm_student $MM beats the teacher $TEACHER"
