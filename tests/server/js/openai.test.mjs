// The official OpenAI client against `bitnet serve`: streamed and whole chat completions and
// completions, usage, log-probabilities, the model list, and a stream cancelled by its client.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { metric, requireDep, startServer } from "./lib/server.mjs";

const OpenAI = requireDep("openai");
let server, client;

before(async () => {
  server = await startServer(["--parallel", "2", "-c", "4096", "--api-key", "sekrit", "--heartbeat-ms", "100"]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "sekrit", maxRetries: 0, timeout: 60000 });
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, "the server stops cleanly on SIGTERM:\n" + server.stderr());
});

test("streamed chat completion with usage", async () => {
  const stream = await client.chat.completions.create({
    model: "bitnet-en",
    messages: [{ role: "system", content: "You answer briefly." }, { role: "user", content: "Who is the king?" }],
    max_tokens: 12, temperature: 0.7, seed: 3, stream: true, stream_options: { include_usage: true },
  });
  let text = "", usage = null, finish = null, role = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(role, "assistant");
  assert.ok(text.length > 0, "some text streamed");
  assert.ok(["stop", "length"].includes(finish));
  assert.ok(usage && usage.prompt_tokens > 5, JSON.stringify(usage));
  assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= 12);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  assert.ok(chunks >= 3);
});

test("streamed completion equals the whole one (same seed)", async () => {
  const req = { model: "x", prompt: "And the king said", max_tokens: 16, temperature: 0.8, seed: 42 };
  const whole = await client.completions.create(req);
  assert.equal(whole.object, "text_completion");
  assert.equal(whole.usage.completion_tokens, 16);
  assert.equal(whole.choices[0].finish_reason, "length");
  const stream = await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = "", usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices[0]) text += chunk.choices[0].text;
  }
  assert.equal(text, whole.choices[0].text);
  assert.deepEqual(usage, whole.usage);
});

test("greedy completion continues the Bible", async () => {
  const r = await client.completions.create({ model: "x", prompt: "And the king said", max_tokens: 24, temperature: 0 });
  assert.match(r.choices[0].text, /unto/);
});

test("stop strings end the answer and are not shown", async () => {
  const r = await client.completions.create({ model: "x", prompt: "And the king said", max_tokens: 24, temperature: 0 });
  const full = r.choices[0].text;
  const cut = full.indexOf(" ", 3);
  const stop = full.slice(cut, cut + 3);
  const s = await client.completions.create({ model: "x", prompt: "And the king said", max_tokens: 24, temperature: 0, stop: [stop] });
  assert.equal(s.choices[0].text, full.slice(0, cut));
  assert.equal(s.choices[0].finish_reason, "stop");
});

test("chat completion with log-probabilities", async () => {
  const r = await client.chat.completions.create({
    model: "x", messages: [{ role: "user", content: "Hello" }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.equal(t.top_logprobs[0].token, t.token, "greedy picks the most likely token");
  }
});

test("streamed completion's log-probabilities continue the whole answer's text offsets", async () => {
  const req = { model: "x", prompt: "And the king said", max_tokens: 8, temperature: 0, logprobs: 2 };
  const whole = await client.completions.create(req);
  const stream = await client.completions.create({ ...req, stream: true });
  const offsets = [], tokens = [];
  for await (const chunk of stream) {
    const lp = chunk.choices[0] && chunk.choices[0].logprobs;
    if (!lp) continue;
    offsets.push(...lp.text_offset);
    tokens.push(...lp.tokens);
  }
  assert.deepEqual(tokens, whole.choices[0].logprobs.tokens);
  assert.deepEqual(offsets, whole.choices[0].logprobs.text_offset);
  assert.ok(offsets.length >= 2 && offsets.at(-1) > 0, JSON.stringify(offsets));
});

test("model list", async () => {
  const models = await client.models.list();
  assert.equal(models.data[0].id, "bitnet-en");
});

test("a wrong API key is refused", async () => {
  const bad = new OpenAI({ baseURL: server.url + "/v1", apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e.status === 401 && /invalid API key/.test(e.message));
});

test("a stream whose client goes away is cancelled", async () => {
  const auth = { Authorization: "Bearer sekrit" };
  const before = (await metric(server.url, "bitnet_requests_cancelled_total", auth)) || 0;
  const ctrl = new AbortController();
  // Greedy: runs to max_tokens without an end token, far longer than the test.
  const stream = await client.completions.create(
    { model: "x", prompt: "And the king said", max_tokens: 4000, temperature: 0, stream: true },
    { signal: ctrl.signal });
  let n = 0;
  try {
    // Chunks already received may still arrive after abort(); leaving the loop stops reading.
    for await (const chunk of stream) {
      if (chunk.choices[0]?.text && ++n === 3) {
        ctrl.abort();
        break;
      }
    }
  } catch (e) {
    assert.match(String(e), /abort/i);
  }
  assert.equal(n, 3, "the stream ended at the abort");
  for (let i = 0; i < 100; i++) {
    if ((await metric(server.url, "bitnet_requests_cancelled_total", auth)) > before) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await metric(server.url, "bitnet_requests_cancelled_total", auth), before + 1);
  assert.equal(await metric(server.url, "bitnet_active_sequences", auth), 0);
});

test("a whole (not streamed) answer whose client goes away is cancelled too", async () => {
  const auth = { Authorization: "Bearer sekrit" };
  const before = await metric(server.url, "bitnet_requests_cancelled_total", auth);
  const ctrl = new AbortController();
  const pending = fetch(server.url + "/v1/completions", {
    method: "POST", signal: ctrl.signal, headers: { ...auth, "Content-Type": "application/json" },
    // Greedy: this prompt runs to max_tokens without an end token (seconds even on a fast CPU).
    body: JSON.stringify({ prompt: "And the king said", max_tokens: 4000, temperature: 0 }),
  }).then((r) => r.text()).catch((e) => e.name);
  setTimeout(() => ctrl.abort(), 200);
  assert.equal(await pending, "AbortError");
  // The server finds out at its next keep-alive write (--heartbeat-ms while nothing else is sent).
  for (let i = 0; i < 100; i++) {
    if ((await metric(server.url, "bitnet_requests_cancelled_total", auth)) > before) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await metric(server.url, "bitnet_requests_cancelled_total", auth), before + 1);
  assert.equal(await metric(server.url, "bitnet_active_sequences", auth), 0);
});
