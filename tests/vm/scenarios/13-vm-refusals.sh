# What cowpunch must refuse: a bad VM ID (exit 2), detach or destroy while the overlay is open
# (exit 4, the VM keeps running; an opener gone within a second is waited for instead), attach when the base image changed since create (exit 3:
# a COW on another base is a corrupt disk), reclaim of an attached VM (exit 4), a second
# create of the same ID, and a VM locked by another command (exit 4).
need_cowpunch create attach detach destroy status reclaim
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img
make_base_image "$base" 4
assert_rc 2 cowpunch create --base "$base" --size 8M -- -bad
assert_rc 2 cowpunch create "a/b" --base "$base" --size 8M
assert_rc 2 cowpunch create "$(printf 'x%.0s' $(seq 1 65))" --base "$base" --size 8M
assert_rc 2 cowpunch attach "bad id"
assert_rc 2 cowpunch create vm1 --base "$base" --size 1M
assert_rc 2 cowpunch create vm1 --base "$base" --size 8M --chunk-size 64K --discard
assert_eq "" "$(ls "$COWPUNCH_STATE_DIR" 2>/dev/null)" "refused creates leave nothing"

dev=$(cowpunch create vm1 --base "$base" --size 8M)
assert_rc 1 cowpunch create vm1 --base "$base" --size 8M
assert_rc 4 cowpunch reclaim vm1
# Hold the overlay open, as a running VM does.
exec 7<"$dev"
assert_rc 4 cowpunch detach vm1
assert_rc 4 cowpunch destroy vm1
[ -b /dev/mapper/overlay-vm1 ] || fail "refused detach removed the overlay"
exec 7<&-
cowpunch detach vm1
# An opener that goes within a second (blkid, udev, a VM process whose io_uring ring the
# kernel is still tearing down): detach waits for it rather than refuse.
dev=$(cowpunch attach vm1) || fail "attach vm1"
(
	exec 7<"$dev"
	touch "$TMPWORK/opened"
	sleep 0.5
) &
while [ ! -e "$TMPWORK/opened" ]; do sleep 0.05; done
assert_rc 0 cowpunch detach vm1
wait
[ ! -e /dev/mapper/overlay-vm1 ] || fail "detach after a transient opener left the overlay"

# Lock held by another command: attach waits for nobody, it refuses.
/usr/bin/flock "$COWPUNCH_STATE_DIR/vm1/lock" sleep 3 &
sleep 1
assert_rc 4 cowpunch attach vm1
wait
# A `cowpunch reclaim COW` in progress holds a lock on the COW file: attach refuses too.
/usr/bin/flock "$COWPUNCH_STATE_DIR/vm1/cow" sleep 3 &
sleep 1
assert_rc 4 cowpunch attach vm1
wait
assert_eq "" "$(dmsetup ls | grep -v 'No devices found' || true)" "refused attach built nothing"

touch -r "$base" "$WORK/base-times"
# Change one byte of the base image in the middle (size and most samples unchanged).
printf 'X' | dd of="$base" bs=1 seek=2000000 conv=notrunc status=none
assert_rc 3 cowpunch attach vm1
assert_eq "" "$(dmsetup ls | grep -v 'No devices found' || true)" "refused attach built nothing"
assert_eq "" "$(losetup -a)" "refused attach attached no loop"
# Same size, mtime restored to the nanosecond: the sampled sha256 still catches a change in
# the first block.
printf 'Y' | dd of="$base" bs=1 seek=0 conv=notrunc status=none
touch -r "$WORK/base-times" "$base"
assert_eq "$(stat -c %y "$WORK/base-times")" "$(stat -c %y "$base")" "mtime restored"
assert_rc 3 cowpunch attach vm1
assert_eq "" "$(dmsetup ls | grep -v 'No devices found' || true)" "refused attach built nothing"
log "all checks passed"
