# The reclamation agent on real device-mapper disks: two VMs on one ext4 base, both written to
# (a deleted 12 MiB file, 4 MiB of zeros), one hibernated (clean unmount, detach) with a memory
# snapshot file, the other still attached.  One cycle (`cowpunch agent --once`) must skip the
# attached VM at once without touching its COW or record, reclaim the hibernated one (fs-aware:
# the deleted file comes back; its zeros; its memory file's zero pages) with no byte it shows
# changed, and the metrics it writes must equal the drop in st_blocks.  A second cycle reads
# nothing.  Then the VM attaches again: e2fsck -fn clean, every file's sha256.
need_cowpunch create attach detach status agent set
export COWPUNCH_STATE_DIR=$WORK/state
base=$WORK/base.img mnt=$TMPWORK/mnt
make_base_image "$base" 32 ext4
mkdir -p "$mnt"
sum() { awk -v k="$2" 'index($1, k) == 1 {s += $2} END {print s + 0}' "$1"; }

for vm in sleeper runner; do
	dev=$(cowpunch create "$vm" --base "$base" --size 40M)
	fsaware_writes "$dev" "$mnt"
	dd if=/dev/zero of="$mnt/zeros" bs=1M count=4 conv=fsync status=none
	(cd "$mnt" && sha256sum keep1 keep2 zeros) >"$TMPWORK/$vm.sums"
	umount "$mnt"
done
cowpunch detach sleeper
# The memory snapshot Firecracker writes at hibernation: here 8 MiB, every other MiB zeros.
mem=$WORK/sleeper.mem
for i in 0 1 2 3; do
	dd if=/dev/urandom bs=1M count=1 status=none
	dd if=/dev/zero bs=1M count=1 status=none
done >"$mem"
cowpunch set sleeper --mem-file "$mem" >/dev/null || fail "cowpunch set --mem-file"
mem_sha=$(sha256 "$mem")
runner_cow=$COWPUNCH_STATE_DIR/runner/cow
runner_blocks=$(blocks "$runner_cow")
before=$((($(blocks "$COWPUNCH_STATE_DIR/sleeper/cow") + $(blocks "$mem")) * 512))

start=$(date +%s)
cowpunch agent --once --textfile "$OUT/agent.prom" 2>"$OUT/agent.log" || {
	cat "$OUT/agent.log"
	fail "agent --once exited $?"
}
cat "$OUT/agent.log"
[ $(($(date +%s) - start)) -lt 120 ] || fail "the cycle took too long: waited on the attached VM?"
after=$((($(blocks "$COWPUNCH_STATE_DIR/sleeper/cow") + $(blocks "$mem")) * 512))
drop=$((before - after))
log "sleeper: $before -> $after bytes ($drop given back)"
# 12 MiB deleted, 4 MiB of zeros, 4 MiB of memory zeros; less a few ext4 extent-tree blocks the
# punches may cost the COW file (the drop is st_blocks, which counts them).
[ "$drop" -ge $((((12 + 4 + 4) << 20) - (64 << 10))) ] ||
	fail "sleeper gave back $drop < 20 MiB - 64 KiB (12 deleted, 4 zeros, 4 of memory)"
assert_eq "$drop" "$(sum "$OUT/agent.prom" cowpunch_reclaimed_bytes_total)" "metrics = st_blocks drop"
assert_eq 1 "$(sum "$OUT/agent.prom" 'cowpunch_reclaims_total{result="attached"}')" "one attached VM skipped"
assert_eq 1 "$(sum "$OUT/agent.prom" 'cowpunch_reclaims_total{result="ok"}')" "one VM reclaimed"
assert_eq "$mem_sha" "$(sha256 "$mem")" "memory file content"
assert_eq $((4 << 20)) "$(sum "$OUT/agent.prom" 'cowpunch_reclaimed_bytes_total{kind="mem_zero"}')" "memory zeros given back"
cowpunch status --json sleeper >"$OUT/sleeper.json"
assert_eq done "$(json_get "$OUT/sleeper.json" .last_reclaim.fs_aware)" "fs-aware ran"
assert_eq "$runner_blocks" "$(blocks "$runner_cow")" "the attached VM's COW untouched"
cowpunch status --json runner >"$OUT/runner.json"
assert_eq null "$(json_get "$OUT/runner.json" .last_reclaim)" "the attached VM's record untouched"

cowpunch agent --once --textfile "$OUT/agent2.prom" 2>>"$OUT/agent.log" || fail "second cycle exited $?"
assert_eq 0 "$(sum "$OUT/agent2.prom" cowpunch_scanned_bytes_total)" "second cycle read nothing"
assert_eq 1 "$(sum "$OUT/agent2.prom" 'cowpunch_reclaims_total{result="unchanged"}')" "second cycle: unchanged"

dev=$(cowpunch attach sleeper)
e2fsck -fn "$dev" || fail "e2fsck -fn after the agent's reclaim"
mount -t ext4 -o ro "$dev" "$mnt"
(cd "$mnt" && sha256sum -c "$TMPWORK/sleeper.sums") || fail "a file changed"
umount "$mnt"
cowpunch detach sleeper
cowpunch detach runner
