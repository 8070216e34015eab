#!/usr/bin/env bash
# The agent killed in the middle of its rewrites (`agent --once --strategy rewrite`): strace
# delivers SIGKILL to the process reclaiming the VM on entering the Nth call of pwrite64 (the
# first and the last write to the memory file's temp file), fsync and rename (each from the
# first that names the COW's temp file on: the COW's rewrite, the record's update, the memory
# file's rewrite, the record's last update), every time on a fresh copy of the same VM.
# After each kill the memory file holds the same bytes (sha256), old file or new; the COW,
# rewritten before it, too, and is a valid store; then a complete cycle exits 0, leaves no temp
# file, the same bytes, a record naming the memory file's inode, and the allocation an
# uninterrupted cycle leaves.
set -u
: "${BUILD_DIR:?}"
. "$(dirname "$0")/lib.sh"
require "$BUILD_DIR/tests/tools/mkvms" strace jq
mkvms=$BUILD_DIR/tests/tools/mkvms
# The killed runs use the plain binary under make valgrind too: a process killed part-way
# leaves memcheck nothing to check, and valgrind's own calls would swell the trace.
plain=${COWPUNCH_PLAIN:-$COWPUNCH}

# The record names the memory file by its path: the VM is made where each run finds it, and a
# pristine copy puts it back there before each run.
P=$dir/pristine S=$dir/state
"$mkvms" --chunks 256 --zero-pct 50 --mem-size 4M "$S" 1 >/dev/null || fail "mkvms failed"
cp -a --sparse=always "$S" "$P"
vmdir=$(basename "$(echo "$P"/vm-*)")
mem=$S/$vmdir/mem cow=$S/$vmdir/cow rec=$S/$vmdir/vm.json
mtmp=$S/$vmdir/.mem.cowpunch-rewrite ctmp=$S/$vmdir/.cow.cowpunch-rewrite
msha=$(sha256sum <"$P/$vmdir/mem")
csha=$(sha256sum <"$P/$vmdir/cow")
fresh() { rm -rf "$S" && cp -a --sparse=always "$P" "$S"; }
agent=(agent --once --no-fs-aware --strategy rewrite --state-dir "$S")

# Reference: an uninterrupted cycle, traced.  Its memory file is rewritten (a new inode).
fresh
strace -f -qq -y -o "$dir/trace" -e trace=pwrite64,fsync,rename "$plain" "${agent[@]}" \
	>/dev/null 2>"$dir/err" || fail "the uninterrupted cycle failed: $(cat "$dir/err")"
grep -q "mem_strategy=rewrite " "$dir/err" || fail "the memory file was not rewritten: $(cat "$dir/err")"
want_blocks=$(stat -c %b "$mem")
[ "$(sha256sum <"$mem")" = "$msha" ] || fail "the uninterrupted rewrite changed the memory file"

# kill_points SC: the N of SC calls to kill on.  pwrite64: the first and the last to the memory
# file's temp file.  fsync, rename: each from the first that names a temp file (the COW's,
# rewritten first) on, so the COW's rewrite, the record's updates and the memory file's
# rewrite are all cut.
kill_points() {
	local sc=$1 first
	grep "^[0-9]* *$sc(" "$dir/trace" | grep -n . >"$dir/calls"
	if [ "$sc" = pwrite64 ]; then
		grep 'mem\.cowpunch-rewrite>' "$dir/calls" | sed -n '1p;$p' | cut -d: -f1
		return 0
	fi
	first=$(grep -m1 'cowpunch-rewrite[">]' "$dir/calls" | cut -d: -f1)
	[ -z "$first" ] || seq "$first" "$(wc -l <"$dir/calls")"
}

kills=0
for sc in pwrite64 fsync rename; do
	points=$(kill_points "$sc" | sort -un)
	[ -n "$points" ] || fail "no $sc call on the memory file's temp file in the trace"
	for n in $points; do
		what="killed on entering $sc #$n"
		fresh
		# The agent reclaims each VM in a child process: that one is killed, the agent says
		# so and exits 1.
		rc=0
		strace -f -qq -o /dev/null -e trace="$sc" -e inject="$sc":signal=KILL:when="$n" \
			"$plain" "${agent[@]}" >/dev/null 2>"$dir/err" || rc=$?
		[ $rc -eq 1 ] && grep -q "the reclaim process died of signal 9" "$dir/err" ||
			{ fail "$what: the agent's reclaim process was not killed (exit $rc): $(cat "$dir/err")"; continue; }
		[ "$(sha256sum <"$mem")" = "$msha" ] || fail "$what: the memory file's bytes changed"
		[ "$(sha256sum <"$cow")" = "$csha" ] || fail "$what: the COW's bytes changed"
		expect_rc 0 "$COWPUNCH" inspect "$cow"
		expect_rc 0 "$COWPUNCH" "${agent[@]}"
		[ ! -e "$mtmp" ] && [ ! -e "$ctmp" ] || fail "$what: the next cycle left a temp file"
		[ "$(sha256sum <"$mem")" = "$msha" ] || fail "$what, then a cycle: the memory file's bytes changed"
		[ "$(jq -r .last_reclaim.mem_stamp.ino "$rec")" = "$(stat -c %i "$mem")" ] ||
			fail "$what, then a cycle: the record names inode $(jq -r .last_reclaim.mem_stamp.ino "$rec"), the memory file is $(stat -c %i "$mem")"
		[ "$(stat -c %b "$mem")" -le "$want_blocks" ] ||
			fail "$what, then a cycle: the memory file has $(stat -c %b "$mem") blocks, want $want_blocks"
		kills=$((kills + 1))
	done
done
[ $kills -ge 5 ] || fail "only $kills kill points: strace did not trace"
echo "agent-kill: $kills kill points"
finish agent-kill
