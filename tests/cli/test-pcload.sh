#!/usr/bin/env bash
# The power-cut tests' checker (tests/tools/pcload, used by tests/vm/powercut.sh) must notice a
# lost acknowledged write: a disk left at an earlier point of the write sequence, a block put
# back to an older write, a torn block.  On plain files here; the VM runs it on real devices.
set -u
. "$(dirname "$0")/lib.sh"
pcload=$BUILD_DIR/tests/tools/pcload
require "$pcload" cmp
seed=4242
head -c 8M /dev/urandom >"$dir/base"
for f in full early; do
	cp "$dir/base" "$dir/$f"
	truncate -s 16M "$dir/$f"
done
"$pcload" write "$dir/full" $seed >"$dir/full.log" || fail "pcload write"
"$pcload" write "$dir/early" $seed x 400 >"$dir/early.log" || fail "pcload write ... 400"
last=$(awk '$3 == "ack" { a = $4 } END { print a }' "$dir/full.log")
[ "$last" = 907 ] || fail "the full sequence's last ack is $last, not op 907"
[ "$(awk '$3 == "ack" { a = $4 } END { print a }' "$dir/early.log")" = 400 ] ||
	fail "a sequence stopped after op 400 did not ack op 400 last"

expect_rc 0 "$pcload" check "$dir/full" "$dir/base" $seed 907
expect_rc 0 "$pcload" check "$dir/early" "$dir/base" $seed 400
# Nothing acknowledged: any write, or the base, is right.
expect_rc 0 "$pcload" check "$dir/early" "$dir/base" $seed -1
# The disk stopped at op 400, but ops up to 907 were acknowledged: lost writes.
expect_rc 1 "$pcload" check "$dir/early" "$dir/base" $seed 907
grep -q 'check FAILED' "$dir/out" || fail "no FAILED summary for lost writes: $(cat "$dir/out")"

# One block put back to an older write: a block written before op 400 and again after it.
b=
for blk in $(seq 0 4095); do
	if ! cmp -s -i $((blk * 4096)):$((blk * 4096)) -n 4096 "$dir/full" "$dir/early" &&
		! cmp -s -i $((blk * 4096)):$((blk * 4096)) -n 4096 "$dir/early" "$dir/base"; then
		b=$blk
		break
	fi
done
[ -n "$b" ] || fail "no block differs between the two points"
cp "$dir/full" "$dir/stale"
dd if="$dir/early" of="$dir/stale" bs=4096 skip="$b" seek="$b" count=1 conv=notrunc status=none
expect_rc 1 "$pcload" check "$dir/stale" "$dir/base" $seed 907
grep -q "^PCLOAD check block $b: holds op" "$dir/out" || fail "block $b's older write not named: $(cat "$dir/out")"
# The same block torn: its last 512 bytes from the older write.
cp "$dir/full" "$dir/torn"
dd if="$dir/early" of="$dir/torn" bs=512 skip=$((b * 8 + 7)) seek=$((b * 8 + 7)) count=1 \
	conv=notrunc status=none
expect_rc 1 "$pcload" check "$dir/torn" "$dir/base" $seed 907
grep -q "^PCLOAD check block $b: holds unknown bytes" "$dir/out" || fail "torn block $b not named: $(cat "$dir/out")"
finish pcload
