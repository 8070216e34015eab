#!/bin/sh
# bench/cow-path/guest.sh: the part of the COW-path benchmark that makes devices and runs fio.
# run.sh starts it inside the QEMU test bed (or, with --native, on the host).  POSIX sh: it runs
# under busybox ash in the guest and dash or bash on a host.
#
# Usage: guest.sh --work DIR --out DIR --prefix PREFIX [--config FILE] [--state-dir DIR]
#                 [--jobs DIR] [--cowpunch PATH]
#   --work DIR       made by this script (it must not exist) and removed on exit: the base
#                    image, the raw file, the COW files, the thin pool's files
#   --out DIR        fio's JSON (json/), index.tsv (one line a job), meta (machine, settings)
#   --prefix PREFIX  every device-mapper name it makes contains PREFIX (cowpunch VM IDs
#                    PREFIX*, so base-PREFIX* and overlay-PREFIX*; thin devices PREFIX*)
#   --config FILE    shell assignments of the BC_* settings below, read before they default
#   --state-dir DIR  cowpunch's state directory; must not exist (default WORK/state)
#   --jobs DIR       the fio job files (default: next to this script)
#   --cowpunch PATH  the cowpunch binary (default: cowpunch on PATH)
# Settings (environment or --config): BC_SIZE_MB (256) the size of every target;
#   BC_RAMP, BC_RUNTIME (seconds: fio ramp_time, runtime); BC_CONFIGS: "CHUNK:DIO:SCOPE ..."
#   (SCOPE full: every target and BC_ENGINES x BC_QDS; var: the raw file and the overlay
#   targets with BC_VAR_ENGINES x BC_VAR_QDS); BC_PATTERNS ("4k 1M": the 4 KiB random and
#   1 MiB sequential jobs); BC_TARGETS ("raw overlay thin": the groups of targets; base reads
#   go with overlay); BC_FAIL_AT=N makes the Nth job fail (tests).  BC_RAMP and BC_RUNTIME
#   take fio's time units (200ms).
#
# It refuses to start (exit 2, touching nothing) when device-mapper is missing, when a
# device-mapper name containing PREFIX exists, when a loop device serves a file under WORK, or
# when WORK or the state directory exists.  On exit, normal or not (INT, TERM, a failed
# command), it removes every device-mapper device whose name contains PREFIX, detaches every
# loop device backed by a file under WORK, and removes WORK.
set -eu

usage() { sed -n '4,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
say() { echo "bench-cow: [$(date +%H:%M:%S)] $*"; }
refuse() {
	echo "bench-cow: refusing to run: $*" >&2
	exit 2
}

work="" out="" prefix="" config="" state="" jobs="" cowpunch_bin=cowpunch
while [ $# -gt 0 ]; do
	case $1 in
	--work) work=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--prefix) prefix=$2; shift 2 ;;
	--config) config=$2; shift 2 ;;
	--state-dir) state=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--cowpunch) cowpunch_bin=$2; shift 2 ;;
	*) usage ;;
	esac
done
[ -n "$work" ] && [ -n "$out" ] && [ -n "$prefix" ] || usage
[ -z "$config" ] || . "$config"
: "${jobs:=$(cd "$(dirname "$0")" && pwd)/jobs}"
: "${BC_SIZE_MB:=256}" "${BC_RAMP:=2}" "${BC_RUNTIME:=5}"
: "${BC_CONFIGS:=4k:on:full 16k:on:var 64k:on:var 4k:off:var 64k:off:var}"
: "${BC_ENGINES:=io_uring libaio}" "${BC_QDS:=1 32}"
: "${BC_VAR_ENGINES:=io_uring}" "${BC_VAR_QDS:=1 32}"
: "${BC_FAIL_AT:=0}" "${BC_PATTERNS:=4k 1M}" "${BC_TARGETS:=raw overlay thin}"
case $prefix in *[!A-Za-z0-9_.-]* | "") refuse "prefix '$prefix': letters, digits, _ . - only" ;; esac

