#!/usr/bin/env bash
# The user's path, cold: a fresh process of distinct pages each run, a fresh
# image file each run, the CLI end to end, with the floors timed in the
# same run (see bench/cold.py). Sizes in MiB; the 4 GiB case needs about
# 14 GiB of free memory (subject, image on /dev/shm, restored copy).
#   bench/cold.sh [--sizes 1024,4096] [--runs 5]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
bazel build //tools/ckpt //bench:programs/distinct //bench:programs/floors
bin="$(bazel info bazel-bin)"
exec python3 bench/cold.py --ckpt "$bin/tools/ckpt/ckpt" --distinct "$bin/bench/programs/distinct" \
  --floors "$bin/bench/programs/floors" "$@"
