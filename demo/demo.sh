#!/usr/bin/env bash
# The demo: what libckpt can do today.
set -euo pipefail
bin="$1"
ckpt="$bin/tools/ckpt/ckpt"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== ckpt check: the kernel interfaces libckpt uses"
"$ckpt" check
echo
echo "== a stream round trip: a hand-built image, decoded by ckpt show"
"$bin/tests/cli/make_sample_image" "$work/sample.img"
"$ckpt" show --image "$work/sample.img"
