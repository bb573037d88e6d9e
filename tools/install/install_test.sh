#!/usr/bin/env bash
# The install step as a user meets it: install.sh puts the built library
# into a fresh PREFIX; the C API test is compiled against the installed
# copy with nothing but `pkg-config --cflags --libs libckpt`, loads
# PREFIX/lib/libckpt.so.1 and passes.
set -euo pipefail
root="$TEST_SRCDIR/$TEST_WORKSPACE"
prefix="$TEST_TMPDIR/prefix"
fail() {
  echo "FAIL: $*"
  exit 1
}

"$root/tools/install/install.sh" "$root" "$prefix"

[ -f "$prefix/include/ckpt/ckpt.h" ] || fail "no include/ckpt/ckpt.h"
[ -f "$prefix/lib/libckpt.so.1" ] || fail "no lib/libckpt.so.1"
[ "$(readlink "$prefix/lib/libckpt.so")" = "libckpt.so.1" ] || fail "lib/libckpt.so is not a link to libckpt.so.1"
[ ! -e "$prefix/include/ckpt/ckpt.hpp" ] || fail "ckpt.hpp installed, but libckpt.so exports no C++ API"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs libckpt) || fail "pkg-config does not find libckpt"
echo "pkg-config --cflags --libs libckpt: $flags"
[ "$(pkg-config --modversion libckpt)" = \
  "$(sed -n 's/^#define CKPT_ABI_VERSION \([0-9]*\).*/\1/p' "$prefix/include/ckpt/ckpt.h")" ] ||
  fail "libckpt.pc's Version is not CKPT_ABI_VERSION"

prog="$TEST_TMPDIR/c_api_test"
# shellcheck disable=SC2086  # $flags is a list of words
cc -std=c11 -Wall -Wextra -Werror -o "$prog" "$root/bindings/c/c_api_test.c" $flags ||
  fail "c_api_test.c does not build against the installed copy"
# The header is C++-clean too (its declarations are noexcept there).
echo '#include <ckpt/ckpt.h>
int main() { return ckpt_abi_version() == CKPT_ABI_VERSION ? 0 : 1; }' >"$TEST_TMPDIR/cxx.cc"
# shellcheck disable=SC2086
c++ -Wall -Wextra -Werror -o "$TEST_TMPDIR/cxx" "$TEST_TMPDIR/cxx.cc" $flags ||
  fail "ckpt.h does not build as C++"

export LD_LIBRARY_PATH="$prefix/lib"
loaded=$(ldd "$prog" | awk '$1 == "libckpt.so.1" {print $3}')
[ "$loaded" = "$prefix/lib/libckpt.so.1" ] || fail "libckpt.so.1 resolves to '$loaded', not the installed copy"
"$TEST_TMPDIR/cxx" || fail "the C++ program saw another ABI version"
"$prog" || fail "c_api_test against the installed copy"
echo "PASS: installed into $prefix; c_api_test built with pkg-config and passed"
