# The layered setup (README, docs/kernel-facts.md), built by `cowpunch create`: base = linear over
# a read-only loop of a base image + zero tail; overlay = snapshot P 8 over a loop of the sparse
# COW.  Write through the overlay (base area, zero tail, partial chunks; enough exceptions for
# three metadata areas), `cowpunch detach`, read the kernel-written store with `cowpunch inspect`,
# which must count the exceptions the kernel's snapshot status implied (read both through
# `cowpunch status --json` and, independently, `dmsetup status`), then `cowpunch attach`: the
# whole overlay must read the same.
need_cowpunch create attach detach status inspect
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img cow=$COWPUNCH_STATE_DIR/l1/cow
make_base_image "$base" 16
dev=$(cowpunch create l1 --base "$base" --size 24M) # 16 MiB base + 8 MiB zero tail
assert_eq /dev/mapper/overlay-l1 "$dev" "create prints the device"
dmsetup table base-l1 | tail -1 | grep -q " zero" || fail "base-l1 tail is not zero"
dmsetup table overlay-l1 | grep -q " snapshot .* P 8$" || fail "overlay-l1 not 'snapshot P 8'"
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
exc=$(vm_exceptions l1)
log "dmsetup status: $(dmsetup status "overlay-l1")"
assert_eq "$(snap_exceptions "$dev" 8)" "$exc" "exceptions from status --json (= dmsetup status)"
assert_eq 603 "$exc" "exceptions the kernel reports"
cowpunch detach l1
[ ! -e "$dev" ] || fail "$dev still there after detach"
assert_eq "" "$(losetup -j "$cow" -O NAME -n)" "no loop on the COW after detach"

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

dev=$(cowpunch attach l1)
assert_eq "$exc" "$(vm_exceptions l1)" "exceptions after re-attach (status --json)"
assert_eq "$exc" "$(snap_exceptions "$dev" 8)" "exceptions after re-attach (dmsetup status)"
assert_eq "$want" "$(sha256 "$dev")" "overlay sha256 after re-attach"
cowpunch detach l1
finish
