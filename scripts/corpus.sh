#!/usr/bin/env bash
# Builds an English training corpus (for `bitnet train-tokenizer` and `bitnet train`) from Debian
# packages whose licences let a model trained on them be redistributed: public domain or
# permissive texts only, unless --copyleft adds GPL/GFDL ones (whether a model is a derivative
# work of its training text is unsettled, so those stay opt-in).
#
#   scripts/corpus.sh [--copyleft] [OUT]      (OUT defaults to build/corpus in the repository)
#
# Writes OUT/train/SOURCE.txt and OUT/test/SOURCE.txt (every 50th paragraph held out, so the split
# is deterministic) and OUT/SOURCES.md naming each source, its package, licence and size. Installs
# the packages with apt-get (as root; it runs `apt-get update` first when a package is missing).
# Paragraphs are one line each with a blank line after; markup, code, tables and fragments are
# dropped by scripts/corpus_clean.py.
set -euo pipefail

copyleft=0
out=""
for a in "$@"; do
  case "$a" in
    --copyleft) copyleft=1 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "corpus.sh: unknown option $a" >&2; exit 2 ;;
    *) out=$a ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
out=${out:-$here/../build/corpus}

# name|package|licence|kind|inputs (globs, expanded after installing)
sources=(
  "kjv|bible-kjv|public domain (King James Version, 1611; Crown copyright in the UK only)|kjv|"
  "devil|dict-devil|public domain (Ambrose Bierce, The Devil's Dictionary, 1911)|text|/usr/share/dictd/devil.dict.dz"
  "jargon|dict-jargon|public domain (The Jargon File 4.4.7)|text|/usr/share/dictd/jargon.dict.dz"
  "sqlite|sqlite3-doc|public domain (SQLite documentation)|html|/usr/share/doc/sqlite3"
  "python|python3-doc|PSF License 2.0 (Python documentation)|html|/usr/share/doc/python3.*/html"
  "postgresql|postgresql-doc|PostgreSQL Licence, BSD-like (PostgreSQL documentation)|html|/usr/share/doc/postgresql-doc-*"
  "nodejs|nodejs-doc|MIT/Expat (Node.js documentation)|html|/usr/share/doc/nodejs/api"
)
if [ "$copyleft" = 1 ]; then
  sources+=(
    "gcide|dict-gcide|GPL-2+ (GCIDE; its Webster's 1913 core is public domain)|text|/usr/share/dictd/gcide.dict.dz"
    "foldoc|dict-foldoc|GFDL-1.1+ (Free On-line Dictionary of Computing)|text|/usr/share/dictd/foldoc.dict.dz"
  )
fi

# Install what is missing (bible-kjv brings bible-kjv-text and the `bible` reader).
need=()
command -v python3 > /dev/null || need+=(python3)
for s in "${sources[@]}"; do
  pkg=$(cut -d'|' -f2 <<< "$s")
  dpkg-query -W -f='${Status}' "$pkg" 2> /dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "corpus.sh: missing packages (${need[*]}); run as root or install them first" >&2
    exit 1
  fi
  echo "installing: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
fi

rm -rf "$out/train" "$out/test"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows=()
for s in "${sources[@]}"; do
  IFS='|' read -r name pkg licence kind inputs <<< "$s"
  if [ "$kind" = kjv ]; then
    # The package stores the text compressed for its reader: one verse a line, Genesis to Revelation.
    bible -f Gen1:1-Rev22:21 > "$tmp/kjv.txt"
    inputs=$tmp/kjv.txt
  fi
  # shellcheck disable=SC2086  # the inputs are globs
  row=$(python3 "$here/corpus_clean.py" --kind "$kind" --name "$name" --out "$out" $inputs)
  rows+=("$pkg|$licence|$row")
  echo "$row" >&2
done

mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e6 }'; }

# SOURCES.md: what the corpus is made of, for anyone who redistributes a model trained on it.
{
  echo "# Training corpus sources"
  echo
  echo "Built by scripts/corpus.sh from Debian packages; cleaned text, one paragraph a line."
  echo "Every 50th paragraph of each source is in test/, the rest in train/."
  echo
  echo "| file | Debian package | licence | paragraphs | train MB | test MB |"
  echo "| --- | --- | --- | ---: | ---: | ---: |"
  total_train=0 total_test=0
  for r in "${rows[@]}"; do
    IFS='|' read -r pkg licence row <<< "$r"
    IFS=$'\t' read -r name n train test <<< "$row"
    printf '| %s.txt | %s | %s | %s | %s | %s |\n' "$name" "$pkg" "$licence" "$n" "$(mb "$train")" "$(mb "$test")"
    total_train=$((total_train + train)) total_test=$((total_test + test))
  done
  printf '| total | | | | %s | %s |\n' "$(mb "$total_train")" "$(mb "$total_test")"
  echo
  echo "Not included: fortunes (quotations of works under copyright)."
  if [ "$copyleft" = 1 ]; then
    echo "With --copyleft: gcide.txt (GPL-2+) and foldoc.txt (GFDL) may oblige a model trained on them to carry that licence."
  else
    echo "dict-gcide (GPL-2+) and dict-foldoc (GFDL) only with --copyleft: a model trained on them may have to carry that licence."
  fi
} > "$out/SOURCES.md"
cat "$out/SOURCES.md"
