# The discard corruption as it happens in practice (docs/kernel-facts.md): ext4 with 1 KiB blocks (mke2fs's
# default below 512 MiB) on a discard_zeroes_cow overlay with 4 KiB chunks; the guest deletes
# files and runs fstrim.  Its discards are 1 KiB-aligned, so some spill into the next COW chunk.
# Whether the spill hits a metadata area depends on the layout and the kernel (seen: 6.12 damages
# area 1 here, 6.1 damages only data chunks), so this scenario checks cowpunch against an
# independent reading of the raw store rather than expecting damage (04 is the deterministic
# demonstration).  On the detached store:
#   - a scan of the raw metadata areas with od: exceptions up to the first entry with
#     new_chunk 0, and any non-zero entry after it (the damage the bug leaves);
#   - damaged: `cowpunch inspect` exits 3 and `cowpunch reclaim` refuses it without changing a
#     byte; undamaged: inspect exits 0 and counts what the scan and the kernel count.
C=4096
base=$WORK/base.img cow=$WORK/cow mnt=$TMPWORK/mnt
truncate -s 64M "$base"
mkfs_ext4 -q -F -b 1024 -E lazy_itable_init=0,lazy_journal_init=0 "$base"
truncate -s 96M "$cow"
dev=$(layered_create t5 "$base" "$cow" $((64 * 2048)) 8 discard_zeroes_cow)
mkdir -p "$mnt"
mount -t ext4 "$dev" "$mnt"
i=0
while [ $i -lt 300 ]; do
	dd if=/dev/urandom of="$mnt/f$i" bs=1K count=$((1 + i % 13)) status=none
	i=$((i + 1))
done
sync
i=0
while [ $i -lt 300 ]; do
	[ $((i % 3)) = 0 ] || rm "$mnt/f$i"
	i=$((i + 1))
done
sync
fstrim -v "$mnt"
umount "$mnt"
layered_remove t5 "$base" "$cow"

# Independent scan: for each area, entries up to the terminator; any non-zero byte after it.
epa=$((C / 16))
area=0
damaged=""
total=0
while :; do
	ac=$((1 + area * (epa + 1)))
	[ $((ac * C)) -lt "$(file_size "$cow")" ] || break
	od -A n -t u8 -v -j $((ac * C)) -N $C "$cow" | awk '{ print $1, $2 }' >"$TMPWORK/area"
	n=$(awk '$2 == 0 { print NR - 1; exit }' "$TMPWORK/area")
	n=${n:-$epa}
	total=$((total + n))
	if [ "$n" -lt "$epa" ]; then
		after=$(awk -v n="$n" 'NR > n + 1 && ($1 != 0 || $2 != 0) { c++ } END { print c + 0 }' "$TMPWORK/area")
		[ "$after" = 0 ] || damaged="$damaged area $area: $after non-zero entries after entry $n;"
		break
	fi
	area=$((area + 1))
done
log "raw scan: $total exceptions up to the first terminator (area $area);${damaged:- no damage}"
echo "${damaged:-none}" >"$OUT/damage.txt"

cp "$cow" "$TMPWORK/cow.orig"
if [ -z "$damaged" ]; then
	if ! pending_cowpunch inspect; then
		cowpunch inspect --json "$cow" >"$OUT/inspect.json"
		assert_eq "$total" "$(json_get "$OUT/inspect.json" .exceptions)" "inspect exceptions (raw scan)"
	fi
elif ! pending_cowpunch inspect; then
	assert_rc 3 cowpunch inspect "$cow"
fi
if [ -n "$damaged" ] && ! pending_cowpunch reclaim; then
	blk=$(blocks "$cow")
	assert_rc 3 cowpunch reclaim "$cow"
	assert_eq "$blk" "$(blocks "$cow")" "st_blocks after the refused reclaim"
	cmp "$cow" "$TMPWORK/cow.orig" || fail "reclaim changed a refused store"
fi
# What the guest gets back: the kernel loads only what precedes the damage.
dev=$(layered_create t5 "$base" "$cow" $((64 * 2048)) 8)
assert_eq "$total" "$(snap_exceptions "$dev" 8)" "exceptions the kernel loads (raw scan)"
e2fsck -fn "$dev" >"$OUT/e2fsck.txt" 2>&1 && fsck=0 || fsck=$?
tail -n 5 "$OUT/e2fsck.txt"
log "e2fsck -fn exit $fsck (damage: ${damaged:-none})"
layered_remove t5 "$base" "$cow"
finish
