#!/usr/bin/env python3
"""cnn_ab_summary.py [FILE] - the medians (and ranges) of the per-round
mke / PyTorch ratios in the output of tests/bench/cnn_ab.sh:

    MODEL tT train MEDIAN [LO-HI] infer MEDIAN [LO-HI]   (n rounds)

The Winograd column against the torch column; the im2col column, when
there, likewise after it. Standard library only."""
import re
import statistics
import sys


def fields(part):
    """'wino train 7.16 infer 24.0' -> {'train': 7.16, 'infer': 24.0}"""
    return {k: float(v) for k, v in re.findall(r"(train|infer) ([0-9.]+)", part)}


def main():
    src = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    ratios = {}
    for line in src:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 4 or not parts[0].startswith("r"):
            continue
        _, model, th = parts[0].split()
        mke, im2col, torch = fields(parts[1]), fields(parts[2]), fields(parts[3])
        for side, got in (("mke", mke), ("im2col", im2col)):
            for k in ("train", "infer"):
                if k in got and torch.get(k):
                    ratios.setdefault((model, th, side, k), []).append(got[k] / torch[k])
    for (model, th, side) in sorted({k[:3] for k in ratios}):
        out = []
        for k in ("train", "infer"):
            r = ratios.get((model, th, side, k))
            if r:
                out.append("%s %.2f [%.2f-%.2f]" % (k, statistics.median(r), min(r), max(r)))
        n = max(len(ratios.get((model, th, side, k), [])) for k in ("train", "infer"))
        print("%-16s %s %-6s %s   (%d rounds)" % (model, th, side, "  ".join(out), n))


if __name__ == "__main__":
    main()
