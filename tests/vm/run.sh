#!/usr/bin/env bash
# The real-kernel test bed: boots Debian's 6.1 and 6.12 cloud kernels under QEMU with a busybox
# initramfs carrying build/cowpunch and tests/vm/scenarios, runs the scenarios inside, and reports
# per-scenario pass/fail.  See docs/testing.md.
#
# Usage: tests/vm/run.sh [--kernel 6.1|6.12]... [--list] [--prepare-only] [SCENARIO|PATH.sh]...
#   SCENARIO selects scenarios by name prefix (01, 02-zeroed); PATH.sh runs a scenario file kept
#   elsewhere (e.g. the fixture generator).  --prepare-only prepares the kernels and the
#   initramfs for the selected scenarios, writes their paths to BUILD_DIR/vm/bed.env and boots
#   nothing (tests/vm/powercut.sh boots its own VMs with them).  Environment: VMTEST_ONLY (scenario names, spaces),
#   VMTEST_KERNELS ("6.1 6.12"), VMTEST_TIMEOUT (seconds per VM, default 1200),
#   VMTEST_SCENARIO_TIMEOUT (seconds per scenario, default 600), VMTEST_MEM (MiB, default 1024),
#   VMTEST_DISK_MB (data disk, default 1024), VMTEST_ACCEL (tcg|kvm, default: probe),
#   COWPUNCH_CACHE (kernel cache, default ~/.cache/cowpunch), BUILD_DIR (default build).
# Exit status: 0 when every selected scenario passed (or skipped) on every selected kernel,
# 1 when any failed, 2 on usage errors or when the test bed itself cannot run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "$top" && mkdir -p "${BUILD_DIR:-build}" && cd "${BUILD_DIR:-build}" && pwd)
cache=${COWPUNCH_CACHE:-$HOME/.cache/cowpunch}
vmdir=$build/vm
logdir=$vmdir/logs

# label -> Debian metapackage.  The metapackage's Depends names the concrete image package.
declare -A kernel_meta=([6.1]=linux-image-cloud-amd64 [6.12]=linux-image-6.12-cloud-amd64)
all_kernels=(6.1 6.12)

# Host tools packed into the initramfs (with their shared libraries).  Scenarios call the ones
# busybox also provides through lib.sh wrappers, since ash prefers its applets over $PATH.
guest_tools=(/usr/sbin/dmsetup /usr/sbin/losetup /usr/sbin/blkdiscard /usr/sbin/blockdev
	/usr/sbin/fsfreeze /usr/sbin/fstrim /usr/sbin/mke2fs /usr/sbin/e2fsck /usr/sbin/debugfs
	/usr/sbin/dumpe2fs /usr/sbin/filefrag /usr/bin/fallocate /usr/bin/sha256sum /usr/bin/truncate /usr/bin/stat
	/usr/bin/dd /usr/bin/cmp /usr/bin/od /usr/bin/jq /usr/bin/xz /usr/bin/flock /usr/sbin/resize2fs
	/lib/systemd/systemd-udevd /bin/udevadm /usr/sbin/mkfs.xfs /usr/sbin/mkfs.btrfs /usr/bin/strace)
# The device-mapper udev rules (from dmsetup), for the scenarios that run udevd.
guest_udev_rules=(/lib/udev/rules.d/55-dm.rules /lib/udev/rules.d/60-persistent-storage-dm.rules
	/lib/udev/rules.d/95-dm-notify.rules)
# Modules every scenario may need; --show-depends adds what they depend on.
guest_modules=(virtio_pci virtio_blk loop dm-mod dm-bufio dm-snapshot dm-zero dm-thin-pool ext4
	crc32c_generic xfs btrfs)
# A scenario may ask for more host tools in a comment line of its own:
#   # vmtest-tools: /usr/bin/fio /usr/bin/env @build/tests/tools/pcload
# They are packed (with their libraries) only into the VMs that run such a scenario; @build/
# names a file of the build directory, packed as /usr/bin/NAME.
# bench/cow-path (the COW-path benchmark's guest part) is packed into every VM at /vm/bench/cow-path.

