# Power-cut verifier (booted by tests/vm/powercut.sh after the kills; not a scenario of run.sh).
# $IN/disks lists "SERIAL TAG ID SEED ACKED POINT" for each host disk a killed VM left.  For
# each: the ext4 file system mounts (journal recovery), the store parses (cowpunch inspect),
# every write the killed guest saw acknowledged reads back through a fresh attach (pcload
# check), and reclaim followed by attach leaves the disk's sha256 unchanged.
# vmtest-tools: @build/tests/tools/pcload
need_cowpunch inspect attach detach reclaim
# step WHAT: a line on the console before each step, so that a verifier that stops shows where
# (tests/vm/powercut.sh prints the last line; its report takes only the "[pc-verify]" lines).
step() { echo "pc-verify: $what: $1"; }
n=0
bad=0
while read -r serial tag id seed acked point; do
	[ -n "$serial" ] || continue
	n=$((n + 1))
	dev=$(disk_by_serial "$serial") || fail "no disk with serial $serial"
	# Where the writer mounted it: the VM's record names its base image by that path.
	mnt=/pc/$tag
	mkdir -p "$mnt"
	export COWPUNCH_STATE_DIR=$mnt/state
	cow=$COWPUNCH_STATE_DIR/$id/cow
	what="kill point $point, cache=$tag, acked op $acked"
	step mount
	if ! mount -t ext4 "$dev" "$mnt"; then
		log "FAIL $what: cannot mount $dev"
		bad=$((bad + 1))
		continue
	fi
	step inspect
	if ! cowpunch inspect --json "$cow" >"$TMPWORK/inspect" 2>&1; then
		log "FAIL $what: cowpunch inspect $cow: $(cat "$TMPWORK/inspect")"
		bad=$((bad + 1))
		umount "$mnt"
		continue
	fi
	exc=$(jq -r '.exceptions' "$TMPWORK/inspect")
	step attach
	if ! d=$(cowpunch attach "$id" 2>"$TMPWORK/err"); then
		log "FAIL $what: attach: $(cat "$TMPWORK/err")"
		bad=$((bad + 1))
		umount "$mnt"
		continue
	fi
	step "pcload check"
	if ! pcload check "$d" "$mnt/base.img" "$seed" "$acked" >"$TMPWORK/check"; then
		log "FAIL $what: $(cat "$TMPWORK/check")"
		bad=$((bad + 1))
	fi
	step sha256
	before=$(sha256 "$d")
	step detach
	cowpunch detach "$id" || fail "detach $id ($what)"
	step reclaim
	freed=$(cowpunch reclaim --json --no-progress "$id" | jq -r '"\(.zero_chunks) zero chunks, \(.reclaimed_bytes) bytes"') ||
		fail "reclaim $id ($what)"
	step "attach after reclaim"
	d=$(cowpunch attach "$id") || fail "attach $id after reclaim ($what)"
	step "sha256 after reclaim"
	after=$(sha256 "$d")
	step "detach after reclaim"
	cowpunch detach "$id" || fail "detach $id after reclaim ($what)"
	if [ "$before" != "$after" ]; then
		log "FAIL $what: reclaim changed the disk: sha256 $before before, $after after"
		bad=$((bad + 1))
	fi
	log "$what: $exc exceptions; $(tail -n1 "$TMPWORK/check"); reclaim found $freed, sha256 unchanged: $([ "$before" = "$after" ] && echo yes || echo NO)"
	step umount
	umount "$mnt" || fail "umount $mnt"
done <"$IN/disks"
[ "$n" -gt 0 ] || fail "no disks to verify"
[ "$bad" -eq 0 ] || fail "$bad of $n power-cut disks failed"
log "ok: $n power-cut disks verified"
