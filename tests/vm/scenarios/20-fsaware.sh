# Fs-aware reclaim (docs/fsaware.md) on what a real kernel wrote.  The base is an ext4 image
# (4 KiB blocks); the guest mounts the overlay, writes a 2 MiB file, a 12 MiB file and a 1 MiB
# file, deletes the 12 MiB one, then the snapshot is taken in three ways:
#   freeze:  fsfreeze -f, the COW copied (what a hibernated VM leaves), thaw, umount;
#   umount:  a clean unmount, the disk detached;
#   mounted: the COW copied while mounted and not frozen (journal needs recovery).
# `cowpunch reclaim --fs-aware` must drop st_blocks by >= 95% of the deleted file for the first
# two, after which the overlay re-attached is e2fsck -fn clean and every remaining file has its
# sha256; the mounted copy must be refused with exit 5 and left byte for byte as it was.
# Then the same guest on an ext2 base (no journal; the ext4 driver mounts it): the copies taken
# mounted and frozen are refused (s_state not clean: that driver clears EXT2_VALID_FS on mount
# and sets it again only on unmount), the cleanly unmounted store is reclaimed.
need_cowpunch reclaim
cowpunch reclaim --help | grep -q -- '--fs-aware' || skip "cowpunch reclaim has no --fs-aware"

base=$WORK/base.img mnt=$TMPWORK/mnt
make_base_image "$base" 32 ext4
sectors=$((40 * 2048)) # the disk: 32 MiB of ext4, then an unused zero tail
size=$((40 << 20))
big=$((12 << 20))
mkdir -p "$mnt"

guest_writes() {
	dev=$(layered_create "$1" "$base" "$2" "$sectors" 8)
	fsaware_writes "$dev" "$mnt"
}

# check_reclaimed ID SNAP: fs-aware reclaim of the detached store SNAP, then re-attach and check.
check_reclaimed() {
	before=$(blocks "$2")
	cowpunch reclaim --fs-aware --base "$base" --size $size --json "$2" >"$OUT/$1.json" ||
		fail "$1: reclaim --fs-aware exited $?"
	cat "$OUT/$1.json"
	fsaware_dropped "$1" "$2" "$before" "$OUT/$1.json" $big
	dev=$(layered_create "$1-r" "$base" "$2" "$sectors" 8)
	fsaware_intact "$1" "$dev" "$mnt"
	layered_remove "$1-r" "$base" "$2"
}

# 1. Frozen: the copy taken under FIFREEZE is the hibernated VM's store.
cow=$WORK/cow-freeze
truncate -s 48M "$cow"
guest_writes fz "$cow"
fsfreeze -f "$mnt"
dd if="$cow" of="$WORK/snap-freeze" bs=1M conv=sparse status=none
sync
fsfreeze -u "$mnt"
umount "$mnt"
layered_remove fz "$base" "$cow"
check_reclaimed freeze "$WORK/snap-freeze"

# 2. Cleanly unmounted, then detached.
cow=$WORK/cow-umount
truncate -s 48M "$cow"
guest_writes um "$cow"
umount "$mnt"
layered_remove um "$base" "$cow"
check_reclaimed umount "$cow"

# check_refused NAME SNAP [REASON]: reclaim --fs-aware of SNAP exits 5, status refused (the
# reason naming REASON), not a byte or block of SNAP changed.
check_refused() {
	b=$(blocks "$2") h=$(sha256 "$2")
	rc=0
	cowpunch reclaim --fs-aware --base "$base" --size $size --json "$2" >"$OUT/$1.json" || rc=$?
	cat "$OUT/$1.json"
	assert_eq 5 "$rc" "$1: exit status of reclaim --fs-aware"
	assert_eq refused "$(json_get "$OUT/$1.json" .fs_aware.status)" "$1: fs_aware.status"
	case "$(json_get "$OUT/$1.json" .fs_aware.reason)" in
	*"${3:-}"*) ;;
	*) fail "$1: the reason does not name '${3:-}'" ;;
	esac
	assert_eq "$b" "$(blocks "$2")" "$1: st_blocks unchanged"
	assert_eq "$h" "$(sha256 "$2")" "$1: bytes unchanged"
}

# 3. Mounted and not frozen: refused, nothing written.
cow=$WORK/cow-mounted
truncate -s 48M "$cow"
guest_writes mo "$cow"
dd if="$cow" of="$WORK/snap-mounted" bs=1M conv=sparse status=none
sync # written back now: the extent blocks ext4 adds at writeback count in st_blocks
umount "$mnt"
layered_remove mo "$base" "$cow"
check_refused mounted "$WORK/snap-mounted" "journal needs recovery"

# 4. ext2 (no journal): mounted and frozen copies refused, the unmounted store reclaimed.
base=$WORK/base-ext2.img
mkdir -p "$TMPWORK/ext2-files"
dd if=/dev/urandom of="$TMPWORK/ext2-files/a" bs=64K count=8 status=none
truncate -s 32M "$base"
/usr/sbin/mke2fs -q -F -t ext2 -b 4096 -d "$TMPWORK/ext2-files" "$base"
cow=$WORK/cow-ext2
truncate -s 48M "$cow"
guest_writes e2 "$cow"
dd if="$cow" of="$WORK/snap-ext2-mounted" bs=1M conv=sparse status=none
fsfreeze -f "$mnt"
dd if="$cow" of="$WORK/snap-ext2-frozen" bs=1M conv=sparse status=none
sync
fsfreeze -u "$mnt"
umount "$mnt"
layered_remove e2 "$base" "$cow"
check_refused ext2-mounted "$WORK/snap-ext2-mounted" "not cleanly unmounted"
check_refused ext2-frozen "$WORK/snap-ext2-frozen" "not cleanly unmounted"
check_reclaimed ext2-umount "$cow"
