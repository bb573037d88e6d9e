#!/usr/bin/env bash
# `ckpt show` on images whose char arrays, paths and notes hold hostile
# bytes (make_hostile_images.cc: all 256 values, quotes, backslashes,
# newlines, invalid UTF-8, NULs inside char arrays), one record of every
# type each: the JSON parses strictly and gives every byte back as
# docs/image-format.md says, integers exact to 64 bits; the text holds no
# control character, one line a record; an image cut short still makes a
# whole JSON document with an "error".
set -euo pipefail
ckpt="$1"
make_images="$2"
check="$3"
dir="${TEST_TMPDIR:-/tmp}/hostile"
mkdir -p "$dir"
n=$("$make_images" "$dir")
python3 "$check" images "$ckpt" "$dir" "$n"
echo PASS
