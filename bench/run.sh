#!/usr/bin/env bash
# Builds and runs the libckpt benchmarks (bench/ckpt_bench.cc) and prints
# the medians. Images go to /dev/shm; the 4 GiB cases need about 12 GiB of
# free memory. Pass Google Benchmark flags through, e.g.
#   bench/run.sh --benchmark_filter=BM_Restore
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
bazel build -c opt //bench:ckpt_bench
cd "$(bazel info bazel-bin)/bench/ckpt_bench.runfiles/libckpt"
exec ../../ckpt_bench --benchmark_display_aggregates_only=true "$@"
