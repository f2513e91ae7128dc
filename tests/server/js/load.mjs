#!/usr/bin/env node
// Load test: C concurrent streaming clients, each asking again as soon as its answer ends, for
// D seconds. Passes with zero errors and a bounded resident memory of the server (its growth
// after the first quarter of the run, when slots and buffers have been allocated, under a bound).
//   node load.mjs [--clients 64] [--seconds 600] [--max-tokens 32] [--rss-growth-mb 64]
//                 [--url http://127.0.0.1:PORT --pid PID]   (else starts its own server)
import { pathToFileURL } from "node:url";

import { rssBytes, startServer } from "./lib/server.mjs";
import { percentile, streamOnce } from "./lib/streams.mjs";

export async function runLoad({ url, pid, clients = 64, seconds = 10, maxTokens = 32, headers = {}, log = () => {} }) {
  const end = performance.now() + seconds * 1000;
  const prompts = ["Who is the king?", "Tell me about the sea.", "What is a database index?", "Say something kind."];
  let requests = 0, tokens = 0;
  const errors = [], ttfts = [];
  const rss = [];
  const sampler = setInterval(async () => {
    try { rss.push({ t: performance.now(), bytes: await rssBytes(pid) }); } catch {}
  }, 250);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, i) => {
    let k = 0;
    while (performance.now() < end) {
      const r = await streamOnce(url + "/v1/chat/completions", {
        messages: [{ role: "user", content: prompts[(i + k++) % prompts.length] }],
        max_tokens: 1 + ((i * 7 + k) % maxTokens), temperature: 0.8, seed: i * 1000 + k,
      }, { headers });
      requests++;
      if (!r.ok) errors.push(r.error);
      else {
        tokens += r.tokens;
        if (r.ttftMs !== null) ttfts.push(r.ttftMs);
      }
    }
  }));
  clearInterval(sampler);
  const wall = (performance.now() - t0) / 1000;
  const settled = rss.filter((s) => s.t >= t0 + (wall * 1000) / 4).map((s) => s.bytes);
  const report = {
    clients, seconds: wall, requests, errors: errors.length, firstErrors: errors.slice(0, 3), tokens,
    tokensPerSecond: tokens / wall,
    ttftMs: { p50: percentile(ttfts, 50), p90: percentile(ttfts, 90), max: percentile(ttfts, 100) },
    rssMB: {
      start: rss.length ? rss[0].bytes / 2 ** 20 : NaN,
      settled: settled.length ? settled[0] / 2 ** 20 : NaN,
      max: rss.length ? Math.max(...rss.map((s) => s.bytes)) / 2 ** 20 : NaN,
    },
  };
  report.rssMB.growthAfterSettling = settled.length ? (Math.max(...settled) - settled[0]) / 2 ** 20 : NaN;
  log(report);
  return report;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf("--" + name);
    return i > 0 ? process.argv[i + 1] : dflt;
  };
  const clients = Number(arg("clients", 64)), seconds = Number(arg("seconds", 600));
  const maxTokens = Number(arg("max-tokens", 32)), bound = Number(arg("rss-growth-mb", 64));
  let url = arg("url"), pid = Number(arg("pid", 0)), server = null;
  if (!url) {
    server = await startServer(["--parallel", arg("parallel", "16"), "-c", arg("ctx-size", "512"), "--queue", String(clients)]);
    url = server.url;
    pid = server.pid;
  }
  const r = await runLoad({ url, pid, clients, seconds, maxTokens });
  console.log(JSON.stringify(r, null, 2));
  if (server) {
    const { code } = await server.stop();
    if (code !== 0) { console.error("server exit status", code, server.stderr()); process.exitCode = 1; }
  }
  if (r.errors > 0 || !(r.rssMB.growthAfterSettling < bound)) {
    console.error(`FAIL: ${r.errors} errors, RSS grew ${r.rssMB.growthAfterSettling.toFixed(1)} MB after settling (bound ${bound} MB)`);
    process.exitCode = 1;
  } else {
    console.log(`PASS: ${r.requests} requests, 0 errors, RSS growth ${r.rssMB.growthAfterSettling.toFixed(1)} MB`);
  }
}
