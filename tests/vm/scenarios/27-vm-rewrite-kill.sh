# A rewrite killed at any point leaves the old COW or the new one, each a valid store the VM
# reads the same, and the next run removes the temp file.  strace delivers SIGKILL on entering
# the Nth call of: pwrite64 (the first write to the temp file, and the last), fsync 1 (the
# temp file's: after every write), rename 1 (the temp file over the COW: after its fsync),
# fsync 2 (the directory's: after the rename) and fsync 3 (the record's: after the directory's
# fsync), each time on a fresh copy of the same COW.  After each kill: inspect finds the store
# valid and attach reads the disk with its sha256 unchanged; then a complete rewrite leaves no
# temp file, the same disk, and the allocation an uninterrupted rewrite leaves.
need_cowpunch create attach detach reclaim inspect
cowpunch reclaim --help | grep -q -- --strategy || fail "this cowpunch has no reclaim --strategy"
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img
make_base_image "$base" 8
dev=$(cowpunch create vm1 --base "$base" --size 32M)
# Random data, then zeros over parts of it: runs and scattered single chunks.
dd if=/dev/urandom of="$dev" bs=1M count=12 oflag=direct status=none
dd if=/dev/zero of="$dev" bs=1M seek=1 count=2 oflag=direct status=none
i=0
while [ $i -lt 100 ]; do
	dd if=/dev/zero of="$dev" bs=4096 seek=$((1024 + i * 13)) count=1 oflag=direct \
		conv=notrunc status=none
	i=$((i + 1))
done
want=$(sha256 "$dev")
cowpunch detach vm1
cow=$COWPUNCH_STATE_DIR/vm1/cow
tmp=$COWPUNCH_STATE_DIR/vm1/.cow.cowpunch-rewrite
keep_pristine_cow

# Reference: an uninterrupted rewrite, traced for the number of writes to the temp file.
fresh
strace -f -qq -y -e trace=pwrite64,fsync,rename -o "$TMPWORK/trace" \
	cowpunch reclaim --strategy rewrite --json vm1 >"$OUT/rewrite-full.json" || fail "rewrite"
full_blocks=$(blocks "$cow")
writes=$(grep -c 'pwrite64(.*cowpunch-rewrite>' "$TMPWORK/trace" || true)
log "uninterrupted: $(json_get "$OUT/rewrite-full.json" .strategy)," \
	"$(json_get "$OUT/rewrite-full.json" .zero_chunks) zero chunks," \
	"$(json_get "$OUT/rewrite-full.json" .bytes_written) bytes in $writes writes," \
	"COW now $full_blocks blocks; $(grep -c 'fsync(' "$TMPWORK/trace") fsync calls"
assert_eq rewrite "$(json_get "$OUT/rewrite-full.json" .strategy)" "strategy"
[ "$writes" -ge 2 ] || fail "too few writes to the temp file: $writes"
[ ! -e "$tmp" ] || fail "an uninterrupted rewrite left $tmp"
check "after an uninterrupted rewrite"

for point in pwrite64:1 pwrite64:$writes fsync:1 rename:1 fsync:2 fsync:3; do
	sc=${point%:*} n=${point#*:}
	fresh
	ino=$(stat -c %i "$cow")
	rc=0
	strace -f -qq -o /dev/null -e trace="$sc" -e inject="$sc":signal=KILL:when="$n" \
		cowpunch reclaim --strategy rewrite vm1 >/dev/null 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || fail "rewrite was not killed before $sc call $n"
	if [ "$(stat -c %i "$cow")" = "$ino" ]; then what="the old COW"; else what="the new COW"; fi
	log "killed before $sc call $n: $what at the path, temp file $([ -e "$tmp" ] && echo left || echo gone)"
	case $point in
	pwrite64:* | fsync:1 | rename:1) [ "$what" = "the old COW" ] || fail "$point: the COW was replaced" ;;
	*) [ "$what" = "the new COW" ] || fail "$point: the COW was not replaced" ;;
	esac
	check "killed before $sc call $n"
	cowpunch reclaim --strategy rewrite vm1 >/dev/null || fail "rewrite after a kill before $sc $n"
	[ ! -e "$tmp" ] || fail "the run after a kill before $sc $n left $tmp"
	assert_eq "$full_blocks" "$(blocks "$cow")" "killed before $sc $n, rewritten again: blocks"
	check "complete rewrite after a kill before $sc call $n"
done
log "all checks passed"
