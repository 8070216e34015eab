#!/usr/bin/env bash
# The VM lifecycle commands where no device-mapper is needed (the VM test bed covers the rest):
# --help of each, ID refusals (exit 2), list/status of records, damaged records (exit 3), the
# base identity check (exit 3, before any device is made), reclaim ID with its result recorded,
# set --mem-file on a record, and a create that cannot attach leaving nothing behind.
set -u
: "${COWPUNCH:?}" "${BUILD_DIR:?}"
MKSTORE=$BUILD_DIR/tests/tools/mkstore
. "$(dirname "$0")/lib.sh"
require "$MKSTORE" jq
export COWPUNCH_STATE_DIR=$dir/state
dm_loaded() { grep -qw device-mapper /proc/devices; }

for c in create attach detach destroy list status reclaim set; do
	expect_rc 0 "$COWPUNCH" "$c" --help
	grep -q "^Usage: cowpunch $c" "$dir/out" || fail "$c --help has no usage line"
	grep -q "^Exit status:" "$dir/out" || fail "$c --help has no exit status"
done
expect_rc 0 "$COWPUNCH" create --help
grep -q -- "--discard" "$dir/out" || fail "create --help does not describe --discard"
grep -q -- "--cow-direct-io auto|on|off" "$dir/out" || fail "create --help does not describe --cow-direct-io"

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
expect_rc 2 "$COWPUNCH" create vm1 --base "$dir/base.img" --size 8M --cow-direct-io yes
expect_rc 2 "$COWPUNCH" create vm1 --base "$dir/base.img" --size 8M --mem-file ""
expect_rc 2 "$COWPUNCH" create vm1 --base "$dir/base.img" --size 8M --mem-file "$dir/base.img"
grep -q "base image" "$dir/err" || fail "create --mem-file base.img: $(cat "$dir/err")"
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
# A record without the direct I/O fields (written before they existed): auto, not known.
jq_is .cow_direct_io auto
jq_is .cow_direct_io_active null
if ! dm_loaded; then jq_is .attached false; fi
expect_rc 0 "$COWPUNCH" list --json
jq_is '.[0].id' vm1
expect_rc 0 "$COWPUNCH" list
grep -q "^vm1 " "$dir/out" || fail "list text has no vm1 row"
grep -q "^ID  *ATTACHED  *COW-IO  *SIZE" "$dir/out" || fail "list text has no COW-IO column"
# After an attach the mode in effect is recorded (here by hand: no device-mapper).
jq '.cow_direct_io_active = false | .options.cow_direct_io = "off"' \
	"$COWPUNCH_STATE_DIR/vm1/vm.json" >"$dir/rec" && cp "$dir/rec" "$COWPUNCH_STATE_DIR/vm1/vm.json"
expect_rc 0 "$COWPUNCH" list --json
jq_is '.[0].cow_direct_io' off
jq_is '.[0].cow_direct_io_active' false
expect_rc 0 "$COWPUNCH" list
grep -q "^vm1  *[a-z]*  *buffered " "$dir/out" || fail "list text: vm1 not buffered: $(cat "$dir/out")"
expect_rc 0 "$COWPUNCH" status vm1
grep -q "^  cow I/O: *buffered at the last attach (--cow-direct-io off)" "$dir/out" ||
	fail "status text has no cow I/O line: $(cat "$dir/out")"

