# A full COW with a persistent (P) store (docs/format.md, docs/kernel-facts.md): the kernel marks the snapshot
# invalid, rewrites the header with valid = 0, and every I/O fails.  The store it leaves must be
# refused by `cowpunch inspect` and `reclaim` (exit 3) without a byte changing, and the kernel
# itself must refuse to use it again (the snapshot loads but stays Invalid).
C=4096
base=$WORK/base.img cow=$WORK/cow
make_base_image "$base" 4
truncate -s 256K "$cow" # 64 chunks: header, one area, 62 data chunks
dev=$(layered_create o7 "$base" "$cow" 8192 8)
dd if=/dev/urandom of="$dev" bs=$C count=100 oflag=direct conv=notrunc status=none 2>"$TMPWORK/dd.err" &&
	fail "writing 100 chunks into a 62-chunk COW succeeded"
log "dd: $(tail -n1 "$TMPWORK/dd.err")"
st=$(dmsetup status overlay-o7)
log "status: $st"
case $st in *Invalid*) ;; *) fail "snapshot not Invalid after overflow: $st" ;; esac
layered_remove o7 "$base" "$cow"
assert_eq "$((0x70416e53)) 0 1 8" "$(od -A n -t u4 -N 16 "$cow" | awk '{ print $1, $2, $3, $4 }')" \
	"header after overflow (magic, valid = 0, version, chunk)"
cp "$cow" "$TMPWORK/cow.orig"
if ! pending_cowpunch inspect; then
	rc=0
	cowpunch inspect "$cow" 2>"$OUT/inspect.err" || rc=$?
	cat "$OUT/inspect.err"
	assert_eq 3 "$rc" "inspect exit status on an invalidated store"
fi
if ! pending_cowpunch reclaim; then
	assert_rc 3 cowpunch reclaim "$cow"
	cmp "$cow" "$TMPWORK/cow.orig" || fail "reclaim changed a refused store"
fi
dev=$(layered_create o7 "$base" "$cow" 8192 8)
st=$(dmsetup status overlay-o7)
case $st in *Invalid*) log "ok: the kernel keeps it Invalid: $st" ;; *) fail "re-attached invalid store: $st" ;; esac
layered_remove o7 "$base" "$cow"
finish
