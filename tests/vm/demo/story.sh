# The newcomer's demo (make demo): three VMs on one base image, each writes files and deletes
# some (web also zero-fills its free space, the guest's own way to hand space back); then
# hibernation (clean unmount, detach), fs-aware reclaim of every VM (all-zero chunks and chunks
# free in the guest's ext4), what each gave back, and re-attach with every file checked.
# Runs in the test bed (sourced by busybox ash after lib.sh) or natively (tests/vm/demo.sh
# --native).  Output lines start with "demo:" so the host can show them live.
say() { echo "demo: $*"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
export COWPUNCH_STATE_DIR=$WORK/state
vms="web db cache"
base=$WORK/debian-mini.ext4
mnt=$TMPWORK/mnt
mkdir -p "$mnt"

say "[1/6] a 16 MiB ext4 base image (stands in for a root file system), shared read-only"
make_base_image "$base" 16 ext4
base_sha=$(sha256 "$base")

say "[2/6] three VMs on it, 32 MiB disks each: cowpunch create ID --base IMAGE --size 32M"
for vm in $vms; do
	dev=$(cowpunch create "$vm" --base "$base" --size 32M)
	say "      $vm -> $dev"
done
say "      base loop devices in use: $(losetup -j "$base" -O NAME -n | wc -l) (one, shared)"

say "[3/6] each guest: grow its fs, write files, delete some (web also zero-fills its free space), unmount cleanly"
n=0
for vm in $vms; do
	n=$((n + 1))
	dev=/dev/mapper/overlay-$vm
	/usr/sbin/resize2fs "$dev" >/dev/null 2>&1 || fail "$vm: resize2fs"
	mount -t ext4 "$dev" "$mnt"
	mkdir -p "$mnt/data"
	dd if=/dev/urandom of="$mnt/data/app.bin" bs=1M count=$((n + 1)) status=none
	dd if=/dev/urandom of="$mnt/data/config" bs=4K count=3 status=none
	echo "hello from $vm" >"$mnt/data/motd"
	dd if=/dev/urandom of="$mnt/data/cache.tmp" bs=1M count=4 status=none
	dd if=/dev/urandom of="$mnt/data/old.log" bs=1M count=3 status=none
	sync
	rm "$mnt/data/cache.tmp" "$mnt/data/old.log"
	zf=
	if [ "$vm" = web ]; then
		# The guest's own way to hand space back: fill free space with zeros, delete the
		# filler.  The other guests just delete: fs-aware reclaim finds those blocks free.
		dd if=/dev/zero of="$mnt/zerofill" bs=1M status=none 2>/dev/null || true
		sync
		rm "$mnt/zerofill"
		zf=", zero-filled"
	fi
	(cd "$mnt" && find . -type f ! -name zerofill | sort | xargs sha256sum) >"$TMPWORK/$vm.sums"
	umount "$mnt"
	say "      $vm: kept $(wc -l <"$TMPWORK/$vm.sums") files, deleted 7 MiB$zf; COW holds $(mib $(($(blocks "$COWPUNCH_STATE_DIR/$vm/cow") * 512)))"
done
cowpunch list | sed 's/^/demo:      /'

say "[4/6] hibernate: cowpunch detach ID (the VM is stopped; its COW file stays)"
for vm in $vms; do cowpunch detach "$vm"; done
say "      dm devices left: $(dmsetup ls | grep -c -e '-web' -e '-db' -e '-cache' || true), loop devices left: $(losetup -a | wc -l)"

say "[5/6] reclaim: one cycle of the agent (cowpunch agent), as a host runs it every interval: it"
say "      punches the all-zero chunks and the chunks the guest's ext4 no longer uses (fs-aware:"
say "      safe because each guest unmounted cleanly), and serves what it gave back on /metrics"
port=9479
/bin/busybox ip link set lo up 2>/dev/null || /bin/busybox ifconfig lo 127.0.0.1 up
cowpunch agent --listen 127.0.0.1:$port --per-vm-metrics --interval 1h 2>"$TMPWORK/agent.log" &
agent=$!
i=0
until /bin/busybox wget -q -O "$TMPWORK/metrics" "http://127.0.0.1:$port/healthz" 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 300 ] || { cat "$TMPWORK/agent.log"; fail "the agent's first cycle did not end"; }
	sleep 0.2
