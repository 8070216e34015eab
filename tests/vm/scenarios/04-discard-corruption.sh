# The discard corruption (docs/kernel-facts.md): with discard_zeroes_cow, a discard that is not aligned to
# the chunk size is passed down to the COW device at the remapped offset without being cut at the
# chunk boundary, so it zeroes the start of the NEXT COW chunk.
#   A. The next COW chunk is data of an unrelated origin chunk: that chunk's bytes change.
#   B. The next COW chunk is a metadata area: its first entries are zeroed, the kernel loses
#      every exception after them on re-attach, and `cowpunch inspect` must report the store as
#      damaged (exit 3), and `cowpunch reclaim` must refuse it without writing a byte.
# The scenario fails if the kernel no longer corrupts: then docs/kernel-facts.md needs updating.
# The disks are made by `cowpunch create --unsafe-discard` (--discard without the self-test
# verdict that refuses it here; 4 KiB chunks, discard_zeroes_cow): the risk
# that option's warning names, shown on the table cowpunch really builds.
need_cowpunch create attach detach inspect reclaim
export COWPUNCH_STATE_DIR=$WORK/state
C=4096
chunk_sha() { dd if="$1" bs=$C skip="$2" count=1 status=none | sha256sum | cut -d' ' -f1; }
zero_sha=$(dd if=/dev/zero bs=1024 count=1 status=none | sha256sum | cut -d' ' -f1)
base=$WORK/base.img
make_base_image "$base" 4

# --- A: data damage ----------------------------------------------------------------------
cow=$COWPUNCH_STATE_DIR/da/cow
dev=$(cowpunch create da --base "$base" --size 4M --unsafe-discard)
dmsetup table overlay-da | grep -q " P 8 1 discard_zeroes_cow$" || fail "overlay-da: no discard_zeroes_cow"
# dm devices have no /sys/block/NAME: find the queue by major:minor.
mm=$(dmsetup info -c --noheadings -o major,minor overlay-da | tr -d ' ')
log "discard_granularity $(cat "/sys/dev/block/$mm/queue/discard_granularity" 2>/dev/null || echo ?)"
for c in 101 100 500; do write_chunk "$dev" $c $C; done # COW chunks 2, 3, 4
dd if="$dev" of="$TMPWORK/before" bs=$C count=1024 status=none
/usr/sbin/blkdiscard -f -o $((100 * C + 3072)) -l 2048 "$dev"
dd if="$dev" of="$TMPWORK/after" bs=$C count=1024 status=none
cowpunch detach da
changed=$(cmp -l "$TMPWORK/before" "$TMPWORK/after" | awk '{ print int(($1 - 1) / 4096) }' | uniq -c |
	awk '{ printf "origin chunk %s: %s bytes; ", $2, $1 }')
log "bytes changed by the discard of origin bytes $((100 * C + 3072))..+2048: $changed"
echo "$changed" >"$OUT/a-changed.txt"
# The discarded range of chunk 100 reads zeros (that is discard), chunk 101 is untouched,
# chunk 500 (the next COW chunk) must not change -- but does, on affected kernels.
assert_eq "$(dd if="$TMPWORK/before" bs=$C skip=101 count=1 status=none | sha256sum | cut -d' ' -f1)" \
	"$(chunk_sha "$TMPWORK/after" 101)" "origin chunk 101 (before the discard in COW order)"
if [ "$(chunk_sha "$TMPWORK/before" 500)" = "$(chunk_sha "$TMPWORK/after" 500)" ]; then
	fail "origin chunk 500 unchanged: this kernel ($KERNEL) no longer shows the discard corruption"
fi
assert_eq "$zero_sha" "$(dd if="$TMPWORK/after" bs=1024 skip=2000 count=1 status=none | sha256sum | cut -d' ' -f1)" \
	"first KiB of origin chunk 500 after the discard (zeroed by the bug)"
