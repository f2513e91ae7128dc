// Starts `bitnet serve` on a free loopback port for one test file and stops it again.
// BITNET_BIN: the binary (default: build/dev's); BITNET_MODEL: the model (default: the project's);
// BITNET_JS_DEPS: the folder whose node_modules holds openai and playwright-core (default: here).
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../../../..");
export const bin = process.env.BITNET_BIN || join(repo, "build/dev/tools/bitnet/bitnet");
export const model = process.env.BITNET_MODEL || join(repo, "models/bitnet-en.gguf");
export const requireDep = createRequire(join(process.env.BITNET_JS_DEPS || resolve(here, ".."), "package.json"));

// Resolves once the server prints its address. args: extra flags.
export function startServer(args = [], { startTimeoutMs = 120000 } = {}) {
  const proc = spawn(bin, ["serve", "-m", model, "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (d) => { stderr += d; });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { proc.kill("SIGKILL"); fail(new Error("server did not start:\n" + stderr)); }, startTimeoutMs);
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[0-9.]+:(\d+))/);
      if (!m) return;
      clearTimeout(timer);
      const exited = new Promise((r) => proc.on("exit", (code, signal) => r({ code, signal })));
      ok({
        url: m[1],
        port: Number(m[2]),
        pid: proc.pid,
        stderr: () => stderr,
        // SIGTERM, then the exit status (0 for a clean stop; sanitizers make it non-zero on leaks).
        async stop(timeoutMs = 60000) {
          proc.kill("SIGTERM");
          const t = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
          const r = await exited;
          clearTimeout(t);
          return r;
        },
      });
    });
    proc.on("exit", (code) => { clearTimeout(timer); fail(new Error(`server exited (${code}) before listening:\n${stderr}`)); });
  });
}

// Resident set size of a process in bytes (Linux /proc).
export async function rssBytes(pid) {
  const { readFile } = await import("node:fs/promises");
  const s = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(s.match(/VmRSS:\s+(\d+) kB/)[1]) * 1024;
}

// The value of one metric line of GET /metrics.
export async function metric(url, name, headers = {}) {
  const text = await (await fetch(url + "/metrics", { headers })).text();
  const m = text.match(new RegExp("^" + name.replace(/[{}"=]/g, "\\$&") + " ([0-9.e+-]+)$", "m"));
  return m ? Number(m[1]) : undefined;
}
