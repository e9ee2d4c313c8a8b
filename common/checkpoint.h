/*
 * checkpoint.h - model checkpoints as safetensors files.
 *
 * Tensors: the model's parameters under PyTorch-style names (nn.h), so
 * `safetensors.torch.load_file` + `load_state_dict` works, and, when an
 * optimizer is given, its state as "optim.state" (momentum buffer or the two
 * AdamW moments, flat). Metadata (strings): format "mke-checkpoint/1",
 * epoch, step, optim_t, seed, variant. The RNG needs no state: every draw is
 * keyed by (seed, step, sample id), so (seed, epoch) is the whole cursor.
 * Written atomically; a crash mid-write leaves the previous checkpoint.
 */
#ifndef MKE_CHECKPOINT_H
#define MKE_CHECKPOINT_H

#include <stdint.h>

#include "model.h"
#include "nn.h"

struct ckpt_meta {
	int epoch;       /* epochs completed */
	long step;       /* optimizer steps completed */
	uint64_t seed;
	char variant[32];
};

/* o may be NULL (weights only). */
int checkpoint_save(const char *path, const struct model *m, const struct optim *o, const struct ckpt_meta *meta);
/* Load into an initialised model of the same architecture; o (may be NULL)
 * gets the optimizer state when the file has it. meta may be NULL. */
int checkpoint_load(const char *path, struct model *m, struct optim *o, struct ckpt_meta *meta);

#endif