# set --mem-file: under the VM's lock, made absolute, in the record, status and list.
rec=$COWPUNCH_STATE_DIR/vm1/vm.json
jq_rec() { jq -r "$1" "$rec"; }
expect_rc 2 "$COWPUNCH" set vm1
expect_rc 2 "$COWPUNCH" set vm1 --mem-file "$dir/m" --no-mem-file
expect_rc 2 "$COWPUNCH" set -- "a/b" --no-mem-file
expect_rc 1 "$COWPUNCH" set vm9 --no-mem-file
expect_rc 0 "$COWPUNCH" status vm1 --json
jq_is .mem_file null
jq_is .mem_allocated null
[ "$(jq_rec .mem_file)" = null ] || fail "a record without mem_file reads as $(jq_rec .mem_file)"
(cd "$dir" && expect_rc 0 "$COWPUNCH" set vm1 --mem-file snaps/mem.snap)
want=$(cd "$dir" && pwd -P)/snaps/mem.snap
[ "$(cat "$dir/out")" = "$want" ] || fail "set printed '$(cat "$dir/out")', want '$want'"
[ "$(jq_rec .mem_file)" = "$want" ] || fail "record's mem_file is '$(jq_rec .mem_file)', want $want"
expect_rc 0 "$COWPUNCH" status vm1 --json
jq_is .mem_file "$want"
jq_is .mem_allocated null
expect_rc 0 "$COWPUNCH" status vm1
grep -q "^  mem file: *$want (missing)\$" "$dir/out" || fail "status text: $(cat "$dir/out")"
mkdir -p "$dir/snaps" && head -c 300K /dev/urandom >"$dir/snaps/mem.snap"
expect_rc 0 "$COWPUNCH" status vm1 --json
jq_is .mem_allocated $(($(stat -c %b "$dir/snaps/mem.snap") * 512))
expect_rc 0 "$COWPUNCH" list --json
jq_is '.[0].mem_file' "$want"
expect_rc 0 "$COWPUNCH" list
grep -q "^ID  *ATTACHED .* RECLAIMED  *MEM-ALLOC  *BASE\$" "$dir/out" || fail "list has no MEM-ALLOC"
grep -q "^vm1 .* 30[0-9].[0-9]* KiB  *$dir/base.img\$" "$dir/out" || fail "list row: $(cat "$dir/out")"
# The VM's own base image or COW file is refused, the record unchanged; so is a held lock.
expect_rc 2 "$COWPUNCH" set vm1 --mem-file "$dir/base.img"
grep -q "base image" "$dir/err" || fail "set base.img: $(cat "$dir/err")"
expect_rc 2 "$COWPUNCH" set vm1 --mem-file "$COWPUNCH_STATE_DIR/vm1/cow"
[ "$(jq_rec .mem_file)" = "$want" ] || fail "a refused set changed mem_file to $(jq_rec .mem_file)"
flock "$COWPUNCH_STATE_DIR/vm1/lock" "$COWPUNCH" set vm1 --no-mem-file >"$dir/out" 2>&1
rc=$?
[ $rc -eq 4 ] || fail "set while the VM lock is held exited $rc, want 4"
[ "$(jq_rec .mem_file)" = "$want" ] || fail "a locked-out set changed mem_file"
expect_rc 0 "$COWPUNCH" set vm1 --no-mem-file --json
jq_is .mem_file null
jq_is .id vm1
[ "$(jq_rec .mem_file)" = null ] || fail "--no-mem-file left mem_file $(jq_rec .mem_file)"
expect_rc 0 "$COWPUNCH" set vm1 --mem-file "$dir/snaps/mem.snap"

# A temp record that a killed write left (vm.json.tmp.PID) is removed by the next command that
# takes the VM's lock, and only by such one: status takes no lock, a writer may own the file.
echo '{"partial' >"$COWPUNCH_STATE_DIR/vm1/vm.json.tmp.999999"
expect_rc 0 "$COWPUNCH" status vm1
[ -e "$COWPUNCH_STATE_DIR/vm1/vm.json.tmp.999999" ] || fail "status (no lock) removed a temp record"

# The base does not match the record: attach refuses before building anything (exit 3).
expect_rc 3 "$COWPUNCH" attach vm1
[ ! -e "$COWPUNCH_STATE_DIR/vm1/vm.json.tmp.999999" ] || fail "attach left a stale temp record"
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
	# Zero chunks only: all of it is theirs; the COW's stamp is the file as left.
	jq_is .last_reclaim.zero_bytes $((before - after))
	jq_is .last_reclaim.fs_free_bytes 0
	jq_is .last_reclaim.fs_aware null
	jq_is .last_reclaim.error ""
	jq_is .mem_file "$dir/snaps/mem.snap"
	[ "$(jq_rec .last_reclaim.cow_stamp.blocks)" = "$(stat -c %b "$COWPUNCH_STATE_DIR/vm1/cow")" ] &&
		[ "$(jq_rec .last_reclaim.cow_stamp.ino)" = "$(stat -c %i "$COWPUNCH_STATE_DIR/vm1/cow")" ] ||
		fail "cow_stamp $(jq -c .last_reclaim.cow_stamp "$rec") is not the COW's stat"
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
	jq_is .last_reclaim.zero_bytes 0
	jq_is '.last_reclaim.error | test("vm1/cow: invalid store at byte")' true
	expect_rc 0 "$COWPUNCH" status vm1
	grep -q "^ *error: .*invalid store" "$dir/out" || fail "status text has no error: $(cat "$dir/out")"
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