# Busybox ash runs its own applets before $PATH: call the real tools where they exist.
tool() { if [ -x "/usr/sbin/$1" ]; then echo "/usr/sbin/$1"; elif [ -x "/usr/bin/$1" ]; then echo "/usr/bin/$1"; elif [ -x "/sbin/$1" ]; then echo "/sbin/$1"; else echo "$1"; fi; }
DMSETUP=$(tool dmsetup) LOSETUP=$(tool losetup) DD=$(tool dd)
FIO=$(tool fio)

# --- refusals: nothing is touched before these pass ---------------------------------------------
[ -e /dev/mapper/control ] && $DMSETUP version >/dev/null 2>&1 ||
	refuse "device-mapper is not available on this kernel ($(uname -r)): /dev/mapper/control or dmsetup version fails (load dm-mod, or run in the QEMU test bed without --native)"
command -v "$FIO" >/dev/null 2>&1 || refuse "fio is missing"
command -v "$cowpunch_bin" >/dev/null 2>&1 || refuse "cowpunch binary '$cowpunch_bin' not found"
[ ! -e "$work" ] && [ ! -L "$work" ] || refuse "work directory $work exists: it is not this run's"
: "${state:=$work/state}"
[ ! -e "$state" ] || refuse "state directory $state exists: it is not this run's"
mine=$($DMSETUP ls 2>/dev/null | awk -v p="$prefix" 'index($1, p) { print $1 }')
[ -z "$mine" ] || refuse "device-mapper devices with prefix $prefix exist: $(echo "$mine" | tr "\n" " ")"
wd=$(cd "$(dirname "$work")" && pwd)/$(basename "$work")
busy=$($LOSETUP --list --noheadings --output NAME,BACK-FILE 2>/dev/null | awk -v w="$wd/" 'index($2, w) == 1 { print $1 }')
[ -z "$busy" ] || refuse "loop devices already serve files under $wd: $busy"
work=$wd

# --- cleanup: everything with our prefix or under our work dir, whatever state we are in ----------
bg=""
cleaned=0
cleanup() {
	[ $cleaned = 0 ] || return 0
	cleaned=1
	if [ -n "$bg" ]; then
		kill -TERM "$bg" 2>/dev/null || true
		sleep 1
		kill -KILL "$bg" 2>/dev/null || true
		wait "$bg" 2>/dev/null || true
	fi
	# Overlays and thin volumes before what they sit on (base-*, the pool), several rounds for
	# anything still busy for a moment.
	for round in 1 2 3 4 5; do
		left=$($DMSETUP ls 2>/dev/null | awk -v p="$prefix" 'index($1, p) { print $1 }')
		[ -n "$left" ] || break
		for n in $(echo "$left" | grep '^overlay-' || true) $(echo "$left" | grep -e '-thin$' || true) \
			$(echo "$left" | grep -e '-pool$' || true) $left; do
			$DMSETUP remove "$n" >/dev/null 2>&1 || true
		done
		[ $round -lt 3 ] || $DMSETUP remove --force $left >/dev/null 2>&1 || true
		sleep 0.2
	done
	for l in $($LOSETUP --list --noheadings --output NAME,BACK-FILE 2>/dev/null | awk -v w="$work/" 'index($2, w) == 1 { print $1 }'); do
		$LOSETUP -d "$l" 2>/dev/null || true
	done
	rm -rf "$work" "$state"
	left=$($DMSETUP ls 2>/dev/null | awk -v p="$prefix" 'index($1, p) { print $1 }')
	[ -z "$left" ] || echo "bench-cow: cleanup could not remove: $left" >&2
}
trap 'rc=$?; cleanup; exit $rc' EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM
trap 'exit 129' HUP

# run CMD...: runs CMD in the background and waits, so INT and TERM are handled at once.
run() {
	"$@" &
	bg=$!
	_rc=0
	wait "$bg" || _rc=$?
	bg=""
	return $_rc
}
cp_() { "$cowpunch_bin" "$@" --state-dir "$state"; }
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

