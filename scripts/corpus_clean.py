#!/usr/bin/env python3
"""Turns one corpus source into clean English paragraphs, split into train and test.

Used by scripts/corpus.sh, once per source:

    corpus_clean.py --kind html|text|kjv --name NAME --out DIR [--every N] INPUT...

INPUTs are files or folders (walked in sorted order, so the output is deterministic); .gz and
dictd .dz files are decompressed. Kinds:
  html  paragraph-level elements (p, li, dd, dt, headings, blockquote) of HTML pages, without
        code blocks, tables, scripts and navigation;
  text  blocks separated by blank lines (dictd databases, plain text); dictd and GCIDE markup
        ({cross refs}, \\pro*nun*ci*a*tion\\, [1913 Webster]) removed;
  kjv   the output of `bible -f` (one verse a line, "Ge1:1 text"): one paragraph per chapter.
Each paragraph becomes one line (whitespace normalized) with a blank line after it. Fragments
(fewer than 8 words, or mostly not letters) and exact repeats are dropped. Every N-th paragraph
(default 50) goes to DIR/test/NAME.txt, the rest to DIR/train/NAME.txt. Prints the byte counts.
"""
import argparse
import gzip
import html.parser
import os
import re
import sys

MIN_WORDS = 8


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # gzip, and dictzip (.dz) which is gzip with an index
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def walk(inputs, suffixes):
    for inp in inputs:
        if os.path.isdir(inp):
            found = []
            for root, dirs, files in os.walk(inp):
                dirs.sort()
                found += [os.path.join(root, f) for f in files if f.endswith(suffixes)]
            yield from sorted(found)
        elif os.path.isfile(inp):
            yield inp
        else:
            sys.exit(f"corpus_clean: {inp}: no such file or folder")


class HtmlParagraphs(html.parser.HTMLParser):
    """Collects the text of paragraph-level elements; skips code, tables and page furniture."""

    BLOCK = {"p", "li", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "div", "br", "tr"}
    SKIP = {"script", "style", "pre", "table", "nav", "head", "header", "footer", "form", "select", "math"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs, self.buf, self.skip = [], [], 0

    def flush(self):
        if self.buf:
            self.paragraphs.append("".join(self.buf))
            self.buf = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.flush()
            self.skip += 1
        elif tag in self.BLOCK:
            self.flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.flush()

    def handle_data(self, data):
        if not self.skip:
            self.buf.append(data)


def html_paragraphs(text):
    p = HtmlParagraphs()
    p.feed(text)
    p.close()
    p.flush()
    return p.paragraphs


DICT_MARKUP = [
    (re.compile(r"^00-database-\S*$", re.M), ""),  # dictd metadata headwords
    (re.compile(r"\[\d{4} Webster\]|\[PJC\]|\[Century Dict\.\]|\[WordNet[^\]]*\]"), ""),  # GCIDE sources
    (re.compile(r"\\[^\\\n]{1,60}\\"), ""),  # GCIDE pronunciations \Ab"so*lute\
    (re.compile(r"[{}]"), ""),  # dictd cross references {word}
]


def text_paragraphs(text):
    for pat, rep in DICT_MARKUP:
        text = pat.sub(rep, text)
    return re.split(r"\n\s*\n", text)


KJV_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):\d+\s+(.*)$")


def kjv_paragraphs(text):
    out, key, verses = [], None, []
    for line in text.splitlines():
        m = KJV_VERSE.match(line)
        if not m:
            continue
        k = (m.group(1), m.group(2))
        if k != key and verses:
            out.append(" ".join(verses))
            verses = []
        key = k
        verses.append(m.group(3))
    if verses:
        out.append(" ".join(verses))
    return out


def clean(paragraph):
    s = re.sub(r"\s+", " ", paragraph.replace("\u00b6", "")).strip()  # also Sphinx's pilcrow anchors
    words = s.split(" ")
    if len(words) < MIN_WORDS:
        return None
    letters = sum(c.isalpha() or c == " " for c in s)
    if letters < 0.75 * len(s):  # code, tables of numbers
        return None
    if sum(any(c in w for c in "/#_=<>") for w in words) > 0.2 * len(words):  # link lists, identifiers
        return None
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=["html", "text", "kjv"], required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--every", type=int, default=50, help="every N-th paragraph is held out")
    ap.add_argument("inputs", nargs="+")
    a = ap.parse_args()
    if a.every < 2:
        sys.exit("corpus_clean: --every must be at least 2")
    suffixes = (".html", ".htm", ".html.gz") if a.kind == "html" else ("",)
    split = {"html": html_paragraphs, "text": text_paragraphs, "kjv": kjv_paragraphs}[a.kind]
    seen, kept = set(), []
    for path in walk(a.inputs, suffixes):
        for p in split(read(path)):
            s = clean(p)
            if s is not None and s not in seen:
                seen.add(s)
                kept.append(s)
    if not kept:
        sys.exit(f"corpus_clean: {a.name}: no paragraphs found in {' '.join(a.inputs)}")
    sizes = {}
    for part in ("train", "test"):
        os.makedirs(os.path.join(a.out, part), exist_ok=True)
        with open(os.path.join(a.out, part, a.name + ".txt"), "w", encoding="utf-8") as f:
            for i, s in enumerate(kept):
                if (i % a.every == a.every - 1) == (part == "test"):
                    f.write(s + "\n\n")
            sizes[part] = f.tell()
    print(f"{a.name}\t{len(kept)}\t{sizes['train']}\t{sizes['test']}")


if __name__ == "__main__":
    main()
