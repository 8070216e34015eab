# A reclaim killed part-way loses nothing: each punch only turns an all-zero chunk into a hole,
# so whatever subset reached the disk, the store is valid and the VM reads the same.  strace
# delivers SIGKILL on entering the Nth syscall of the kind that punches (fallocate for the
# sync engine, io_uring_enter for uring), for a spread of N across a whole run, each time on
# a fresh copy of the same COW file.  After each kill: inspect finds the store valid, attach
# reads the disk with its sha256 unchanged, and a second, complete reclaim leaves the COW
# with exactly the allocation an uninterrupted reclaim leaves.
need_cowpunch create attach detach reclaim inspect
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img
make_base_image "$base" 8
dev=$(cowpunch create vm1 --base "$base" --size 32M)
# Random data, then zeros over parts of it: runs and scattered single chunks.
dd if=/dev/urandom of="$dev" bs=1M count=16 oflag=direct status=none
dd if=/dev/zero of="$dev" bs=1M seek=1 count=3 oflag=direct status=none
dd if=/dev/zero of="$dev" bs=1M seek=5 count=2 oflag=direct status=none
i=0
while [ $i -lt 150 ]; do
	dd if=/dev/zero of="$dev" bs=4096 seek=$((2048 + i * 13)) count=1 oflag=direct \
		conv=notrunc status=none
	i=$((i + 1))
done
want=$(sha256 "$dev")
cowpunch detach vm1
cow=$COWPUNCH_STATE_DIR/vm1/cow
keep_pristine_cow

# Reference: an uninterrupted reclaim.
fresh
cowpunch reclaim --json vm1 >"$OUT/reclaim-full.json" || fail "reclaim"
full_blocks=$(blocks "$cow")
log "uninterrupted: $(json_get "$OUT/reclaim-full.json" .zero_chunks) zero chunks in" \
	"$(json_get "$OUT/reclaim-full.json" .punched_ranges) ranges, COW now $full_blocks blocks"
check "after an uninterrupted reclaim"

for engine in sync uring; do
	case $engine in
	sync) sc=fallocate ;;
	uring) sc=io_uring_enter ;;
	esac
	fresh
	strace -f -qq -e trace=$sc -o "$TMPWORK/trace" cowpunch reclaim --engine $engine vm1 \
		>/dev/null || fail "reclaim --engine $engine under strace"
	# Only the lines of that call: strace 6.1 also shows syscalls it has no name for (cachestat).
	# strace's inject when=N counts each thread's calls on their own, and auto's probes (16
	# punches in a temp file) run on a thread of their own: the points are the scanning
	# thread's calls, the most any one thread makes.
	total=$(grep "$sc(" "$TMPWORK/trace" | awk '{ n[$1]++ } END { m = 0; for (t in n) if (n[t] > m) m = n[t]; print m }')
	log "$engine: a whole reclaim makes $(grep -c "$sc(" "$TMPWORK/trace") $sc calls, $total on its busiest thread"
	[ "$total" -ge 4 ] || fail "$engine: too few $sc calls seen: $total"
	# The sync engine makes one fallocate per range, always the same number: every point is
	# reached.  uring's io_uring_enter count depends on when completions arrive, so its points
	# stay well inside a run, and a run that finishes first is logged, not failed.
	case $engine in
	sync) points="1 $((total / 2)) $total" ;;
	uring) points="1 $((total / 3)) $((total * 2 / 3))" ;;
	esac
	landed=0
	for n in $points; do
		[ "$n" -ge 1 ] || continue
		fresh
		rc=0
		strace -f -qq -o /dev/null -e trace=$sc -e inject=$sc:signal=KILL:when="$n" \
			cowpunch reclaim --engine $engine vm1 >/dev/null 2>&1 || rc=$?
		if [ "$rc" -ne 0 ]; then
			landed=$((landed + 1))
		elif [ $engine = sync ]; then
			fail "$engine: reclaim was not killed before $sc call $n"
		else
			log "$engine: this run finished before $sc call $n"
		fi
		left=$(blocks "$cow")
		check "$engine killed before $sc call $n of $total"
		cowpunch reclaim --engine $engine vm1 >/dev/null || fail "$engine: reclaim after kill $n"
		assert_eq "$full_blocks" "$(blocks "$cow")" \
			"$engine killed before $sc $n/$total ($left blocks then), reclaimed again: blocks"
		check "$engine: complete reclaim after a kill before $sc call $n"
	done
	[ "$landed" -ge 2 ] || fail "$engine: only $landed kills landed inside a reclaim"
done
log "all checks passed"
