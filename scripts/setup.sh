#!/usr/bin/env bash
# Installs every build and test dependency from Debian packages (nothing is downloaded at build
# time). Skips apt entirely when everything is already installed.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-14-dev libgtest-dev libgmock-dev libbenchmark-dev
      libcli11-dev nlohmann-json3-dev libpcre2-dev libfmt-dev g++-aarch64-linux-gnu qemu-user wamerican
      libcpp-httplib-dev nodejs npm chromium  # these three: the server's end-to-end tests (tests/server/js)
      python3)  # the PyTorch reference trainer's self-check (bench/train_pytorch.py)
missing=()
for p in "${pkgs[@]}"; do
  # A Node.js from elsewhere (e.g. NodeSource's nodejs, which bundles npm and conflicts with Debian's
  # npm package) serves as well: only a missing command is installed.
  [[ $p == nodejs || $p == npm ]] && command -v "${p/nodejs/node}" >/dev/null && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
