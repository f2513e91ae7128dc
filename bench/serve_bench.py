#!/usr/bin/env python3
"""Throughput of a running `bitnet serve` from Python's standard library alone, for machines
without node (the GPU machine); tests/server/js/bench.mjs is the same measurement from node.

For each stream count N, N clients each stream one completion of --max-tokens tokens at the
same time. Per N: the aggregate decode rate (all tokens after each stream's first, over the span
from the first first-token to the last end), the mean single-stream rate, and time to first
token. The best of --rounds rounds is printed.

  python3 bench/serve_bench.py --url http://127.0.0.1:8080 --streams 1,8,64 --max-tokens 128
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def stream_once(url, body, out):
    u = urllib.parse.urlparse(url)
    t0 = time.monotonic()
    times = []
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}: {resp.read()[:200]!r}")
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            event = json.loads(line[6:])
            if event.get("choices"):
                times.append(time.monotonic())
        conn.close()
        out.update(ok=bool(times), t0=t0, times=times, error=None if times else "no token events")
    except Exception as e:  # one failed stream fails the round, with its message
        out.update(ok=False, error=str(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--streams", default="1,2,4,8,16")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    print("| streams | aggregate decode tok/s | per-stream tok/s | TTFT p50 ms | TTFT max ms | tokens |")
    print("|---:|---:|---:|---:|---:|---:|")
    base = None
    for n in [int(s) for s in a.streams.split(",")]:
        best = None
        for r in range(a.rounds):
            results = [{} for _ in range(n)]
            threads = []
            for i in range(n):
                # Token ids as the prompt: its length is exact whatever the tokenizer. logprobs:
                # an event per token even where its text is empty.
                prompt = [32 + ((i + r * 100) * 31 + k * 7) % 90 for k in range(a.prompt_tokens)]
                body = {"prompt": prompt, "max_tokens": a.max_tokens, "temperature": 0.8, "seed": i + 1,
                        "logprobs": 0, "stream": True}
                threads.append(threading.Thread(target=stream_once, args=(a.url, body, results[i])))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            bad = [x for x in results if not x.get("ok")]
            if bad:
                raise SystemExit(f"{len(bad)} of {n} streams failed: {bad[0].get('error')}")
            first = min(x["times"][0] for x in results)
            last = max(x["times"][-1] for x in results)
            decoded = sum(len(x["times"]) - 1 for x in results)
            agg = decoded / max(last - first, 1e-9)
            per = sum((len(x["times"]) - 1) / max(x["times"][-1] - x["times"][0], 1e-9) for x in results) / n
            ttft = sorted(1e3 * (x["times"][0] - x["t0"]) for x in results)
            row = dict(agg=agg, per=per, p50=ttft[len(ttft) // 2], max=ttft[-1],
                       tokens=sum(len(x["times"]) for x in results))
            if best is None or row["agg"] > best["agg"]:
                best = row
        if base is None:
            base = best["agg"]
        print(f"| {n} | {best['agg']:.1f} ({best['agg'] / base:.2f}x) | {best['per']:.1f} | {best['p50']:.0f} | "
              f"{best['max']:.0f} | {best['tokens']} |", flush=True)


if __name__ == "__main__":
    main()