done
/bin/busybox wget -q -O "$TMPWORK/metrics" "http://127.0.0.1:$port/metrics" || fail "GET /metrics"
kill -TERM $agent
wait $agent || fail "the agent exited $? on SIGTERM"
sed 's/^/demo:      agent log: /' "$TMPWORK/agent.log"
say "      what Prometheus scrapes from http://127.0.0.1:$port/metrics (bytes given back, by kind and VM):"
grep -e '^cowpunch_reclaimed_bytes_total' -e '^cowpunch_vm_reclaimed_bytes_total' -e '^cowpunch_reclaims_total{result="ok"}' \
	-e '^cowpunch_cow_allocated_bytes' "$TMPWORK/metrics" | sed 's/^/demo:        /'
total=0
for vm in $vms; do
	cowpunch status --json "$vm" >"$TMPWORK/$vm.status.json"
	assert_eq 0 "$(json_get "$TMPWORK/$vm.status.json" .last_reclaim.exit_code)" "$vm: reclaimed" >/dev/null
	b=$(json_get "$TMPWORK/$vm.status.json" .last_reclaim.allocated_before)
	a=$(json_get "$TMPWORK/$vm.status.json" .last_reclaim.allocated_after)
	g=$(json_get "$TMPWORK/$vm.status.json" .last_reclaim.reclaimed_bytes)
	zb=$(json_get "$TMPWORK/$vm.status.json" .last_reclaim.zero_bytes)
	fb=$(json_get "$TMPWORK/$vm.status.json" .last_reclaim.fs_free_bytes)
	m=$(awk -v k="cowpunch_vm_reclaimed_bytes_total{vm=\"$vm\"," 'index($0, k) == 1 {s += $2} END {print s + 0}' "$TMPWORK/metrics")
	assert_eq "$g" "$m" "$vm: /metrics and the record agree" >/dev/null
	assert_eq "$a" $(($(blocks "$COWPUNCH_STATE_DIR/$vm/cow") * 512)) "$vm: COW st_blocks after reclaim" >/dev/null
	echo "$vm $b $a $g" >>"$TMPWORK/figures"
	total=$((total + g))
	say "      $vm: $(mib "$b") -> $(mib "$a"), gave back $(mib "$g") ($(mib "$fb") free in the guest's fs, punched unread; $(mib "$zb") read as all zeros)"
done
say "      total given back: $(mib $total)"

say "[6/6] wake up: cowpunch attach ID, e2fsck -fn, every file's sha256"
for vm in $vms; do
	dev=$(cowpunch attach "$vm")
	/usr/sbin/e2fsck -fn "$dev" >"$TMPWORK/$vm.fsck" 2>&1 || { cat "$TMPWORK/$vm.fsck"; fail "$vm: e2fsck found damage"; }
	mount -t ext4 -o ro "$dev" "$mnt"
	ok=$(cd "$mnt" && sha256sum -c "$TMPWORK/$vm.sums" 2>/dev/null | grep -c ': OK$' || true)
	all=$(wc -l <"$TMPWORK/$vm.sums")
	umount "$mnt"
	cowpunch detach "$vm"
	echo "$vm $ok $all" >>"$TMPWORK/intact"
	say "      $vm: e2fsck clean, $ok/$all files intact"
	assert_eq "$all" "$ok" "$vm: files intact" >/dev/null
done
assert_eq "$base_sha" "$(sha256 "$base")" "base image unchanged" >/dev/null

say ""
say "=================================================================="
say " cowpunch demo: 3 VMs on one base image, kernel $(uname -r)"
say "------------------------------------------------------------------"
say "$(printf ' %-6s %12s %12s %12s  %s' VM 'COW before' 'COW after' 'given back' 'files intact')"
while read -r vm b a g; do
	set -- $(grep "^$vm " "$TMPWORK/intact")
	say "$(printf ' %-6s %12s %12s %12s  %s/%s' "$vm" "$(mib "$b")" "$(mib "$a")" "$(mib "$g")" "$2" "$3")"
done <"$TMPWORK/figures"
say "$(printf ' %-6s %12s %12s %12s' total '' '' "$(mib $total)")"
say " e2fsck clean on every VM; base image unchanged (sha256 ${base_sha%"${base_sha#????????????}"}...)"
say "=================================================================="
for vm in $vms; do cowpunch destroy "$vm"; done
