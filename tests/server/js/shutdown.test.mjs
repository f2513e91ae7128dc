// SIGTERM while answers are being streamed: each stream ends with an error event naming the
// shutdown and then [DONE] (it is not cut off where it was), and the server exits cleanly. The
// request's long prompt keeps it in its prompt steps for seconds, so the signal finds it running.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { bin, model, startServer } from "./lib/server.mjs";

test("a stream in flight at SIGTERM gets an error event and [DONE]", async () => {
  const server = await startServer(["--parallel", "1", "-c", "4096", "--heartbeat-ms", "100"]);
  const prompt = "And the king said to the people of the land: ".repeat(150);
  const r = await fetch(server.url + "/v1/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: "x", prompt, max_tokens: 8, temperature: 0, stream: true }),
  });
  assert.equal(r.status, 200);
  const stopped = server.stop();  // the headers came with the first keep-alive: the prompt is running
  const text = await r.text();
  const { code } = await stopped;
  const events = text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
  assert.equal(events.at(-1), "[DONE]", "the stream ends with [DONE]:\n" + text.slice(-400));
  const last = JSON.parse(events.at(-2));
  assert.ok(last.error && /shutting down/.test(last.error.message), JSON.stringify(last));
  assert.equal(code, 0, "the server stops cleanly:\n" + server.stderr());
});

test("a second server on a port in use is refused", async () => {
  const server = await startServer(["--parallel", "1", "-c", "256"]);
  try {
    const r = spawnSync(bin, ["serve", "-m", model, "--port", String(server.port)], { encoding: "utf8", timeout: 60000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /cannot listen on .*:\d+ \(in use/);
  } finally {
    assert.equal((await server.stop()).code, 0, server.stderr());
  }
});
