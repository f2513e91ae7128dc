// Streaming clients for the load test and the throughput benchmark: plain fetch, the SSE events
// read as they come, time to first token and tokens counted per request.

// One streamed request. Resolves to { ok, error, tokens, ttftMs, firstAt, endAt, usage, times }:
// times holds the arrival of every token event (performance.now() ms), firstAt is its first.
export async function streamOnce(url, body, { headers = {}, signal } = {}) {
  const t0 = performance.now();
  const res = { ok: false, error: null, tokens: 0, ttftMs: null, firstAt: null, endAt: null, usage: null, times: [] };
  try {
    const r = await fetch(url, {
      method: "POST", signal,
      headers: { "Content-Type": "application/json", ...headers },
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    });
    if (r.status !== 200) {
      res.error = `HTTP ${r.status}: ${await r.text()}`;
      return res;
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "", done = false;
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (!ev.startsWith("data: ")) continue;
        const data = ev.slice(6);
        if (data === "[DONE]") { done = true; continue; }
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message);
        if (j.usage) res.usage = j.usage;
        const c = j.choices && j.choices[0];
        const piece = c && (c.delta ? c.delta.content : c.text);
        // A token may have no text of its own (a control token, half a character): with
        // log-probabilities asked for, its event still comes and marks the first token.
        if (piece || (c && c.logprobs)) {
          res.times.push(performance.now());
          if (res.firstAt === null) {
            res.firstAt = res.times[0];
            res.ttftMs = res.firstAt - t0;
          }
        }
      }
    }
    res.endAt = performance.now();
    if (!done) throw new Error("the stream ended without [DONE]");
    if (!res.usage) throw new Error("no usage in the stream");
    res.tokens = res.usage.completion_tokens;
    res.ok = true;
  } catch (e) {
    res.error = String(e) + (e.cause ? ` (${e.cause.code || e.cause})` : "");
  }
  return res;
}

export function percentile(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
