# shellcheck shell=sh
# Library for tests/vm/scenarios/*.sh, sourced by the guest /init before each scenario, which then
# runs under `set -e` in busybox ash.  Documented in docs/testing.md.
#
# Environment given to every scenario:
#   SCENARIO  its name (NN-name)        KERNEL   uname -r of the guest
#   WORK      scratch dir on the ext4 data disk (emptied before and after the scenario)
#   TMPWORK   scratch dir on a guest tmpfs (256 MiB shared)
#   IN        host-made inputs: a copy of tests/vm/scenarios/NN-name.d/ (may be empty)
#   OUT       files left here come back to the host in build/vm/KERNEL/out/NN-name/
# The data disk is ext4 with 4 KiB blocks, so COW files there behave like on a host.

# Busybox ash runs its own applets before searching $PATH; these call the real tools.
dmsetup() { /usr/sbin/dmsetup "$@"; }
losetup() { /usr/sbin/losetup "$@"; }
blkdiscard() { /usr/sbin/blkdiscard "$@"; }
blockdev() { /usr/sbin/blockdev "$@"; }
fsfreeze() { /usr/sbin/fsfreeze "$@"; }
fstrim() { /usr/sbin/fstrim "$@"; }
mkfs_ext4() { /usr/sbin/mke2fs -t ext4 "$@"; }
e2fsck() { /usr/sbin/e2fsck "$@"; }
debugfs() { /usr/sbin/debugfs "$@"; }
dumpe2fs() { /usr/sbin/dumpe2fs "$@"; }
fallocate() { /usr/bin/fallocate "$@"; }
sha256sum() { /usr/bin/sha256sum "$@"; }
truncate() { /usr/bin/truncate "$@"; }
stat() { /usr/bin/stat "$@"; }
dd() { /usr/bin/dd "$@"; }
cmp() { /usr/bin/cmp "$@"; }
od() { /usr/bin/od "$@"; }

export DM_DISABLE_UDEV=1

log() { echo "[$SCENARIO] $*"; }

# fail MSG: the scenario fails with MSG.
fail() {
	echo "[$SCENARIO] FAIL: $*" >&2
	exit 1
}

# skip REASON: the scenario is reported as skipped, with REASON.  Only for a real inability to
# run (say, a kernel without a feature); never to hide a failure.
skip() {
	echo "[$SCENARIO] SKIP: $*"
	exit 77
}