assert_eq "$(dd if="$TMPWORK/before" bs=1024 skip=2001 count=3 status=none | sha256sum | cut -d' ' -f1)" \
	"$(dd if="$TMPWORK/after" bs=1024 skip=2001 count=3 status=none | sha256sum | cut -d' ' -f1)" \
	"rest of origin chunk 500"
log "A: reproduced: an unaligned discard in origin chunk 100 zeroed 1 KiB of origin chunk 500"

# --- B: metadata damage ---------------------------------------------------------------------
# 356 chunks written in order: origin 0..255 -> COW 2..257 (area 0 full), metadata area 1 at
# COW chunk 258, origin 256..355 -> COW 259..358 (100 entries in area 1).  A discard of the last
# 2 KiB-1 KiB of origin chunk 255 (COW 257) spills into the first KiB of area 1: entries 0..63.
cow=$COWPUNCH_STATE_DIR/db/cow
dev=$(cowpunch create db --base "$base" --size 4M --unsafe-discard)
dd if=/dev/urandom of="$dev" bs=$C count=356 oflag=direct conv=notrunc status=none
sync
want=$(sha256 "$dev")
assert_eq 356 "$(snap_exceptions "$dev" 8)" "exceptions before the discard"
/usr/sbin/blkdiscard -f -o $((255 * C + 3072)) -l 2048 "$dev"
expect=$(dd if="$dev" bs=$C count=1024 status=none | sha256sum | cut -d' ' -f1) # what the VM saw
cowpunch detach db
assert_eq "255 257" "$(area_entry "$cow" $C 1 255)" "area 0, last entry (origin -> COW)"
assert_eq "0 0" "$(area_entry "$cow" $C 258 0)" "area 1, entry 0 after the discard (zeroed)"
assert_eq "0 0" "$(area_entry "$cow" $C 258 63)" "area 1, entry 63 after the discard (zeroed)"
assert_eq "320 323" "$(area_entry "$cow" $C 258 64)" "area 1, entry 64 after the discard (intact)"
log "B: reproduced: the discard zeroed entries 0..63 of metadata area 1; entries 64..99 remain"
cp "$cow" "$TMPWORK/cow-b.orig"
if ! pending_cowpunch inspect; then
	assert_rc 3 cowpunch inspect "$cow"
	rc=0
	cowpunch inspect --json "$cow" >"$OUT/inspect.json" 2>"$OUT/inspect.err" || rc=$?
	assert_eq 3 "$rc" "inspect --json exit status"
	log "inspect says: $(cat "$OUT/inspect.err")"
	# The first damaged byte: area 1 (chunk 258), entry 64 -- the reason must name its offset.
	grep -q "$((258 * C + 64 * 16))" "$OUT/inspect.err" ||
		fail "inspect's reason does not name offset $((258 * C + 64 * 16))"
fi
if ! pending_cowpunch reclaim; then
	blk=$(blocks "$cow")
	assert_rc 3 cowpunch reclaim "$cow"
	assert_rc 3 cowpunch reclaim db
	assert_eq "$blk" "$(blocks "$cow")" "st_blocks after the refused reclaim"
	cmp "$cow" "$TMPWORK/cow-b.orig" || fail "reclaim changed a refused store"
fi
# What the kernel makes of it: area 1 ends at its first entry, its 100 exceptions are lost and
# origin chunks 256..355 read the base again, not what the VM wrote.
dev=$(cowpunch attach db)
assert_eq 256 "$(snap_exceptions "$dev" 8)" "exceptions the kernel loads from the damaged store"
got=$(sha256 "$dev")
assert_ne "$expect" "$got" "overlay after re-attach (writes lost)"
assert_eq "$(dd if="$base" bs=$C skip=256 count=100 status=none | sha256sum | cut -d' ' -f1)" \
	"$(dd if="$dev" bs=$C skip=256 count=100 status=none | sha256sum | cut -d' ' -f1)" \
	"origin chunks 256..355 after re-attach (base data: the written data is lost)"
cowpunch detach db
[ "$want" != "$expect" ] || fail "the discard changed nothing visible"
finish
