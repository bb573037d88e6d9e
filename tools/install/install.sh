#!/usr/bin/env bash
# Puts the built C library in place under PREFIX:
#   PREFIX/include/ckpt/ckpt.h         the C API (from the source tree)
#   PREFIX/lib/libckpt.so.1            the library, under its SONAME
#   PREFIX/lib/libckpt.so              -> libckpt.so.1, for the link step
#   PREFIX/lib/pkgconfig/libckpt.pc    Cflags/Libs for pkg-config
#
#   install.sh BAZEL_BIN PREFIX
#
# BAZEL_BIN holds the built bindings/c/libckpt.so (`bazel info bazel-bin`,
# or a test's runfiles); the header is taken beside this script's tree
# (its ../../include), so the same script serves `./run install` and
# //tools/install:install_test. With DESTDIR set, the files go under
# DESTDIR/PREFIX while libckpt.pc names PREFIX (for packaging).
#
# ckpt.hpp is not installed: libckpt.so exports the C ABI only, so a
# program could include the C++ API but not link it.
#
# libckpt.so names every shared object it needs (Debian's Abseil, libstdc++)
# in DT_NEEDED, so `-lckpt` is the whole link line; there is no static
# libckpt.a, hence no Libs.private or Requires.private.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: install.sh BAZEL_BIN PREFIX" >&2
  exit 2
fi
bazel_bin=$1
prefix=$2
case "$prefix" in
  /*) ;;
  *) prefix="$(pwd)/$prefix" ;;  # libckpt.pc needs an absolute path
esac
prefix=${prefix%/}
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
lib="$bazel_bin/bindings/c/libckpt.so"
header="$src/include/ckpt/ckpt.h"
dest="${DESTDIR:-}$prefix"

for f in "$lib" "$header"; do
  if [ ! -f "$f" ]; then
    echo "install.sh: $f is missing (build //bindings/c:libckpt.so first)" >&2
    exit 1
  fi
done
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libckpt.so.1" ]; then
  echo "install.sh: $lib has SONAME '$soname', not libckpt.so.1" >&2
  exit 1
fi
abi=$(sed -n 's/^#define CKPT_ABI_VERSION \([0-9][0-9]*\).*/\1/p' "$header")

install -d "$dest/include/ckpt" "$dest/lib/pkgconfig"
install -m 0644 "$header" "$dest/include/ckpt/ckpt.h"
install -m 0755 "$lib" "$dest/lib/$soname"
ln -sfn "$soname" "$dest/lib/libckpt.so"
cat >"$dest/lib/pkgconfig/libckpt.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: libckpt
Description: Checkpoint and restore of Linux process trees (the C API, ckpt.h)
# Version is CKPT_ABI_VERSION of ckpt.h; the SONAME is $soname.
Version: $abi
Cflags: -I\${includedir}
Libs: -L\${libdir} -lckpt
PC

echo "installed libckpt (ABI $abi) under $dest:"
echo "  include/ckpt/ckpt.h lib/$soname lib/libckpt.so lib/pkgconfig/libckpt.pc"
echo "build with: cc prog.c \$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs libckpt)"
echo "run with $prefix/lib in the loader's path (ldconfig, LD_LIBRARY_PATH or -Wl,-rpath,$prefix/lib)"
