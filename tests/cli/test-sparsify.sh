#!/usr/bin/env bash
# cowpunch sparsify: usage (2), missing or not regular files (1), refusals (4: open for writing
# elsewhere, flock, loop device) with the file untouched, readers allowed; on a file written with
# known zero runs: sha256 unchanged, exactly the zero blocks freed (the ranges that turned from
# data into holes, and st_blocks), holes stay holes, the zero partial last block stays, every
# engine; JSON fields against what was written; several files and the highest exit status.
set -u
: "${BUILD_DIR:?}"
BENCHCOW=$BUILD_DIR/tests/tools/benchcow
. "$(dirname "$0")/lib.sh"
require "$BENCHCOW" jq flock sha256sum
holder=
cleanup_hooks+=('[ -n "$holder" ] && kill "$holder"')

# mkfile FILE: 64 KiB units D D Z Z H H Z D Z D (D random, Z written zeros, H never written),
# then 100 zero bytes: a partial last block.  4 KiB blocks: 64 zero blocks, 32 hole blocks,
# 128 blocks read; ranges [2, 7) (across the holes 4, 5) and [8, 9) in units.
unit=65536
mkfile() {
	local f=$1 i k
	: >"$f"
	i=0
	for k in D D Z Z H H Z D Z D; do
		case $k in
		D) head -c $unit /dev/urandom | dd of="$f" bs=$unit seek=$i conv=notrunc status=none ;;
		Z) dd if=/dev/zero of="$f" bs=$unit count=1 seek=$i conv=notrunc status=none ;;
		H) truncate -s $(((i + 1) * unit)) "$f" ;;
		esac
		i=$((i + 1))
	done
	dd if=/dev/zero of="$f" bs=100 count=1 seek=$((10 * unit)) oflag=seek_bytes conv=notrunc \
		status=none
	sync "$f"
}
zero_bytes=$((4 * unit))
# The data-to-hole ranges a correct run leaves, as benchcow -R prints them.
want_ranges="$((2 * unit)) $((5 * unit))
$((8 * unit)) $unit"

# exact FILE: st_blocks of FILE counts data only (tmpfs)
exact() { [ "$(stat -f -c %T "$1")" = tmpfs ]; }

# --- usage: nothing touched
expect_rc 2 "$COWPUNCH" sparsify
expect_rc 2 "$COWPUNCH" sparsify --engine bogus "$dir/x"
expect_rc 2 "$COWPUNCH" sparsify --no-such-option "$dir/x"
expect_rc 0 "$COWPUNCH" sparsify --help
for word in Usage: Options: Output: 'Exit status' Examples: --dry-run --engine --json \
	zero_blocks reclaimed_bytes flock fdinfo 'loop device'; do
	grep -q -- "$word" "$dir/out" || fail "sparsify --help lacks '$word'"
done
"$COWPUNCH" --help | grep -q sparsify || fail "cowpunch --help does not list sparsify"

# --- missing, not a regular file: 1, named, nothing opened for writing
expect_rc 1 "$COWPUNCH" sparsify "$dir/does-not-exist"
grep -q "does-not-exist" "$dir/err" || fail "missing file not named"
expect_rc 1 "$COWPUNCH" sparsify --json "$dir/does-not-exist"
jq_is .exit_code 1
jq_is '.files[0].status' error
jq_is '.files[0].error | contains("does-not-exist")' true
mkdir "$dir/adir"
expect_rc 1 "$COWPUNCH" sparsify "$dir/adir"
grep -q "adir: not a regular file" "$dir/err" || fail "directory: $(cat "$dir/err")"
mkfifo "$dir/fifo"
expect_rc 1 "$COWPUNCH" sparsify "$dir/fifo"
grep -q "fifo: not a regular file" "$dir/err" || fail "fifo: $(cat "$dir/err")"

# --- dry run: counts, nothing written
mkfile "$dir/f"
"$BENCHCOW" -C "$dir/f" "$dir/f.orig" || fail "benchcow -C"
before=$(state "$dir/f")
expect_rc 0 "$COWPUNCH" sparsify --dry-run --json "$dir/f"
jq_is .dry_run true
jq_is .exit_code 0
jq_is '.files[0].status' ok
jq_is '.files[0].path' "$dir/f"
jq_is '.files[0].size' $((10 * unit + 100))
jq_is '.files[0].block_bytes' 4096
jq_is '.files[0].blocks' 160
jq_is '.files[0].tail_bytes' 100
jq_is '.files[0].zero_blocks' 64
jq_is '.files[0].hole_blocks' 32
jq_is '.files[0].blocks_scanned' 128
jq_is '.files[0].punched_ranges' 2
jq_is '.files[0].hole_bridges' 1
jq_is '.files[0].reclaimed_bytes' 0
jq_is '.files[0].bytes_read >= 128 * 4096' true
jq_is '.files[0].engine | test("^(uring|aio|sync)$")' true
jq_is '.totals.files' 1
jq_is '.totals.zero_blocks' 64
[ "$(state "$dir/f")" = "$before" ] || fail "--dry-run changed the file"

