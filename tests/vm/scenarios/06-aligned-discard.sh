# Chunk-aligned discards on a discard_zeroes_cow overlay (docs/kernel-facts.md): the kernel zeroes
# the COW chunks of whole discarded chunks -- on a file-backed loop that punches holes, so
# st_blocks drops by exactly the discarded bytes -- and keeps their exceptions.  The store stays
# valid: `cowpunch inspect` counts every exception and reports the holes, `cowpunch reclaim`
# skips them (nothing more to free) and the overlay reads zeros there, also after re-attach.
C=4096
base=$WORK/base.img cow=$WORK/cow
make_base_image "$base" 4
truncate -s 8M "$cow"
dev=$(layered_create a6 "$base" "$cow" 8192 8 discard_zeroes_cow)
dd if=/dev/urandom of="$dev" bs=$C seek=0 count=400 oflag=direct conv=notrunc status=none
sync
blk0=$(blocks "$cow")
data0=$(data_sectors "$cow")
# 64 whole chunks (100..163) and 10 more one by one (300, 302, ... 318).
/usr/sbin/blkdiscard -f -o $((100 * C)) -l $((64 * C)) "$dev"
i=300
while [ $i -lt 320 ]; do
	/usr/sbin/blkdiscard -f -o $((i * C)) -l $C "$dev"
	i=$((i + 2))
done
sync
holes=74
assert_eq 400 "$(snap_exceptions "$dev" 8)" "exceptions after the discards (kept)"
want=$(sha256 "$dev")
zero=$(dd if=/dev/zero bs=$C count=64 status=none | sha256sum | cut -d' ' -f1)
assert_eq "$zero" "$(dd if="$dev" bs=$C skip=100 count=64 status=none | sha256sum | cut -d' ' -f1)" \
	"discarded chunks read zeros"
layered_remove a6 "$base" "$cow"
assert_eq $((holes * C)) $(((data0 - $(data_sectors "$cow")) * 512)) "COW data freed by the discards"
log "st_blocks $blk0 -> $(blocks "$cow")"

if ! pending_cowpunch inspect; then
	cowpunch inspect --json "$cow" >"$OUT/inspect.json"
	assert_eq 400 "$(json_get "$OUT/inspect.json" .exceptions)" "inspect exceptions"
	assert_eq "$holes" "$(json_get "$OUT/inspect.json" .hole_chunks)" "inspect hole_chunks"
fi
if ! pending_cowpunch reclaim; then
	before=$(blocks "$cow")
	data=$(data_sectors "$cow")
	cowpunch reclaim --json "$cow" >"$OUT/reclaim.json"
	assert_eq 0 "$(json_get "$OUT/reclaim.json" .zero_chunks)" "reclaim zero_chunks (holes are not read)"
	assert_eq "$holes" "$(json_get "$OUT/reclaim.json" .hole_chunks)" "reclaim hole_chunks"
	assert_punched "$cow" "$data" "$before" 0 "$OUT/reclaim.json"
fi
dev=$(layered_create a6 "$base" "$cow" 8192 8)
assert_eq 400 "$(snap_exceptions "$dev" 8)" "exceptions after re-attach"
assert_eq "$want" "$(sha256 "$dev")" "overlay sha256 after re-attach"
layered_remove a6 "$base" "$cow"
finish
