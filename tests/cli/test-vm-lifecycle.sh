#!/usr/bin/env bash
# The VM lifecycle commands where no device-mapper is needed (the VM test bed covers the rest):
# --help of each, ID refusals (exit 2), list/status of records, damaged records (exit 3), the
# base identity check (exit 3, before any device is made), reclaim ID with its result recorded,
# and a create that cannot attach leaving nothing behind.
set -u
: "${COWPUNCH:?}" "${BUILD_DIR:?}"
MKSTORE=$BUILD_DIR/tests/tools/mkstore
. "$(dirname "$0")/lib.sh"
require "$MKSTORE" jq
export COWPUNCH_STATE_DIR=$dir/state
dm_loaded() { grep -qw device-mapper /proc/devices; }

for c in create attach detach destroy list status reclaim; do
	expect_rc 0 "$COWPUNCH" "$c" --help
	grep -q "^Usage: cowpunch $c" "$dir/out" || fail "$c --help has no usage line"
	grep -q "^Exit status:" "$dir/out" || fail "$c --help has no exit status"
done
expect_rc 0 "$COWPUNCH" create --help
grep -q -- "--discard" "$dir/out" || fail "create --help does not describe --discard"

# IDs.
truncate -s 4M "$dir/base.img"
for bad in "" "-x" ".x" "a/b" "a b" "$(printf 'x%.0s' $(seq 65))" "é"; do
	expect_rc 2 "$COWPUNCH" create --base "$dir/base.img" --size 8M -- "$bad"
	expect_rc 2 "$COWPUNCH" attach -- "$bad"
	expect_rc 2 "$COWPUNCH" status -- "$bad"
done
expect_rc 2 "$COWPUNCH" create vm1 --size 8M
expect_rc 2 "$COWPUNCH" create vm1 --base "$dir/base.img"
expect_rc 2 "$COWPUNCH" create vm1 --base "$dir/base.img" --size 2M
expect_rc 2 "$COWPUNCH" create vm1 --base "$dir/base.img" --size 8M --chunk-size 6K
expect_rc 2 "$COWPUNCH" create vm1 --base "$dir/base.img" --size 8194K
expect_rc 2 "$COWPUNCH" create vm1 --base "$dir/base.img" --size 8M --chunk-size 64K --discard
expect_rc 1 "$COWPUNCH" create vm1 --base "$dir/nonexistent" --size 8M
[ ! -e "$COWPUNCH_STATE_DIR/vm1" ] || fail "a refused create left $COWPUNCH_STATE_DIR/vm1"

# Empty state.
expect_rc 0 "$COWPUNCH" list --json
jq_is 'length' 0
expect_rc 0 "$COWPUNCH" list --state-dir "$dir/nowhere"
grep -q "^no VMs in $dir/nowhere\$" "$dir/out" || fail "empty list does not say so: $(cat "$dir/out")"
expect_rc 1 "$COWPUNCH" status vm1

# A record as create writes it, by hand (attach is not possible without device-mapper).
mkdir -p "$COWPUNCH_STATE_DIR/vm1"
"$MKSTORE" "$COWPUNCH_STATE_DIR/vm1/cow" add=0,64,1 add=100,16,0 size=$(((1 + 2048 + 9) * 4096)) \
	>/dev/null || fail "mkstore"
record() { # record FINGERPRINT
	jq -n --arg base "$dir/base.img" --arg fp "$1" --argjson size "$(stat -c %s "$dir/base.img")" \
		--argjson mt "$(($(stat -c %Y "$dir/base.img") * 1000000000))" '{
		version: 1, id: "vm1",
		base: { path: $base, size: $size, dev: 1, ino: 2, mtime_ns: $mt, sha256_sampled: $fp },
		virtual_size: 8388608, chunk_size: 4096, cow_size: 8429568,
		options: { discard: false },
		created: "2026-11-27T10:00:00Z", attached: null, detached: null, last_reclaim: null }'
}
record "$(printf '0%.0s' $(seq 64))" >"$COWPUNCH_STATE_DIR/vm1/vm.json"
expect_rc 0 "$COWPUNCH" status vm1 --json
jq_is .id vm1
jq_is .virtual_size 8388608
jq_is .cow_allocated $(($(stat -c %b "$COWPUNCH_STATE_DIR/vm1/cow") * 512))
jq_is .last_reclaim null
if ! dm_loaded; then jq_is .attached false; fi
expect_rc 0 "$COWPUNCH" list --json
jq_is '.[0].id' vm1
expect_rc 0 "$COWPUNCH" list
grep -q "^vm1 " "$dir/out" || fail "list text has no vm1 row"

