#!/usr/bin/env bash
# Full and read-only file systems under the state directory (a small tmpfs, root only):
# - full: create fails with the reason (exit 1) and leaves nothing; set cannot save its record
#   (exit 1) and the record keeps every byte; reclaim, which only frees space, still gives back
#   every zero chunk, the bytes read unchanged, and records its result.
# - read-only (remounted ro): status and list still read (exit 0); create, set, reclaim of a VM
#   or of a COW file, and sparsify fail (exit 1) naming the file, with every byte and block of
#   the COW and of the record unchanged.
set -u
: "${COWPUNCH:?}" "${BUILD_DIR:?}"
MKSTORE=$BUILD_DIR/tests/tools/mkstore
. "$(dirname "$0")/lib.sh"
require "$MKSTORE" jq
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: needs root (mounts a tmpfs)"
	exit 77
fi
mnt=$dir/mnt
mkdir -p "$mnt"
mount -t tmpfs -o size=8m,mode=0755 cowpunch-test "$mnt" || {
	echo "SKIP: cannot mount a tmpfs here"
	exit 77
}
cleanup_hooks+=('umount "$mnt"')
export COWPUNCH_STATE_DIR=$mnt/state

# vm1: a record as create writes it (no device-mapper needed) and a COW of 64 written-zero
# chunks and 16 data chunks.
truncate -s 4M "$dir/base.img"
mkdir -p "$COWPUNCH_STATE_DIR/vm1"
"$MKSTORE" "$COWPUNCH_STATE_DIR/vm1/cow" add=0,64,1 add=100,16,0 size=$(((1 + 2048 + 9) * 4096)) \
	>/dev/null || fail "mkstore"
jq -n --arg base "$dir/base.img" --arg fp "$(printf '0%.0s' $(seq 64))" \
	--argjson mt "$(($(stat -c %Y "$dir/base.img") * 1000000000))" '{
	version: 1, id: "vm1",
	base: { path: $base, size: 4194304, dev: 1, ino: 2, mtime_ns: $mt, sha256_sampled: $fp },
	virtual_size: 8388608, chunk_size: 4096, cow_size: 8429568, options: { discard: false },
	created: "2026-11-27T10:00:00Z", attached: null, detached: null, last_reclaim: null }' \
	>"$COWPUNCH_STATE_DIR/vm1/vm.json"
rec=$COWPUNCH_STATE_DIR/vm1/vm.json
cow=$COWPUNCH_STATE_DIR/vm1/cow
cp "$cow" "$dir/cow.copy"
expect_rc 0 "$COWPUNCH" status vm1

# --- full
dd if=/dev/zero of="$mnt/filler" bs=64k 2>/dev/null
[ "$(df --output=avail -B1 "$mnt" | tail -1)" -lt 4096 ] || fail "the tmpfs is not full"
expect_rc 1 "$COWPUNCH" create vm2 --base "$dir/base.img" --size 8M
grep -q "No space left on device" "$dir/err" || fail "full: create does not say why: $(cat "$dir/err")"
[ ! -e "$COWPUNCH_STATE_DIR/vm2" ] || fail "full: a failed create left $(ls -A "$COWPUNCH_STATE_DIR/vm2")"
r=$(state "$rec")
expect_rc 1 "$COWPUNCH" set vm1 --mem-file "$dir/mem"
grep -q "vm1/vm.json.*No space left on device" "$dir/err" ||
	fail "full: set does not name the record and the reason: $(cat "$dir/err")"
[ "$(state "$rec")" = "$r" ] || fail "full: a failed set changed the record"
[ -z "$(find "$COWPUNCH_STATE_DIR/vm1" -name 'vm.json.tmp*')" ] || fail "full: set left a temp record"
s=$(sha256sum <"$cow")
before=$(stat -c %b "$cow")
expect_rc 0 "$COWPUNCH" reclaim --json vm1
jq_is .zero_chunks 64
[ "$(sha256sum <"$cow")" = "$s" ] || fail "full: reclaim changed the COW's bytes"
[ $(((before - $(stat -c %b "$cow")) * 512)) -eq $((64 * 4096)) ] ||
	fail "full: reclaim freed $(((before - $(stat -c %b "$cow")) * 512)) bytes, want $((64 * 4096))"
[ "$(jq -r .last_reclaim.exit_code "$rec")" = 0 ] || fail "full: the reclaim is not recorded"
rm -f "$mnt/filler"

# --- read-only: a fresh COW with its zero chunks, then the mount made read-only
cp "$dir/cow.copy" "$cow"
mount -o remount,ro "$mnt" || fail "remount ro"
c=$(state "$cow")
r=$(state "$rec")
expect_rc 0 "$COWPUNCH" status vm1
expect_rc 0 "$COWPUNCH" list
expect_rc 0 "$COWPUNCH" inspect "$cow"
expect_rc 1 "$COWPUNCH" create vm3 --base "$dir/base.img" --size 8M
grep -q "Read-only file system" "$dir/err" || fail "ro: create does not say why: $(cat "$dir/err")"
expect_rc 1 "$COWPUNCH" set vm1 --mem-file "$dir/mem"
grep -q "Read-only file system" "$dir/err" || fail "ro: set does not say why: $(cat "$dir/err")"
expect_rc 1 "$COWPUNCH" reclaim vm1
grep -q "Read-only file system" "$dir/err" || fail "ro: reclaim ID does not say why: $(cat "$dir/err")"
expect_rc 1 "$COWPUNCH" reclaim "$cow"
grep -q "$cow: .*Read-only file system" "$dir/err" ||
	fail "ro: reclaim FILE does not name it and the reason: $(cat "$dir/err")"
expect_rc 1 "$COWPUNCH" sparsify "$cow"
grep -q "$cow: .*Read-only file system" "$dir/err" ||
	fail "ro: sparsify does not name the file and the reason: $(cat "$dir/err")"
[ "$(state "$cow")" = "$c" ] || fail "ro: the COW changed"
[ "$(state "$rec")" = "$r" ] || fail "ro: the record changed"
[ ! -e "$COWPUNCH_STATE_DIR/vm3" ] || fail "ro: create left something"
mount -o remount,rw "$mnt"
finish faults
