// The chat page at / in headless Chromium (Debian's, driven by playwright-core): a question
// typed into the page streams an answer from /v1/chat/completions, with its usage line.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";

import { requireDep, startServer } from "./lib/server.mjs";

const { chromium } = requireDep("playwright-core");
const executablePath = process.env.CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
let server, browser;

before(async () => {
  assert.ok(executablePath, "Chromium is installed (scripts/setup.sh: apt-get install chromium)");
  server = await startServer(["--parallel", "2", "-c", "256", "--api-key", "pagekey"]);
  browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] });
});
after(async () => {
  if (browser) await browser.close();
  const { code } = await server.stop();
  assert.equal(code, 0, server.stderr());
});

test("the page streams an answer", { timeout: 120000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(server.url + "/");
  assert.equal(await page.title(), "bitnet chat");
  await page.fill("#api_key", "pagekey");
  await page.dispatchEvent("#api_key", "change");
  await page.fill("#max_tokens", "12");
  await page.fill("#prompt", "Who is the king?");
  await page.press("#prompt", "Enter");
  await page.waitForSelector("body[data-state=streaming]", { timeout: 30000 }).catch(() => {});
  await page.waitForSelector("body[data-state=idle] .stats", { timeout: 90000 });
  const user = await page.textContent(".msg.user");
  const answer = await page.textContent(".msg.assistant");
  const stats = await page.textContent(".stats");
  assert.equal(user, "Who is the king?");
  assert.ok(answer.length > 0, "an answer appeared");
  assert.doesNotMatch(answer, /error/);
  assert.match(stats, /\d+ prompt \+ \d+ tokens, first token after \d+ ms/);
  // A second turn carries the first in its history.
  await page.fill("#prompt", "And then?");
  await page.press("#prompt", "Enter");
  await page.waitForFunction(() => document.querySelectorAll(".stats").length === 2, null, { timeout: 90000 });
  const prompts = (await page.$$eval(".stats", (els) => els[els.length - 1].textContent)).match(/(\d+) prompt/);
  assert.ok(Number(prompts[1]) > 20, "the second request holds the first turn too");
  assert.deepEqual(errors, []);
});

test("the page shows an API error", { timeout: 60000 }, async () => {
  const page = await browser.newPage();
  await page.goto(server.url + "/");
  await page.evaluate(() => localStorage.removeItem("bitnet_api_key"));
  await page.fill("#api_key", "wrong");
  await page.fill("#prompt", "Hello");
  await page.press("#prompt", "Enter");
  await page.waitForSelector(".msg.error", { timeout: 30000 });
  assert.match(await page.textContent(".msg.error"), /invalid API key/);
});
