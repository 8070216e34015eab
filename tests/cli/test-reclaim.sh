#!/usr/bin/env bash
# cowpunch reclaim: exit codes 0/2/3/4, the lock and loop-device refusals, --dry-run writes
# nothing, JSON values against what the store holds, bytes unchanged after a real run, with
# each engine and both ways of reading (the page cache, --direct-reads).
set -u
: "${BUILD_DIR:?}"
MKSTORE=$BUILD_DIR/tests/tools/mkstore
. "$(dirname "$0")/lib.sh"
require "$MKSTORE" jq flock filefrag
loopdev=
cleanup_hooks+=('[ -n "$loopdev" ] && losetup -d "$loopdev"')

state() { # FILE: bytes and allocation
	echo "$(sha256sum <"$1") $(stat -c %b "$1")"
}
# Bytes of data extents from FIEMAP: st_blocks also counts ext4 extent-tree blocks.
data_bytes() { filefrag -s -v -b512 "$1" | awk -F: '$1 ~ /^ *[0-9]+$/ { s += $4 } END { print s * 512 }'; }

# --- usage
expect_rc 2 "$COWPUNCH" reclaim
expect_rc 2 "$COWPUNCH" reclaim a b
expect_rc 2 "$COWPUNCH" reclaim --engine bogus "$dir/x"
expect_rc 2 "$COWPUNCH" reclaim --read-size 3000 "$dir/x"
expect_rc 2 "$COWPUNCH" reclaim --no-such-option "$dir/x"
expect_rc 0 "$COWPUNCH" reclaim --help
for word in Usage: Options: 'Exit status' Examples: --dry-run --engine reclaimed_bytes; do
	grep -q -- "$word" "$dir/out" || fail "reclaim --help lacks '$word'"
done
expect_rc 1 "$COWPUNCH" reclaim "$dir/does-not-exist"
grep -q "does-not-exist" "$dir/err" || fail "missing-file error does not name the file"
# With --json a failure is one JSON object on stdout too: the error and the exit code.
expect_rc 1 "$COWPUNCH" reclaim --json "$dir/does-not-exist"
jq_is .exit_code 1
jq_is '.error | contains("does-not-exist")' true

# --- a store: 4 KiB chunks, epa 256.  In COW order: 100 data, 50 written zeros, 20 holes,
# 30 data, 200 written zeros (crosses metadata area 1 at chunk 258).  Chunks 2..401 + area.
"$MKSTORE" "$dir/cow" add=1000,100 add=2000,50,1 add=3000,20,2 add=4000,30 add=5000,200,1 ||
	fail "mkstore cow"
cp --sparse=never "$dir/cow" "$dir/cow.orig" # the same bytes, for comparing
before=$(state "$dir/cow")
blocks_before=$(($(stat -c %b "$dir/cow") * 512))

# --- dry run: counts, nothing written
expect_rc 0 "$COWPUNCH" reclaim --dry-run --json "$dir/cow"
jq_is .dry_run true
jq_is .exceptions 400
jq_is .chunk_bytes 4096
jq_is .zero_chunks 250
jq_is .hole_chunks 20
jq_is .chunks_scanned 380
jq_is .fs_free_chunks 0
jq_is .punched_ranges 3 # 50 | 200 split by metadata area 1 at chunk 258
jq_is .reclaimed_bytes 0
jq_is .allocated_before "$blocks_before"
jq_is .allocated_after "$blocks_before"
jq_is '.bytes_read >= 380 * 4096' true
jq_is '.engine | test("^(uring|aio|sync)$")' true
jq_is '.seconds > 0 and .seconds < 60' true
[ "$(state "$dir/cow")" = "$before" ] || fail "--dry-run changed the file"
expect_rc 0 "$COWPUNCH" reclaim --dry-run "$dir/cow"
grep -q "dry run" "$dir/out" || fail "human dry-run output does not say so"

# --- each engine on its own copy, reading through the page cache (the default) and with
# --direct-reads: same counts, same bytes, exactly the zero chunks freed (FIEMAP), and the
# allocation it reports is what stat says before and after.  direct_reads says which way
# the scan read (O_DIRECT only where the file system takes it).
odirect=false
dd if=/dev/zero of="$dir/odirect" bs=4096 count=1 oflag=direct status=none 2>/dev/null &&
	odirect=true
