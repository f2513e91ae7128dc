#!/usr/bin/env python3
"""Steady-state tokens/s of a `bitnet train --json` log (stdin or a file).

The trainer's tokens_per_second is cumulative from its start, so it includes step 1 (buffer
allocations, cuBLASLt plans). Each step line's elapsed time is tokens / tokens_per_second; the
steady rate is the tokens of steps 3..N over the time they took. Prints one JSON object.
"""
import json
import sys


def main() -> None:
    src = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    rows = [json.loads(line) for line in src if '"event":"step"' in line]
    if len(rows) < 3:
        sys.exit("steady_rate: need at least 3 step lines")
    (t0, s0), (t1, s1) = [(r["tokens"], r["tokens"] / r["tokens_per_second"]) for r in (rows[1], rows[-1])]
    print(json.dumps({"steady_tokens_per_second": round((t1 - t0) / (s1 - s0)),
                      "steps": f"{rows[2]['step']}..{rows[-1]['step']}",
                      "printed_tokens_per_second": round(rows[-1]["tokens_per_second"]),
                      "final_loss": rows[-1]["loss"]}))


if __name__ == "__main__":
    main()
