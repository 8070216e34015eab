# create --unsafe-discard (--discard, unchecked): 4 KiB chunks only, a warning,
# `discard_zeroes_cow` on the snapshot, and a base-ID tail that is a linear map of a shared
# sparse zero file instead of `zero` (which has no discard support before Linux 6.4, and an
# origin without discard turns the overlay's discard support off).  A chunk-aligned discard of
# written chunks then punches the COW file.
# Plain --discard needs a passing discard self-test of `cowpunch doctor` for the running kernel
# (none here: refused, exit 1, nothing made); --unsafe-discard goes ahead without it.
need_cowpunch create detach attach
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img
make_base_image "$base" 4
assert_rc 1 cowpunch create d0 --base "$base" --size 16M --discard
assert_eq "" "$(ls -A "$COWPUNCH_STATE_DIR" 2>/dev/null)" "a refused --discard leaves nothing"
assert_no_devices "the refused --discard"
dev=$(cowpunch create d1 --base "$base" --size 16M --unsafe-discard 2>"$TMPWORK/err")
grep -q "warning: --discard" "$TMPWORK/err" || fail "--discard printed no warning"
cat "$TMPWORK/err"
dmsetup table base-d1
dmsetup table overlay-d1
assert_eq 2 "$(dmsetup table base-d1 | grep -c ' linear ')" "base-d1: base and tail both linear"
dmsetup table overlay-d1 | grep -q " P 8 1 discard_zeroes_cow$" || fail "overlay-d1 lacks discard_zeroes_cow"
tail=$COWPUNCH_STATE_DIR/discard-tail.img
assert_eq 0 "$(blocks "$tail")" "the tail file is all holes"
assert_eq 1 "$(losetup -j "$tail" -O NAME -n | wc -l)" "one loop serves the tail"
mm=$(dmsetup info -c --noheadings -o major,minor overlay-d1 | tr -d ' ')
dmname=$(basename "$(readlink -f /sys/dev/block/$mm)")
max=$(cat /sys/block/$dmname/queue/discard_max_bytes)
log "overlay-d1 ($dmname) discard_max_bytes: $max"
[ "$max" -gt 0 ] || fail "overlay-d1 does not support discard"

# A second VM shares the tail loop.
cowpunch create d2 --base "$base" --size 16M --unsafe-discard >/dev/null 2>&1
assert_eq 1 "$(losetup -j "$tail" -O NAME -n | wc -l)" "two VMs, one tail loop"

# Write 64 chunks in the tail area, discard them chunk-aligned: the COW gets its space back.
cow=$COWPUNCH_STATE_DIR/d1/cow
dd if=/dev/urandom of="$dev" bs=4096 seek=3000 count=64 oflag=direct conv=notrunc status=none
sync
b1=$(blocks "$cow")
blkdiscard -o $((3000 * 4096)) -l $((64 * 4096)) "$dev"
sync
b2=$(blocks "$cow")
log "COW st_blocks: $b1 -> $b2"
[ $((b1 - b2)) -ge $((64 * 8)) ] || fail "discard freed $(((b1 - b2) * 512)) bytes, want >= 256 KiB"
assert_eq 0 "$(dd if="$dev" bs=4096 skip=3000 count=64 status=none | tr -d '\0' | wc -c)" \
	"discarded range reads zeros"
cowpunch detach d1
cowpunch detach d2
assert_eq "" "$(losetup -a)" "no loop left (the tail loop goes with the last VM)"
log "all checks passed"
