#!/usr/bin/env bash
# ./run demo: checkpoint a running workload to an image, kill it, restore
# it with the same PID, and show that it carries on where it was.
#
# Uses only bash and coreutils (a minimal Debian root has no ps): a process
# is looked up in /proc, and every wait is for an event (a line in the log,
# a pidfile) with a deadline, never a fixed sleep that a slow machine
# outruns.
set -euo pipefail
bin="$1"
ckpt="$bin/tools/ckpt/ckpt"
work=$(mktemp -d /tmp/libckpt-demo.XXXXXX)
restorer=""
cleanup() {
  # Never leave the workload behind, whatever went wrong.
  if [ -n "${pid:-}" ] && [ -e "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  if [ -n "$restorer" ]; then wait "$restorer" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
log="$work/workload.log"

say() { printf '\n== %s\n' "$*"; }
fail() { echo "demo: $*" >&2; exit 1; }
ticks() { grep -c ' tick ' "$log" 2>/dev/null || true; }
# wait_until SECONDS COMMAND...: polls COMMAND every 50 ms until it succeeds.
wait_until() {
  local limit=$(( $1 * 20 )) i
  shift
  for (( i = 0; i < limit; i++ )); do
    if "$@"; then return 0; fi
    sleep 0.05
  done
  return 1
}
more_ticks_than() { [ "$(ticks)" -gt "$1" ]; }
running() { [ -e "/proc/$1" ] && ! grep -q '^State:.*[ZX]' "/proc/$1/status" 2>/dev/null; }

say "ckpt check: the kernel interfaces libckpt uses"
"$ckpt" check

say "start a sample workload (64 MiB of memory, a tick every 300 ms)"
"$bin/tests/e2e/programs/launch" "$bin/demo/workload" >"$log" 2>&1 </dev/null &
pid=$!
wait_until 30 more_ticks_than 2 || fail "the workload did not start ticking"
cat "$log"

say "ckpt dump --pid $pid --image $work/workload.img"
start=$(date +%s%N)
# The dump kills the workload (no --leave-running): bash's own "Killed"
# notice of its background job is kept off the screen, ckpt's errors are not.
exec 3>&2 2>/dev/null
dump_rc=0
"$ckpt" dump --pid "$pid" --image "$work/workload.img" 2>&3 || dump_rc=$?
end=$(date +%s%N)
wait "$pid" || true
exec 2>&3 3>&-
[ "$dump_rc" -eq 0 ] || fail "ckpt dump failed (exit status $dump_rc)"
echo "dumped in $(( (end - start) / 1000000 )) ms; the image holds $(du -h "$work/workload.img" | cut -f1)"
if [ -e "/proc/$pid" ]; then fail "process $pid is still there after the dump"; fi
echo "the workload is gone: /proc/$pid does not exist"
before=$(ticks)
echo "what the image holds (ckpt show, first records):"
# (each record's number, type and first fields; a file's record ends with
# its path, which is what matters there)
"$ckpt" show --image "$work/workload.img" | head -12 |
  awk '{ line = $0; p = index(line, " path=");
         if (p > 0) { print substr(line, 1, 45) " ... " substr(line, p + 1) }
         else if (length(line) > 120) { print substr(line, 1, 117) "..." }
         else { print line } }' || true
echo "   ..."

say "ckpt restore --image $work/workload.img --pidfile $work/restored.pid"
"$ckpt" restore --image "$work/workload.img" --pidfile "$work/restored.pid" &
restorer=$!
# The pidfile appears (complete: it is renamed into place) once the
# restored tree runs.
wait_until 60 test -s "$work/restored.pid" || fail "ckpt restore did not restore the workload"
restored=$(cat "$work/restored.pid")
[ "$restored" = "$pid" ] || fail "the workload came back as PID $restored, not $pid"
running "$pid" || fail "process $pid is not running after the restore"
echo "restored: process $pid ($(cat "/proc/$pid/comm")) runs again, with the same PID"
wait_until 30 more_ticks_than $(( before + 2 )) || fail "the restored workload does not tick"
echo "its output since (same PID, same memory checksum, its clock counts on):"
tail -n +"$(( before + 1 ))" "$log"

say "ask the workload to check its memory and stop (SIGUSR1)"
kill -USR1 "$pid"
rc=0
wait "$restorer" || rc=$?
restorer=""
tail -1 "$log"
echo "ckpt restore exited with the workload's status: $rc"
exit "$rc"
