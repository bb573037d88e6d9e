#!/usr/bin/env bash
# The CLI end to end, as operators and outside tools drive it:
#   ckpt dump --pid P --image F; ckpt restore --image F  (waits, exits as the task)
#   ckpt dump --image - | ...; ... | ckpt restore --image - --detach --pidfile F
#   ckpt dump --leave-running
# and the one-line errors.
set -uo pipefail
ckpt="$1"; launch="$2"; counter="$3"
tmp="${TEST_TMPDIR:-/tmp}"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

wait_for() {  # text file [seconds]
  local i
  for i in $(seq 1 $(( ${3:-20} * 100 ))); do
    grep -q -- "$1" "$2" 2>/dev/null && return 0
    sleep 0.01
  done
  echo "timed out waiting for '$1' in $2:"; cat "$2"
  return 1
}
last_count() { grep COUNT "$1" | tail -1 | cut -d' ' -f2; }

# 1. Dump to a file, restore in the foreground: ckpt restore exits with the
#    restored task's status.
"$launch" "$counter" >"$tmp/one.out" 2>&1 </dev/null &
pid=$!
wait_for "COUNT 10" "$tmp/one.out" || fail "subject 1 did not start"
"$ckpt" dump --pid "$pid" --image "$tmp/one.img" || fail "dump 1 exited $?"
wait "$pid" 2>/dev/null   # reap the killed original; its PID is free now
[ -e "/proc/$pid" ] && fail "the original still exists after dump"
"$ckpt" restore --image "$tmp/one.img" &
restorer=$!
n=$(last_count "$tmp/one.out")
wait_for "COUNT $((n + 10))" "$tmp/one.out" || fail "restored counter 1 does not count"
kill -USR1 "$pid" || fail "no restored task with PID $pid"
wait "$restorer"; rc=$?
[ "$rc" = 0 ] || fail "ckpt restore exited $rc, want the subject's 0"
grep -q PASS "$tmp/one.out" || fail "subject 1 did not pass: $(tail -3 "$tmp/one.out")"

# 2. Through pipes (--image -), --leave-running, then --detach --pidfile.
"$launch" "$counter" >"$tmp/two.out" 2>&1 </dev/null &
pid=$!
wait_for "COUNT 5" "$tmp/two.out" || fail "subject 2 did not start"
"$ckpt" dump --pid "$pid" --image - --leave-running | cat >"$tmp/two.img"
[ "${PIPESTATUS[0]}" = 0 ] || fail "dump 2 to a pipe failed"
n=$(last_count "$tmp/two.out")
wait_for "COUNT $((n + 5))" "$tmp/two.out" || fail "the original stopped after --leave-running"
shown=$("$ckpt" show --image "$tmp/two.img") || fail "show cannot read the piped image"
grep -q "VMA" <<<"$shown" || fail "show of the piped image lists no VMA"
# The original went on writing its output file (opened without O_APPEND):
# a restore of the older image would write over that, and is refused.
cat "$tmp/two.img" | "$ckpt" restore --image - 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "two.out changed since the dump: its size was" "$tmp/err" ||
  fail "restore over a grown file: $rc $(cat "$tmp/err")"
# Told to accept that, its PID is still taken: the restore refuses, one
# line, nothing left over.
cat "$tmp/two.img" | "$ckpt" restore --image - --allow-changed-files 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] || fail "restore over a live PID exited $rc"
[ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "PID $pid is taken" "$tmp/err" ||
  fail "restore over a live PID: $(cat "$tmp/err")"
kill -KILL "$pid"; wait "$pid" 2>/dev/null
# Lazy restore is off unless asked for; and it needs the image in a file:
# from a pipe, refused in one line.
"$ckpt" restore --image "$tmp/two.img" --lazy --allow-changed-files 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "lazy restore is experimental" "$tmp/err" ||
  fail "lazy restore without CKPT_EXPERIMENTAL_LAZY: $rc $(cat "$tmp/err")"
cat "$tmp/two.img" | CKPT_EXPERIMENTAL_LAZY=1 "$ckpt" restore --image - --lazy --allow-changed-files 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q -- "--lazy needs the image in a file" "$tmp/err" ||
  fail "lazy restore from a pipe: $rc $(cat "$tmp/err")"
cat "$tmp/two.img" | "$ckpt" restore --image - --detach --pidfile "$tmp/two.pid" --allow-changed-files ||
  fail "restore 2 failed"
[ "$(cat "$tmp/two.pid" 2>/dev/null)" = "$pid" ] || fail "pidfile holds '$(cat "$tmp/two.pid")', want $pid"
n=$(last_count "$tmp/two.out")
wait_for "COUNT $((n + 5))" "$tmp/two.out" || fail "detached restored counter does not count"
kill -USR1 "$pid"
wait_for PASS "$tmp/two.out" || fail "subject 2 did not pass"

# 3. Errors: one line on stderr, non-zero exit.
"$ckpt" dump --pid 999999 --image "$tmp/x.img" 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "task 999999 does not exist" "$tmp/err" ||
  fail "dump of a missing PID: exit $rc: $(cat "$tmp/err")"
[ -e "$tmp/x.img" ] && fail "a failed dump left an image file"
printf 'not an image at all' >"$tmp/bad.img"
"$ckpt" restore --image "$tmp/bad.img" 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "not a libckpt image" "$tmp/err" || fail "restore of garbage: $rc $(cat "$tmp/err")"

if [ "$fails" != 0 ]; then echo "FAIL: $fails checks"; exit 1; fi
echo PASS
