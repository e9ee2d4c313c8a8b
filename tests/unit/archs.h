/*
 * archs.h - the small test architectures more than one test builds.
 */
#ifndef MKE_TEST_ARCHS_H
#define MKE_TEST_ARCHS_H

#include "net.h"

/* late fusion: a resnet on 1x8x8 (stages [4, 6], 2 blocks) and a video
 * branch on 2 frames of 3x6x6 (conv3 [4, 5]), head_hidden 7, 4 classes
 * (tests/fixtures/gen_net.py's "late"), batch norm over micro-batches of
 * `micro` */
static inline struct net_arch arch_late_micro(int micro)
{
	struct net_arch a = { .task = NET_CLASSIFY, .ninputs = 2, .classes = 4, .head_hidden = 7,
			      .bn_micro = micro };
	a.in[0] = (struct net_input){ 1, 1, 8, 8 };
	a.in[1] = (struct net_input){ 2, 3, 6, 6 };
	a.branch[0] = (struct net_branch){ .type = NET_RESNET, .nstage = 2, .channels = { 4, 6 },
					   .blocks = 2 };
	a.branch[1] = (struct net_branch){ .type = NET_VIDEO, .nstage = 2, .channels = { 4, 5 } };
	return a;
}

#endif
