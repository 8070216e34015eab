# The state directory's safety rules on a real kernel:
# - a COW file whose record is lost is never touched by create (exit 1, same sha256), and is
#   adopted again by putting the record back;
# - a killed create's leftover (COW beside the STATE/ID/creating marker) is removed and create
#   succeeds; so does every create killed (strace, SIGKILL) on entering a call that changes the
#   state directory, and no COW is ever left without its record or the marker;
# - detach fsyncs the COW file after the last dm remove (strace order), so a guest's unflushed
#   writes are on disk when detach reports the VM hibernated;
# - a stale temp record (vm.json.tmp.PID) goes with the next command that takes the VM's lock.
need_cowpunch create attach detach destroy status
export COWPUNCH_STATE_DIR=$WORK/state
make_vm_with_data vm1
cow=$COWPUNCH_STATE_DIR/vm1/cow

# A lost record: the COW file is left alone.
cowsum=$(sha256 "$cow")
mv "$COWPUNCH_STATE_DIR/vm1/vm.json" "$TMPWORK/vm1.json"
assert_rc 1 cowpunch create vm1 --base "$base" --size 8M
assert_eq "$cowsum" "$(sha256 "$cow")" "sha256 of a COW without record after create"
[ ! -e "$COWPUNCH_STATE_DIR/vm1/vm.json" ] || fail "the refused create wrote a record"
assert_no_devices "the refused create"
mv "$TMPWORK/vm1.json" "$COWPUNCH_STATE_DIR/vm1/vm.json"
dev=$(cowpunch attach vm1) || fail "attach after the record was put back"
assert_eq "$want" "$(sha256 "$dev")" "data of the adopted VM"

# Writes the guest never flushed (buffered dd, no sync), then detach: the COW is fsynced after
# the last DM_DEV_REMOVE, while nothing serves it any more.
dd if=/dev/urandom of="$dev" bs=4096 count=64 seek=300 conv=notrunc status=none ||
	fail "unflushed write"
want=$(sha256 "$dev")
strace -f -qq -y -o "$TMPWORK/detach.trace" -e trace=ioctl,fsync cowpunch detach vm1 ||
	fail "detach under strace"
rm_line=$(grep -n "DM_DEV_REMOVE" "$TMPWORK/detach.trace" | tail -1 | cut -d: -f1)
sync_line=$(grep -n "fsync([0-9]*<$cow>) = 0" "$TMPWORK/detach.trace" | tail -1 | cut -d: -f1)
[ -n "$rm_line" ] || fail "no DM_DEV_REMOVE in the detach trace: $(cat "$TMPWORK/detach.trace")"
[ -n "$sync_line" ] && [ "$sync_line" -gt "$rm_line" ] ||
	fail "no fsync of $cow after the last DM_DEV_REMOVE (line $rm_line): $(grep fsync "$TMPWORK/detach.trace")"
log "ok: detach fsyncs $cow (trace line $sync_line) after its last DM_DEV_REMOVE (line $rm_line)"
assert_no_devices "detach"

# A stale temp record: status (no lock) leaves it, attach (the VM's lock) removes it.
echo '{"partial' >"$COWPUNCH_STATE_DIR/vm1/vm.json.tmp.4242"
cowpunch status vm1 >/dev/null || fail "status with a stale temp record"
[ -e "$COWPUNCH_STATE_DIR/vm1/vm.json.tmp.4242" ] || fail "status removed a temp record"
dev=$(cowpunch attach vm1) || fail "attach with a stale temp record"
[ ! -e "$COWPUNCH_STATE_DIR/vm1/vm.json.tmp.4242" ] || fail "attach left the stale temp record"
assert_eq "$want" "$(sha256 "$dev")" "unflushed writes after detach and attach"
cowpunch detach vm1 || fail "detach vm1"

# A killed create's leftover, by hand: the marker and a COW holding old data.  create removes it
# and makes a fresh store: the new disk reads the base and zeros, no exception.
mkdir -p "$COWPUNCH_STATE_DIR/vm2"
echo '{}' >"$COWPUNCH_STATE_DIR/vm2/creating"
cp "$cow" "$COWPUNCH_STATE_DIR/vm2/cow"
dev=$(cowpunch create vm2 --base "$base" --size 8M) || fail "create over a marked leftover"
assert_eq 0 "$(vm_exceptions vm2)" "exceptions of the new VM over a marked leftover"
cmp -n $((4 << 20)) "$dev" "$base" || fail "the new VM does not read its base"
[ ! -e "$COWPUNCH_STATE_DIR/vm2/creating" ] || fail "the marker stayed after create"
cowpunch destroy vm2 || fail "destroy vm2"

# create killed on entering each call that changes the state directory (strace counts calls
# per syscall; openat only where it names the state directory).
# kill_points SYSCALL: the N of each SYSCALL a good create of vm3 makes on the state directory.
kill_points() {
	strace -f -qq -y -o "$TMPWORK/create.trace" -e trace="$1" \
		cowpunch create vm3 --base "$base" --size 8M >/dev/null || fail "create under strace"
	cowpunch destroy vm3 || fail "destroy vm3"
	grep "$1(" "$TMPWORK/create.trace" | grep -n "$COWPUNCH_STATE_DIR" | cut -d: -f1
}
kills=0
for sc in mkdir openat pwrite64 fsync ftruncate rename; do
	for n in $(kill_points "$sc"); do
		_rc=0
		strace -f -qq -o /dev/null -e trace="$sc" -e inject="$sc":signal=KILL:when="$n" \
			cowpunch create vm3 --base "$base" --size 8M >/dev/null 2>&1 || _rc=$?
		[ "$_rc" -ne 0 ] || fail "create was not killed on entering $sc #$n"
		v=$COWPUNCH_STATE_DIR/vm3
		if [ -e "$v/cow" ] && [ ! -e "$v/vm.json" ] && [ ! -e "$v/creating" ]; then
			fail "create killed at $sc #$n left a COW without record or marker: $(ls "$v")"
		fi
		if [ -e "$v/vm.json" ]; then
			dev=$(cowpunch attach vm3) || fail "attach after a kill at $sc #$n"
		else
			dev=$(cowpunch create vm3 --base "$base" --size 8M) ||
				fail "create after a kill at $sc #$n"
		fi
		write_chunk "$dev" 5 4096
		cowpunch destroy vm3 || fail "destroy after a kill at $sc #$n"
		[ ! -e "$v" ] || fail "destroy after a kill at $sc #$n left $(ls "$v")"
		kills=$((kills + 1))
	done
done
[ "$kills" -ge 12 ] || fail "only $kills kill points: strace did not trace"
log "ok: create killed at $kills points; each time create (or attach) finished, destroy cleaned"
assert_no_devices "the create kills"
finish
