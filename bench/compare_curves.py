#!/usr/bin/env python3
"""Held-out losses of two train_log.jsonl-format logs (bitnet train's OUT/train_log.jsonl and
bench/train_pytorch.py --log) at the steps both evaluated: the largest relative difference, and a
non-zero exit when it is above --tol (the training issue's fidelity criterion: 2 %).

  python3 bench/compare_curves.py run/train_log.jsonl torch_log.jsonl --tol 0.02
"""
import argparse
import json
import sys


def evals(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        j = json.loads(line)
        if isinstance(j.get("eval_loss"), (int, float)) and "step" in j:
            out[int(j["step"])] = float(j["eval_loss"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ours")
    ap.add_argument("reference")
    ap.add_argument("--tol", type=float, default=0.02)
    a = ap.parse_args()
    x, y = evals(a.ours), evals(a.reference)
    steps = sorted(set(x) & set(y))
    if not steps:
        sys.exit("compare_curves: no step has a held-out loss in both logs")
    rel = {s: abs(x[s] - y[s]) / abs(y[s]) for s in steps}
    worst = max(steps, key=lambda s: rel[s])
    print(json.dumps({"evals": len(steps), "first": [steps[0], x[steps[0]], y[steps[0]]],
                      "last": [steps[-1], x[steps[-1]], y[steps[-1]]],
                      "max_rel_diff": round(rel[worst], 5), "at_step": worst, "tol": a.tol,
                      "within": rel[worst] <= a.tol}))
    sys.exit(0 if rel[worst] <= a.tol else 1)


if __name__ == "__main__":
    main()