for run in sync aio uring auto sync:direct aio:direct uring:direct auto:direct; do
	engine=${run%:*} reads=()
	[ "$run" = "$engine" ] || reads=(--direct-reads)
	f=$dir/e-${run/:/-}
	"$MKSTORE" "$f" add=1000,100 add=2000,50,1 add=3000,20,2 add=4000,30 add=5000,200,1 ||
		fail "mkstore e-$engine"
	sync "$f" # allocated now, so that stat's figure is the one reclaim starts from
	blocks0=$(($(stat -c %b "$f") * 512)) data0=$(data_bytes "$f")
	expect_rc 0 "$COWPUNCH" reclaim --json --engine "$engine" "${reads[@]}" "$f"
	if [ ${#reads[@]} -eq 0 ]; then jq_is .direct_reads false; else jq_is .direct_reads "$odirect"; fi
	blocks1=$(($(stat -c %b "$f") * 512)) data1=$(data_bytes "$f")
	[ "$engine" = auto ] || jq_is .engine "$engine"
	jq_is .dry_run false
	jq_is .zero_chunks 250
	jq_is .punched_ranges 3
	[ $((data0 - data1)) -eq $((250 * 4096)) ] ||
		fail "$run: data (FIEMAP) dropped by $((data0 - data1)) bytes, want $((250 * 4096))"
	jq_is .allocated_before "$blocks0"
	jq_is .allocated_after "$blocks1"
	jq_is .reclaimed_bytes $((blocks0 - blocks1))
	# ext4 may also free or add an extent-tree block: allow one 4 KiB block either way.
	jq_is "(.reclaimed_bytes - 250 * 4096) | fabs <= 4096" true
	cmp -s "$f" "$dir/cow.orig" || fail "$run: bytes changed"
done

# --- human output
"$MKSTORE" "$dir/h" add=1,10 add=20,10,1 || fail "mkstore h"
expect_rc 0 "$COWPUNCH" reclaim "$dir/h"
grep -q "reclaimed 40.00 KiB" "$dir/out" || fail "human output: $(cat "$dir/out")"

# --- lock held: exit 4, file named, nothing written
"$MKSTORE" "$dir/locked" add=1,10 add=20,10,1 || fail "mkstore locked"
s=$(state "$dir/locked")
flock "$dir/locked" "$COWPUNCH" reclaim "$dir/locked" >"$dir/out" 2>"$dir/err"
rc=$?
[ "$rc" -eq 4 ] || fail "locked: exit $rc, want 4; $(cat "$dir/err")"
grep -q "$dir/locked" "$dir/err" || fail "locked: stderr does not name the file"
grep -qi "lock" "$dir/err" || fail "locked: stderr does not say it is locked"
[ "$(state "$dir/locked")" = "$s" ] || fail "locked: file changed"
flock "$dir/locked" "$COWPUNCH" reclaim --json "$dir/locked" >"$dir/out" 2>"$dir/err"
jq_is .exit_code 4

# --- invalid store: exit 3, names file, byte offset and rule, nothing written
"$MKSTORE" "$dir/bad" add=1,5,1 entry=0,8,77,3 || fail "mkstore bad"
s=$(state "$dir/bad")
expect_rc 3 "$COWPUNCH" reclaim --json "$dir/bad"
grep -q "$dir/bad" "$dir/err" || fail "bad: stderr does not name the file"
grep -q "byte $((4096 + 8 * 16))" "$dir/err" || fail "bad: stderr lacks the offset: $(cat "$dir/err")"
grep -qi "discard\|terminator" "$dir/err" || fail "bad: stderr lacks the rule: $(cat "$dir/err")"
jq_is .exit_code 3
jq_is ".error | contains(\"byte $((4096 + 8 * 16))\")" true
[ "$(state "$dir/bad")" = "$s" ] || fail "bad: file changed"

# --- attached to a loop device: exit 4 naming the device (needs root and loop support)
"$MKSTORE" "$dir/attached" add=1,10 add=20,10,1 || fail "mkstore attached"
if loop_refused "$dir/attached" "$COWPUNCH" reclaim "$dir/attached"; then
	expect_rc 0 "$COWPUNCH" reclaim --json "$dir/attached"
	jq_is .zero_chunks 10
fi

finish test-reclaim
