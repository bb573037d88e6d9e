#!/usr/bin/env bash
# libckpt.so's dynamic symbol table defines ckpt_* symbols only, and the C
# ABI's functions are all there.
set -euo pipefail
lib="$1"
defined=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | sort -u)
stray=$(echo "$defined" | grep -v '^ckpt_' || true)
if [ -n "$stray" ]; then
  echo "FAIL: libckpt.so exports symbols outside ckpt_*:"
  echo "$stray" | head -20
  exit 1
fi
for f in ckpt_abi_version ckpt_strerror ckpt_last_error ckpt_checkpoint_tree ckpt_restore_tree; do
  if ! echo "$defined" | grep -qx "$f"; then
    echo "FAIL: $f is not exported"
    exit 1
  fi
done
echo "PASS: $(echo "$defined" | wc -l) symbols, all ckpt_*"
