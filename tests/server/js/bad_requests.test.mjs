// Malformed and refused requests: each answers its expected status with an OpenAI-style error
// whose message names the problem, and the server keeps serving (checked after every case).
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";

import { startServer } from "./lib/server.mjs";

const KEY = "k3y";
const auth = { Authorization: "Bearer " + KEY, "Content-Type": "application/json" };
const chat = (extra) => JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 2, ...extra });
const comp = (extra) => JSON.stringify({ prompt: "Hi", max_tokens: 2, ...extra });

// [name, method, path, body, headers, status, message pattern]
const cases = [
  ["no API key", "POST", "/v1/chat/completions", chat(), { "Content-Type": "application/json" }, 401, /Authorization/],
  ["wrong API key", "POST", "/v1/chat/completions", chat(), { Authorization: "Bearer nope" }, 401, /invalid API key/],
  ["not a Bearer", "POST", "/v1/completions", comp(), { Authorization: "Basic " + KEY }, 401, /Bearer/],
  ["models without key", "GET", "/v1/models", undefined, {}, 401, /Authorization/],
  ["metrics without key", "GET", "/metrics", undefined, {}, 401, /Authorization/],
  ["unknown path", "GET", "/v1/nothing", undefined, auth, 404, /no such endpoint: GET \/v1\/nothing/],
  ["unknown POST path", "POST", "/v2/chat", chat(), auth, 404, /no such endpoint/],
  ["GET on chat", "GET", "/v1/chat/completions", undefined, auth, 405, /use POST/],
  ["DELETE on completions", "DELETE", "/v1/completions", undefined, auth, 405, /use POST/],
  ["POST on models", "POST", "/v1/models", "{}", auth, 405, /use GET/],
  ["PUT on health", "PUT", "/health", "{}", auth, 405, /use GET/],
  ["empty body", "POST", "/v1/chat/completions", "", auth, 400, /body is empty/],
  ["truncated JSON", "POST", "/v1/chat/completions", '{"messages": [', auth, 400, /not valid JSON/],
  ["not JSON", "POST", "/v1/completions", "prompt=Hi", auth, 400, /not valid JSON/],
  ["trailing garbage", "POST", "/v1/completions", comp() + "}", auth, 400, /not valid JSON/],
  ["JSON array", "POST", "/v1/chat/completions", "[]", auth, 400, /JSON object, not an array/],
  ["JSON number", "POST", "/v1/completions", "42", auth, 400, /JSON object, not an integer/],
  ["JSON null", "POST", "/v1/completions", "null", auth, 400, /JSON object, not null/],
  ["invalid UTF-8", "POST", "/v1/completions", Buffer.from('{"prompt":"\xff"}', "latin1"), auth, 400, /not valid JSON/],
  ["deep nesting", "POST", "/v1/completions", "[".repeat(30000) + "]".repeat(30000), auth, 400, /JSON object, not an array/],
  ["no messages", "POST", "/v1/chat/completions", "{}", auth, 400, /'messages' is required/],
  ["messages not array", "POST", "/v1/chat/completions", '{"messages":"Hi"}', auth, 400, /'messages' must be an array/],
  ["messages empty", "POST", "/v1/chat/completions", '{"messages":[]}', auth, 400, /at least one message/],
  ["message not object", "POST", "/v1/chat/completions", '{"messages":["Hi"]}', auth, 400, /'messages\[0\]' must be an object/],
  ["message no role", "POST", "/v1/chat/completions", '{"messages":[{"content":"Hi"}]}', auth, 400, /'messages\[0\].role' is required/],
  ["role not string", "POST", "/v1/chat/completions", '{"messages":[{"role":1,"content":"Hi"}]}', auth, 400, /role' must be a string/],
  ["unknown role", "POST", "/v1/chat/completions", '{"messages":[{"role":"wizard","content":"Hi"}]}', auth, 400, /"wizard" is not one of/],
  ["no content", "POST", "/v1/chat/completions", '{"messages":[{"role":"user"}]}', auth, 400, /content' is required/],
  ["content number", "POST", "/v1/chat/completions", '{"messages":[{"role":"user","content":1}]}', auth, 400, /must be a string or an array of text parts/],
  ["image part", "POST", "/v1/chat/completions", '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}', auth, 400, /only "text"/],
  ["part without text", "POST", "/v1/chat/completions", '{"messages":[{"role":"user","content":[{"type":"text"}]}]}', auth, 400, /text' must be a string/],
  ["tool calls", "POST", "/v1/chat/completions", '{"messages":[{"role":"assistant","content":"","tool_calls":[]}]}', auth, 400, /tool_calls' is not supported/],
  ["max_tokens 0", "POST", "/v1/chat/completions", chat({ max_tokens: 0 }), auth, 400, /'max_tokens' = 0 is outside/],
  ["max_tokens negative", "POST", "/v1/completions", comp({ max_tokens: -5 }), auth, 400, /'max_tokens' = -5 is outside/],
  ["max_tokens beyond context", "POST", "/v1/completions", comp({ max_tokens: 100000 }), auth, 400, /outside \[1, 4096\]/],
  ["max_tokens string", "POST", "/v1/completions", comp({ max_tokens: "10" }), auth, 400, /'max_tokens' must be an integer, not a string/],
  ["max_tokens fraction", "POST", "/v1/completions", comp({ max_tokens: 2.5 }), auth, 400, /must be an integer/],
  ["max_completion_tokens 0", "POST", "/v1/chat/completions", chat({ max_completion_tokens: 0 }), auth, 400, /'max_completion_tokens'/],
  ["temperature negative", "POST", "/v1/chat/completions", chat({ temperature: -0.1 }), auth, 400, /'temperature' = -0.1 is outside \[0, 2\]/],
  ["temperature too high", "POST", "/v1/chat/completions", chat({ temperature: 3 }), auth, 400, /'temperature'/],
  ["temperature string", "POST", "/v1/completions", comp({ temperature: "warm" }), auth, 400, /'temperature' must be a number, not a string/],
  ["temperature bool", "POST", "/v1/completions", comp({ temperature: true }), auth, 400, /not a boolean/],
  ["top_p above 1", "POST", "/v1/completions", comp({ top_p: 1.01 }), auth, 400, /'top_p'/],
  ["top_k negative", "POST", "/v1/completions", comp({ top_k: -1 }), auth, 400, /'top_k'/],
  ["top_k fraction", "POST", "/v1/completions", comp({ top_k: 1.5 }), auth, 400, /'top_k' must be an integer/],
  ["min_p above 1", "POST", "/v1/completions", comp({ min_p: 5 }), auth, 400, /'min_p'/],
  ["seed string", "POST", "/v1/completions", comp({ seed: "abc" }), auth, 400, /'seed' must be an integer/],
  ["seed too large", "POST", "/v1/completions", comp({ seed: 1e30 }), auth, 400, /'seed'/],
  ["stop number", "POST", "/v1/completions", comp({ stop: 5 }), auth, 400, /'stop' must be a string or an array/],
  ["stop five strings", "POST", "/v1/completions", comp({ stop: ["a", "b", "c", "d", "e"] }), auth, 400, /at most 4/],
  ["stop empty string", "POST", "/v1/completions", comp({ stop: "" }), auth, 400, /empty string/],
  ["stop array of numbers", "POST", "/v1/completions", comp({ stop: [1] }), auth, 400, /must hold strings/],
  ["stream string", "POST", "/v1/chat/completions", chat({ stream: "true" }), auth, 400, /'stream' must be a boolean/],
  ["stream_options without stream", "POST", "/v1/chat/completions", chat({ stream_options: { include_usage: true } }), auth, 400, /only allowed with 'stream': true/],
  ["stream_options unknown", "POST", "/v1/chat/completions", chat({ stream: true, stream_options: { x: 1 } }), auth, 400, /stream_options.x/],
  ["n = 2", "POST", "/v1/chat/completions", chat({ n: 2 }), auth, 400, /'n' = 2/],
  ["best_of 2", "POST", "/v1/completions", comp({ best_of: 2 }), auth, 400, /'best_of' = 2/],
  ["logprobs number in chat", "POST", "/v1/chat/completions", chat({ logprobs: 2 }), auth, 400, /'logprobs' must be a boolean/],
  ["top_logprobs without logprobs", "POST", "/v1/chat/completions", chat({ top_logprobs: 2 }), auth, 400, /needs 'logprobs': true/],
  ["top_logprobs 21", "POST", "/v1/chat/completions", chat({ logprobs: true, top_logprobs: 21 }), auth, 400, /'top_logprobs' = 21/],
  ["completion logprobs 6", "POST", "/v1/completions", comp({ logprobs: 6 }), auth, 400, /'logprobs' = 6/],
  ["frequency_penalty", "POST", "/v1/completions", comp({ frequency_penalty: 0.5 }), auth, 400, /not supported/],
  ["presence_penalty range", "POST", "/v1/completions", comp({ presence_penalty: 3 }), auth, 400, /'presence_penalty'/],
  ["logit_bias", "POST", "/v1/completions", comp({ logit_bias: { 5: 10 } }), auth, 400, /'logit_bias' is not supported/],
  ["echo", "POST", "/v1/completions", comp({ echo: true }), auth, 400, /'echo'/],
  ["suffix", "POST", "/v1/completions", comp({ suffix: "end" }), auth, 400, /'suffix'/],
  ["tools", "POST", "/v1/chat/completions", chat({ tools: [] }), auth, 400, /unrecognized request argument 'tools'/],
  ["prompt in chat", "POST", "/v1/chat/completions", chat({ prompt: "x" }), auth, 400, /unrecognized request argument 'prompt'/],
  ["messages in completions", "POST", "/v1/completions", comp({ messages: [] }), auth, 400, /unrecognized request argument 'messages'/],
  ["model number", "POST", "/v1/completions", comp({ model: 5 }), auth, 400, /'model' must be a string/],
  ["no prompt", "POST", "/v1/completions", "{}", auth, 400, /'prompt' is required/],
  ["prompt object", "POST", "/v1/completions", '{"prompt":{}}', auth, 400, /must be a string or an array of token ids/],
  ["two prompts", "POST", "/v1/completions", '{"prompt":["a","b"]}', auth, 400, /holds 2 prompts/],
  ["token id out of range", "POST", "/v1/completions", '{"prompt":[1, 999999]}', auth, 400, /not a token id in \[0, 8192\)/],
  ["negative token id", "POST", "/v1/completions", '{"prompt":[-1]}', auth, 400, /not a token id/],
  ["empty prompt array", "POST", "/v1/completions", '{"prompt":[]}', auth, 400, /empty array/],
  ["prompt longer than the context", "POST", "/v1/completions", comp({ prompt: "the king ".repeat(2500) }), auth, 400, /the prompt has \d+ tokens; the context holds 4096/],
  ["chat longer than the context", "POST", "/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "word ".repeat(5000) }] }), auth, 400, /context holds 4096/],
  ["body over --max-body", "POST", "/v1/completions", JSON.stringify({ prompt: "x".repeat(70000) }), auth, 413, /larger than 65536 bytes/],
];

let server;
before(async () => {
  server = await startServer(["--parallel", "1", "--queue", "0", "-c", "4096", "--api-key", KEY, "--max-body", "65536", "--timeout", "2"]);
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, "clean stop:\n" + server.stderr());
});

test(`at least 50 distinct bad requests (${cases.length})`, () => {
  assert.ok(cases.length >= 50);
  assert.equal(new Set(cases.map((c) => c[0])).size, cases.length);
});

for (const [name, method, path, body, headers, status, pattern] of cases) {
  test(`${status} ${name}`, async () => {
    const r = await fetch(server.url + path, { method, headers, body });
    const text = await r.text();
    assert.equal(r.status, status, text);
    assert.match(r.headers.get("content-type") || "", /application\/json/);
    const j = JSON.parse(text);
    assert.equal(typeof j.error.message, "string");
    assert.equal(typeof j.error.type, "string");
    assert.match(j.error.message, pattern);
    const health = await fetch(server.url + "/health");
    assert.equal(health.status, 200, "still serving");
  });
}

// Raw bytes that are not HTTP at all: the connection is answered or closed, never a crash.
for (const [name, bytes] of [
  ["garbage request line", "HELLO\r\n\r\n"],
  ["header without colon", "GET /health HTTP/1.1\r\nbroken header\r\nConnection: close\r\n\r\n"],
  ["huge header", "GET /health HTTP/1.1\r\nX: " + "a".repeat(20000) + "\r\n\r\n"],
  ["content-length lies", "POST /v1/completions HTTP/1.1\r\nAuthorization: Bearer " + KEY + "\r\nContent-Length: 100\r\n\r\n{}"],
  ["bad chunked body", "POST /v1/completions HTTP/1.1\r\nAuthorization: Bearer " + KEY + "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
]) {
  test(`raw: ${name}`, async () => {
    const reply = await new Promise((ok) => {
      const s = net.connect(server.port, "127.0.0.1", () => s.write(bytes));
      let got = "";
      s.on("data", (d) => {
        got += d;
        if (got.includes("\r\n\r\n")) s.destroy();  // a whole status line and headers: enough
      });
      s.on("close", () => ok(got));
      s.on("error", () => ok(got));
      setTimeout(() => s.destroy(), 8000);
    });
    if (reply) assert.match(reply, /^HTTP\/1\.1 [24]\d\d /);
    assert.equal((await fetch(server.url + "/health")).status, 200, "still serving");
  });
}

test("503 when the slot and the queue are taken", async () => {
  // --parallel 1 --queue 0: a long stream holds the only slot.
  const ctrl = new AbortController();
  const first = await fetch(server.url + "/v1/completions", {
    method: "POST", headers: auth, signal: ctrl.signal,
    // Greedy: this prompt runs to max_tokens without an end token (seconds even on a fast CPU).
    body: comp({ prompt: "And the king said", max_tokens: 4000, stream: true, temperature: 0 }),
  });
  assert.equal(first.status, 200);
  const reader = first.body.getReader();
  await reader.read();  // it runs
  const second = await fetch(server.url + "/v1/completions", { method: "POST", headers: auth, body: comp() });
  const j = await second.json();
  assert.equal(second.status, 503);
  assert.equal(second.headers.get("retry-after"), "1");
  assert.match(j.error.message, /busy/);
  assert.equal(j.error.type, "server_error");
  ctrl.abort();
  // Once the stream is gone, the slot serves again.
  for (let i = 0; i < 100; i++) {
    const r = await fetch(server.url + "/v1/completions", { method: "POST", headers: auth, body: comp() });
    if (r.status === 200) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.fail("the slot never came back");
});
