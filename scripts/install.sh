#!/usr/bin/env bash
# Install epx, its built-in plugins and their system dependencies into the current Python.
#   bash scripts/install.sh          # the tool
#   bash scripts/install.sh --dev    # plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v bedtools >/dev/null 2>&1; then
  # pybedtools drives the bedtools binary.
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq bedtools >/dev/null
  else
    echo "bedtools is missing: install it (conda install -c bioconda bedtools, or brew install bedtools)" >&2
    exit 1
  fi
fi

PY="${PYTHON:-$(command -v python3 || command -v python)}"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# torch first, pinned: on this machine 2.13.0 is a local CPU wheel; an unpinned torch pulled in
# by a plugin would fetch a multi-GB CUDA build. An existing torch (e.g. a GPU build) is kept.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  pip_install "torch==2.13.0"
fi

extras=""
[ "${1:-}" = "--dev" ] && extras="[test]"
pip_install -e ".${extras}" -e plugins/epx-example -e plugins/epx-lgbm