mkdir -p "$work" "$out/json"
size=$((BC_SIZE_MB * 1048576))
: >"$out/index.tsv"
{
	echo "kernel=$(uname -r)"
	echo "machine=$(uname -m), $(grep -c ^processor /proc/cpuinfo) CPU, $(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)"
	echo "cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "fio=$($FIO --version)"
	echo "size_mb=$BC_SIZE_MB ramp=$BC_RAMP runtime=$BC_RUNTIME"
	echo "configs=$BC_CONFIGS"
	echo "patterns=$BC_PATTERNS targets=$BC_TARGETS"
	echo "engines=$BC_ENGINES qds=$BC_QDS var_engines=$BC_VAR_ENGINES var_qds=$BC_VAR_QDS"
	echo "work_fs=$(df -T "$work" 2>/dev/null | awk 'NR == 2 { print $2 }')"
	echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$out/meta"
t_start=$(date +%s)

# The base image: random data (a 4 MiB random seed repeated; nothing below looks at contents).
say "making the ${BC_SIZE_MB} MiB base image and raw file in $work"
run $DD if=/dev/urandom of="$work/seed" bs=1M count=4 status=none
i=0
while [ $i -lt $((BC_SIZE_MB / 4)) ]; do
	cat "$work/seed"
	i=$((i + 1))
done >"$work/base.img"
# The raw file: the same bytes, written (allocated), as a preallocated VM disk would be.
run $DD if="$work/base.img" of="$work/raw.img" bs=1M conv=fsync status=none
rm -f "$work/seed"

njob=0
# job CFG CHUNK DIO TARGET PATTERN ENGINE QD DEV [IOLOG]: drops the caches, runs one fio job
# file (jobs/PATTERN.fio) on DEV, keeps its JSON and an index line.
job() {
	_cfg=$1 _chunk=$2 _dio=$3 _target=$4 _pat=$5 _eng=$6 _qd=$7 _dev=$8 _iolog=${9:-}
	case $_pat in *1m*) _bs=1M ;; *) _bs=4k ;; esac
	case " $BC_PATTERNS " in *" $_bs "*) ;; *) return 0 ;; esac
	njob=$((njob + 1))
	_name=${_cfg}_${_target}_${_pat}_${_eng}_qd${_qd}
	_file=json/$_name.json
	[ "$njob" != "$BC_FAIL_AT" ] || { say "job $njob: failure injected (BC_FAIL_AT)"; _eng=injected-failure; }
	drop_caches
	say "job $njob: $_name"
	BC_DEV=$_dev BC_ENGINE=$_eng BC_QD=$_qd BC_RAMP=$BC_RAMP BC_RUNTIME=$BC_RUNTIME \
		BC_IOLOG=$_iolog BC_SIZE=$size \
		run "$FIO" --output-format=json --output="$out/$_file" "$jobs/$_pat.fio" ||
		{ say "fio failed: $_name"; cat "$out/$_file" >&2 2>/dev/null || true; return 1; }
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$_cfg" "$_chunk" "$_dio" "$_target" \
		"$_pat" "$_bs" "$_qd" "$_eng" "$_file" >>"$out/index.tsv"
}

# first_chunk_log DEV CHUNK_BYTES FILE: a fio iolog writing 4 KiB once into every chunk, in a
# random order, at a random 4 KiB offset inside the chunk: each write is a chunk's first.
first_chunk_log() {
	awk -v dev="$1" -v c="$2" -v n=$((size / $2)) -v seed="$$" 'BEGIN {
		srand(seed)
		for (i = 0; i < n; i++) a[i] = i
		for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = a[i]; a[i] = a[j]; a[j] = t }
		print "fio version 2 iolog"; print dev " add"; print dev " open"
		per = c / 4096
		for (i = 0; i < n; i++) print dev " write " (a[i] * c + int(rand() * per) * 4096) " 4096"
		print dev " close"
	}' >"$3"
}

bytes_of() {
	case $1 in
	*k | *K) echo $((${1%?} * 1024)) ;;
	*m | *M) echo $((${1%?} * 1048576)) ;;
	*) echo "$1" ;;
	esac
}

