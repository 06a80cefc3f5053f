#!/usr/bin/env bash
# Compile KenLM's build_binary (ARPA -> binary trie, for `ambient data lm-binary`) from the kenlm
# sdist into .venv/bin/build_binary. Only people who build language models need it; the runtime
# loads lm.bin with flashlight-text's bundled KenLM. Needs g++ (Debian: build-essential); no Boost.
#   scripts/build_kenlm.sh            # a few minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AMBIENT_VENV:-.venv}
VERSION=0.2.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$VENV/bin/python" -m pip download -q --no-deps "kenlm==$VERSION" -d "$work"
tar -xzf "$work/kenlm-$VERSION.tar.gz" -C "$work"
src="$work/kenlm-$VERSION"
export FLAGS="-I$src -O2 -DNDEBUG -DKENLM_MAX_ORDER=6 -w"
{
  find "$src/util" "$src/lm" -maxdepth 1 -name '*.cc' ! -name '*test.cc' ! -name '*main.cc'
  find "$src/util/double-conversion" -name '*.cc'
} | xargs -P "$(nproc)" -I{} sh -c 'g++ $FLAGS -c "$1" -o "${1%.cc}.o"' _ {}
# shellcheck disable=SC2046,SC2086
g++ $FLAGS "$src/lm/build_binary_main.cc" $(find "$src/util" "$src/lm" -name '*.o' | sort) \
  -o "$VENV/bin/build_binary" -lrt -lpthread
echo "wrote $VENV/bin/build_binary"
