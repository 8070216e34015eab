# bench/lib.sh: what the benchmarks share (sourced by bench/*-vs-dig-holes, not run).
#
#   bench_need TOOL...          exits 1 when a tool is missing
#   bench_fs_setup BYTES        sets $base, the directory to work in, from BENCH_FS:
#                                 host     BENCH_DIR (default /var/tmp) as it is
#                                 scratch  a fresh ext4 of BYTES bytes in an image file under
#                                          BENCH_DIR: default features (journal), made with
#                                          -E nodiscard, attached with `losetup --direct-io=on`
#                                          (the loop device does not cache the backing file a
#                                          second time, so drop_caches makes cold runs cold),
#                                          mounted with default options (no `discard`: Debian's
#                                          default, where a periodic fstrim does the discards);
#                                          needs root.  SCRATCH_FS=xfs or btrfs makes that
#                                          file system instead (mkfs defaults: XFS with
#                                          reflink), the rest the same
#                               and sets $cold to 1 when caches can be dropped (root), else 0.
#                               Everything is removed again on exit ($dir, mount, loop, image).
#   bench_workdir BINARY...     makes $dir under $base and copies the binaries into $dir/bin (a
#                               rebuild during a run must not change what is timed); prints the
#                               machine, the file system (journal, discard), date and load
#   bench_prepare MODE FILE     warm: reads FILE into the page cache; cold: sync, drop caches;
#                               on the scratch fs either way its journal emptied first
#                               (fsfreeze: see bench_settle_journal)
#   bench_read_floor MODE FILE  fio's runtime in seconds for reading FILE sequentially in 1 MiB
#                               blocks: cold with O_DIRECT at queue depth 16 (io_uring), warm
#                               through the page cache (psync, --invalidate=0)
#   median                      the median of the numbers on stdin
#   col TOOL MODE N             field N of the "TOOL MODE ..." lines of $dir/results
#   bytes SIZE                  SIZE with a binary suffix (2G) in bytes

bytes() { numfmt --from=iec "$1"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v t="$1" -v m="$2" -v c="$3" '$1==t && $2==m {print $c}' "$dir/results"; }

bench_need() {
	local t
	for t in "$@"; do
		[ -x "$t" ] || command -v "$t" >/dev/null ||
			{ echo "bench: $t missing (make; scripts/deps.sh bench)" >&2; exit 1; }
	done
}

scratch_img= scratch_loop= scratch_mnt= dir=
bench_cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	# Interrupted between the two fsfreeze calls, the scratch fs would stay frozen: rm would hang.
	[ -n "$scratch_mnt" ] && { fsfreeze -u "$scratch_mnt" 2>/dev/null || true; }
	[ -n "$dir" ] && rm -rf "$dir"
	if [ -n "$scratch_mnt" ]; then
		umount "$scratch_mnt" 2>/dev/null || umount -l "$scratch_mnt" || true
		rmdir "$scratch_mnt" || true
	fi
	[ -n "$scratch_loop" ] && { losetup -d "$scratch_loop" || true; }
	[ -n "$scratch_img" ] && rm -f "$scratch_img"
	exit "$rc"
}

bench_fs_setup() {
	local scratch_bytes=$1
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	cold=1
	if [ "$(id -u)" -ne 0 ] || ! (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
		echo "bench: cannot drop caches (need root): cold runs skipped" >&2
		cold=0
	fi
	BENCH_FS=${BENCH_FS:-host}
	case $BENCH_FS in
	host) base=${BENCH_DIR:-/var/tmp} ;;
	scratch)
		[ "$(id -u)" -eq 0 ] || { echo "bench: BENCH_FS=scratch needs root (losetup, mount)" >&2; exit 1; }
		SCRATCH_FS=${SCRATCH_FS:-ext4}
		case $SCRATCH_FS in
		ext4 | xfs | btrfs) ;;
		*) echo "bench: SCRATCH_FS must be ext4, xfs or btrfs, not '$SCRATCH_FS'" >&2; exit 1 ;;
		esac
		bench_need "mkfs.$SCRATCH_FS" losetup mount umount fsfreeze
		scratch_img=$(mktemp "${BENCH_DIR:-/var/tmp}/cowpunch-scratch.XXXXXX.img")
		truncate -s "$scratch_bytes" "$scratch_img"
		# Each mkfs's defaults (ext4: a journal; XFS: reflink on) and no `discard` mount
		# option: the Debian default.  -K/nodiscard: mkfs does not discard the image.
		case $SCRATCH_FS in
		ext4) mkfs.ext4 -q -F -E nodiscard "$scratch_img" ;;
		xfs) mkfs.xfs -q -f -K "$scratch_img" ;;
		btrfs) mkfs.btrfs -q -f -K "$scratch_img" >/dev/null ;;
		esac
		scratch_loop=$(losetup --find --show --direct-io=on "$scratch_img")
		scratch_mnt=$(mktemp -d /tmp/cowpunch-scratch-mnt.XXXXXX)
		mount -t "$SCRATCH_FS" "$scratch_loop" "$scratch_mnt"
		base=$scratch_mnt
		local opts=
		[ "$SCRATCH_FS" != ext4 ] ||
			opts="; ext4 options: $(tr '\n' ',' <"/proc/fs/ext4/${scratch_loop#/dev/}/options" 2>/dev/null)"
		echo "bench: scratch $SCRATCH_FS of $scratch_bytes bytes in $scratch_img on $scratch_loop" \
			"(direct-io $(cat "/sys/block/${scratch_loop#/dev/}/loop/dio" 2>/dev/null || echo ?))," \
			"mounted on $scratch_mnt$opts"
		;;
	*) echo "bench: BENCH_FS must be host or scratch, not '$BENCH_FS'" >&2; exit 1 ;;
	esac
}