# A COW file with no record and no creating marker may be a VM whose vm.json was lost or is not
# restored yet: create refuses (exit 1), names the file, and leaves every byte of it.
mkdir -p "$COWPUNCH_STATE_DIR/vm4"
"$MKSTORE" "$COWPUNCH_STATE_DIR/vm4/cow" add=0,64,0 size=$(((1 + 2048 + 9) * 4096)) >/dev/null ||
	fail "mkstore vm4"
sum=$(sha256sum <"$COWPUNCH_STATE_DIR/vm4/cow")
expect_rc 1 "$COWPUNCH" create vm4 --base "$dir/base.img" --size 8M
[ -f "$COWPUNCH_STATE_DIR/vm4/cow" ] || fail "create deleted the COW of a VM without a record"
[ "$(sha256sum <"$COWPUNCH_STATE_DIR/vm4/cow" 2>/dev/null)" = "$sum" ] ||
	fail "create changed the COW of a VM without a record"
grep -q "$COWPUNCH_STATE_DIR/vm4/cow" "$dir/err" || fail "the refusal does not name the COW: $(cat "$dir/err")"
[ ! -e "$COWPUNCH_STATE_DIR/vm4/vm.json" ] || fail "the refused create wrote a record"

# A new folder is fsynced in its parent (only then does its entry survive a crash): the state
# directory's parent after it is made, the state directory after STATE/ID is made.
if ! dm_loaded; then
	require strace
	mkdir "$dir/new"
	strace -f -qq -y -o "$dir/trace" -e trace=mkdir,fsync \
		"$COWPUNCH" create vm7 --state-dir "$dir/new/state" --base "$dir/base.img" --size 8M \
		>/dev/null 2>&1
	synced_after() { # synced_after MKDIR_PATH PARENT: fsync of PARENT follows mkdir of MKDIR_PATH
		local m s
		m=$(grep -n "^[0-9]* *mkdir(\"$1\", 0700) = 0" "$dir/trace" | head -1 | cut -d: -f1)
		s=$(grep -n "^[0-9]* *fsync([0-9]*<$2>) = 0" "$dir/trace" | tail -1 | cut -d: -f1)
		[ -n "$m" ] && [ -n "$s" ] && [ "$s" -gt "$m" ] ||
			fail "no fsync of $2 after mkdir $1: $(tr '\n' ' ' <"$dir/trace")"
	}
	synced_after "$dir/new/state" "$dir/new"
	synced_after "$dir/new/state/vm7" "$dir/new/state"
fi

# The leftover of a killed create (a COW beside the creating marker, no record) is removed and
# made anew: here create then fails at attach (no device-mapper) and undoes all of it.
if ! dm_loaded; then
	mkdir -p "$COWPUNCH_STATE_DIR/vm5"
	"$MKSTORE" "$COWPUNCH_STATE_DIR/vm5/cow" add=0,4 >/dev/null || fail "mkstore vm5"
	echo '{}' >"$COWPUNCH_STATE_DIR/vm5/creating"
	expect_rc 1 "$COWPUNCH" create vm5 --base "$dir/base.img" --size 8M
	grep -q "attach failed" "$dir/err" || fail "create did not get past the leftover: $(cat "$dir/err")"
	[ ! -e "$COWPUNCH_STATE_DIR/vm5" ] || fail "create left $(ls "$COWPUNCH_STATE_DIR/vm5")"
fi

