#!/usr/bin/env bash
# Fresh-machine install: a virtual environment with the pinned packages in .venv, and Debian's
# Chromium for the web-demo browser test (skipped when it is already there or apt is absent).
# Run again, it keeps the existing .venv and only adds what is missing, without the network when nothing is.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet -r requirements.txt
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
fi
echo "installed: $(.venv/bin/python --version), $(.venv/bin/dvc --version | head -1 | sed 's/^/dvc /')"
