# A guest that writes every byte of its disk must not overflow the COW store (which would turn
# the snapshot Invalid for good): the COW file is sized with LVM2's formula.  Checked with the
# default 4 KiB chunks and with 64 KiB chunks, then read back after detach and attach.
need_cowpunch create attach detach
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img
make_base_image "$base" 4
for chunk in 4K 64K; do
	id=fill$chunk
	dev=$(cowpunch create "$id" --base "$base" --size 12M --chunk-size $chunk)
	# Every byte, base area and tail: 12 MiB of random data.
	dd if=/dev/urandom of="$TMPWORK/data" bs=1M count=12 status=none
	dd if="$TMPWORK/data" of="$dev" bs=1M oflag=direct conv=notrunc status=none ||
		fail "$id: writing the whole disk failed"
	sync
	st=$(dmsetup status "overlay-$id")
	log "$id status: $st"
	case $st in *Invalid* | *Overflow*) fail "$id: snapshot overflowed: $st" ;; esac
	assert_eq "$(sha256 "$TMPWORK/data")" "$(sha256 "$dev")" "$id: reads what was written"
	cowpunch status "$id" --json >"$OUT/$id.json"
	assert_eq valid "$(json_get "$OUT/$id.json" .snapshot.state)" "$id: status says valid"
	cowpunch detach "$id"
	dev=$(cowpunch attach "$id")
	assert_eq "$(sha256 "$TMPWORK/data")" "$(sha256 "$dev")" "$id: same data after re-attach"
	cowpunch detach "$id"
done
log "all checks passed"
