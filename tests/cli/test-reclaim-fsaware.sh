#!/usr/bin/env bash
# cowpunch reclaim --fs-aware on a store the kernel would hold after a guest wrote
# a big file and deleted it (images built with mkfs.ext4 -d and debugfs, never mounted).
# Checks real outcomes: st_blocks, the exported disk's e2fsck and file bytes, exit codes,
# and that refusals leave the COW byte for byte as it was.
set -u
for t in mkfs.ext4 debugfs e2fsck jq sha256sum; do
	command -v $t >/dev/null || { echo "FAIL: $t is missing (scripts/deps.sh test installs it)"; exit 1; }
done
tool=$BUILD_DIR/tests/tools/fsimgstore
[ -x "$tool" ] || { echo "fail: $tool not built"; exit 1; }
T=$(mktemp -d /var/tmp/cowpunch-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$T/src/sub"
head -c 300000 /dev/urandom >"$T/src/keep1"
head -c 1200000 /dev/urandom >"$T/src/sub/keep2"
head -c $((24 << 20)) /dev/urandom >"$T/big"
head -c 500000 /dev/urandom >"$T/keep3"
SIZE=$((64 << 20))
BIG=$((24 << 20))
mkfs.ext4 -q -F -b 4096 -O metadata_csum,64bit,flex_bg -d "$T/src" "$T/base" 64M >/dev/null 2>&1 ||
	fail "mkfs.ext4"
cp "$T/base" "$T/guest"
debugfs -w -R "write $T/big big" "$T/guest" >/dev/null 2>&1
debugfs -w -R "write $T/keep3 keep3" "$T/guest" >/dev/null 2>&1
debugfs -w -R "rm big" "$T/guest" >/dev/null 2>&1
"$tool" diff "$T/base" "$T/guest" "$T/cow" >"$T/diff.json" || fail "fsimgstore diff"
[ "$(jq .exceptions "$T/diff.json")" -gt 6000 ] || fail "the guest's writes are not in the store"

blocks() { stat -c %b "$1"; }
sum() { sha256sum <"$1" | cut -d' ' -f1; }

# Usage errors.
"$COWPUNCH" reclaim --fs-aware "$T/cow" >/dev/null 2>&1; [ $? -eq 2 ] || fail "--fs-aware alone: want 2"
"$COWPUNCH" reclaim --base "$T/base" --size 64M "$T/cow" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--base without --fs-aware: want 2"
"$COWPUNCH" reclaim --fs-aware --base "$T/base" --size 1000 "$T/cow" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--size 1000: want 2"
"$COWPUNCH" reclaim --fs-aware --base "$T/nobase" --size 64M "$T/cow" >/dev/null 2>&1
[ $? -eq 1 ] || fail "missing base: want 1"

# Refused: mounted and not frozen (journal needs recovery); superblock checksum broken;
# errors recorded in s_state; s_state not clean (mounted while it needed e2fsck).
cp "$T/guest" "$T/guest-r"
debugfs -w -R "feature needs_recovery" "$T/guest-r" >/dev/null 2>&1
cp "$T/guest" "$T/guest-s"
printf '\x5a' | dd of="$T/guest-s" bs=1 seek=$((1024 + 0x30)) conv=notrunc status=none
cp "$T/guest" "$T/guest-e"
debugfs -w -R "ssv state 3" "$T/guest-e" >/dev/null 2>&1
cp "$T/guest" "$T/guest-v"
debugfs -w -R "ssv state 0" "$T/guest-v" >/dev/null 2>&1
for g in r s e v; do
	"$tool" diff "$T/base" "$T/guest-$g" "$T/cow-$g" >/dev/null || fail "fsimgstore diff $g"
	b=$(blocks "$T/cow-$g") h=$(sum "$T/cow-$g")
	"$COWPUNCH" reclaim --fs-aware --base "$T/base" --size $SIZE --json "$T/cow-$g" \
		>"$T/out-$g.json" 2>"$T/err-$g"
	rc=$?
	[ $rc -eq 5 ] || fail "guest-$g: exit $rc, want 5 ($(cat "$T/err-$g"))"
	[ "$(jq -r .fs_aware.status "$T/out-$g.json")" = refused ] || fail "guest-$g: status"
	[ "$(blocks "$T/cow-$g")" = "$b" ] || fail "guest-$g: st_blocks changed"
	[ "$(sum "$T/cow-$g")" = "$h" ] || fail "guest-$g: bytes changed"
done

# --base without a VM record: nothing vouches for the base, so a wrong one must not free a
# block the guest uses.  The guest rewrote keep1 in place (no metadata changed: its chunks
# are exceptions, the bitmaps still the base's); a fresh file system of the same geometry
# has keep1's blocks free.  Only bitmaps the guest wrote count: nothing is punched.
cp "$T/base" "$T/guest-w"
for blk in $(debugfs -R "blocks keep1" "$T/base" 2>/dev/null); do
	dd if=/dev/urandom of="$T/guest-w" bs=4096 seek="$blk" count=1 conv=notrunc status=none
done
"$tool" diff "$T/base" "$T/guest-w" "$T/cow-w" >"$T/diff-w.json" || fail "fsimgstore diff w"
[ "$(jq .exceptions "$T/diff-w.json")" -ge 70 ] || fail "keep1's rewrite is not in the store"
mkfs.ext4 -q -F -b 4096 -O metadata_csum,64bit,flex_bg "$T/wrong" 64M >/dev/null 2>&1 ||
	fail "mkfs.ext4 wrong"
b=$(blocks "$T/cow-w") h=$(sum "$T/cow-w")
"$COWPUNCH" reclaim --fs-aware --base "$T/wrong" --size $SIZE --json "$T/cow-w" >"$T/w.json" ||
	fail "wrong base: exit $?"
[ "$(blocks "$T/cow-w")" = "$b" ] && [ "$(sum "$T/cow-w")" = "$h" ] ||
	fail "a wrong --base freed blocks the guest rewrote"
[ "$(jq .fs_free_chunks "$T/w.json")" = 0 ] || fail "wrong base: fs_free_chunks"
[ "$(jq .fs_aware.base_verified "$T/w.json")" = false ] || fail "wrong base: base_verified"
[ "$(jq .fs_aware.unverified_chunks "$T/w.json")" -ge 70 ] || fail "wrong base: unverified_chunks"

# The base's size must fit the disk: a whole number of sectors, no larger than --size (exit 3).
cp "$T/cow-w" "$T/cow-z"
b=$(blocks "$T/cow-z") h=$(sum "$T/cow-z")
cp "$T/base" "$T/base-odd"
printf 'x' >>"$T/base-odd"
"$COWPUNCH" reclaim --fs-aware --base "$T/base-odd" --size $SIZE "$T/cow-z" >/dev/null 2>&1
[ $? -eq 3 ] || fail "base not a multiple of 512: want 3"
"$COWPUNCH" reclaim --fs-aware --base "$T/base" --size 48M "$T/cow-z" >/dev/null 2>&1
[ $? -eq 3 ] || fail "base larger than --size: want 3"
[ "$(blocks "$T/cow-z")" = "$b" ] && [ "$(sum "$T/cow-z")" = "$h" ] || fail "base size: wrote"

# A store that does not fit the disk size: invalid (exit 3), nothing written.
b=$(blocks "$T/cow") h=$(sum "$T/cow")
"$COWPUNCH" reclaim --fs-aware --base "$T/base" --size 1M "$T/cow" >/dev/null 2>&1
[ $? -eq 3 ] || fail "--size 1M: want 3"

# Dry run: counts, writes nothing.
"$COWPUNCH" reclaim --dry-run --fs-aware --base "$T/base" --size $SIZE --json "$T/cow" \
	>"$T/dry.json" || fail "dry run exit $?"
[ "$(blocks "$T/cow")" = "$b" ] && [ "$(sum "$T/cow")" = "$h" ] || fail "dry run wrote"
[ "$(jq .fs_free_chunks "$T/dry.json")" -gt 0 ] || fail "dry run found no free chunk"

# The real thing.
"$COWPUNCH" reclaim --fs-aware --base "$T/base" --size $SIZE --json "$T/cow" >"$T/run.json" ||
	fail "reclaim exit $?"
after=$(blocks "$T/cow")
dropped=$(((b - after) * 512))
[ $dropped -ge $((BIG * 95 / 100)) ] || fail "st_blocks dropped by $dropped bytes, file was $BIG"
[ "$(jq -r .fs_aware.status "$T/run.json")" = done ] || fail "status not done"
[ "$(jq .fs_aware.fs_block_size "$T/run.json")" = 4096 ] || fail "fs_block_size"
[ "$(jq .reclaimed_bytes "$T/run.json")" = $dropped ] || fail "reclaimed_bytes vs st_blocks"
[ $(($(jq .fs_free_chunks "$T/run.json") * 4096)) -ge $((BIG * 95 / 100)) ] ||
	fail "fs_free_chunks too small"
[ "$(jq .fs_aware.bytes_read "$T/run.json")" -lt $((1 << 20)) ] || fail "read more than metadata"

"$tool" export "$T/cow" "$T/base" $SIZE "$T/disk" || fail "export"
e2fsck -fn "$T/disk" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "e2fsck -fn not clean"; }
for f in keep1:src/keep1 sub/keep2:src/sub/keep2 keep3:keep3; do
	rm -f "$T/dumped"
	debugfs -R "dump /${f%%:*} $T/dumped" "$T/disk" >/dev/null 2>&1
	[ "$(sum "$T/dumped")" = "$(sum "$T/${f#*:}")" ] || fail "${f%%:*} changed"
done

# Human output, second run: nothing left to punch, still exit 0.
"$COWPUNCH" reclaim --fs-aware --base "$T/base" --size 64M "$T/cow" >/dev/null || fail "rerun"
[ "$(blocks "$T/cow")" = "$after" ] || fail "rerun changed st_blocks"
echo "ok: reclaimed $dropped bytes of a $BIG-byte deleted file"
