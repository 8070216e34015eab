#!/usr/bin/env bash
# Power-cut tests: a guest writes through attached overlays while the host kills QEMU (SIGKILL,
# no shutdown); then a fresh VM attaches the same COW files and checks them.  See
# docs/reliability.md, "Power cuts".
#
# Usage: tests/vm/powercut.sh [--kernel 6.1|6.12]... [--keep]
#   The guest of each writer VM plays a Firecracker host with two host disks, ext4 each,
#   /dev/vdb on QEMU's cache=none and /dev/vdc on cache=writeback.  It creates a VM disk on each
#   (cowpunch create) and runs tests/tools/pcload over both overlays at once: 4 KiB O_DIRECT
#   writes (first writes, overwrites, zeros, mixed), an fdatasync after every 1-8 writes and an
#   "ack" line on the console after each.  The host watches the console and kills QEMU at each
#   kill point below (a fresh VM per point).  One verifier VM per kernel then mounts every
#   killed host disk, runs cowpunch inspect (must exit 0), attaches the VM disk, checks that
#   every acknowledged write reads back (pcload check, against the last ack the host saw before
#   the kill), and checks that reclaim followed by attach leaves the disk's sha256 unchanged.
#   --keep keeps the disk images (build/vm/powercut/KERNEL) after a pass; they are always kept
#   after a failure.  Environment: as tests/vm/run.sh (VMTEST_KERNELS, VMTEST_MEM, BUILD_DIR,
#   COWPUNCH_CACHE, VMTEST_ACCEL); POWERCUT_TEST_FREEZE=S stops (SIGSTOP) the first verifier
#   VM S seconds after its start, to test that a verifier that stops is booted once more.
# Exit status: 0 every kill point of every kernel verified, 1 a check failed, 2 the test bed
# could not run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "$top" && mkdir -p "${BUILD_DIR:-build}" && cd "${BUILD_DIR:-build}" && pwd)
vmdir=$build/vm
pcdir=$vmdir/powercut

# Kill points: "TAG OP DELAY_MS": kill DELAY_MS after the console shows TAG's ack of op OP or
# later ("done": after both writers finished).  On the 16 MiB VM disk pcload runs 908 ops:
# first writes 0-340 (one new exception each; the first metadata area holds 256 of them),
# overwrites 341-510, zeros 511-680, mixed 681-907.  Each kill stops both writers, so every
# point is a kill point of both cache modes, wherever the other writer was.
points=("none 0 0" "writeback 30 3" "none 250 0" "writeback 262 1" "none 330 7"
	"writeback 400 0" "none 520 4" "writeback 620 0" "none 800 11" "done 0 0")
seed=20261201
# The verifier prints a heartbeat every $heartbeat s (tests/vm/init).  A verifier whose console stays
# silent for $frozen s has stopped altogether: under TCG a guest has once stopped that way
# (QEMU idle, no message, not even the guest's own 600 s time limit firing) in the middle of
# the checks.  Such a verifier is killed and booted once more, on the same disks (the kill is one
# more power cut for them); a second stop, or any failed check, fails the test.
heartbeat=15 frozen=120

die() {
	echo "powercut: $*" >&2
	exit 2
}
say() { echo "powercut: $*"; }

