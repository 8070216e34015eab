#!/usr/bin/env bash
# cowpunch inspect and reclaim on stores written by a real kernel (tests/fixtures/kernel-stores):
# inspect counts what the kernel wrote and refuses the damaged store with exit 3; reclaim frees
# exactly the zero chunks and changes no byte.
set -euo pipefail
fx=$(cd "$(dirname "$0")/../fixtures/kernel-stores" && pwd)
# Both subcommands exist: one missing from the build is a failure, never a skip.
for c in inspect reclaim; do
	"$COWPUNCH" "$c" --help >/dev/null 2>&1 || { echo "FAIL: cowpunch $c is missing from this build" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Data sectors from FIEMAP: st_blocks also counts ext4 extent-tree blocks, which a punch can add.
data_sectors() { filefrag -s -v -b512 "$1" | awk -F: '$1 ~ /^ *[0-9]+$/ { s += $4 } END { print s + 0 }'; }
# check_inspect NAME COW MANIFEST: exit status, exceptions and chunk size as the kernel wrote them.
check_inspect() {
	local n=$1 cow=$2 m=$3 want rc=0
	want=$(jq -r .inspect_exit "$m")
	"$COWPUNCH" inspect --json "$cow" >"$tmp/inspect.json" 2>"$tmp/err" || rc=$?
	[ "$rc" = "$want" ] || fail "$n: inspect exited $rc, expected $want: $(cat "$tmp/err")"
	if [ "$want" != 0 ]; then
		[ -s "$tmp/err" ] || fail "$n: inspect exit $rc without a reason"
		return 0
	fi
	[ "$(jq -r .exceptions "$tmp/inspect.json")" = "$(jq -r .exceptions "$m")" ] ||
		fail "$n: inspect exceptions $(jq -r .exceptions "$tmp/inspect.json") != $(jq -r .exceptions "$m")"
	[ "$(jq -r .chunk_bytes "$tmp/inspect.json")" = "$(jq -r .chunk_bytes "$m")" ] ||
		fail "$n: inspect chunk_bytes"
}

# check_reclaim NAME COW MANIFEST: frees exactly the zero chunks and changes no byte; refuses a
# damaged store without changing st_blocks.
check_reclaim() {
	local n=$1 cow=$2 m=$3 want before data after rc=0 zb dd bd
	want=$(jq -r .inspect_exit "$m")
	cp "$cow" "$tmp/orig"
	before=$(stat -c %b "$cow")
	data=$(data_sectors "$cow")
	"$COWPUNCH" reclaim --json "$cow" >"$tmp/reclaim.json" 2>"$tmp/err" || rc=$?
	after=$(stat -c %b "$cow")
	cmp -s "$cow" "$tmp/orig" || fail "$n: reclaim changed bytes"
	if [ "$want" != 0 ]; then
		[ "$rc" = "$want" ] || fail "$n: reclaim exited $rc on a damaged store, expected $want"
		[ "$before" = "$after" ] || fail "$n: reclaim of a damaged store changed st_blocks"
		return 0
	fi
	[ "$rc" = 0 ] || fail "$n: reclaim exited $rc: $(cat "$tmp/err")"
	zb=$(($(jq -r .zero_chunks "$m") * $(jq -r .chunk_bytes "$m")))
	dd=$(((data - $(data_sectors "$cow")) * 512))
	bd=$(((before - after) * 512))
	[ "$dd" = "$zb" ] || fail "$n: data (FIEMAP) dropped by $dd bytes, expected $zb"
	[ "$bd" -le "$zb" ] && [ "$bd" -ge $((zb - 8192)) ] ||
		fail "$n: st_blocks dropped by $bd bytes, expected $zb less at most 2 extent blocks"
	[ "$(jq -r .reclaimed_bytes "$tmp/reclaim.json")" = "$bd" ] || fail "$n: reclaimed_bytes"
}

for m in "$fx"/*.json; do
	n=$(basename "$m" .json)
	cow=$tmp/$n.cow
	# --no-sparse: xz would otherwise leave the zero chunks as holes already.
	xz -dc --no-sparse "$fx/$n.cow.xz" >"$cow"
	sync "$cow"
	check_inspect "$n" "$cow" "$m"
	check_reclaim "$n" "$cow" "$m"
	echo "ok: $n"
done
