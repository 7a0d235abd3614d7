#!/usr/bin/env bash
# Install epx, its built-in plugins and their system dependencies into a virtual environment.
#   bash scripts/install.sh          # the tool, into ./.venv (created when missing)
#   bash scripts/install.sh --dev    # plus the test tools
# Then: . .venv/bin/activate
# An already active virtual environment (or PYTHON=/path/to/python) is used instead of ./.venv.
# Why a venv: Debian's and Ubuntu's own python3 refuse pip installs (PEP 668,
# "externally-managed-environment").
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    step "apt-get install $*"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$@" >/dev/null
  else
    echo "install.sh: please install $* with your system's package manager" >&2
    exit 1
  fi
}

missing=()
command -v bedtools >/dev/null 2>&1 || missing+=(bedtools)  # pybedtools drives the bedtools binary
# bcftools: the reference `epx personalize` windows are tested against (bcftools consensus);
# tabix/bgzip: index the VCFs epx demo --personal writes and users bring
command -v bcftools >/dev/null 2>&1 || missing+=(bcftools)
{ command -v tabix >/dev/null 2>&1 && command -v bgzip >/dev/null 2>&1; } || missing+=(tabix)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  BASE="$(command -v python3 || command -v python)"
  if [ ! -x .venv/bin/python ]; then
    step "creating the virtual environment .venv with $BASE ($("$BASE" --version 2>&1))"
    if ! "$BASE" -m venv .venv 2>/dev/null; then
      rm -rf .venv
      apt_install python3-venv  # Debian ships venv's ensurepip separately
      "$BASE" -m venv .venv
    fi
  fi
  PY=.venv/bin/python
fi
pip_install() { "$PY" -m pip install --disable-pip-version-check --progress-bar off "$@"; }

# torch first, pinned: an unpinned torch pulled in by a plugin, or PyPI's default build, fetches
# multi-GB CUDA libraries. Without an NVIDIA GPU the CPU build comes from PyTorch's CPU index (or
# a local wheel that pip's find-links configuration offers). An existing torch is kept. epx's core
# does not import torch: if no CPU build can be had, say so and go on rather than pull CUDA.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    step "installing torch==2.13.0 (an NVIDIA GPU is present: the CUDA build)"
    pip_install "torch==2.13.0"
  else
    step "installing torch==2.13.0 (CPU build)"
    if ! pip_install --retries 1 --timeout 15 --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"; then
      echo "install.sh: warning: no CPU build of torch 2.13.0 could be installed (PyTorch's CPU index is" \
           "unreachable and no local wheel was found); epx works without it, the neural backends need it:" \
           "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" >&2
    fi
  fi
fi

extras=""
[ "${1:-}" = "--dev" ] && extras="[test]"
step "installing epx${extras} and the plugins epx-example, epx-lgbm (editable) into $("$PY" -c 'import sys; print(sys.prefix)')"
pip_install -e ".${extras}" -e plugins/epx-example -e plugins/epx-lgbm
# The neural models need torch: installed only when torch is there, so pip never resolves torch
# itself (PyPI's default build pulls multi-GB CUDA libraries).
if "$PY" -c "import torch" >/dev/null 2>&1; then
  step "installing the plugins epx-torch (cnn, bilstm-attn, bilstm-transformer, hybrid, transformer, chromoformer) and epx-enformer (epx personalize, enformer)"
  pip_install -e plugins/epx-torch -e plugins/epx-enformer
else
  echo "install.sh: warning: torch is not installed, so the neural models and Enformer (plugins epx-torch, epx-enformer) are not either" >&2
fi
if [ "$PY" = .venv/bin/python ]; then
  step "done: '. .venv/bin/activate' puts epx on your PATH"
fi
