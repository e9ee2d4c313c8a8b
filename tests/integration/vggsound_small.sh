#!/bin/sh
# The small version of the VGGSound example (audio spectrograms + video frames, ResNet audio branch and video branch, multi-label mAP) end
# to end through Redis and mpirun -np 2, from files in the dataset's native
# format: the run is done, every shard labeled, and the MM student beats its
# teacher (MKE's result). See lib.sh small_example.
. tests/integration/lib.sh
small_example vggsound
gt "$MM" "$TEACHER" || fail "mm_student $MM does not beat the teacher $TEACHER"
ok "mm_student $MM beats the teacher $TEACHER"