# The base does not match the record: attach refuses before building anything (exit 3).
expect_rc 3 "$COWPUNCH" attach vm1
grep -q "base image changed" "$dir/err" || fail "attach refusal does not say why: $(cat "$dir/err")"
[ -z "$(losetup -j "$dir/base.img" 2>/dev/null)" ] || fail "refused attach left a loop on the base"

# reclaim ID: the 64 written-zero chunks go, the result lands in the record.
if dm_loaded; then
	echo "note: device-mapper is loaded here; reclaim ID is left to the VM scenarios"
else
	before=$(($(stat -c %b "$COWPUNCH_STATE_DIR/vm1/cow") * 512))
	expect_rc 0 "$COWPUNCH" reclaim --json vm1
	jq_is .zero_chunks 64
	after=$(($(stat -c %b "$COWPUNCH_STATE_DIR/vm1/cow") * 512))
	[ $((before - after)) -ge $((64 * 4096)) ] || fail "reclaim vm1 freed $((before - after)) bytes"
	expect_rc 0 "$COWPUNCH" status vm1 --json
	jq_is .last_reclaim.reclaimed_bytes $((before - after))
	jq_is .last_reclaim.exit_code 0
	expect_rc 0 "$COWPUNCH" status vm1
	grep -q "last reclaim: .* given back" "$dir/out" || fail "status text has no last reclaim"
	# The lock is shared with the other lifecycle commands.
	flock "$COWPUNCH_STATE_DIR/vm1/lock" "$COWPUNCH" reclaim vm1 >"$dir/out" 2>&1
	rc=$?
	[ $rc -eq 4 ] || fail "reclaim while the VM lock is held exited $rc, want 4"
	# A failed reclaim is recorded too: a damaged store (version 2) is refused, exit 3.
	"$MKSTORE" -a "$COWPUNCH_STATE_DIR/vm1/cow" header=0x70416e53,1,2,8 >/dev/null ||
		fail "mkstore header"
	expect_rc 3 "$COWPUNCH" reclaim vm1
	expect_rc 0 "$COWPUNCH" status vm1 --json
	jq_is .last_reclaim.exit_code 3
	jq_is .last_reclaim.reclaimed_bytes 0
fi

# Damaged records: refused with the file named (exit 3), in status, attach and list.
head -c 100 "$COWPUNCH_STATE_DIR/vm1/vm.json" >"$dir/cut" && mv "$dir/cut" "$COWPUNCH_STATE_DIR/vm1/vm.json"
expect_rc 3 "$COWPUNCH" status vm1
grep -q "vm1/vm.json: damaged record" "$dir/err" || fail "damaged record not named: $(cat "$dir/err")"
expect_rc 3 "$COWPUNCH" attach vm1
expect_rc 3 "$COWPUNCH" list
expect_rc 3 "$COWPUNCH" destroy vm1
[ -e "$COWPUNCH_STATE_DIR/vm1/cow" ] || fail "destroy of a damaged record deleted the COW"

# Without device-mapper, create fails at attach and undoes the record and the COW.
if ! dm_loaded; then
	expect_rc 1 "$COWPUNCH" create vm2 --base "$dir/base.img" --size 8M
	[ ! -e "$COWPUNCH_STATE_DIR/vm2" ] || fail "a failed create left $COWPUNCH_STATE_DIR/vm2"
	[ -z "$(losetup -j "$dir/base.img" 2>/dev/null)" ] || fail "a failed create left a loop"
fi

# destroy: the COW, the record, the lock and the folder go (no devices to remove here).
if ! dm_loaded; then
	mkdir -p "$COWPUNCH_STATE_DIR/vm3"
	record "$(printf '0%.0s' $(seq 64))" | sed 's/"vm1"/"vm3"/' >"$COWPUNCH_STATE_DIR/vm3/vm.json"
	"$MKSTORE" "$COWPUNCH_STATE_DIR/vm3/cow" add=0,4 >/dev/null || fail "mkstore vm3"
	expect_rc 0 "$COWPUNCH" destroy vm3
	[ ! -e "$COWPUNCH_STATE_DIR/vm3" ] || fail "destroy left $COWPUNCH_STATE_DIR/vm3"
	expect_rc 1 "$COWPUNCH" destroy vm3
fi

finish "vm lifecycle CLI"
