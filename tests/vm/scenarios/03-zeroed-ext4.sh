# Zeroed data inside a file system, on a VM made by `cowpunch create` over an ext4 base image: the
# guest writes files on the overlay, then overwrites one with zeros, and unmounts.  After
# `cowpunch detach` and `cowpunch reclaim ID`, the COW's data dropped by exactly the zero chunks
# (at least the zeroed file's), and after `cowpunch attach` the overlay reads the same, `e2fsck
# -fn` is clean and the files are intact.
need_cowpunch create attach detach status reclaim
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img cow=$COWPUNCH_STATE_DIR/e3/cow mnt=$TMPWORK/mnt
make_base_image "$base" 32 ext4
dev=$(cowpunch create e3 --base "$base" --size 40M) # ext4 uses the first 32 MiB; the tail is unused
mkdir -p "$mnt"
mount -t ext4 "$dev" "$mnt"
dd if=/dev/urandom of="$mnt/keep" bs=64K count=64 status=none   # 4 MiB
dd if=/dev/urandom of="$mnt/zeroed" bs=64K count=32 status=none # 2 MiB
sync
dd if=/dev/zero of="$mnt/zeroed" bs=64K count=32 conv=notrunc,fsync status=none
keep=$(sha256 "$mnt/keep")
umount "$mnt"
e2fsck -fn "$dev" || fail "e2fsck before reclaim"
want=$(sha256 "$dev")
exc=$(vm_exceptions e3)
assert_eq "$(snap_exceptions "$dev" 8)" "$exc" "exceptions from status --json (= dmsetup status)"
cowpunch detach e3
log "$exc exceptions"

before=$(blocks "$cow")
data=$(data_sectors "$cow")
cowpunch reclaim --json e3 >"$OUT/reclaim.json"
cat "$OUT/reclaim.json"
after=$(blocks "$cow")
zero=$(json_get "$OUT/reclaim.json" .zero_chunks)
log "st_blocks $before -> $after, zero chunks $zero"
[ "$zero" -ge 512 ] || fail "zero_chunks $zero < 512 (the zeroed 2 MiB file)"
assert_punched "$cow" "$data" "$before" $((zero * 4096)) "$OUT/reclaim.json"

dev=$(cowpunch attach e3)
assert_eq "$exc" "$(vm_exceptions e3)" "exceptions after re-attach (status --json)"
assert_eq "$exc" "$(snap_exceptions "$dev" 8)" "exceptions after re-attach (dmsetup status)"
assert_eq "$want" "$(sha256 "$dev")" "overlay sha256 after re-attach"
e2fsck -fn "$dev" || fail "e2fsck after reclaim"
mount -t ext4 -o ro "$dev" "$mnt"
assert_eq "$keep" "$(sha256 "$mnt/keep")" "sha256 of the kept file"
assert_eq "$(dd if=/dev/zero bs=64K count=32 status=none | sha256sum | cut -d' ' -f1)" \
	"$(sha256 "$mnt/zeroed")" "sha256 of the zeroed file"
umount "$mnt"
cowpunch detach e3
finish
