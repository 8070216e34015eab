#!/usr/bin/env bash
# cowpunch inspect and reclaim on stores written by a real kernel (tests/fixtures/kernel-stores):
# inspect counts what the kernel wrote and refuses the damaged store with exit 3; reclaim frees
# exactly the zero chunks and changes no byte.
set -euo pipefail
fx=$(cd "$(dirname "$0")/../fixtures/kernel-stores" && pwd)
for c in inspect reclaim; do
	if ! "$COWPUNCH" "$c" --help >/dev/null 2>&1; then
		echo "skip: cowpunch $c is not implemented in this build"
		exit 77
	fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Data sectors from FIEMAP: st_blocks also counts ext4 extent-tree blocks, which a punch can add.
data_sectors() { filefrag -s -v -b512 "$1" | awk -F: '$1 ~ /^ *[0-9]+$/ { s += $4 } END { print s + 0 }'; }
for m in "$fx"/*.json; do
	n=$(basename "$m" .json)
	cow=$tmp/$n.cow
	xz -dc --no-sparse "$fx/$n.cow.xz" >"$cow"
	sync "$cow"
	want_exit=$(jq -r .inspect_exit "$m")
	rc=0
	"$COWPUNCH" inspect --json "$cow" >"$tmp/inspect.json" 2>"$tmp/err" || rc=$?
	[ "$rc" = "$want_exit" ] || fail "$n: inspect exited $rc, expected $want_exit: $(cat "$tmp/err")"
	if [ "$want_exit" = 0 ]; then
		[ "$(jq -r .exceptions "$tmp/inspect.json")" = "$(jq -r .exceptions "$m")" ] ||
			fail "$n: inspect exceptions $(jq -r .exceptions "$tmp/inspect.json") != $(jq -r .exceptions "$m")"
		[ "$(jq -r .chunk_bytes "$tmp/inspect.json")" = "$(jq -r .chunk_bytes "$m")" ] ||
			fail "$n: inspect chunk_bytes"
	else
		[ -s "$tmp/err" ] || fail "$n: inspect exit $rc without a reason"
	fi
	cp "$cow" "$tmp/orig"
	before=$(stat -c %b "$cow")
	data=$(data_sectors "$cow")
	rc=0
	"$COWPUNCH" reclaim --json "$cow" >"$tmp/reclaim.json" 2>"$tmp/err" || rc=$?
	after=$(stat -c %b "$cow")
	cmp -s "$cow" "$tmp/orig" || fail "$n: reclaim changed bytes"
	if [ "$want_exit" = 0 ]; then
		[ "$rc" = 0 ] || fail "$n: reclaim exited $rc: $(cat "$tmp/err")"
		zb=$(($(jq -r .zero_chunks "$m") * $(jq -r .chunk_bytes "$m")))
		dd=$(((data - $(data_sectors "$cow")) * 512))
		bd=$(((before - after) * 512))
		[ "$dd" = "$zb" ] || fail "$n: data (FIEMAP) dropped by $dd bytes, expected $zb"
		[ "$bd" -le "$zb" ] && [ "$bd" -ge $((zb - 8192)) ] ||
			fail "$n: st_blocks dropped by $bd bytes, expected $zb less at most 2 extent blocks"
		[ "$(jq -r .reclaimed_bytes "$tmp/reclaim.json")" = "$bd" ] || fail "$n: reclaimed_bytes"
	else
		[ "$rc" = "$want_exit" ] || fail "$n: reclaim exited $rc on a damaged store, expected $want_exit"
		[ "$before" = "$after" ] || fail "$n: reclaim of a damaged store changed st_blocks"
	fi
	echo "ok: $n"
done