bench_workdir() {
	local src_dev journal
	dir=$(mktemp -d "$base/cowpunch-bench.XXXXXX")
	mkdir "$dir/bin"
	cp "$@" "$dir/bin/"
	echo "bench: machine: $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM"
	echo "bench: file system of $dir ($BENCH_FS): $(findmnt -no FSTYPE,SOURCE,OPTIONS -T "$dir")"
	src_dev=$(findmnt -no SOURCE -T "$dir")
	src_dev=${src_dev#/dev/}
	if [ -r "/proc/fs/ext4/$src_dev/options" ]; then
		# A journalled ext4 has a jbd2 thread, /proc/fs/jbd2/DEV-INO.
		journal=no
		compgen -G "/proc/fs/jbd2/$src_dev-*" >/dev/null && journal=yes
		echo "bench: ext4 on $src_dev: journal $journal, $(grep -qx discard "/proc/fs/ext4/$src_dev/options" && echo "mounted discard" || echo "no discard")"
	fi
	echo "bench: date: $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# On the scratch ext4, writes back and checkpoints its journal (freezing a file system
# flushes the journal: jbd2_journal_flush), so that every timed run starts with it empty.
# Left as the previous run, the copy and the removal left it, the first thousands of
# punches of a run could find the journal nearly full and wait for a checkpoint: warm
# punch runs of the scattered store then took 0.35-0.97 s (sys 0.52-1.34 s, up to 36k
# voluntary context switches), and 0.39-0.41 s in ten runs after a flush each.  Not on
# the host file system: it has no journal here, and freezing / would stall the machine.
# A scratch XFS or btrfs is frozen too: that writes back XFS's log, commits btrfs's transaction.
bench_settle_journal() {
	[ -n "$scratch_mnt" ] || return 0
	fsfreeze -f "$scratch_mnt"
	fsfreeze -u "$scratch_mnt"
}

bench_prepare() {
	if [ "$1" = cold ]; then
		sync
		bench_settle_journal
		echo 3 >/proc/sys/vm/drop_caches
	else
		cat "$2" >/dev/null
		bench_settle_journal
	fi
}

# bench_time FILE CMD...: runs CMD (stdin and stdout as the caller gives them) and writes
# "SECONDS PEAK_RSS_KIB" to FILE.  The wall time is taken from bash's $EPOCHREALTIME, to the
# millisecond: /usr/bin/time's %e moves in 10 ms steps, 3% of a 0.35 s warm run, too coarse
# to tell 5%.  The peak RSS is /usr/bin/time's %M.  Returns CMD's status.
bench_time() {
	local out=$1 t0 t1 rc=0
	shift
	t0=$EPOCHREALTIME
	/usr/bin/time -f "%M" -o "$out.rss" "$@" || rc=$?
	t1=$EPOCHREALTIME
	echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') $(tail -1 "$out.rss")" >"$out"
	return "$rc"
}

bench_read_floor() {
	local direct=1 engine=io_uring ms
	[ "$1" = warm ] && direct=0 engine=psync
	fio --name=read --filename="$2" --rw=read --bs=1M --iodepth=16 --ioengine=$engine \
		--direct=$direct --invalidate=0 --output-format=json --output="$dir/fio.json" >/dev/null
	ms=$(jq '.jobs[0].read.runtime' "$dir/fio.json")
	awk -v ms="$ms" 'BEGIN {printf "%.3f", ms / 1000}'
}