# --- every engine on its own copy: same bytes, exactly the zero blocks freed, holes stay holes
for where in "$dir" /dev/shm; do
	[ -d "$where" ] && [ -w "$where" ] || continue
	for engine in sync aio uring auto; do
		f=$where/cowpunch-sparsify-$$-$engine
		cleanup_hooks+=("rm -f '$f'")
		"$BENCHCOW" -C "$dir/f.orig" "$f" || fail "benchcow -C $f"
		blocks_before=$(($(stat -c %b "$f") * 512))
		expect_rc 0 "$COWPUNCH" sparsify --json --engine "$engine" "$f"
		[ "$engine" = auto ] || jq_is '.files[0].engine' "$engine"
		jq_is .dry_run false
		jq_is '.files[0].zero_blocks' 64
		jq_is '.files[0].punched_ranges' 2
		jq_is '.files[0].allocated_before' "$blocks_before"
		jq_is '.files[0].allocated_after' "$(($(stat -c %b "$f") * 512))"
		jq_is '.files[0].reclaimed_bytes == .files[0].allocated_before - .files[0].allocated_after' true
		if exact "$f"; then
			jq_is '.files[0].reclaimed_bytes' "$zero_bytes"
		else # st_blocks may count an extent-tree block more or less
			jq_is "(.files[0].reclaimed_bytes - $zero_bytes) | fabs <= 4096" true
		fi
		cmp -s "$f" "$dir/f.orig" || fail "$engine in $where: bytes changed"
		got=$("$BENCHCOW" -R "$dir/f.orig" "$f")
		[ "$got" = "$want_ranges" ] || fail "$engine in $where: freed ranges '$got', want '$want_ranges'"
		got=$("$BENCHCOW" -R "$f" "$dir/f.orig")
		[ -z "$got" ] || fail "$engine in $where: holes filled: '$got'"
		# Again: nothing left to punch.
		expect_rc 0 "$COWPUNCH" sparsify --json --engine "$engine" "$f"
		jq_is '.files[0].zero_blocks' 0
		jq_is '.files[0].reclaimed_bytes' 0
		rm -f "$f"
	done
done

# --- human output
mkfile "$dir/h"
expect_rc 0 "$COWPUNCH" sparsify "$dir/h"
grep -q "^$dir/h: reclaimed 256.00 KiB of .* 64 zero blocks in 2 ranges" "$dir/out" ||
	fail "human output: $(cat "$dir/out")"
grep -q "last 100 bytes" "$dir/out" || fail "human output does not mention the tail"

# --- open for writing by another process: 4, the process named, the file untouched
mkfile "$dir/w"
s=$(state "$dir/w")
sleep 60 3>>"$dir/w" &
holder=$!
sleep 0.2
expect_rc 4 "$COWPUNCH" sparsify "$dir/w"
grep -q "open for writing by process $holder (sleep, descriptor 3)" "$dir/err" ||
	fail "writer: $(cat "$dir/err")"
expect_rc 4 "$COWPUNCH" sparsify --json "$dir/w"
jq_is '.files[0].status' busy
jq_is .exit_code 4
[ "$(state "$dir/w")" = "$s" ] || fail "writer: file changed"
kill "$holder" && wait "$holder" 2>/dev/null
holder=
# A reader is no danger.
sleep 60 3<"$dir/w" &
holder=$!
sleep 0.2
expect_rc 0 "$COWPUNCH" sparsify --json "$dir/w"
jq_is '.files[0].zero_blocks' 64
kill "$holder" && wait "$holder" 2>/dev/null
holder=

# --- flock held: 4, untouched
mkfile "$dir/l"
s=$(state "$dir/l")
flock "$dir/l" "$COWPUNCH" sparsify "$dir/l" >"$dir/out" 2>"$dir/err"
rc=$?
[ "$rc" -eq 4 ] || fail "locked: exit $rc, want 4; $(cat "$dir/err")"
grep -q "$dir/l: locked" "$dir/err" || fail "locked: $(cat "$dir/err")"
[ "$(state "$dir/l")" = "$s" ] || fail "locked: file changed"

# --- several files: each handled, the highest status; the busy one untouched
mkfile "$dir/m1"
sleep 60 3>>"$dir/l" &
holder=$!
sleep 0.2
expect_rc 4 "$COWPUNCH" sparsify --json "$dir/m1" "$dir/l" "$dir/does-not-exist"
jq_is '[.files[].status] | join(",")' ok,busy,error
jq_is '.files[0].zero_blocks' 64
jq_is .totals.files 3
jq_is .totals.ok 1
jq_is .totals.failed 2
jq_is .totals.zero_blocks 64
jq_is .exit_code 4
[ "$(state "$dir/l")" = "$s" ] || fail "several: the busy file changed"
kill "$holder" && wait "$holder" 2>/dev/null
holder=

# --- backing a loop device: 4 naming the device (needs root and loop support)
mkfile "$dir/attached"
if loop_refused "$dir/attached" "$COWPUNCH" sparsify "$dir/attached"; then
	expect_rc 0 "$COWPUNCH" sparsify --json "$dir/attached"
	jq_is '.files[0].zero_blocks' 64
fi

finish test-sparsify
