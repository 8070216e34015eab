# Fs-aware reclaim by VM ID (docs/fsaware.md), through the lifecycle commands: `cowpunch create`
# on an ext4 base, the guest mounts the overlay, writes a 2 MiB, a 12 MiB and a 1 MiB file, and
# deletes the 12 MiB one; then the VM is hibernated, `cowpunch detach`, and `cowpunch reclaim
# --fs-aware ID` (base and size from the record) must drop st_blocks by >= 95% of the deleted file;
# `cowpunch attach`: e2fsck -fn clean, every remaining file has its sha256.
#
# How the VM is hibernated.  An orchestrator freezes the guest's file system (FIFREEZE through
# its guest agent), then stops the VMM, which closes the disk, then detaches.  Here the "guest"
# is the test bed's own mount of the overlay, so the disk cannot be closed while the file system
# stays frozen (detach refuses an open overlay, and thaw + umount writes the superblock and
# journal again).  So the frozen VM is modelled exactly by its store: the COW file is copied
# while frozen (the bytes a VMM stopped at that moment leaves, as 20-fsaware does), the mount is
# thawed and unmounted, the VM detached, and the frozen copy put back as the VM's COW file.
#   freeze:  that frozen store;
#   umount:  a clean unmount, then detach (the other safe way);
#   mounted: the store copied while mounted and not frozen: exit 5, not a byte changed;
#   rebased: a VM whose base image changed after create: exit 3, not a byte changed.
need_cowpunch create attach detach status reclaim
cowpunch reclaim --help | grep -q -- '--fs-aware' || fail "cowpunch reclaim has no --fs-aware"
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img mnt=$TMPWORK/mnt
make_base_image "$base" 32 ext4
big=$((12 << 20))
mkdir -p "$mnt"

# guest_writes ID [BASE]: creates VM ID (40 MiB disk: 32 MiB of ext4, an unused zero tail),
# mounts it and writes keep1, big, keep2, deletes big.  Leaves it mounted.
guest_writes() {
	dev=$(cowpunch create "$1" --base "${2:-$base}" --size 40M)
	fsaware_writes "$dev" "$mnt"
}

# put_back ID SNAP: SNAP becomes VM ID's COW file (same inode, same size; zeros left as holes).
put_back() {
	_c=$COWPUNCH_STATE_DIR/$1/cow
	_sz=$(file_size "$_c")
	dd if="$2" of="$_c" bs=1M conv=sparse,fsync status=none
	assert_eq "$_sz" "$(file_size "$_c")" "$1: size of the COW file put back"
	rm "$2"
}

# check_reclaimed ID: fs-aware reclaim of the detached VM ID, then re-attach and check.
check_reclaimed() {
	_c=$COWPUNCH_STATE_DIR/$1/cow
	before=$(blocks "$_c")
	cowpunch reclaim --fs-aware --json "$1" >"$OUT/$1.json" || fail "$1: reclaim --fs-aware exited $?"
	cat "$OUT/$1.json"
	fsaware_dropped "$1" "$_c" "$before" "$OUT/$1.json" $big
	cowpunch status --json "$1" >"$OUT/$1-status.json"
	assert_eq "$drop" "$(json_get "$OUT/$1-status.json" .last_reclaim.reclaimed_bytes)" \
		"$1: reclaim recorded"
	dev=$(cowpunch attach "$1")
	fsaware_intact "$1" "$dev" "$mnt"
	cowpunch detach "$1"
}

# check_untouched ID WANT_RC WHAT: reclaim --fs-aware ID exits WANT_RC, the COW unchanged.
check_untouched() {
	_c=$COWPUNCH_STATE_DIR/$1/cow
	_b=$(blocks "$_c") _h=$(sha256 "$_c")
	_rc=0
	cowpunch reclaim --fs-aware --json "$1" >"$OUT/$1.json" || _rc=$?
	cat "$OUT/$1.json"
	assert_eq "$2" "$_rc" "$1: exit status of reclaim --fs-aware ($3)"
	assert_eq "$_b" "$(blocks "$_c")" "$1: st_blocks unchanged"
	assert_eq "$_h" "$(sha256 "$_c")" "$1: bytes unchanged"
}

# 1. Frozen, then hibernated: the store as FIFREEZE left it.
guest_writes fz
fsfreeze -f "$mnt"
dd if="$COWPUNCH_STATE_DIR/fz/cow" of="$WORK/snap-fz" bs=1M conv=sparse status=none
fsfreeze -u "$mnt"
umount "$mnt"
cowpunch detach fz
put_back fz "$WORK/snap-fz"
check_reclaimed fz

# 2. Cleanly unmounted, then detached.
guest_writes um
umount "$mnt"
assert_rc 4 cowpunch reclaim --fs-aware um # still attached: refused
cowpunch detach um
check_reclaimed um

# 3. Mounted and not frozen when the store was taken: refused, exit 5.
guest_writes mo
dd if="$COWPUNCH_STATE_DIR/mo/cow" of="$WORK/snap-mo" bs=1M conv=sparse status=none
umount "$mnt"
cowpunch detach mo
put_back mo "$WORK/snap-mo"
check_untouched mo 5 "mounted, not frozen"
assert_eq refused "$(json_get "$OUT/mo.json" .fs_aware.status)" "mo: fs_aware.status"

# 4. The base image changed after create (one byte of the unused boot block, so ext4 would not
# notice): the record's base identity check refuses, exit 3.
base2=$WORK/base2.img
dd if="$base" of="$base2" bs=1M status=none
guest_writes rb "$base2"
umount "$mnt"
cowpunch detach rb
printf 'X' | dd of="$base2" bs=1 seek=100 conv=notrunc status=none
check_untouched rb 3 "base changed"
finish