# assert_eq EXPECTED ACTUAL WHAT
assert_eq() {
	[ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
	log "ok: $3 = $2"
}

# assert_ne UNEXPECTED ACTUAL WHAT
assert_ne() {
	[ "$1" != "$2" ] || fail "$3: must not be '$1'"
	log "ok: $3 = $2 (not $1)"
}

# assert_rc EXPECTED_EXIT CMD ARGS...: runs CMD (its output shown), checks its exit status.
assert_rc() {
	_want=$1
	shift
	_rc=0
	"$@" || _rc=$?
	[ "$_rc" = "$_want" ] || fail "'$*' exited $_rc, expected $_want"
	log "ok: '$*' exited $_rc"
}

# sha256 PATH: hex sha256 of a file or a whole block device.
sha256() { sha256sum "$1" | cut -d' ' -f1; }

# blocks FILE: st_blocks (512-byte units) of FILE.
blocks() { stat -c %b "$1"; }

# data_sectors FILE: 512-byte sectors of data FILE has allocated, from FIEMAP (filefrag).  Unlike
# st_blocks this leaves out the file system's own blocks: ext4 counts extent-tree blocks in
# st_blocks, and punching holes can add one (the extent list splits), so a punch of N bytes may
# drop st_blocks by N - 4096.  Assert on both: data exactly, st_blocks within the extent blocks.
data_sectors() {
	/usr/sbin/filefrag -s -v -b512 "$1" | awk -F: '$1 ~ /^ *[0-9]+$/ { s += $4 } END { print s + 0 }'
}

# fs_meta_sectors FILE: st_blocks minus data_sectors: the file system's metadata for FILE.
fs_meta_sectors() { echo $(($(blocks "$1") - $(data_sectors "$1"))); }

# assert_punched FILE DATA_BEFORE BLOCKS_BEFORE BYTES RECLAIM_JSON: after a reclaim that should
# have freed BYTES, FILE's data dropped by exactly BYTES; st_blocks dropped by BYTES minus at most
# two new extent-tree blocks; the JSON's reclaimed_bytes equals the st_blocks drop.
assert_punched() {
	_dd=$((($2 - $(data_sectors "$1")) * 512))
	_bd=$((($3 - $(blocks "$1")) * 512))
	assert_eq "$4" "$_dd" "data bytes freed (FIEMAP)"
	[ "$_bd" -le "$4" ] && [ "$_bd" -ge $(($4 - 8192)) ] ||
		fail "st_blocks dropped by $_bd bytes; expected $4 less at most 2 extent blocks"
	log "ok: st_blocks dropped by $_bd bytes ($4 of data, $(($4 - _bd)) of new extent blocks)"
	assert_eq "$_bd" "$(json_get "$5" .reclaimed_bytes)" "reclaimed_bytes (= st_blocks drop)"
}

# file_size FILE: st_size in bytes.
file_size() { stat -c %s "$1"; }

# dev_sectors DEV: size of a block device in 512-byte sectors.
dev_sectors() { blockdev --getsz "$1"; }

# random_file PATH MIB: PATH filled with MIB MiB of random bytes.
random_file() { dd if=/dev/urandom of="$1" bs=1M count="$2" status=none; }

# make_base_image PATH MIB [ext4]: a base image of MIB MiB of random data, or with "ext4" an
# ext4 file system (4 KiB blocks) holding a few files of random data.
make_base_image() {
	if [ "${3:-}" = ext4 ]; then
		truncate -s "${2}M" "$1"
		mkdir -p "$TMPWORK/base-files"
		dd if=/dev/urandom of="$TMPWORK/base-files/a" bs=64K count=8 status=none
		dd if=/dev/urandom of="$TMPWORK/base-files/b" bs=64K count=3 status=none
		echo "base image of $SCENARIO" >"$TMPWORK/base-files/README"
		mkfs_ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 \
			-d "$TMPWORK/base-files" "$1"
		rm -rf "$TMPWORK/base-files"
	else
		random_file "$1" "$2"
	fi
}

# write_chunk DEV INDEX CHUNK_BYTES [SOURCE]: writes one chunk (O_DIRECT) at chunk INDEX from
# SOURCE (default /dev/urandom).
write_chunk() {
	dd if="${4:-/dev/urandom}" of="$1" bs="$3" seek="$2" count=1 oflag=direct conv=notrunc \
		status=none
}

# loop_attach FILE [ro]: attaches FILE to a free loop device, prints the device.
loop_attach() {
	if [ "${2:-}" = ro ]; then
		losetup -f --show -r "$1"
	else
		losetup -f --show "$1"
	fi
}

# loop_detach_file FILE: detaches every loop device backed by FILE.
loop_detach_file() {
	for _l in $(losetup -j "$1" -O NAME -n 2>/dev/null); do losetup -d "$_l"; done
}

# layered_create ID BASE_IMG COW_FILE OVERLAY_SECTORS [CHUNK_SECTORS [FEATURE...]]
# The project's layered disk (README, docs/kernel-facts.md):
#   base-ID    = linear over a read-only loop of BASE_IMG, then `zero` up to OVERLAY_SECTORS
#   overlay-ID = snapshot of base-ID, persistent store P on a loop of COW_FILE
# FEATURE args (e.g. discard_zeroes_cow) are appended as snapshot feature arguments.
# Prints /dev/mapper/overlay-ID.  COW_FILE must exist (a sparse file from truncate).
layered_create() {
	_id=$1 _base=$2 _cow=$3 _osz=$4 _chunk=${5:-8}
	shift 4
	if [ $# -gt 0 ]; then shift; fi
	_bl=$(loop_attach "$_base" ro)
	_cl=$(loop_attach "$_cow")
	_bsz=$(dev_sectors "$_bl")
	if [ "$_osz" -gt "$_bsz" ]; then
		printf '0 %s linear %s 0\n%s %s zero\n' "$_bsz" "$_bl" "$_bsz" $((_osz - _bsz)) |
			dmsetup create "base-$_id" >&2
	else
		echo "0 $_osz linear $_bl 0" | dmsetup create "base-$_id" >&2
	fi
	_feat=""
	[ $# -eq 0 ] || _feat=" $# $*"
	echo "0 $_osz snapshot /dev/mapper/base-$_id $_cl P $_chunk$_feat" |
		dmsetup create "overlay-$_id" >&2
	echo "/dev/mapper/overlay-$_id"
}

# layered_remove ID BASE_IMG COW_FILE: removes overlay-ID and base-ID, detaches their loops.
layered_remove() {
	dmsetup remove "overlay-$1"
	dmsetup remove "base-$1"
	loop_detach_file "$3"
	loop_detach_file "$2"
}

# snap_status DEV: prints "ALLOC TOTAL META" (sectors) from `dmsetup status` of a snapshot;
# fails if the snapshot is Invalid or Overflow.
snap_status() {
	_s=$(dmsetup status "$1")
	case $_s in
	*snapshot\ */*) echo "$_s" | awk '{ split($4, a, "/"); print a[1], a[2], $5 }' ;;
	*) fail "snapshot $1 status: $_s" ;;
	esac
}

# snap_exceptions DEV CHUNK_SECTORS: exceptions the kernel holds, from `dmsetup status`:
# (alloc - meta) / chunk (alloc and meta both count the header and the metadata areas).
snap_exceptions() {
	snap_status "$1" | awk -v c="$2" '{ print ($1 - $3) / c }'
}

# fsaware_writes DEV MNT: the fs-aware scenarios' guest: mounts the ext4 on DEV at MNT, writes
# keep1 (2 MiB), big (12 MiB, synced), keep2 (1 MiB), deletes big and syncs; leaves it mounted.
# Sets k1, k2 and ka: sha256 of keep1, keep2 and the base image's file a.
fsaware_writes() {
	mount -t ext4 "$1" "$2"
	dd if=/dev/urandom of="$2/keep1" bs=64K count=32 status=none
	dd if=/dev/urandom of="$2/big" bs=1M count=12 status=none
	sync
	dd if=/dev/urandom of="$2/keep2" bs=64K count=16 status=none
	rm "$2/big"
	sync
	k1=$(sha256 "$2/keep1") k2=$(sha256 "$2/keep2") ka=$(sha256 "$2/a")
}

# fsaware_dropped NAME FILE BLOCKS_BEFORE JSON BYTES: after reclaim --fs-aware of FILE (its JSON
# output in JSON): fs_aware.status done, st_blocks dropped by >= 95% of BYTES (the deleted
# file), reclaimed_bytes = the drop.  Sets drop (bytes).
fsaware_dropped() {
	drop=$((($3 - $(blocks "$2")) * 512))
	log "$1: st_blocks $3 -> $(blocks "$2") ($drop bytes), deleted file $5 bytes"
	[ "$drop" -ge $(($5 * 95 / 100)) ] || fail "$1: st_blocks dropped by $drop < 95% of $5"
	assert_eq done "$(json_get "$4" .fs_aware.status)" "$1: fs_aware.status"
	assert_eq "$drop" "$(json_get "$4" .reclaimed_bytes)" "$1: reclaimed_bytes"
}

# fsaware_intact NAME DEV MNT: after the reclaim, DEV (the re-attached overlay) is e2fsck -fn
# clean and keep1, keep2 and a have the sha256 fsaware_writes saw; big stays deleted.
fsaware_intact() {
	e2fsck -fn "$2" || fail "$1: e2fsck -fn after reclaim"
	mount -t ext4 -o ro "$2" "$3"
	assert_eq "$k1" "$(sha256 "$3/keep1")" "$1: sha256 of keep1"
	assert_eq "$k2" "$(sha256 "$3/keep2")" "$1: sha256 of keep2"
	assert_eq "$ka" "$(sha256 "$3/a")" "$1: sha256 of the base's file a"
	[ ! -e "$3/big" ] || fail "$1: the deleted file came back"
	umount "$3"
}

# json_get JSON_FILE JQ_PATH: one value from a JSON file (jq -r).
json_get() { /usr/bin/jq -r "$2" "$1"; }

# vm_exceptions ID: exceptions the kernel holds for the attached VM ID, from the snapshot status
# `cowpunch status --json` reports (libdm's dm_get_status_snapshot): (allocated_bytes -
# metadata_bytes) / chunk_size.  Fails unless the snapshot is valid.  Compare with snap_exceptions,
# which reads `dmsetup status` independently.
vm_exceptions() {
	cowpunch status --json "$1" >"$TMPWORK/status-$1.json" || fail "cowpunch status $1 exited $?"
	[ "$(json_get "$TMPWORK/status-$1.json" .snapshot.state)" = valid ] ||
		fail "VM $1: snapshot not valid: $(cat "$TMPWORK/status-$1.json")"
	/usr/bin/jq -r '(.snapshot.allocated_bytes - .snapshot.metadata_bytes) / .chunk_size' \
		"$TMPWORK/status-$1.json"
}

# cowpunch_has SUBCOMMAND: true when build/cowpunch knows SUBCOMMAND.
cowpunch_has() { cowpunch "$1" --help >/dev/null 2>&1; }

# make_vm_with_data ID: creates VM ID (an 8 MiB disk over a 4 MiB random base, $base =
# $WORK/base.img), writes 100 random blocks through it, sets $want to the disk's sha256 and
# detaches it.  Needs COWPUNCH_STATE_DIR.
make_vm_with_data() {
	base=$WORK/base.img
	make_base_image "$base" 4
	_dev=$(cowpunch create "$1" --base "$base" --size 8M) || fail "create $1"
	dd if=/dev/urandom of="$_dev" bs=4096 count=100 seek=10 oflag=direct conv=notrunc \
		status=none || fail "write to $_dev"
	want=$(sha256 "$_dev")
	cowpunch detach "$1" || fail "detach $1"
}

# assert_no_devices WHEN: no dm device and no loop device is left (after WHEN).
assert_no_devices() {
	_dm=$(dmsetup ls | grep -v 'No devices found' || true)
	[ -z "$_dm" ] || fail "$1: dm devices left: $_dm"
	_lo=$(losetup -a)
	[ -z "$_lo" ] || fail "$1: loop devices left: $_lo"
	log "ok: no dm or loop device left after $1"
}

# need_cowpunch SUBCOMMAND...: fails the scenario when the build lacks a subcommand.  Every
# subcommand the scenarios use exists, so a missing one is a broken build, never a skip.
need_cowpunch() {
	for _c in "$@"; do
		cowpunch_has "$_c" || fail "cowpunch $_c is missing from this build"
	done
}

# area_entry COW CHUNK_BYTES AREA_CHUNK INDEX: prints "OLD NEW" of exception entry INDEX in the
# metadata area at chunk AREA_CHUNK (decimal, from the raw bytes: independent of cowpunch).
area_entry() {
	od -A n -t u8 -j $(($3 * $2 + $4 * 16)) -N 16 "$1" | awk '{ print $1, $2 }'
}

# pending_cowpunch SUBCOMMAND: false when SUBCOMMAND is built (the usual case), so the
# scenario runs its cowpunch checks:
#   if ! pending_cowpunch inspect; then ...checks with cowpunch inspect...; fi
# A missing subcommand fails the scenario: the scenarios were written while the subcommands
# were being built, and a skip would now hide a broken build.
pending_cowpunch() {
	cowpunch_has "$1" || fail "cowpunch $1 is missing from this build"
	return 1
}

# Kill tests over one detached VM, vm1, whose COW is $cow and whose disk reads with sha256
# $want (scenarios 22 and 27).  keep_pristine_cow saves $cow in full (dd, not sparse, so every
# copy has the same bytes and the same allocation, whatever the first one had); fresh puts it
# back; check WHAT fails unless inspect accepts the store and the disk still reads $want.
keep_pristine_cow() { dd if="$cow" of="$WORK/cow.orig" bs=1M status=none || fail "copy the COW"; }
fresh() { dd if="$WORK/cow.orig" of="$cow" bs=1M conv=fsync status=none || fail "restore the COW"; }
check() {
	cowpunch inspect "$cow" >/dev/null || fail "$1: inspect refuses the store"
	_d=$(cowpunch attach vm1) || fail "$1: attach"
	[ "$(sha256 "$_d")" = "$want" ] || fail "$1: the disk reads differently"
	cowpunch detach vm1 || fail "$1: detach"
}

# finish: end of a scenario.
finish() {
	log "all checks passed"
}

# disk_by_serial SERIAL: the /dev/vdX whose virtio serial is SERIAL (QEMU's -device ...,serial=).
disk_by_serial() {
	for _s in /sys/block/vd*/serial; do
		[ "$(cat "$_s" 2>/dev/null)" = "$1" ] || continue
		_s=${_s%/serial}
		echo "/dev/${_s##*/}"
		return 0
	done
	return 1
}
