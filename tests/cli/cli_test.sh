#!/usr/bin/env bash
# The CLI contract: show decodes a hand-built image (text and JSON), refuses
# a corrupt one with one line on stderr; check lists the kernel features;
# usage errors exit 2.
set -uo pipefail
ckpt="$1"
make_image="$2"
check="$3"  # show_output_check.py
tmp="${TEST_TMPDIR:-/tmp}"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$make_image" "$tmp/sample.img" || fail "make_sample_image"

out=$("$ckpt" show --image "$tmp/sample.img") || fail "show exited $?"
for want in "IMAGE" "NOTE" "hand-built" "TREE" "nr_pids=1" "PID" "nr=4242" "TASK_ENTRY" \
            "FILE" "path=/var/log/sample.log" "flags=02001" "VMA" "start=0x7f0000000000" \
            "PAGE_RUNS" "nr_pages=2" "PAGE_DATA" "bytes=8192" "TAIL" "nr_records=9"; do
  grep -qF -- "$want" <<<"$out" || fail "show output lacks '$want'"
done

"$ckpt" show --image - --json <"$tmp/sample.img" >"$tmp/sample.json" || fail "show --json exited $?"
python3 - "$tmp/sample.json" <<'PY' || fail "show --json is not the expected JSON"
import json, sys
doc = json.load(open(sys.argv[1]))
recs = doc["records"]
types = [r["type"] for r in recs]
assert types == ["IMAGE", "NOTE", "TREE", "PID", "TASK_ENTRY", "FILE", "VMA", "PAGE_RUNS",
                 "PAGE_DATA", "TAIL"], types
assert recs[3]["fields"]["objref"] == 1
assert recs[5]["fields"]["path"] == "/var/log/sample.log"
assert recs[1]["fields"]["text"] == 'hand-built "sample"'
assert recs[-1]["fields"]["nr_records"] == 9
PY
python3 "$check" document "$tmp/sample.json" || fail "show --json is not strict JSON"

# A corrupt image: one line on stderr that names the problem, exit 1.
cp "$tmp/sample.img" "$tmp/bad.img"
printf 'X' | dd of="$tmp/bad.img" bs=1 seek=200 conv=notrunc status=none
"$ckpt" show --image "$tmp/bad.img" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] || fail "corrupt image: exit $rc, want 1"
[ "$(wc -l <"$tmp/err")" = 1 ] || fail "corrupt image: stderr is not one line: $(cat "$tmp/err")"
grep -q "ckpt show: image record" "$tmp/err" || grep -q "checksum" "$tmp/err" ||
  fail "corrupt image: unclear error: $(cat "$tmp/err")"
# As JSON: the records before the bad one, a whole document, with "error".
"$ckpt" show --image "$tmp/bad.img" --json >"$tmp/bad.json" 2>/dev/null
rc=$?
[ "$rc" = 1 ] || fail "corrupt image, --json: exit $rc, want 1"
python3 "$check" document "$tmp/bad.json" error || fail "corrupt image, --json: $(cat "$tmp/bad.json")"

"$ckpt" show --image "$tmp/missing.img" 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "No such file" "$tmp/err" || fail "missing image: exit $rc $(cat "$tmp/err")"

out=$("$ckpt" check) || fail "check exited $? (a required feature is missing?)"
for want in "PAGEMAP_SCAN" "clone3 set_tid" "pidfd_getfd" "kcmp" "PTRACE_GET_RSEQ_CONFIGURATION" \
            "PR_SET_MM_MAP" "soft-dirty" "userfaultfd"; do
  grep -qF -- "$want" <<<"$out" || fail "check output lacks '$want'"
done

"$ckpt" dump --image x 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] && grep -q -- "--pid is required" "$tmp/err" || fail "dump without --pid: exit $rc"
"$ckpt" dump --pid abc --image x 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] || fail "dump --pid abc: exit $rc"
"$ckpt" restore --image x --bogus 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] && grep -q "unknown flag --bogus" "$tmp/err" || fail "unknown flag: exit $rc"
"$ckpt" frobnicate 2>/dev/null; rc=$?
[ "$rc" = 2 ] || fail "unknown command: exit $rc"

if [ "$fails" != 0 ]; then echo "FAIL: $fails checks"; exit 1; fi
echo PASS
