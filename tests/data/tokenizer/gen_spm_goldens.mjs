// SentencePiece (LLaMA-1/2) goldens from the npm package llama-tokenizer-js (run once, output
// committed):  npm install llama-tokenizer-js@1.2.2 && node gen_spm_goldens.mjs NODE_MODULES_DIR
// Writes
//   llama2_vocab.jsonl  one [token, score, type] per id (type: 1 normal, 2 unknown, 3 control,
//                       6 byte). llama-tokenizer-js ships merges rather than SentencePiece scores,
//                       so score(token) = -(index of the first merge that produces it), which
//                       orders merges exactly as the package does (unreachable tokens: -1e9).
//   goldens_spm.jsonl   {"text", "ids"} for every corpus sample: encode(text, bos=false,
//                       preceding space=true).
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const dir = process.argv[2] || "node_modules";
const mod = await import(pathToFileURL(path.join(dir, "llama-tokenizer-js", "llama-tokenizer.js")).href);
const tok = new mod.LlamaTokenizer();

const score = new Map();
for (const [key, prio] of tok.merges) {
  const merged = key.replace(" ", "");
  const s = -prio;
  if (!score.has(merged) || score.get(merged) < s) score.set(merged, s);
}
const vocabLines = tok.vocabById.map((t, id) => {
  let type = 1;
  if (id === 0) type = 2;
  else if (id === 1 || id === 2) type = 3;
  else if (/^<0x[0-9A-F]{2}>$/.test(t)) type = 6;
  const s = score.has(t) ? score.get(t) : -1e9;
  return JSON.stringify([t, s, type]);
});
fs.writeFileSync("llama2_vocab.jsonl", vocabLines.join("\n") + "\n");

const out = [];
for (const line of fs.readFileSync("corpus.jsonl", "utf8").split("\n")) {
  if (!line) continue;
  const text = JSON.parse(line).text;
  out.push(JSON.stringify({ text, ids: tok.encode(text, false, true) }));
}
fs.writeFileSync("goldens_spm.jsonl", out.join("\n") + "\n");
console.log(`${tok.vocabById.length} tokens, ${tok.merges.size} merges, ${out.length} samples`);
