# kill -9 of cowpunch at many points of an attach: afterwards a plain `cowpunch attach` must
# succeed and give the VM its data, and after detach nothing may be left behind (no dm device,
# no loop device).  An autoclear loop dies with the killed process; a base-ID without its
# overlay (killed between the two tables) is removed by the next attach.
need_cowpunch create attach detach
export COWPUNCH_STATE_DIR=$WORK/state
make_vm_with_data vm1
# Killed after the overlay's ioctl but before libdm made its node: attach makes the node.
dev=$(cowpunch attach vm1)
rm "$dev"
assert_eq "$dev" "$(cowpunch attach vm1)" "attach of an attached VM"
[ -b "$dev" ] || fail "attach did not make the missing node $dev"
assert_eq "$want" "$(sha256 "$dev")" "data through the remade node"
cowpunch detach vm1
# What a kill between the two tables leaves, made by hand so it is certain: base-vm1 alone.
bl=$(loop_attach "$base" ro)
echo "0 8192 linear $bl 0" | dmsetup create base-vm1
dev=$(cowpunch attach vm1) || fail "attach over a leftover base-vm1"
assert_eq "$want" "$(sha256 "$dev")" "data after attach over a leftover base-vm1"
cowpunch detach vm1
assert_eq "" "$(dmsetup ls | grep -v 'No devices found' || true)" "no dm device after detach"
losetup -d "$bl" # not autoclear: made by losetup, not by cowpunch
assert_eq "" "$(losetup -a)" "no loop device after detach"

# A kill between DM_DEV_CREATE and the table going live: an overlay-vm1 with no table.
dmsetup create overlay-vm1 --notable
dev=$(cowpunch attach vm1) || fail "attach over a table-less overlay-vm1"
assert_eq "$want" "$(sha256 "$dev")" "data after attach over a table-less overlay-vm1"
cowpunch detach vm1
assert_no_devices "detach, table-less overlay case"

mid=0
n=0
for delay in 0 0.01 0.03 0.05 0.06 0.07 0.08 0.09 0.1 0.11 0.12 0.13 0.15 0.2; do
	n=$((n + 1))
	cowpunch attach vm1 >/dev/null 2>&1 &
	pid=$!
	sleep "$delay"
	kill -9 $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	if dmsetup info base-vm1 >/dev/null 2>&1 && ! dmsetup info overlay-vm1 >/dev/null 2>&1; then
		mid=$((mid + 1))
		log "killed after ${delay}s: base-vm1 without overlay-vm1 left behind"
	fi
	if dmsetup info overlay-vm1 >/dev/null 2>&1 && [ ! -b /dev/mapper/overlay-vm1 ]; then
		log "killed after ${delay}s: overlay-vm1 without its node left behind"
	fi
	if dmsetup info overlay-vm1 2>/dev/null | grep -q "Tables present: *None"; then
		log "killed after ${delay}s: overlay-vm1 without a live table left behind"
	fi
	dev=$(cowpunch attach vm1) || fail "attach after kill -9 at ${delay}s"
	assert_eq "$want" "$(sha256 "$dev")" "data after kill -9 at ${delay}s"
	cowpunch detach vm1
	assert_no_devices "detach after kill -9 at ${delay}s"
done
log "$mid of $n kills landed between base-vm1 and overlay-vm1"
log "all checks passed"
