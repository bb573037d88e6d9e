#!/usr/bin/env bash
# A real task whose comm was set with prctl(PR_SET_NAME) to hostile bytes
# (a quote, ESC, DEL, a tab, invalid UTF-8): dumped, then shown, its comm
# comes back byte for byte from `ckpt show --json`, escaped in the text.
#
# Not in the bytes: '\n' and '\', and whitespace at either end, which
# /proc/PID/status (where the dumper reads the comm) escapes or hides.
set -uo pipefail
ckpt="$1"; launch="$2"; renamed="$3"; check="$4"
tmp="${TEST_TMPDIR:-/tmp}"
comm_hex=01221b5b376dffc3287f2908097d   # \x01 " ESC [ 7 m \xff \xc3 ( DEL ) \b \t }

"$launch" "$renamed" "$comm_hex" >"$tmp/renamed.out" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 2000); do
  grep -q READY "$tmp/renamed.out" 2>/dev/null && break
  sleep 0.01
done
grep -q READY "$tmp/renamed.out" || { echo "FAIL: the subject did not start: $(cat "$tmp/renamed.out")"; exit 1; }
# The dump kills the subject: bash's "Killed" line for it goes to dump.err.
{ "$ckpt" dump --pid "$pid" --image "$tmp/renamed.img"; } 2>"$tmp/dump.err"
rc=$?
kill -KILL "$pid" 2>/dev/null
{ wait "$pid"; } 2>/dev/null
[ "$rc" = 0 ] || { echo "FAIL: dump exited $rc: $(cat "$tmp/dump.err")"; exit 1; }
python3 "$check" dumped "$ckpt" "$tmp/renamed.img" "$comm_hex" || { echo "FAIL: show"; exit 1; }
echo PASS
