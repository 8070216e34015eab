# The layered setup (README, dm-facts.md section 2): base = linear over a read-only loop of a
# base image + zero tail; overlay = snapshot P 8 over a loop of a sparse COW.  Write through the
# overlay (base area, zero tail, partial chunks; enough exceptions for three metadata areas), tear
# down, read the kernel-written store with `cowpunch inspect`, which must count the exceptions
# `dmsetup status` implied, then recreate: the whole overlay must read the same.
base=$WORK/base.img cow=$WORK/cow
make_base_image "$base" 16
truncate -s 32M "$cow"
sectors=$((24 * 2048)) # 24 MiB: 16 MiB base + 8 MiB zero tail
dev=$(layered_create l1 "$base" "$cow" "$sectors" 8)
assert_eq "$(sha256 "$base")" "$(dd if="$dev" bs=1M count=16 status=none | sha256sum | cut -d' ' -f1)" \
	"overlay over the base area before any write"

# 300 chunks at the start, 200 in the zero tail, 100 scattered, 3 partial-chunk writes.
dd if=/dev/urandom of="$dev" bs=4096 seek=0 count=300 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of="$dev" bs=4096 seek=$((20 * 256)) count=200 oflag=direct conv=notrunc status=none
i=0
while [ $i -lt 100 ]; do
	write_chunk "$dev" $((400 + i * 37)) 4096
	i=$((i + 1))
done
dd if=/dev/urandom of="$dev" bs=512 seek=$((2000 * 8 + 3)) count=1 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of="$dev" bs=512 seek=$((5800 * 8 + 7)) count=1 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of="$dev" bs=512 seek=$((301 * 8)) count=2 oflag=direct conv=notrunc status=none
sync
want=$(sha256 "$dev")
exc=$(snap_exceptions "$dev" 8)
log "dmsetup status: $(dmsetup status "overlay-l1") -> $exc exceptions"
assert_eq 603 "$exc" "exceptions the kernel reports"
layered_remove l1 "$base" "$cow"

if ! pending_cowpunch inspect; then
	cowpunch inspect "$cow"
	cowpunch inspect --json "$cow" >"$OUT/inspect.json"
	cat "$OUT/inspect.json"
	assert_eq true "$(json_get "$OUT/inspect.json" .valid)" "inspect valid"
	assert_eq 1 "$(json_get "$OUT/inspect.json" .version)" "inspect version"
	assert_eq 4096 "$(json_get "$OUT/inspect.json" .chunk_bytes)" "inspect chunk_bytes"
	assert_eq "$exc" "$(json_get "$OUT/inspect.json" .exceptions)" "inspect exceptions"
	assert_eq "$(file_size "$cow")" "$(json_get "$OUT/inspect.json" .file_size)" "inspect file_size"
	assert_eq $(($(blocks "$cow") * 512)) "$(json_get "$OUT/inspect.json" .allocated_bytes)" \
		"inspect allocated_bytes"
	# 603 exceptions fill areas 0 and 1 (256 each) and part of area 2: 2 + 603 + 3 chunks used,
	# the last data chunk is 2 + 603 + 2 - 1 = 606 (metadata chunks 1, 258, 515), next free 607.
	assert_eq 3 "$(json_get "$OUT/inspect.json" .metadata_areas)" "inspect metadata_areas"
	assert_eq 607 "$(json_get "$OUT/inspect.json" .next_free_chunk)" "inspect next_free_chunk"
fi

dev=$(layered_create l1 "$base" "$cow" "$sectors" 8)
assert_eq "$exc" "$(snap_exceptions "$dev" 8)" "exceptions after re-attach"
assert_eq "$want" "$(sha256 "$dev")" "overlay sha256 after re-attach"
layered_remove l1 "$base" "$cow"
finish
