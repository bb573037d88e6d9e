#!/usr/bin/env bash
# ./run demo: checkpoint a running workload to an image, kill it, restore
# it with the same PID, and show that it carries on where it was.
set -euo pipefail
bin="$1"
ckpt="$bin/tools/ckpt/ckpt"
work=$(mktemp -d /tmp/libckpt-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
log="$work/workload.log"

say() { printf '\n== %s\n' "$*"; }

say "ckpt check: the kernel interfaces libckpt uses"
"$ckpt" check

say "start a sample workload (64 MiB of memory, a tick every 300 ms)"
"$bin/tests/e2e/programs/launch" "$bin/demo/workload" >"$log" 2>&1 </dev/null &
pid=$!
sleep 1.5
cat "$log"

say "ckpt dump --pid $pid --image $work/workload.img"
start=$(date +%s%N)
"$ckpt" dump --pid "$pid" --image "$work/workload.img"
end=$(date +%s%N)
{ wait "$pid"; } 2>/dev/null || true
echo "dumped in $(( (end - start) / 1000000 )) ms; the image holds $(du -h "$work/workload.img" | cut -f1)"
echo "the workload is gone: $(ps -p "$pid" >/dev/null && echo "NO, still there" || echo "no process $pid")"
echo "what the image holds (ckpt show, first records):"
"$ckpt" show --image "$work/workload.img" | cut -c1-150 | head -12 || true
echo "   ..."
sleep 1

say "ckpt restore --image $work/workload.img"
start=$(date +%s%N)
"$ckpt" restore --image "$work/workload.img" &
restorer=$!
sleep 0.2
echo "restored: $(ps -o pid=,comm= -p "$pid" || echo "no process $pid")"
sleep 1.5
echo "its output since (same PID, same memory checksum, its clock counts on):"
tail -6 "$log"

say "ask the workload to check its memory and stop (SIGUSR1)"
kill -USR1 "$pid"
rc=0
wait "$restorer" || rc=$?
tail -1 "$log"
echo "ckpt restore exited with the workload's status: $rc"
exit "$rc"