# --- targets ---------------------------------------------------------------------------------------
vmn=0
# vm_create CHUNK DIO: a fresh cowpunch VM over the base image, sets $vm (its ID) and $dev.
vm_create() {
	vmn=$((vmn + 1))
	vm=${prefix}v$vmn
	dev=$(cp_ create "$vm" --base "$work/base.img" --size "${BC_SIZE_MB}M" --chunk-size "$1" \
		--cow-direct-io "$2")
}
vm_destroy() { cp_ destroy "$1" >/dev/null; }

raw_done=" "
# raw CFG DIO ENGINES QDS: the raw file through a loop device (direct I/O as DIO), every pattern.
raw_target() {
	_l=$($LOSETUP -f --show --direct-io="$2" "$work/raw.img")
	for _e in $3; do
		for _q in $4; do
			for _p in randread-4k randwrite-4k read-1m write-1m; do
				case $raw_done in *" $2-$_p-$_e-$_q "*) continue ;; esac
				job "$1" - "$2" raw "$_p" "$_e" "$_q" "$_l"
				raw_done="$raw_done$2-$_p-$_e-$_q "
			done
		done
	done
	$LOSETUP -d "$_l"
}

# overlay CFG CHUNK DIO SCOPE ENGINES QDS: every overlay target (and base reads when full).
overlay_targets() {
	_cfg=$1 _c=$2 _d=$3 _scope=$4 _engs=$5 _qds=$6
	_cb=$(bytes_of "$_c")
	# Reads falling through to the base (no exception yet), and the base device itself.
	vm_create "$_c" "$_d"
	for _e in $_engs; do for _q in $_qds; do for _p in randread-4k read-1m; do
		[ "$_scope" != full ] || job "$_cfg" "$_c" "$_d" base "$_p" "$_e" "$_q" "/dev/mapper/base-$vm"
		job "$_cfg" "$_c" "$_d" ov-read-base "$_p" "$_e" "$_q" "$dev"
	done; done; done
	vm_destroy "$vm"
	# First writes: a fresh VM each job; the 4 KiB job writes each chunk once (an iolog), the
	# 1 MiB job one pass over the disk.  Both stop early when the disk is covered.
	for _e in $_engs; do for _q in $_qds; do
		vm_create "$_c" "$_d"
		first_chunk_log "$dev" "$_cb" "$work/first.iolog"
		job "$_cfg" "$_c" "$_d" ov-first "randwrite-4k-first" "$_e" "$_q" "$dev" "$work/first.iolog"
		vm_destroy "$vm"
		vm_create "$_c" "$_d"
		job "$_cfg" "$_c" "$_d" ov-first "write-1m-once" "$_e" "$_q" "$dev"
		vm_destroy "$vm"
	done; done
	# Every chunk written once (zeros): overwrites and reads from the COW.
	vm_create "$_c" "$_d"
	say "filling $dev (every chunk gets its exception)"
	run $DD if=/dev/zero of="$dev" bs=1M count="$BC_SIZE_MB" oflag=direct status=none
	for _e in $_engs; do for _q in $_qds; do
		job "$_cfg" "$_c" "$_d" ov-overwrite randwrite-4k "$_e" "$_q" "$dev"
		job "$_cfg" "$_c" "$_d" ov-overwrite write-1m "$_e" "$_q" "$dev"
		job "$_cfg" "$_c" "$_d" ov-read-cow randread-4k "$_e" "$_q" "$dev"
		job "$_cfg" "$_c" "$_d" ov-read-cow read-1m "$_e" "$_q" "$dev"
	done; done
	# Writes into chunks reclaim punched: every chunk is zero (the jobs write zeros too), so
	# each detach + reclaim + attach punches the whole COW data again.
	for _e in $_engs; do for _q in $_qds; do for _p in randwrite-4k-once write-1m-once; do
		cp_ detach "$vm"
		run "$cowpunch_bin" reclaim --state-dir "$state" "$vm" >/dev/null
		dev=$(cp_ attach "$vm")
		job "$_cfg" "$_c" "$_d" ov-reclaimed "$_p" "$_e" "$_q" "$dev"
	done; done; done
	vm_destroy "$vm"
}

