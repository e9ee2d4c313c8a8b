/*
 * gen.h - small synthetic datasets in the native formats of the paper's
 * datasets (docs/importers.md "Generators"), so that the importers and the
 * whole pipeline can be tested without downloading anything:
 *
 *   twomoon    labeled.csv, unlabeled.csv, test.csv (id,label,split,x,y)
 *   vggsound   vggsound.csv + media/<id>_<start:06d>.wav and frame folders;
 *              audioset/ segment CSVs and class_labels_indices.csv over the
 *              same clips
 *   vggsound-mp4  the same, each clip one media/<id>_<start:06d>.mp4 (AAC
 *              audio + H.264 frames, VGGSound's own layout; common/av.h)
 *   nyuv2      nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5), splits.mat and
 *              classMapping40.mat (MATLAB v5, the real variables; the
 *              mapping is the generator's own, not the official one)
 *   ravdess    Actor_XX/03-01-EE-II-SS-RR-XX.wav + 01-...png face images
 *
 * Content is learnable and multimodal in the MKE sense: the class is a
 * function of one feature of modality a and one of modality b, so modality
 * a alone leaves it ambiguous. Every draw comes from common/rng.h with
 * purpose RNG_DATA, keyed by (seed, dataset, sample): the same seed gives
 * the same bytes.
 */
#ifndef MKE_GEN_H
#define MKE_GEN_H

#include <stdint.h>

/* Write dataset kind ("twomoon", "vggsound", "nyuv2", "ravdess",
 * "vggsound-mp4") of n samples (0: the kind's default) into dir (created).
 * 0 or -1 (reported). */
int gen_dataset(const char *kind, const char *dir, int n, uint64_t seed);

/* The kinds, NULL-terminated, for usage text and checks. */
extern const char *const gen_kinds[];

/* Rows the vggsound generator lists in vggsound.csv without writing a clip
 * (sample i is such a row when i % 10 == 7), so importers report them. */
int gen_vggsound_is_missing(int i);
/* RAVDESS clips the generator writes without a face (i % 12 == 11). */
int gen_ravdess_is_faceless(int i);

#endif
