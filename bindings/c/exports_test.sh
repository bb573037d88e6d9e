#!/usr/bin/env bash
# libckpt.so's dynamic symbol table defines exactly the functions ckpt.h
# declares, each under the version node LIBCKPT_1, and nothing else (no
# ckpt_trampoline_*, no libstdc++ or Abseil instantiation); its SONAME is
# libckpt.so.1.
#   exports_test.sh LIBCKPT_SO CKPT_H
set -euo pipefail
lib="$1"
header="$2"
fail() {
  echo "FAIL: $*"
  exit 1
}

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libckpt.so.1" ] || fail "SONAME is '$soname', not libckpt.so.1"

# The declarations of ckpt.h: lines that begin with a type and name a
# ckpt_ function.
api=$(grep -E '^[a-z].*\bckpt_[a-z_]+\(' "$header" | grep -oE '\bckpt_[a-z_]+\(' | tr -d '(' | sort -u)
[ -n "$api" ] || fail "no function declarations found in $header"

# nm -D prints NAME@@NODE for a defined versioned symbol; the node itself
# appears as an absolute symbol named after it.
dynsyms=$(nm -D "$lib" | awk '{print $NF}')
defined=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -vx 'LIBCKPT_1' | sort -u)

if echo "$dynsyms" | grep -i trampoline; then
  fail "trampoline symbols are in the dynamic symbol table (they are .hidden in lib/task/trampoline.S)"
fi
unversioned=$(echo "$defined" | grep -v '@@LIBCKPT_1$' || true)
[ -z "$unversioned" ] || fail "exported outside the version node LIBCKPT_1:
$(echo "$unversioned" | head -20)"
names=$(echo "$defined" | sed 's/@.*//' | sort -u)
stray=$(comm -13 <(echo "$api") <(echo "$names"))
[ -z "$stray" ] || fail "libckpt.so exports symbols ckpt.h does not declare:
$(echo "$stray" | head -20)"
missing=$(comm -23 <(echo "$api") <(echo "$names"))
[ -z "$missing" ] || fail "declared in ckpt.h but not exported: $missing"
echo "PASS: SONAME $soname; $(echo "$names" | wc -l) symbols, exactly ckpt.h's, all @@LIBCKPT_1"
