#!/usr/bin/env python3
"""Held-out losses of two train_log.jsonl-format logs (bitnet train's OUT/train_log.jsonl and
bench/train_pytorch.py --log) at the steps both evaluated: the largest relative difference, and a
non-zero exit when it is above --tol (the training issue's fidelity criterion: 2 %).

  python3 bench/compare_curves.py run/train_log.jsonl torch_log.jsonl --tol 0.02
"""
import argparse
import json
import sys


def records(path):
    """The log's JSON lines, blank lines skipped."""
    for line in open(path):
        line = line.strip()
        if line:
            yield json.loads(line)


def evals(path):
    return {int(j["step"]): float(j["eval_loss"]) for j in records(path)
            if isinstance(j.get("eval_loss"), (int, float)) and "step" in j}


def step_lines(path):
    """step -> (training loss, gradient norm) from the logs' step lines."""
    return {int(j["step"]): (float(j["loss"]), float(j.get("grad_norm", float("nan")))) for j in records(path)
            if "step" in j and isinstance(j.get("loss"), (int, float)) and "eval_loss" not in j}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ours")
    ap.add_argument("reference")
    ap.add_argument("--tol", type=float, default=0.02)
    ap.add_argument("--table", action="store_true", help="also print step, both losses and the difference")
    ap.add_argument("--train-steps", default="",
                    help="comma-separated steps: also print both training losses and gradient norms there")
    a = ap.parse_args()
    if a.train_steps:
        tx, ty = step_lines(a.ours), step_lines(a.reference)
        print("  step  loss ours  reference  diff      |g| ours  reference")
        for s in (int(v) for v in a.train_steps.split(",")):
            if s in tx and s in ty:
                (lx, gx), (ly, gy) = tx[s], ty[s]
                print(f"{s:6d} {lx:10.4f} {ly:10.4f} {100 * (lx - ly) / ly:+7.2f} % {gx:10.4f} {gy:10.4f}")
    x, y = evals(a.ours), evals(a.reference)
    steps = sorted(set(x) & set(y))
    if not steps:
        sys.exit("compare_curves: no step has a held-out loss in both logs")
    rel = {s: abs(x[s] - y[s]) / abs(y[s]) for s in steps}
    worst = max(steps, key=lambda s: rel[s])
    if a.table:
        for s in steps:
            print(f"{s:6d} {x[s]:.4f} {y[s]:.4f} {100 * (x[s] - y[s]) / y[s]:+.2f} %")
    print(json.dumps({"evals": len(steps), "first": [steps[0], x[steps[0]], y[steps[0]]],
                      "last": [steps[-1], x[steps[-1]], y[steps[-1]]],
                      "max_rel_diff": round(rel[worst], 5), "at_step": worst, "tol": a.tol,
                      "within": rel[worst] <= a.tol}))
    sys.exit(0 if rel[worst] <= a.tol else 1)


if __name__ == "__main__":
    main()