# dm-thin with the base image as external read-only origin, 64 KiB blocks (its minimum).
thin_new() {
	$DMSETUP message "${prefix}pool" 0 "create_thin 0"
	echo "0 $((size / 512)) thin /dev/mapper/${prefix}pool 0 $origin_loop" |
		$DMSETUP create "${prefix}thin"
	tdev=/dev/mapper/${prefix}thin
}
thin_del() {
	$DMSETUP remove "${prefix}thin"
	$DMSETUP message "${prefix}pool" 0 "delete 0"
}
thin_targets() {
	_cfg=$1 _d=$2 _engs=$3 _qds=$4
	# Metadata: 16 MiB, first 4 KiB zero (a fresh sparse file); data: written once, so the
	# pool's blocks are allocated in the host file system like the raw file's.
	truncate -s 16M "$work/thin-meta"
	run $DD if=/dev/zero of="$work/thin-data" bs=1M count=$((BC_SIZE_MB + 64)) conv=fsync status=none
	_ml=$($LOSETUP -f --show --direct-io="$_d" "$work/thin-meta")
	_dl=$($LOSETUP -f --show --direct-io="$_d" "$work/thin-data")
	origin_loop=$($LOSETUP -f --show -r "$work/base.img")
	echo "0 $(((BC_SIZE_MB + 64) * 2048)) thin-pool $_ml $_dl 128 0" | $DMSETUP create "${prefix}pool"
	thin_new
	for _e in $_engs; do for _q in $_qds; do for _p in randread-4k read-1m; do
		job "$_cfg" 64k "$_d" thin-read-origin "$_p" "$_e" "$_q" "$tdev"
	done; done; done
	thin_del
	for _e in $_engs; do for _q in $_qds; do
		thin_new
		first_chunk_log "$tdev" 65536 "$work/first.iolog"
		job "$_cfg" 64k "$_d" thin-first randwrite-4k-first "$_e" "$_q" "$tdev" "$work/first.iolog"
		thin_del
		thin_new
		job "$_cfg" 64k "$_d" thin-first write-1m-once "$_e" "$_q" "$tdev"
		thin_del
	done; done
	thin_new
	say "filling $tdev (every block provisioned)"
	run $DD if=/dev/zero of="$tdev" bs=1M count="$BC_SIZE_MB" oflag=direct status=none
	for _e in $_engs; do for _q in $_qds; do
		job "$_cfg" 64k "$_d" thin-overwrite randwrite-4k "$_e" "$_q" "$tdev"
		job "$_cfg" 64k "$_d" thin-overwrite write-1m "$_e" "$_q" "$tdev"
		job "$_cfg" 64k "$_d" thin-read-prov randread-4k "$_e" "$_q" "$tdev"
		job "$_cfg" 64k "$_d" thin-read-prov read-1m "$_e" "$_q" "$tdev"
	done; done
	thin_del
	$DMSETUP remove "${prefix}pool"
	for _l in "$origin_loop" "$_dl" "$_ml"; do $LOSETUP -d "$_l"; done
	rm -f "$work/thin-meta" "$work/thin-data"
}

for cfg in $BC_CONFIGS; do
	IFS=: read -r chunk dio scope <<EOF
$cfg
EOF
	name=c${chunk}-dio${dio}
	if [ "$scope" = full ]; then engs=$BC_ENGINES qds=$BC_QDS; else engs=$BC_VAR_ENGINES qds=$BC_VAR_QDS; fi
	say "config $name ($scope): engines $engs, queue depths $qds"
	case " $BC_TARGETS " in *" raw "*) raw_target "$name" "$dio" "$engs" "$qds" ;; esac
	case " $BC_TARGETS " in *" overlay "*) overlay_targets "$name" "$chunk" "$dio" "$scope" "$engs" "$qds" ;; esac
	if [ "$scope" = full ]; then
		case " $BC_TARGETS " in *" thin "*) thin_targets "$name" "$dio" "$engs" "$qds" ;; esac
	fi
done
echo "seconds=$(($(date +%s) - t_start))" >>"$out/meta"
echo "jobs=$njob" >>"$out/meta"
say "done: $njob jobs in $(($(date +%s) - t_start)) s"
