#!/usr/bin/env node
// Throughput of a running server: for each stream count N, N clients each stream one completion
// of --max-tokens tokens at the same time. Prints per N the aggregate decode rate (all tokens
// after each stream's first, over the span from the first first-token to the last end: prompts
// still being read and streams already done fall in it), the rate while all N streams decode
// (token events from the last first-token to the first end, over that span), the mean
// single-stream rate, and time to first token.
//   node bench.mjs --url http://127.0.0.1:8080 [--streams 1,2,4,8,16] [--max-tokens 128]
//                  [--prompt-tokens 32] [--rounds 2] [--api-key KEY] [--ignore-eos]
// --ignore-eos adds llama-server's `ignore_eos: true`, so that every stream decodes its
// max_tokens in a side-by-side run against it (bitnet serve refuses fields the OpenAI API does not
// have, as OpenAI does; the tokens column shows whether a stream ended early).
import { percentile, streamOnce } from "./lib/streams.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf("--" + name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const url = arg("url", "http://127.0.0.1:8080");
const streams = arg("streams", "1,2,4,8,16").split(",").map(Number);
const maxTokens = Number(arg("max-tokens", 128));
const rounds = Number(arg("rounds", 2));
const promptTokens = Number(arg("prompt-tokens", 32));
const headers = arg("api-key") ? { Authorization: "Bearer " + arg("api-key") } : {};

// Token ids as the prompt: its length is exact whatever the tokenizer (ids below 256 exist in
// every vocabulary here).
const prompt = (i) => Array.from({ length: promptTokens }, (_, k) => 32 + ((i * 31 + k * 7) % 90));

console.log(`| streams | aggregate decode tok/s | all decoding tok/s | per-stream tok/s | TTFT p50 ms | TTFT max ms | tokens |`);
console.log(`|---:|---:|---:|---:|---:|---:|---:|`);
let base = null, baseAll = null;
for (const n of streams) {
  let best = null;
  for (let r = 0; r < rounds; r++) {
    const results = await Promise.all(Array.from({ length: n }, (_, i) => streamOnce(url + "/v1/completions", {
      // logprobs: an event per token even where its text is empty (synthetic models' tokens
      // are mostly control tokens), so time to first token is measured on every model.
      prompt: prompt(i + r * 100), max_tokens: maxTokens, temperature: 0.8, seed: i + 1, logprobs: 0,
      ...(process.argv.includes("--ignore-eos") ? { ignore_eos: true } : {}),
    }, { headers })));
    const bad = results.filter((x) => !x.ok);
    if (bad.length) throw new Error(`${bad.length} of ${n} streams failed: ${bad[0].error}`);
    const first = Math.min(...results.map((x) => x.firstAt)), last = Math.max(...results.map((x) => x.endAt));
    const decoded = results.reduce((s, x) => s + Math.max(0, x.tokens - 1), 0);
    const agg = decoded / ((last - first) / 1000);
    const per = results.reduce((s, x) => s + Math.max(0, x.tokens - 1) / ((x.endAt - x.firstAt) / 1000), 0) / n;
    // All N decoding: events after the last stream's first token up to the first stream's end.
    const from = Math.max(...results.map((x) => x.firstAt)), to = Math.min(...results.map((x) => x.times.at(-1)));
    const inside = results.reduce((s, x) => s + x.times.filter((t) => t > from && t <= to).length, 0);
    const all = to > from ? inside / ((to - from) / 1000) : NaN;
    const ttft = results.map((x) => x.ttftMs);
    const row = { agg, all, per, p50: percentile(ttft, 50), max: Math.max(...ttft), tokens: results.reduce((s, x) => s + x.tokens, 0) };
    if (!best || row.agg > best.agg) best = row;
  }
  if (n === streams[0]) {
    base = best.agg;
    baseAll = best.all;
  }
  console.log(`| ${n} | ${best.agg.toFixed(1)} (${(best.agg / base).toFixed(2)}x) | ${best.all.toFixed(1)} (${(best.all / baseAll).toFixed(2)}x) | ${best.per.toFixed(1)} | ${best.p50.toFixed(0)} | ${best.max.toFixed(0)} | ${best.tokens} |`);
}
