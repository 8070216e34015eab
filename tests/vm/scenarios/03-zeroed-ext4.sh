# Zeroed data inside a file system: the base is an ext4 image; the guest writes files on the
# overlay, then overwrites one with zeros, and unmounts.  After `cowpunch reclaim` on the
# detached COW, the COW's data dropped by exactly the zero chunks (at least the zeroed file's),
# and after re-attach the overlay reads the same, `e2fsck -fn` is clean and the files are intact.
base=$WORK/base.img cow=$WORK/cow mnt=$TMPWORK/mnt
make_base_image "$base" 32 ext4
truncate -s 48M "$cow"
sectors=$((40 * 2048)) # ext4 uses the first 32 MiB; the zero tail is unused space
dev=$(layered_create e3 "$base" "$cow" "$sectors" 8)
mkdir -p "$mnt"
mount -t ext4 "$dev" "$mnt"
dd if=/dev/urandom of="$mnt/keep" bs=64K count=64 status=none      # 4 MiB
dd if=/dev/urandom of="$mnt/zeroed" bs=64K count=32 status=none    # 2 MiB
sync
dd if=/dev/zero of="$mnt/zeroed" bs=64K count=32 conv=notrunc,fsync status=none
keep=$(sha256 "$mnt/keep")
umount "$mnt"
e2fsck -fn "$dev" || fail "e2fsck before reclaim"
want=$(sha256 "$dev")
exc=$(snap_exceptions "$dev" 8)
layered_remove e3 "$base" "$cow"
log "$exc exceptions"

if ! pending_cowpunch reclaim; then
	before=$(blocks "$cow")
	data=$(data_sectors "$cow")
	cowpunch reclaim --json "$cow" >"$OUT/reclaim.json"
	cat "$OUT/reclaim.json"
	after=$(blocks "$cow")
	zero=$(json_get "$OUT/reclaim.json" .zero_chunks)
	log "st_blocks $before -> $after, zero chunks $zero"
	[ "$zero" -ge 512 ] || fail "zero_chunks $zero < 512 (the zeroed 2 MiB file)"
	assert_punched "$cow" "$data" "$before" $((zero * 4096)) "$OUT/reclaim.json"
fi

dev=$(layered_create e3 "$base" "$cow" "$sectors" 8)
assert_eq "$exc" "$(snap_exceptions "$dev" 8)" "exceptions after re-attach"
assert_eq "$want" "$(sha256 "$dev")" "overlay sha256 after re-attach"
e2fsck -fn "$dev" || fail "e2fsck after reclaim"
mount -t ext4 -o ro "$dev" "$mnt"
assert_eq "$keep" "$(sha256 "$mnt/keep")" "sha256 of the kept file"
assert_eq "$(dd if=/dev/zero bs=64K count=32 status=none | sha256sum | cut -d' ' -f1)" \
	"$(sha256 "$mnt/zeroed")" "sha256 of the zeroed file"
umount "$mnt"
layered_remove e3 "$base" "$cow"
finish