kernels=()
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) [ $# -ge 2 ] || die "--kernel needs 6.1 or 6.12"; kernels+=("$2"); shift 2 ;;
	--kernel=*) kernels+=("${1#--kernel=}"); shift ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[ ${#kernels[@]} -gt 0 ] || read -r -a kernels <<<"${VMTEST_KERNELS:-6.1 6.12}"
[ -x "$build/tests/tools/pcload" ] || die "$build/tests/tools/pcload missing: run make first"

# The kernels and the initramfs, from the test bed (it packs pcload for these two scenarios).
kargs=()
for k in "${kernels[@]}"; do kargs+=(--kernel "$k"); done
"$here/run.sh" --prepare-only "${kargs[@]}" "$here/powercut/pc-write.sh" \
	"$here/powercut/pc-verify.sh" || die "tests/vm/run.sh --prepare-only failed"
declare -A kimage_of=() modcpio_of=()
accel_args=()
userland=
# shellcheck source=/dev/null
. "$vmdir/bed.env"
qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found"

# make_data_disk DIR SCENARIO: the test bed's data disk running SCENARIO, inputs from DIR/in.
make_data_disk() {
	local d=$1 stage=$1/stage
	rm -rf "$stage" "$d/data.img"
	mkdir -p "$stage/in/$2" "$stage/out" "$stage/work"
	echo "$2" >"$stage/scenarios"
	echo 600 >"$stage/scenario_timeout"
	[ "$2" != pc-verify ] || echo "$heartbeat" >"$stage/heartbeat"
	cp -a "$d/in/." "$stage/in/$2/"
	truncate -s 64M "$d/data.img"
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -d "$stage" "$d/data.img"
	rm -rf "$stage"
}

# Modules the power-cut VMs do not need (tests/vm/init skips them): xfs and btrfs, whose raid6
# and xor dependencies time their algorithms at load, and dm-thin.
skipmods=vmtest.skipmods=xfs,btrfs,raid6_pq,xor,blake2b_generic,dm-thin-pool,dm-persistent-data,dm-bio-prison

# qemu_start DIR KERNEL DRIVE_ARGS...: boots in the background; sets qpid.  The data disk
# comes first (the guest's /init mounts /dev/vda): devices are numbered in command-line order.
qemu_start() {
	local d=$1 k=$2
	shift 2
	rm -f "$d/console.log"
	: >"$d/console.log"
	"$qemu" -nodefaults -no-user-config -M pc "${accel_args[@]}" -smp 1 -m "${VMTEST_MEM:-1024}" \
		-display none -no-reboot -kernel "${kimage_of[$k]}" -initrd "$pcdir/$k/initrd.cpio" \
		-append "console=ttyS0 panic=-1 loglevel=4 mitigations=off rdinit=/init vmtest.kernel=$k $skipmods" \
		-drive "if=none,id=data,file=$d/data.img,format=raw,cache=unsafe" \
		-device virtio-blk-pci,drive=data "$@" \
		-serial "file:$d/console.log" -monitor none </dev/null >"$d/qemu.log" 2>&1 &
	qpid=$!
}

# disk_args ID FILE CACHE SERIAL: a virtio disk the guest finds by its serial.
disk_args() {
	echo "-drive if=none,id=$1,file=$2,format=raw,cache=$3 -device virtio-blk-pci,drive=$1,serial=$4"
}

# acked TAG LOG: the last op TAG's writer saw acknowledged, by the console; -1 for none.
acked() {
	tr -d '\r' <"$2" | awk -v t="$1" 'BEGIN { a = -1 } $1 == "PCLOAD" && $2 == t && $3 == "ack" { a = $4 } END { print a }'
}

# phase_at TAG OP LOG: the phase op OP belongs to, by the writer's phase lines.
phase_at() {
	tr -d '\r' <"$3" | awk -v t="$1" -v op="$2" 'BEGIN { p = "before any op" }
		$1 == "PCLOAD" && $2 == t && $3 == "phase" && $5 <= op { p = $4 } END { print p }'
}

# triggered TAG OP LOG: true once the console shows the kill point's line.
triggered() {
	if [ "$1" = done ]; then
		grep -aq '^PCLOAD idle' "$3"
	else
		tr -d '\r' <"$3" | awk -v t="$1" -v op="$2" 'BEGIN { r = 1 }
			$1 == "PCLOAD" && $2 == t && $3 == "ack" && $4 >= op { r = 0; exit } END { exit r }'
	fi
}

# run_point KERNEL N: one writer VM killed at point N; appends to the kernel's disks list.
run_point() {
	local k=$1 n=$2 d=$pcdir/$1/p$2 tag op delay t0 tr rc=0 ta tn
	read -r tag op delay <<<"${points[$n]}"
	mkdir -p "$d/in"
	echo "$seed" >"$d/in/seed"
	make_data_disk "$d" pc-write
	cp --sparse=always "$pcdir/$k/template.img" "$d/none.img"
	cp --sparse=always "$pcdir/$k/template.img" "$d/writeback.img"
	# shellcheck disable=SC2046 # disk_args' words are meant to split
	qemu_start "$d" "$k" $(disk_args hn "$d/none.img" none pc-none) \
		$(disk_args hw "$d/writeback.img" writeback pc-writeback)
	t0=$(date +%s)
	tr=-
	while ! triggered "$tag" "$op" "$d/console.log"; do
		[ "$tr" != - ] || ! grep -aq '^PCLOAD ready' "$d/console.log" || tr=$(($(date +%s) - t0))
		if ! kill -0 "$qpid" 2>/dev/null; then
			rc=1
			break
		fi
		if [ $(($(date +%s) - t0)) -gt 300 ]; then
			rc=2
			break
		fi
		sleep 0.05
	done
	[ "$delay" = 0 ] || sleep "$(printf '0.%03d' "$delay")"
	kill -9 "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
	if [ $rc != 0 ]; then
		echo "FAIL  $k  kill point $n ($tag $op): the writer VM $([ $rc = 1 ] && echo "ended" || echo "ran 300 s") before it; console: $d/console.log"
		tail -n 15 "$d/console.log" | sed 's/^/    | /'
		return 1
	fi
	ta=$(acked none "$d/console.log")
	tn=$(acked writeback "$d/console.log")
	echo "pc-none-$n none pcn $seed $ta $n" >>"$pcdir/$k/disks"
	echo "pc-writeback-$n writeback pcw $seed $tn $n" >>"$pcdir/$k/disks"
	echo "$n|$tag $op +${delay}ms|$ta ($(phase_at none "$ta" "$d/console.log"))|$tn ($(phase_at writeback "$tn" "$d/console.log"))|$tr|$(($(date +%s) - t0))" >>"$pcdir/$k/points"
	rm -f "$d/data.img"
}

# run_kernel KERNEL: every kill point, then the verifier; writes $pcdir/KERNEL/result.
run_kernel() {
	local k=$1 kd=$pcdir/$1 n drives=() serial tag vd=$pcdir/$1/verify try
	rm -rf "$kd"
	mkdir -p "$kd/tpl"
	cat "${modcpio_of[$k]}" "$userland" >"$kd/initrd.cpio"
	# The host disk's template: ext4 (with its journal) holding an 8 MiB random base image.
	head -c 8M /dev/urandom >"$kd/tpl/base.img"
	truncate -s 64M "$kd/template.img"
	mkfs.ext4 -q -F -L pchost -d "$kd/tpl" "$kd/template.img"
	rm -rf "$kd/tpl"
	: >"$kd/disks"
	: >"$kd/points"
	for n in "${!points[@]}"; do
		run_point "$k" "$n" || { echo fail >"$kd/result"; return 0; }
	done
	mkdir -p "$vd/in"
	cp "$kd/disks" "$vd/in/disks"
	make_data_disk "$vd" pc-verify
	while read -r serial tag _ _ _ n; do
		# shellcheck disable=SC2207 # disk_args' words are meant to split
		drives+=($(disk_args "d$n$tag" "$kd/p$n/$tag.img" unsafe "$serial"))
	done <"$kd/disks"
	for try in 1 2; do
		verify_once "$vd" "$k" "${drives[@]}" && break
		if [ $try = 2 ] || [ "$vstate" != frozen ]; then break; fi
		cp "$vd/console.log" "$vd/console-frozen.log"
		echo "powercut: $k: the verifier stopped (console silent for $frozen s, last line:" \
			"$(tr -d '\r' <"$vd/console.log" | grep -av '^VMTEST-HEARTBEAT\|^verifier VM killed' | tail -n1));" \
			"killed it, booting it once more on the same disks (console kept: $vd/console-frozen.log)"
		make_data_disk "$vd" pc-verify
	done
	if [ "$vstate" = pass ]; then
		echo "pass$([ $try = 1 ] || echo " (second verifier boot: the first stopped)")" >"$kd/result"
	else
		echo "fail (verifier: $vstate, boot $try)" >"$kd/result"
	fi
}

# verify_once DIR KERNEL DRIVE_ARGS...: boots the verifier and waits for it; sets vstate to pass,
# fail (with QEMU's exit status), frozen (console silent for $frozen s) or timeout (900 s).  The
# time limits are watched from here: a background sleep would keep the caller's lock file open
# after the run.  It takes about 90 s under TCG.
verify_once() {
	local d=$1 wd size last=0 seen=0 rc=0
	qemu_start "$@"
	vstate=
	for ((wd = 0; wd < 900; wd++)); do
		kill -0 "$qpid" 2>/dev/null || break
		# The test of this path: POWERCUT_TEST_FREEZE=S stops the first boot's QEMU after S s.
		[ "$try" != 1 ] || [ "$wd" != "${POWERCUT_TEST_FREEZE:-}" ] || kill -STOP "$qpid"
		size=$(stat -c %s "$d/console.log")
		[ "$size" = "$seen" ] || { seen=$size last=$wd; }
		if [ $((wd - last)) -ge "$frozen" ]; then
			vstate=frozen
			break
		fi
		sleep 1
	done
	[ -n "$vstate" ] || [ "$wd" -lt 900 ] || vstate=timeout
	if [ -n "$vstate" ]; then
		kill -9 "$qpid" 2>/dev/null || true
		echo "verifier VM killed: $vstate after $wd s" >>"$d/console.log"
	fi
	# (Quietly: bash would report the job it killed.)
	{ wait "$qpid" || rc=$?; } 2>/dev/null
	if [ -z "$vstate" ]; then
		vstate="fail (qemu exit $rc)"
		! grep -aq '^VMTEST-RESULT pc-verify pass' "$d/console.log" || vstate=pass
	fi
	[ "$vstate" = pass ]
}

for k in "${kernels[@]}"; do rm -rf "${pcdir:?}/$k"; done
t0=$(date +%s)
pids=()
for k in "${kernels[@]}"; do
	say "kernel $k: ${#points[@]} kill points"
	run_kernel "$k" >"$pcdir.$k.log" 2>&1 &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done

fail=0
for k in "${kernels[@]}"; do
	kd=$pcdir/$k
	cat "$pcdir.$k.log"
	echo "kernel $k: point | kill when | cache=none: last ack (phase) | cache=writeback: last ack (phase) | writers started (s) | killed (s)"
	sed 's/^/    /' "$kd/points" 2>/dev/null || true
	tr -d '\r' <"$kd/verify/console.log" 2>/dev/null | grep -a '^\[pc-verify\]' | sed 's/^/    /' || true
	r=$(cat "$kd/result" 2>/dev/null || echo "fail (no result)")
	if [ "${r%% *}" = pass ]; then
		echo "PASS  $k  power cut: $(wc -l <"$kd/points") kill points, cache=none and cache=writeback${r#pass}"
		[ $keep = 1 ] || rm -f "$kd"/p*/*.img
	else
		echo "FAIL  $k  power cut: $r; logs in $kd"
		fail=1
	fi
done
say "$(($(date +%s) - t0))s"
exit $fail