# Kill points.  strace kills create (and destroy) on entering the Nth call of a syscall that
# changes the state directory, for every such call a whole run makes (here create runs its undo
# too, as attach fails).  After each kill a COW file must have its record or the creating marker
# beside it (else the next create would refuse it), and a plain create or destroy must finish.
# kill_points SYSCALL CMD...: the N of each call of SYSCALL by CMD that names a path under $dir.
kill_points() {
	local sc=$1
	shift
	strace -f -qq -y -o "$dir/trace" -e trace="$sc" "$@" >/dev/null 2>&1
	grep "$sc(" "$dir/trace" | grep -n "$dir" | cut -d: -f1
}
# killed_at SYSCALL N CMD...: runs CMD, killed by SIGKILL on entering its Nth SYSCALL.
killed_at() {
	local sc=$1 n=$2 rc=0
	shift 2
	# In a subshell that outlives strace: bash reports a killed foreground job on stderr.
	(
		strace -f -qq -o /dev/null -e trace="$sc" -e inject="$sc":signal=KILL:when="$n" "$@"
		exit $?
	) >/dev/null 2>&1 || rc=$?
	[ $rc -eq 137 ] || fail "'$*' was not killed on entering $sc #$n (exit $rc)"
}
# leftover_ok WHEN: no COW without its record or the marker in $COWPUNCH_STATE_DIR/vm6.
leftover_ok() {
	local v=$COWPUNCH_STATE_DIR/vm6
	if [ -e "$v/cow" ] && [ ! -e "$v/vm.json" ] && [ ! -e "$v/creating" ]; then
		fail "$1: a COW without its record or the creating marker: $(ls "$v" | tr '\n' ' ')"
		rm -rf "$v"
	fi
}
if ! dm_loaded; then
	require strace
	create6=("$COWPUNCH" create vm6 --base "$dir/base.img" --size 8M)
	# The runs strace counts and kills use the plain binary also under make valgrind
	# (COWPUNCH_PLAIN): a process killed part-way leaves memcheck nothing to check at
	# its exit, and valgrind's own system calls would swell the trace.  The create or
	# destroy after each kill, which cleans up what the kill left, stays under valgrind.
	plain=${COWPUNCH_PLAIN:-$COWPUNCH}
	kill6=("$plain" create vm6 --base "$dir/base.img" --size 8M)
	kills=0
	for sc in mkdir openat pwrite64 fsync ftruncate rename unlink rmdir; do
		points=$(kill_points "$sc" "${kill6[@]}")
		[ ! -e "$COWPUNCH_STATE_DIR/vm6" ] || fail "a failed create left vm6"
		for n in $points; do
			killed_at "$sc" "$n" "${kill6[@]}"
			leftover_ok "create killed on entering $sc #$n"
			if [ -e "$COWPUNCH_STATE_DIR/vm6/vm.json" ]; then
				expect_rc 0 "$COWPUNCH" destroy vm6
			else
				expect_rc 1 "${create6[@]}"
				grep -q "attach failed" "$dir/err" ||
					fail "create after a kill at $sc #$n: $(cat "$dir/err")"
			fi
			[ ! -e "$COWPUNCH_STATE_DIR/vm6" ] ||
				fail "after a kill at $sc #$n: vm6 left: $(ls "$COWPUNCH_STATE_DIR/vm6")"
			rm -rf "$COWPUNCH_STATE_DIR/vm6"
			kills=$((kills + 1))
		done
	done
	[ $kills -ge 20 ] || fail "only $kills kill points in create: strace did not trace"
	# destroy killed on entering each of its unlinks: a COW never outlives its record, and
	# destroy run again finishes while the record is there.
	record "$(printf '0%.0s' $(seq 64))" | sed 's/"vm1"/"vm6"/' >"$dir/vm6.json"
	for n in 1 2 3; do
		mkdir -p "$COWPUNCH_STATE_DIR/vm6"
		cp "$dir/vm6.json" "$COWPUNCH_STATE_DIR/vm6/vm.json"
		"$MKSTORE" "$COWPUNCH_STATE_DIR/vm6/cow" add=0,4 >/dev/null || fail "mkstore vm6"
		killed_at unlink "$n" "$plain" destroy vm6
		leftover_ok "destroy killed on entering unlink #$n"
		if [ -e "$COWPUNCH_STATE_DIR/vm6/vm.json" ]; then
			expect_rc 0 "$COWPUNCH" destroy vm6
			[ ! -e "$COWPUNCH_STATE_DIR/vm6" ] || fail "destroy after a kill at unlink #$n left vm6"
		fi
		rm -rf "$COWPUNCH_STATE_DIR/vm6"
	done
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