die() {
	echo "vmtest: $*" >&2
	exit 2
}
say() { echo "vmtest: $*"; }

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# --- arguments -----------------------------------------------------------------------------
kernels=()
selectors=()
list_only=0
prepare_only=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) [ $# -ge 2 ] || die "--kernel needs 6.1 or 6.12"; kernels+=("$2"); shift 2 ;;
	--kernel=*) kernels+=("${1#--kernel=}"); shift ;;
	--list) list_only=1; shift ;;
	--prepare-only) prepare_only=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) selectors+=("$1"); shift ;;
	esac
done
[ ${#kernels[@]} -gt 0 ] || read -r -a kernels <<<"${VMTEST_KERNELS:-${all_kernels[*]}}"
[ ${#selectors[@]} -gt 0 ] || read -r -a selectors <<<"${VMTEST_ONLY:-}"
for k in "${kernels[@]}"; do
	[ -n "${kernel_meta[$k]:-}" ] || die "unknown kernel '$k' (known: ${all_kernels[*]})"
done

# Scenario set: name -> file.
declare -A scen_file=()
scen_names=()
for f in "$here"/scenarios/[0-9][0-9]-*.sh; do
	[ -e "$f" ] || continue
	n=$(basename "$f" .sh)
	scen_file[$n]=$f
done
if [ ${#selectors[@]} -eq 0 ]; then
	mapfile -t scen_names < <(printf '%s\n' "${!scen_file[@]}" | sort)
else
	for s in "${selectors[@]}"; do
		if [ -f "$s" ]; then
			n=$(basename "$s" .sh)
			scen_file[$n]=$(cd "$(dirname "$s")" && pwd)/$(basename "$s")
			scen_names+=("$n")
			continue
		fi
		found=0
		for n in $(printf '%s\n' "${!scen_file[@]}" | sort); do
			case $n in "$s" | "$s"-*) scen_names+=("$n"); found=1 ;; esac
		done
		[ $found = 1 ] || die "no scenario matches '$s' (try --list)"
	done
fi
build_tools=()
for n in "${scen_names[@]}"; do
	while read -r t; do
		case $t in
		'') ;;
		@build/*) build_tools+=("$build/${t#@build/}") ;;
		*) guest_tools+=("$t") ;;
		esac
	done < <(sed -n 's/^# vmtest-tools: *//p' "${scen_file[$n]}" | tr ' ' '\n')
done
if [ $list_only = 1 ]; then
	printf '%s\n' "${scen_names[@]}"
	exit 0
fi
[ ${#scen_names[@]} -gt 0 ] || die "no scenarios in $here/scenarios"

# --- host prerequisites ----------------------------------------------------------------------
qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || die "qemu-system-x86_64 not found: install qemu-system-x86 (scripts/deps.sh vm)"
for t in busybox depmod modprobe cpio mkfs.ext4 debugfs dpkg apt-get ldd timeout flock file xz "${guest_tools[@]}"; do
	command -v "$t" >/dev/null || die "missing host tool $t (scripts/deps.sh vm installs it)"
done
busybox_bin=$(command -v busybox)
file "$busybox_bin" 2>/dev/null | grep -q 'dynamically linked' &&
	die "$busybox_bin is dynamically linked: install busybox-static"
[ -x "$build/cowpunch" ] || die "$build/cowpunch missing: run make first"
for t in ${build_tools[@]+"${build_tools[@]}"}; do
	[ -x "$t" ] || die "$t missing: run make first"
done

accel=${VMTEST_ACCEL:-}
if [ -z "$accel" ]; then
	# kvm_pvm is a software nested-virtualisation module: stock kernels die under it.
	if [ -d /sys/module/kvm_pvm ]; then
		accel=tcg
	elif [ -r /dev/kvm ] && [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
		accel=kvm
	else
		accel=tcg
	fi
fi
case $accel in
tcg) accel_args=(-accel tcg -cpu max) ;;
kvm) accel_args=(-accel kvm -cpu host) ;;
*) die "VMTEST_ACCEL must be tcg or kvm" ;;
esac

mkdir -p "$cache/debs" "$cache/kernels" "$vmdir" "$logdir"
t_start=$(date +%s)

# --- kernels ---------------------------------------------------------------------------------
# Prints the concrete image package and version the metapackage depends on.
resolve_kernel() {
	local meta=$1 dep ver
	dep=$(apt-cache show --no-all-versions "$meta" 2>/dev/null |
		sed -n 's/^Depends: *\(linux-image-[^ ,]*\).*/\1/p' | head -n1)
	[ -n "$dep" ] || return 1
	ver=$(apt-cache show --no-all-versions "$dep" 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)
	[ -n "$ver" ] || return 1
	echo "$dep $ver"
}

# find_deb PKG VERSION: the downloaded .deb in the cache, if any (apt writes an epoch's ':' as %3a).
find_deb() {
	local f
	for f in "$cache/debs/${1}_${2//:/%3a}_"*.deb; do
		[ -e "$f" ] && echo "$f" && return
	done
	return 0
}

# prepare_kernel LABEL: unpacks the kernel into the cache, sets kdir, kver, kimage, modcpio.
prepare_kernel() {
	local label=$1 meta=${kernel_meta[$1]} pkg ver deb tree stamp
	local current=$cache/kernels/$label.current
	if ! read -r pkg ver < <(resolve_kernel "$meta"); then
		if [ ! -e /var/lib/apt/lists/lock ] || ! apt-cache policy "$meta" | grep -q Candidate; then
			say "apt package lists lack $meta: running apt-get update"
			apt-get update -qq >&2 || true
		fi
		if ! read -r pkg ver < <(resolve_kernel "$meta"); then
			# Offline: fall back to the last kernel unpacked for this label.
			[ -s "$current" ] || die "cannot resolve $meta with apt and nothing cached in $cache"
			read -r pkg ver <"$current"
			say "apt cannot resolve $meta; using cached $pkg $ver"
		fi
	fi
	tree=$cache/kernels/${pkg}_$ver
	stamp=$tree/.unpacked
	if [ ! -e "$stamp" ]; then
		deb=$(find_deb "$pkg" "$ver")
		if [ -z "$deb" ]; then
			say "downloading $pkg $ver"
			# Exactly one package=version: a glob would fetch dozens of kernels.
			(cd "$cache/debs" && apt-get download -q "$pkg=$ver" >&2) ||
				die "apt-get download $pkg=$ver failed"
			deb=$(find_deb "$pkg" "$ver")
			[ -n "$deb" ] || die "apt-get download left no ${pkg}_${ver}_*.deb in $cache/debs"
		fi
		rm -rf "$tree"
		mkdir -p "$tree"
		dpkg -x "$deb" "$tree/root"
		kver=$(ls "$tree/root/lib/modules")
		depmod -b "$tree/root" "$kver"
		touch "$stamp"
	fi
	echo "$pkg $ver" >"$current"
	kdir=$tree
	kver=$(ls "$tree/root/lib/modules")
	kimage=$tree/root/boot/vmlinuz-$kver
	[ -f "$kimage" ] || die "no kernel image in $tree"
	# Named after the module list: worktrees with different lists share the kernel cache.
	modcpio=$tree/modules-$(printf '%s\n' "${guest_modules[@]}" | sha256sum | cut -c1-12).cpio
	if [ ! -s "$modcpio" ] || [ "$modcpio" -ot "$stamp" ] || [ "$modcpio" -ot "$0" ]; then
		build_module_cpio "$tree" "$kver" "$modcpio"
	fi
}

# build_module_cpio TREE KVER OUT: the modules the guest needs, in insmod order (/etc/modules.order).
build_module_cpio() {
	local tree=$1 kv=$2 out=$3 stage m line path
	stage=$(mktemp -d)
	mkdir -p "$stage/etc"
	: >"$stage/etc/modules.order"
	for m in "${guest_modules[@]}"; do
		# "builtin X" lines need nothing; "insmod PATH ARGS" lines name the file to load.
		modprobe -d "$tree/root" -S "$kv" --show-depends "$m" 2>/dev/null | while read -r line; do
			case $line in
			insmod\ *)
				path=${line#insmod }
				path=${path%% *}
				path=/${path#"$tree/root/"}
				grep -qxF "$path" "$stage/etc/modules.order" || echo "$path" >>"$stage/etc/modules.order"
				;;
			esac
		done
	done
	# Store modules uncompressed: busybox insmod hands the bytes to init_module(2) as they are.
	while read -r path; do
		mkdir -p "$stage$(dirname "$path")"
		case $path in
		*.ko.xz) xz -dc "$tree/root$path" >"$stage${path%.xz}" ;;
		*.ko.zst) zstd -qdc "$tree/root$path" >"$stage${path%.zst}" ;;
		*.ko.gz) gzip -dc "$tree/root$path" >"$stage${path%.gz}" ;;
		*) cp "$tree/root$path" "$stage$path" ;;
		esac
	done <"$stage/etc/modules.order"
	sed -i 's/\.ko\.\(xz\|zst\|gz\)$/.ko/' "$stage/etc/modules.order"
	(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out.tmp"
	mv "$out.tmp" "$out"
	rm -rf "$stage"
}

# --- userland initramfs (shared by both kernels) ---------------------------------------------
copy_with_libs() {
	local stage=$1 bin=$2 lib
	mkdir -p "$stage$(dirname "$bin")"
	cp -L "$bin" "$stage$bin"
	for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*'); do
		[ -e "$stage$lib" ] && continue
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done
}

build_userland() {
	local out=$vmdir/userland.cpio hash stage f
	hash=$(
		{
			sha256sum "$build/cowpunch" "$busybox_bin" "$here/init" "$here/lib.sh" "$0" \
				"${guest_tools[@]}" "${guest_udev_rules[@]}" /etc/mke2fs.conf \
				${build_tools[@]+"${build_tools[@]}"}
			for n in "${scen_names[@]}"; do sha256sum "${scen_file[$n]}"; done
			find "$top/bench/cow-path" -type f | LC_ALL=C sort | xargs sha256sum
		} | sha256sum | cut -c1-16
	)
	if [ -s "$out" ] && [ "$(cat "$out.hash" 2>/dev/null)" = "$hash" ]; then
		userland=$out
		return
	fi
	say "building initramfs userland ($hash)"
	stage=$(mktemp -d)
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,data,vm/scenarios}
	cp "$busybox_bin" "$stage/bin/busybox"
	ln -s busybox "$stage/bin/sh"
	for f in "${guest_tools[@]}"; do copy_with_libs "$stage" "$f"; done
	ln -sf mke2fs "$stage/usr/sbin/mkfs.ext4"
	# The udev rules call /sbin/dmsetup.
	ln -sf /usr/sbin/dmsetup "$stage/sbin/dmsetup"
	mkdir -p "$stage/lib/udev/rules.d"
	cp "${guest_udev_rules[@]}" "$stage/lib/udev/rules.d/"
	copy_with_libs "$stage" "$build/cowpunch"
	mv "$stage$build/cowpunch" "$stage/usr/bin/cowpunch"
	for f in ${build_tools[@]+"${build_tools[@]}"}; do
		copy_with_libs "$stage" "$f"
		mv "$stage$f" "$stage/usr/bin/$(basename "$f")"
	done
	cp /etc/mke2fs.conf "$stage/etc/"
	cp "$here/init" "$stage/init"
	chmod 755 "$stage/init"
	cp "$here/lib.sh" "$stage/vm/lib.sh"
	for n in "${scen_names[@]}"; do cp "${scen_file[$n]}" "$stage/vm/scenarios/$n.sh"; done
	mkdir -p "$stage/vm/bench"
	cp -r "$top/bench/cow-path" "$stage/vm/bench/cow-path"
	(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out.tmp"
	mv "$out.tmp" "$out"
	echo "$hash" >"$out.hash"
	rm -rf "$stage"
	userland=$out
}

# --- data disk ----------------------------------------------------------------------------------
# make_data_disk DIR: ext4 image carrying the scenario list, per-scenario inputs and an out/ tree.
make_data_disk() {
	local d=$1 stage=$1/stage n
	rm -rf "$stage" "$d/data.img"
	mkdir -p "$stage/in" "$stage/out" "$stage/work"
	printf '%s\n' "${scen_names[@]}" >"$stage/scenarios"
	echo "${VMTEST_SCENARIO_TIMEOUT:-600}" >"$stage/scenario_timeout"
	for n in "${scen_names[@]}"; do
		mkdir -p "$stage/in/$n"
		# Host-made inputs: tests/vm/scenarios/NAME.d/ is copied to $IN in the guest.
		if [ -d "${scen_file[$n]%.sh}.d" ]; then cp -a "${scen_file[$n]%.sh}.d/." "$stage/in/$n/"; fi
	done
	truncate -s "${VMTEST_DISK_MB:-1024}M" "$d/data.img"
	mkfs.ext4 -q -F -L vmdata -E lazy_itable_init=0,lazy_journal_init=0 -d "$stage" "$d/data.img"
	rm -rf "$stage"
}

# run_vm LABEL: boots one kernel, leaves console.log, out/ and status in $vmdir/LABEL.
run_vm() {
	local label=$1 d=$vmdir/$1 rc=0
	cat "${modcpio_of[$label]}" "$userland" >"$d/initrd.cpio"
	boot_qemu "$label" "${accel_args[@]}" || rc=$?
	# KVM "where it really works": when the guest never reached /init under a probed KVM, say
	# so and boot again under TCG.
	if [ "$accel" = kvm ] && [ -z "${VMTEST_ACCEL:-}" ] && ! grep -aq '^vmtest: guest up' "$d/console.log"; then
		say "$label: the guest did not start under KVM (qemu exit $rc); retrying with TCG"
		sed 's/^/    qemu: /' "$d/qemu.log" | tail -n 3
		make_data_disk "$d"
		rc=0
		boot_qemu "$label" -accel tcg -cpu max || rc=$?
	fi
	echo "$rc" >"$d/qemu.rc"
	rm -rf "$d/out"
	debugfs -R "rdump /out $d" "$d/data.img" >/dev/null 2>&1 || true
}

# boot_qemu LABEL ACCEL_ARGS...: one boot, under the hard time limit; returns QEMU's status.
boot_qemu() {
	local label=$1 d=$vmdir/$1
	shift
	rm -f "$d/console.log"
	"timeout" -k 10 "${VMTEST_TIMEOUT:-1200}" "$qemu" -nodefaults -no-user-config -M pc \
		"$@" -smp 1 -m "${VMTEST_MEM:-1024}" -display none -no-reboot \
		-kernel "${kimage_of[$label]}" -initrd "$d/initrd.cpio" \
		-append "console=ttyS0 panic=-1 loglevel=4 mitigations=off rdinit=/init vmtest.kernel=$label" \
		-drive "file=$d/data.img,format=raw,if=virtio,cache=unsafe" \
		-serial "file:$d/console.log" -monitor none </dev/null >"$d/qemu.log" 2>&1
}

declare -A kimage_of=() modcpio_of=()
# The cache is shared by every worktree of the machine: one preparer at a time.
exec 9>"$cache/.lock"
flock 9
for k in "${kernels[@]}"; do
	prepare_kernel "$k"
	kimage_of[$k]=$kimage
	modcpio_of[$k]=$modcpio
	say "kernel $k: $kver ($(basename "$kdir"))"
done
flock -u 9
exec 9>&-
build_userland
t_prep=$(date +%s)
if [ $prepare_only = 1 ]; then
	{
		echo "accel_args=(${accel_args[*]})"
		echo "userland=$userland"
		for k in "${kernels[@]}"; do
			echo "kimage_of[$k]=${kimage_of[$k]}"
			echo "modcpio_of[$k]=${modcpio_of[$k]}"
		done
	} >"$vmdir/bed.env"
	say "prepared in $((t_prep - t_start))s: $vmdir/bed.env"
	exit 0
fi

pids=()
for k in "${kernels[@]}"; do
	mkdir -p "$vmdir/$k"
	rm -f "$vmdir/$k/console.log" "$vmdir/$k/qemu.rc"
	make_data_disk "$vmdir/$k"
	say "booting $k ($accel): ${scen_names[*]}"
	run_vm "$k" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
t_end=$(date +%s)

# --- results --------------------------------------------------------------------------------
pass=0 fail=0 skip=0
failed=()
for k in "${kernels[@]}"; do
	d=$vmdir/$k
	qrc=$(cat "$d/qemu.rc" 2>/dev/null || echo '?')
	done_line=$(grep -a '^VMTEST-DONE' "$d/console.log" 2>/dev/null | tail -n1 || true)
	why=""
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		why="VM timed out after ${VMTEST_TIMEOUT:-1200}s"
	elif [ -z "$done_line" ]; then
		why="VM ended without the VMTEST-DONE marker (qemu exit $qrc; kernel panic or crash?)"
	fi
	if [ -n "$why" ]; then
		say "$k: $why; console log: $logdir/$k-console.log"
		# QEMU's own complaint, if any (no firmware, accelerator refused, ...).
		[ ! -s "$d/qemu.log" ] || sed 's/^/    qemu: /' "$d/qemu.log" | tail -n 10
	fi
	for n in "${scen_names[@]}"; do
		r=$(awk -v n="$n" '$1 == n { print $2, $3, $4 }' "$d/out/results" 2>/dev/null | tail -n1)
		read -r status src secs <<<"${r:-missing - -}"
		# The console marker must agree with the results file.
		if [ "$status" != missing ] && ! grep -aq "^VMTEST-RESULT $n $status" "$d/console.log"; then
			status=fail src="results/console disagree"
		fi
		case $status in
		pass)
			pass=$((pass + 1))
			echo "PASS  $k  $n (${secs}s)"
			;;
		skip)
			skip=$((skip + 1))
			echo "SKIP  $k  $n: $(tail -n1 "$d/out/logs/$n.log" 2>/dev/null)"
			;;
		*)
			fail=$((fail + 1))
			failed+=("$k $n")
			if [ "$status" = missing ]; then src="no result${why:+: $why}"; else src="exit $src"; fi
			echo "FAIL  $k  $n ($src) log: $logdir/$k-$n.log"
			if [ -f "$d/out/logs/$n.log" ]; then
				cp "$d/out/logs/$n.log" "$logdir/$k-$n.log"
				tail -n 25 "$d/out/logs/$n.log" | sed 's/^/    | /'
			else
				cp "$d/console.log" "$logdir/$k-$n.log" 2>/dev/null || true
				tail -n 25 "$d/console.log" 2>/dev/null | sed 's/^/    | /'
			fi
			;;
		esac
	done
	if [ -n "$why" ] || [ $fail -gt 0 ]; then cp "$d/console.log" "$logdir/$k-console.log" 2>/dev/null || true; fi
done
say "timings: prepare $((t_prep - t_start))s, VMs $((t_end - t_prep))s, total $((t_end - t_start))s; outputs in $vmdir/KERNEL/out"
[ $skip -eq 0 ] || say "$skip skipped (reasons above)"
echo "vmtest: $pass passed, $fail failed"
[ $fail -eq 0 ]
