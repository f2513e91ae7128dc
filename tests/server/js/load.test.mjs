// The load test's short form (CI): 64 concurrent streaming clients against 8 slots for a few
// seconds; zero errors, every request answered, the server's memory bounded.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { runLoad } from "./load.mjs";
import { startServer } from "./lib/server.mjs";

const seconds = Number(process.env.BITNET_LOAD_SECONDS || 8);
// Under AddressSanitizer freed memory sits in quarantine (256 MB by default) before reuse, so the
// server's RSS legitimately grows by that much: the bound there is the quarantine plus the same 64 MB.
const sanitized = !!process.env.BITNET_LOAD_SANITIZED;
const growthBoundMB = sanitized ? 256 + 64 : 64;
const maxRssMB = sanitized ? 4096 : 1024;
let server;
before(async () => {
  server = await startServer(["--parallel", "8", "-c", "256", "--queue", "64"]);
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, server.stderr());
});

test(`64 streaming clients for ${seconds} s`, { timeout: (seconds + 120) * 1000 }, async () => {
  const r = await runLoad({ url: server.url, pid: server.pid, clients: 64, seconds, maxTokens: 16 });
  console.log(JSON.stringify(r));
  assert.equal(r.errors, 0, r.firstErrors.join("\n"));
  assert.ok(r.requests >= 64, `every client was answered at least once (${r.requests})`);
  assert.ok(r.tokens > 0);
  assert.ok(r.rssMB.max < maxRssMB, `RSS stays under ${maxRssMB} MB (${r.rssMB.max.toFixed(0)} MB)`);
  assert.ok(r.rssMB.growthAfterSettling < growthBoundMB,
    `RSS grew ${r.rssMB.growthAfterSettling.toFixed(1)} MB after settling (bound ${growthBoundMB} MB)`);
  // The server still answers and has nothing left running.
  const m = await (await fetch(server.url + "/metrics")).text();
  assert.match(m, /^bitnet_active_sequences 0$/m);
  assert.match(m, /^bitnet_queue_depth 0$/m);
});
