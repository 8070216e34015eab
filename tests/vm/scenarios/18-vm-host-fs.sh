# The COW file on the other host file systems a Firecracker host may use: XFS, btrfs and
# tmpfs (ext4 is everywhere else).  On each: create a VM whose state directory (and so its
# COW file) is there, write 4 MiB of random data and 4 MiB that is then zeroed, detach,
# reclaim by ID, attach: exactly the 1024 zeroed chunks are punched, st_blocks drops by the
# 4 MiB, so does the file system's used space (df), and the disk reads the same (sha256 of
# the whole device).  Whether the file system takes O_DIRECT is logged (tmpfs on 6.1 does
# not: the loop device falls back to buffered I/O).  The first reclaim reads through the
# page cache (the default), the second with --direct-reads (the direct scan, or its
# buffered fallback on tmpfs under 6.1); both must leave the disk reading the same.
need_cowpunch create detach attach destroy reclaim
base=$WORK/base.img
make_base_image "$base" 8

for fs in xfs btrfs tmpfs; do
	mnt=$TMPWORK/host-$fs
	mkdir -p "$mnt"
	loop=
	case $fs in
	tmpfs) mount -t tmpfs -o size=160m tmpfs "$mnt" || fail "mount tmpfs" ;;
	*)
		img=$WORK/host-$fs.img
		truncate -s 320M "$img"
		"/usr/sbin/mkfs.$fs" -q "$img" >/dev/null 2>&1 || "/usr/sbin/mkfs.$fs" -f "$img" ||
			fail "mkfs.$fs"
		loop=$(losetup -f --show "$img") || fail "losetup $img"
		mount -t "$fs" "$loop" "$mnt" || fail "mount $fs"
		;;
	esac
	if dd if=/dev/zero of="$mnt/odirect-probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
		log "$fs: O_DIRECT accepted"
	else
		log "$fs: O_DIRECT refused: reclaim reads through the page cache"
	fi
	rm -f "$mnt/odirect-probe"
	export COWPUNCH_STATE_DIR=$mnt/state
	id=h-$fs
	dev=$(cowpunch create "$id" --base "$base" --size 32M) || fail "$fs: create"
	dd if=/dev/urandom of="$dev" bs=1M seek=4 count=4 oflag=direct status=none || fail "$fs: write"
	dd if=/dev/urandom of="$dev" bs=1M seek=16 count=4 oflag=direct status=none || fail "$fs: write"
	dd if=/dev/zero of="$dev" bs=1M seek=16 count=4 oflag=direct conv=fsync status=none ||
		fail "$fs: zero"
	want=$(sha256 "$dev")
	assert_rc 0 cowpunch detach "$id"
	cow=$COWPUNCH_STATE_DIR/$id/cow
	before=$(($(blocks "$cow") * 512))
	sync
	used_before=$(df -k "$mnt" | awk 'NR == 2 {print $3}')
	cowpunch reclaim --json "$id" >"$OUT/reclaim-$fs.json" || fail "$fs: reclaim exited $?"
	after=$(($(blocks "$cow") * 512))
	sync
	used_after=$(df -k "$mnt" | awk 'NR == 2 {print $3}')
	assert_eq false "$(json_get "$OUT/reclaim-$fs.json" .direct_reads)" "$fs: the scan read buffered"
	log "$fs: engine $(json_get "$OUT/reclaim-$fs.json" .engine), COW allocated $before -> $after," \
		"file system used $used_before -> $used_after KiB"
	assert_eq 1024 "$(json_get "$OUT/reclaim-$fs.json" .zero_chunks)" "$fs: zero chunks found"
	assert_eq $((before - after)) "$(json_get "$OUT/reclaim-$fs.json" .reclaimed_bytes)" \
		"$fs: reclaimed_bytes = st_blocks drop"
	[ $((before - after)) -ge $((4 * 1024 * 1024)) ] ||
		fail "$fs: reclaim gave back $((before - after)) bytes, less than the 4 MiB zeroed"
	# And the file system has the space back (btrfs: once the transaction commits; here the
	# zeroed range was rewritten, so its extents are wholly unreferenced and freed).
	[ $((used_before - used_after)) -ge 3840 ] ||
		fail "$fs: the file system's used space fell by $((used_before - used_after)) KiB only"
	dev=$(cowpunch attach "$id") || fail "$fs: attach"
	assert_eq "$want" "$(sha256 "$dev")" "$fs: the disk reads the same after reclaim"
	# Zeros written in one piece with data (not a rewrite): 2 MiB random, 4 MiB zero, 2 MiB
	# random in one 8 MiB write.  The file system's used space is logged, not asserted: it
	# depends on how the file system laid out the extents (btrfs, docs/reclaim.md).
	dd if=/dev/urandom of="$TMPWORK/mixed" bs=1M count=8 status=none
	dd if=/dev/zero of="$TMPWORK/mixed" bs=1M seek=2 count=4 conv=notrunc status=none
	dd if="$TMPWORK/mixed" of="$dev" bs=8M seek=3 count=1 oflag=direct conv=fsync status=none ||
		fail "$fs: mixed write"
	rm -f "$TMPWORK/mixed"
	want=$(sha256 "$dev")
	assert_rc 0 cowpunch detach "$id"
	sync
	used_before=$(df -k "$mnt" | awk 'NR == 2 {print $3}')
	cowpunch reclaim --direct-reads --json "$id" >"$OUT/reclaim-mixed-$fs.json" ||
		fail "$fs: reclaim --direct-reads exited $?"
	sync
	used_after=$(df -k "$mnt" | awk 'NR == 2 {print $3}')
	log "$fs, zeros written with data: $(json_get "$OUT/reclaim-mixed-$fs.json" .zero_chunks)" \
		"zero chunks, reclaimed_bytes $(json_get "$OUT/reclaim-mixed-$fs.json" .reclaimed_bytes)," \
		"file system used $used_before -> $used_after KiB"
	assert_eq 1024 "$(json_get "$OUT/reclaim-mixed-$fs.json" .zero_chunks)" "$fs: mixed zero chunks"
	dev=$(cowpunch attach "$id") || fail "$fs: attach"
	assert_eq "$want" "$(sha256 "$dev")" "$fs: the disk reads the same after the second reclaim"
	assert_rc 0 cowpunch destroy "$id"
	umount "$mnt" || fail "umount $fs"
	[ -z "$loop" ] || losetup -d "$loop"
done
log "all checks passed"
