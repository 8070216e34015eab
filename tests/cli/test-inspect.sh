#!/usr/bin/env bash
# cowpunch inspect: exit codes, JSON values, text output, refusals leave bytes untouched.
set -u
: "${COWPUNCH:?}" "${BUILD_DIR:?}"
MKSTORE=$BUILD_DIR/tests/tools/mkstore
. "$(dirname "$0")/lib.sh"
require "$MKSTORE" jq

# --- usage
expect_rc 2 "$COWPUNCH" inspect
expect_rc 2 "$COWPUNCH" inspect --no-such-option "$dir/x"
expect_rc 2 "$COWPUNCH" inspect a b
expect_rc 0 "$COWPUNCH" inspect --help
grep -q '^Exit status' "$dir/out" || fail "inspect --help has no exit status section"
grep -q 'hole_chunks' "$dir/out" || fail "inspect --help does not list the output keys"
expect_rc 1 "$COWPUNCH" inspect "$dir/does-not-exist"
grep -q "does-not-exist" "$dir/err" || fail "missing-file error does not name the file"

# --- empty store, 4 KiB chunks
"$MKSTORE" "$dir/empty" || fail "mkstore empty"
expect_rc 0 "$COWPUNCH" inspect --json "$dir/empty"
jq_is .valid true
jq_is .version 1
jq_is .chunk_bytes 4096
jq_is .exceptions 0
jq_is .metadata_areas 1
jq_is .next_free_chunk 2
jq_is .file_size 8192
jq_is .hole_chunks 0
jq_is ".allocated_bytes == $(($(stat -c %b "$dir/empty") * 512))" true

# --- 300 data chunks + 10 hole chunks + 20 written-zero chunks, 8 KiB chunks.
# epa = 512: one area; chunks 2..331 used; file = 332 chunks.
"$MKSTORE" -c 16 "$dir/mixed" add=100,300 add=5000,10,2 add=9000,20,1 || fail "mkstore mixed"
expect_rc 0 "$COWPUNCH" inspect --json "$dir/mixed"
jq_is .valid true
jq_is .chunk_bytes 8192
jq_is .chunk_sectors 16
jq_is .exceptions 330
jq_is .data_chunks_listed 330
jq_is .metadata_areas 1
jq_is .next_free_chunk 332
jq_is .file_size $((332 * 8192))
jq_is .hole_chunks 10
jq_is .allocated_bytes $(($(stat -c %b "$dir/mixed") * 512))
expect_rc 0 "$COWPUNCH" inspect "$dir/mixed"
grep -Eq '^exceptions: +330 ' "$dir/out" || fail "text output: exceptions line: $(cat "$dir/out")"
grep -Eq '^hole chunks: +10 ' "$dir/out" || fail "text output: hole chunks line"
grep -Eq '^chunk size: +8.00 KiB \(16 sectors\)' "$dir/out" || fail "text output: chunk size"

# --- exactly one full area (256 entries) then a zeroed area: 2 areas, next free skips 258.
"$MKSTORE" -H "$dir/full" add=0,256,2 || fail "mkstore full"
expect_rc 0 "$COWPUNCH" inspect --json "$dir/full"
jq_is .metadata_areas 2
jq_is .exceptions 256
jq_is .next_free_chunk 259
jq_is .hole_chunks 256

# --- many areas with 64 KiB chunks (epa 4096), scattered random store
"$MKSTORE" -c 128 -H "$dir/big" random=10000,42,30,20,100000 || fail "mkstore big"
expect_rc 0 "$COWPUNCH" inspect --json "$dir/big"
jq_is .metadata_areas 3
jq_is .exceptions 10000

# --- damaged stores: exit 3, the file named, offset and rule, bytes and st_blocks unchanged
check_refusal() { # NAME OFFSET WORD MKSTORE-ARGS...
	local name=$1 off=$2 word=$3
	shift 3
	"$MKSTORE" "$dir/$name" "$@" || { fail "mkstore $name"; return; }
	local sum blocks
	sum=$(sha256sum <"$dir/$name")
	blocks=$(stat -c %b "$dir/$name")
	expect_rc 3 "$COWPUNCH" inspect --json "$dir/$name"
	jq_is .valid false
	jq_is .error.offset "$off"
	jq -r .error.rule "$dir/out" | grep -qi -- "$word" || fail "$name: rule '$(jq -r .error.rule "$dir/out")' lacks '$word'"
	grep -q "$dir/$name" "$dir/err" || fail "$name: stderr does not name the file"
	grep -q "byte $off" "$dir/err" || fail "$name: stderr does not give the offset"
	expect_rc 3 "$COWPUNCH" inspect "$dir/$name"
	[ "$(sha256sum <"$dir/$name")" = "$sum" ] || fail "$name: bytes changed"
	[ "$(stat -c %b "$dir/$name")" = "$blocks" ] || fail "$name: st_blocks changed"
}

check_refusal magic0 0 "never activated" add=1,3 header=0,0,0,0
check_refusal badmagic 0 "bad magic" u32=0,0x12345678
check_refusal version 8 "version" u32=8,2
check_refusal invalid 4 "valid is 0" add=1,3 u32=4,0
check_refusal chunk 12 "power of two" u32=12,24
check_refusal short 4096 "truncated" size=4096
check_refusal beyond $((4096 + 2 * 16 + 8)) "beyond the end" add=1,5 entry=0,2,3,4000
check_refusal meta $((4096 + 8)) "metadata" add=1,5 entry=0,0,1,1
check_refusal dupnew $((4096 + 4 * 16 + 8)) "already used" add=1,5 entry=0,4,5,2
check_refusal dupold $((4096 + 4 * 16)) "already has an exception" add=1,5 entry=0,4,1,6
check_refusal trailing $((4096 + 8 * 16)) "discard" add=1,5 entry=0,8,77,3
# An unaligned discard zeroed 512 bytes of the list (docs/kernel-facts.md): entries 32..63 gone.
check_refusal discard $((4096 + 1024)) "damaged" add=1,100 punch=$((4096 + 512)),512
check_refusal noarea $((258 * 4096)) "next area is missing" add=0,256,2 size=$((258 * 4096))
check_refusal header-rest 100 "header chunk" add=1,2 byte=100,1

finish test-inspect
