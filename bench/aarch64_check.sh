#!/usr/bin/env bash
# The runtime on aarch64 (Raspberry Pi OS 64-bit is Debian 12 arm64), checked under emulation:
# an arm64 Debian bookworm tree from debootstrap, run through qemu-user-static. In it:
# scripts/setup.sh (the runtime: no torch), `ambient transcribe` of a recording (compared with the
# x86 transcript of the same file), and the daemon's start-up and shutdown on that file.
# Timing under emulation says nothing; correctness does.
#
#   bench/aarch64_check.sh [ROOT] [WAV]     as root; ROOT defaults to /tmp/ambient-arm64
#
# Needs: apt-get install qemu-user-static debootstrap binfmt-support (x86-64 Debian host).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-/tmp/ambient-arm64}
WAV=${2:-}
MIRROR=${AMBIENT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "aarch64_check.sh: run as root (debootstrap, chroot)" >&2; exit 2; }
for tool in debootstrap qemu-aarch64-static; do
  command -v "$tool" >/dev/null || { echo "aarch64_check.sh: needs $tool (apt-get install qemu-user-static debootstrap binfmt-support)" >&2; exit 2; }
done

# arm64 binaries run through qemu via binfmt_misc (mounted here if the container has not).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then update-binfmts --enable qemu-aarch64 || update-binfmts --import qemu-aarch64; fi

if [ ! -x "$ROOT/usr/bin/python3" ]; then
  echo "== debootstrap arm64 bookworm into $ROOT"
  debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-venv,libsndfile1,libportaudio2,ca-certificates bookworm "$ROOT" "$MIRROR"
  cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
  chroot "$ROOT" /debootstrap/debootstrap --second-stage
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The host's CA bundle and pip settings: a package proxy with its own certificate works in the tree too.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
for f in /etc/pip.conf /etc/xdg/pip/constraints.txt; do
  if [ -f "$f" ]; then mkdir -p "$ROOT$(dirname "$f")"; cp "$f" "$ROOT$f"; fi
done
# /sys stays unmounted: onnxruntime's cpuinfo then warns that it cannot read the processor list,
# while with the host's (x86) /sys it crashes under qemu.
mounts=()
cleanup() { for ((i=${#mounts[@]}-1; i>=0; i--)); do umount "${mounts[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
for d in /proc /dev /opt/pypi /opt/pypi-more /opt/wheels; do
  if [ -d "$d" ]; then mkdir -p "$ROOT$d"; mount --bind "$d" "$ROOT$d"; mounts+=("$ROOT$d"); fi
done

echo "== the committed tree (HEAD) into $ROOT/opt/ambient"
rm -rf "$ROOT/opt/ambient" && mkdir -p "$ROOT/opt/ambient"
git archive HEAD | tar -x -C "$ROOT/opt/ambient"
if [ -z "$WAV" ]; then
  WAV=$(mktemp --suffix=.wav)
  espeak-ng -v en-us -w "$WAV" "turn on the kitchen light and set a timer for ten minutes"
fi
cp "$WAV" "$ROOT/opt/ambient/check.wav"
X86=$(.venv/bin/ambient transcribe --json "$WAV" | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"])')

echo "== uname -m in the tree: $(chroot "$ROOT" uname -m)"
echo "== scripts/setup.sh (runtime) on aarch64"
chroot "$ROOT" /bin/bash -c 'cd /opt/ambient && scripts/setup.sh && du -sh .venv && (.venv/bin/python -c "import torch" 2>/dev/null && echo "torch: installed" || echo "torch: not installed")'
echo "== ambient transcribe on aarch64"
ARM=$(chroot "$ROOT" /bin/bash -c 'cd /opt/ambient && .venv/bin/ambient transcribe --json check.wav' | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["text"]); print("backend", r["backend"], file=sys.stderr)')
echo "x86-64 : $X86"
echo "aarch64: $ARM"
[ "$X86" = "$ARM" ] && echo "transcripts: identical" || { echo "transcripts: DIFFER"; exit 1; }

echo "== the daemon on aarch64: start on the file, finish it, shut down"
chroot "$ROOT" /bin/bash -c 'cd /opt/ambient && cat > /tmp/c.yaml <<EOF
socket: {path: /tmp/ambient.sock}
event_log: {path: /tmp/events.jsonl, fsync: never}
logging: {format: json}
EOF
rm -f /tmp/events.jsonl /tmp/ambient.sock
.venv/bin/ambient run --config /tmp/c.yaml --file check.wav --fast 2>/tmp/daemon.log; echo "exit status $?"
grep -E "\"(model loaded|ready|shutting down|stopped)\"" /tmp/daemon.log | cut -c1-220
grep "\"final\"" /tmp/events.jsonl | python3 -c "import json,sys; [print(\"final:\", json.loads(l)[\"text\"]) for l in sys.stdin]"'
