#!/usr/bin/python3
"""Throughput of the convolutional models in PyTorch, for tests/bench/run.sh
(the mke side is tests/bench/bench_cnn.c, same architectures and batches).

    /usr/bin/python3 tests/bench/cnn_torch.py MODEL THREADS ITERS REPEATS

The modules are those of tests/fixtures/gen_net.py (the definition of mke's
nets). Prints "train <samples/s>" (zero grad + forward + cross-entropy +
backward + SGD step, train mode) and "infer <samples/s>" (eval mode,
no_grad), each the median over REPEATS timings of ITERS steps after one
warm-up step; wall time (process CPU time with MKE_BENCH_CLOCK=cpu, as
bench_cnn), torch.set_num_threads(THREADS).
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from gen_net import Classifier, Conv3Branch, ResNetBranch, RGBDSeg  # noqa: E402


def build(name):
    """(model, inputs, labels, segmentation?) as bench_cnn.c's arch_of"""
    if name in ("ravdess_fusion", "ravdess_teacher"):
        two = name == "ravdess_fusion"
        nb = 2 if two else 1
        B = 32
        m = Classifier([Conv3Branch(1, [32, 64, 128], flatten=True) for _ in range(nb)],
                       [128 * 8 * 8] * nb, 128 if two else 0, 8)
        xs = [torch.randn(B, 1, 64, 64) for _ in range(nb)]
        return m, xs, torch.randint(0, 8, (B,)), False
    if name == "vggsound_audio":
        B = 16
        m = Classifier([ResNetBranch(1, [32, 64, 128, 256], 1)], [256], 0, 309)
        return m, [torch.randn(B, 1, 257, 500)], torch.randint(0, 309, (B,)), False
    if name == "nyu_rgbd":
        B = 8
        m = RGBDSeg([3, 1], [32, 64, 128, 256], 40)
        xs = [torch.randn(B, 3, 120, 160), torch.randn(B, 1, 120, 160)]
        return m, xs, torch.randint(0, 40, (B, 120, 160)), True
    raise SystemExit("cnn_torch.py: unknown model %s" % name)


CLOCK = time.process_time if os.environ.get("MKE_BENCH_CLOCK") == "cpu" else time.perf_counter


def main():
    if len(sys.argv) != 5:
        raise SystemExit("usage: cnn_torch.py MODEL THREADS ITERS REPEATS")
    name = sys.argv[1]
    threads, iters, repeats = (int(a) for a in sys.argv[2:5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m, xs, y, seg = build(name)
    B = y.shape[0]
    opt = torch.optim.SGD(m.parameters(), lr=0.01)

    def train_step():
        opt.zero_grad()
        out = m(xs)
        loss = F.cross_entropy(out, y, ignore_index=255) if seg else F.cross_entropy(out, y)
        loss.backward()
        opt.step()

    def timed(step):
        step()  # warm-up
        t = []
        for _ in range(repeats):
            t0 = CLOCK()
            for _ in range(iters):
                step()
            t.append(CLOCK() - t0)
        return B * iters / statistics.median(t)

    m.train()
    print("train %.2f" % timed(train_step))
    m.eval()
    with torch.no_grad():
        print("infer %.2f" % timed(lambda: m(xs)))


if __name__ == "__main__":
    main()
