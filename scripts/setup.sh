#!/usr/bin/env bash
# Sets up ambient on a fresh Debian/Ubuntu machine or Raspberry Pi OS.
#   scripts/setup.sh            runtime only (daemon, transcribe, captions page; onnxruntime, no torch)
#   scripts/setup.sh --dev      + test tools (PulseAudio virtual mic, Chromium + selenium, pytest, ruff, mypy) and every
#                               synthesis engine (the tests exercise the training pipeline too)
#   scripts/setup.sh --train    + training tools (torch, onnx, speech synthesis engines, jiwer, matplotlib)
# System packages are installed with apt when run as root (or with sudo when available);
# Python packages go into ./.venv (override with AMBIENT_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; TRAIN=0; BENCH=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --train) TRAIN=1 ;;
    --bench) BENCH=1 ;;
    *) echo "setup.sh: unknown option $arg (use --dev, --train, --bench)" >&2; exit 2 ;;
  esac
done
VENV=${AMBIENT_VENV:-.venv}
TORCH_VERSION=${AMBIENT_TORCH_VERSION:-2.13.0}

apt_pkgs=(libportaudio2 libsndfile1 python3-venv)
[ $DEV = 1 ] && apt_pkgs+=(pulseaudio pulseaudio-utils libasound2-plugins alsa-utils)
# The captions test drives the system browser (selenium + chromedriver; nothing is downloaded).
[ $DEV = 1 ] && apt_pkgs+=(chromium chromium-driver)
[ $DEV = 1 ] && TRAIN=1
[ $TRAIN = 1 ] && apt_pkgs+=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
# g++ compiles KenLM's build_binary (ARPA -> lm.bin) from the kenlm sdist: scripts/build_kenlm.sh.
[ $TRAIN = 1 ] && apt_pkgs+=(g++)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "setup.sh: please install as root: apt-get install ${missing[*]}" >&2; exit 1; fi
  fi
  echo "setup.sh: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null
# The runtime (daemon, transcribe) runs the exported model.onnx through onnxruntime: no torch.
# Training, evaluation, export and the tests need torch: first, pinned, since any unpinned torch
# request would pull several GB of CUDA wheels.
if { [ $TRAIN = 1 ] || [ $BENCH = 1 ]; } && ! "$PY" -c "import torch" >/dev/null 2>&1; then
  # On an x86 laptop without a local CPU wheel, set PIP_EXTRA_INDEX_URL to PyTorch's CPU index first
  # (docs/deployment.md); on aarch64 (Raspberry Pi) the registry's wheel is CPU-only already.
  "$PY" -m pip install -q "torch==${TORCH_VERSION}"
fi
extras=(captions)   # ambient captions (aiohttp): small, and the page is part of the runtime
[ $DEV = 1 ] && extras+=(dev)
[ $TRAIN = 1 ] && extras+=(train)
[ $BENCH = 1 ] && extras+=(bench)
spec=".[$(IFS=,; echo "${extras[*]}")]"
"$PY" -m pip install -q -e "$spec"
if [ $TRAIN = 1 ] && [ ! -x "$VENV/bin/build_binary" ]; then
  AMBIENT_VENV="$VENV" "$(dirname "$0")/build_kenlm.sh" >/dev/null
fi
echo "setup.sh: ready ($VENV)"
