# The blog's flow with cowpunch's own lifecycle commands: create a VM on a real ext4 base
# image, mount its overlay, write files, zero and delete some, unmount, detach, reclaim by ID,
# attach again: e2fsck -fn is clean, every kept file has its sha256, and the space of the
# zeroed files came back (st_blocks).  Checks the records, list/status and the tables built, and
# that create --mem-file records the memory file (not there yet) in the record and status.
need_cowpunch create attach detach destroy list status reclaim
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.ext4
make_base_image "$base" 16 ext4
base_sha=$(sha256 "$base")

mem=$WORK/snaps/vm1.mem
dev=$(cowpunch create vm1 --base "$base" --size 32M --mem-file "$mem")
assert_eq /dev/mapper/overlay-vm1 "$dev" "create prints the device"
[ -b "$dev" ] || fail "$dev is not a block device"
assert_eq 65536 "$(dev_sectors "$dev")" "overlay size (32 MiB)"
cow=$COWPUNCH_STATE_DIR/vm1/cow
# LVM2's formula: 8192 chunks + 1 header + (8192 + 256) / 256 = 33 metadata areas.
assert_eq $(((1 + 8192 + 33) * 4096)) "$(file_size "$cow")" "COW file size"
log "tables:"
dmsetup table base-vm1
dmsetup table overlay-vm1
assert_eq 2 "$(dmsetup table base-vm1 | wc -l)" "base-vm1: linear + zero tail"
dmsetup table base-vm1 | head -1 | grep -q " linear " || fail "base-vm1 first target not linear"
dmsetup table base-vm1 | tail -1 | grep -q " zero" || fail "base-vm1 tail is not zero"
dmsetup table overlay-vm1 | grep -q " snapshot .* P 8$" || fail "overlay-vm1 not 'snapshot P 8'"
bl=$(losetup -j "$base" -O NAME -n)
assert_eq 1 "$(echo "$bl" | wc -l)" "one loop on the base image"
assert_eq 1 "$(cat /sys/block/${bl#/dev/}/ro)" "the base loop is read-only"

# Mount (the fs stays 16 MiB; the tail is only in the device), write files.
mkdir -p "$TMPWORK/mnt"
mount -t ext4 "$dev" "$TMPWORK/mnt"
dd if=/dev/urandom of="$TMPWORK/mnt/keep1" bs=1M count=2 status=none
dd if=/dev/urandom of="$TMPWORK/mnt/keep2" bs=64K count=5 status=none
dd if=/dev/urandom of="$TMPWORK/mnt/zeroed" bs=1M count=4 status=none
dd if=/dev/urandom of="$TMPWORK/mnt/deleted" bs=1M count=2 status=none
sync
dd if=/dev/zero of="$TMPWORK/mnt/zeroed" bs=1M count=4 conv=notrunc,fsync status=none
rm "$TMPWORK/mnt/deleted"
(cd "$TMPWORK/mnt" && sha256sum keep1 keep2 a b README) >"$TMPWORK/sums"
umount "$TMPWORK/mnt"

assert_rc 4 cowpunch reclaim vm1
cowpunch status vm1
cowpunch status vm1 --json >"$OUT/status-attached.json"
assert_eq true "$(json_get "$OUT/status-attached.json" .attached)" "status attached"
assert_eq valid "$(json_get "$OUT/status-attached.json" .snapshot.state)" "snapshot valid"
assert_eq "$mem" "$(json_get "$COWPUNCH_STATE_DIR/vm1/vm.json" .mem_file)" "create --mem-file recorded"
assert_eq "$mem" "$(json_get "$OUT/status-attached.json" .mem_file)" "status mem_file"
assert_eq null "$(json_get "$OUT/status-attached.json" .mem_allocated)" "mem_allocated (no file yet)"

cowpunch detach vm1
[ ! -e /dev/mapper/overlay-vm1 ] || fail "overlay-vm1 still there after detach"
dmsetup info base-vm1 >/dev/null 2>&1 && fail "base-vm1 still there after detach"
assert_eq "" "$(losetup -j "$cow" -O NAME -n)" "no loop on the COW after detach"
assert_eq "" "$(losetup -j "$base" -O NAME -n)" "no loop on the base after the last detach"
before=$(($(blocks "$cow") * 512))
cowpunch reclaim --json vm1 >"$OUT/reclaim.json"
cat "$OUT/reclaim.json"
after=$(($(blocks "$cow") * 512))
log "COW allocated: $before -> $after bytes"
# The 4 MiB zeroed file, less a little: punching splits extents, ext4 may add an extent block.
[ $((before - after)) -ge $((4 * 1024 * 1024 - 65536)) ] ||
	fail "reclaim gave back $((before - after)) bytes, less than the 4 MiB zeroed file"
cowpunch status vm1 --json >"$OUT/status-detached.json"
assert_eq false "$(json_get "$OUT/status-detached.json" .attached)" "status detached"
assert_eq $((before - after)) "$(json_get "$OUT/status-detached.json" .last_reclaim.reclaimed_bytes)" \
	"last reclaim recorded"
assert_eq $((before - after)) "$(json_get "$OUT/status-detached.json" .last_reclaim.zero_bytes)" \
	"zero reclaim: all of it from zero chunks"
assert_eq 0 "$(json_get "$OUT/status-detached.json" .last_reclaim.fs_free_bytes)" "no fs-free bytes"
assert_eq "$(blocks "$cow")" "$(json_get "$COWPUNCH_STATE_DIR/vm1/vm.json" .last_reclaim.cow_stamp.blocks)" \
	"the record's COW stamp is the COW after the reclaim"
cowpunch list

dev=$(cowpunch attach vm1)
/usr/sbin/e2fsck -fn "$dev" || fail "e2fsck after reclaim and re-attach"
mount -t ext4 -o ro "$dev" "$TMPWORK/mnt"
(cd "$TMPWORK/mnt" && sha256sum -c "$TMPWORK/sums") || fail "file hashes after re-attach"
[ ! -e "$TMPWORK/mnt/deleted" ] || fail "deleted file came back"
umount "$TMPWORK/mnt"
cowpunch destroy vm1
[ ! -e "$COWPUNCH_STATE_DIR/vm1" ] || fail "destroy left the VM folder"
[ ! -e /dev/mapper/overlay-vm1 ] || fail "destroy left overlay-vm1"
assert_eq "$base_sha" "$(sha256 "$base")" "the base image is unchanged"
log "all checks passed"
