# Zeroed data, on a VM made by `cowpunch create`: random data written through the overlay, part of
# it then overwritten with zeros (a run and scattered chunks), `cowpunch detach`, `cowpunch
# reclaim ID`: the COW file's data must drop by exactly the zeroed chunks (st_blocks too, less any
# new ext4 extent block), the store must stay valid with every exception, the record must hold the
# result, and after `cowpunch attach` the overlay must read the same.
need_cowpunch create attach detach status reclaim inspect
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img cow=$COWPUNCH_STATE_DIR/z2/cow
make_base_image "$base" 8
dev=$(cowpunch create z2 --base "$base" --size 16M) # 8 MiB base + 8 MiB zero tail

# 2048 chunks of random data from 4 MiB to 12 MiB (base area and zero tail).
dd if=/dev/urandom of="$dev" bs=4096 seek=1024 count=2048 oflag=direct conv=notrunc status=none
# Zeros: a run of 300 chunks, and every 7th chunk of 1500..2999 outside it (1024+ relative).
dd if=/dev/zero of="$dev" bs=4096 seek=1200 count=300 oflag=direct conv=notrunc status=none
zeroed=300
i=1500
while [ $i -lt 3000 ]; do
	write_chunk "$dev" "$i" 4096 /dev/zero
	zeroed=$((zeroed + 1))
	i=$((i + 7))
done
# A partly zeroed chunk is not a zero chunk: it must stay.
dd if=/dev/zero of="$dev" bs=512 seek=$((3001 * 8)) count=7 oflag=direct conv=notrunc status=none
sync
want=$(sha256 "$dev")
exc=$(vm_exceptions z2)
assert_eq "$(snap_exceptions "$dev" 8)" "$exc" "exceptions from status --json (= dmsetup status)"
assert_eq 2048 "$exc" "exceptions the kernel reports"
assert_rc 4 cowpunch reclaim z2 # attached: refused, untouched
cowpunch detach z2
log "$zeroed chunks zeroed of $exc"

before=$(blocks "$cow")
data=$(data_sectors "$cow")
cowpunch reclaim --dry-run --json z2 >"$OUT/dry-run.json"
assert_eq "$before" "$(blocks "$cow")" "st_blocks after --dry-run"
assert_eq "$zeroed" "$(json_get "$OUT/dry-run.json" .zero_chunks)" "dry-run zero_chunks"
cowpunch reclaim --json z2 >"$OUT/reclaim.json"
cat "$OUT/reclaim.json"
after=$(blocks "$cow")
log "st_blocks $before -> $after"
assert_eq "$exc" "$(json_get "$OUT/reclaim.json" .exceptions)" "reclaim exceptions"
assert_eq "$zeroed" "$(json_get "$OUT/reclaim.json" .zero_chunks)" "reclaim zero_chunks"
assert_punched "$cow" "$data" "$before" $((zeroed * 4096)) "$OUT/reclaim.json"
cowpunch status --json z2 >"$OUT/status.json"
assert_eq "$(json_get "$OUT/reclaim.json" .reclaimed_bytes)" \
	"$(json_get "$OUT/status.json" .last_reclaim.reclaimed_bytes)" "reclaim recorded in the VM record"
# A second run finds nothing left to punch.
cowpunch reclaim --json z2 >"$OUT/reclaim2.json"
assert_eq 0 "$(json_get "$OUT/reclaim2.json" .reclaimed_bytes)" "second reclaim reclaimed_bytes"
assert_eq "$after" "$(blocks "$cow")" "st_blocks after a second reclaim"
cowpunch inspect --json "$cow" >"$OUT/inspect.json"
assert_eq "$exc" "$(json_get "$OUT/inspect.json" .exceptions)" "inspect exceptions after reclaim"

dev=$(cowpunch attach z2)
assert_eq "$exc" "$(vm_exceptions z2)" "exceptions after re-attach (status --json)"
assert_eq "$exc" "$(snap_exceptions "$dev" 8)" "exceptions after re-attach (dmsetup status)"
assert_eq "$want" "$(sha256 "$dev")" "overlay sha256 after re-attach"
cowpunch detach z2
finish
