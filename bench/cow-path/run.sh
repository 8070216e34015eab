#!/usr/bin/env bash
# The copy-on-write path benchmark: what a layered disk costs against a raw file, with fio.
# `make bench-cow` (full) and `make bench-cow-quick`; docs/benchmarks.md has the results.
#
# Usage: bench/cow-path/run.sh [--quick] [--native] [--kernel 6.1|6.12] [--out DIR]
#   (default)      runs inside the QEMU test bed (tests/vm/run.sh, one kernel), so it works on
#                  hosts without device-mapper; take the machine's QEMU lock around it if it has
#                  one (flock /tmp/cowpunch-qemu.lock make bench-cow)
#   --native       runs on this host's kernel, as root, in BENCH_DIR (default /var/tmp); only
#                  devices named with the prefix cpbench-PID- and loops over its own files are
#                  made, and removed on exit (Ctrl-C included); refuses when device-mapper is
#                  missing or anything it would make exists already
#   --quick        a subset, under 10 minutes under TCG: 128 MiB targets, 1 s jobs, io_uring,
#                  the variations (64 KiB chunks, buffered COW loop) at queue depth 32 only
#   --kernel K     the test bed's kernel (default 6.12)
#   --out DIR      results (default build/bench-cow, build/bench-cow-quick with --quick):
#                  json/ (fio's JSON, one file a job), index.tsv, meta, results.csv, ratios.csv,
#                  *.png and *.svg, report.md (the tables), reclaim.png and .svg (the reclaim
#                  benchmarks' figures from docs/bench/reclaim/figures.csv)
# Environment: BC_SIZE_MB, BC_RAMP, BC_RUNTIME, BC_PATTERNS, BC_TARGETS, BC_CONFIGS,
#   BC_ENGINES, BC_QDS, BC_VAR_ENGINES, BC_VAR_QDS override the settings (bench/cow-path/guest.sh
#   describes them); BENCH_DIR (--native); BUILD_DIR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "$top" && mkdir -p "${BUILD_DIR:-build}" && cd "${BUILD_DIR:-build}" && pwd)

die() {
	echo "bench-cow: $*" >&2
	exit 2
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

quick=0 native=0 kernel=6.12 out=""
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1; shift ;;
	--native) native=1; shift ;;
	--kernel) [ $# -ge 2 ] || die "--kernel needs 6.1 or 6.12"; kernel=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done
[ -n "$out" ] || out=$build/bench-cow$([ $quick = 0 ] || echo -quick)
for t in jq gnuplot fio; do
	command -v "$t" >/dev/null || die "$t is missing (scripts/deps.sh bench installs it)"
done
[ -x "$build/cowpunch" ] || die "$build/cowpunch is missing: run make first"

# The settings.  Full: 4 KiB chunks with direct I/O (cowpunch's defaults) on every target, every
# pattern, both engines, queue depths 1 and 32; the variations (16 and 64 KiB chunks, and the
# COW loop buffered) on the raw file and the overlay targets with io_uring.
# QUICK: 128 MiB targets, 1 s jobs, io_uring only; the variations (64 KiB chunks, buffered
# 4 KiB) at queue depth 32 only.
if [ $quick = 1 ]; then
	: "${BC_SIZE_MB:=128}" "${BC_RAMP:=1}" "${BC_RUNTIME:=1}" "${BC_ENGINES:=io_uring}" "${BC_QDS:=1 32}"
	: "${BC_VAR_ENGINES:=io_uring}" "${BC_VAR_QDS:=32}"
	: "${BC_CONFIGS:=4k:on:full 64k:on:var 4k:off:var}"
else
	: "${BC_RAMP:=1}" "${BC_RUNTIME:=4}" "${BC_ENGINES:=io_uring libaio}" "${BC_QDS:=1 32}"
	: "${BC_VAR_ENGINES:=io_uring}" "${BC_VAR_QDS:=1 32}"
	: "${BC_CONFIGS:=4k:on:full 16k:on:var 64k:on:var 4k:off:var 64k:off:var}"
fi
: "${BC_SIZE_MB:=256}" "${BC_PATTERNS:=4k 1M}" "${BC_TARGETS:=raw overlay thin}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-cow.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
{
	for v in BC_SIZE_MB BC_RAMP BC_RUNTIME BC_PATTERNS BC_TARGETS BC_CONFIGS BC_ENGINES BC_QDS BC_VAR_ENGINES BC_VAR_QDS; do
		printf "%s='%s'\n" "$v" "${!v}"
	done
	[ -z "${BC_FAIL_AT:-}" ] || echo "BC_FAIL_AT='$BC_FAIL_AT'"
} >"$tmp/config"

rm -rf "$out.new"
mkdir -p "$out.new"
# Under TCG the guest's figures follow the host's load: recorded with the results.
load_start="$(date -u +%H:%M) $(cut -d' ' -f1-3 /proc/loadavg)"
if [ $native = 1 ]; then
	[ "$(id -u)" = 0 ] || die "--native needs root (loop and device-mapper devices)"
	prefix=cpbench-$$-
	work=$(mktemp -u "${BENCH_DIR:-/var/tmp}/cpbench-$$-XXXXXX")
	# Its own process group is not needed: Ctrl-C reaches guest.sh (same foreground group),
	# whose traps clean up; this script then stops with its status.
	rc=0
	sh "$here/guest.sh" --work "$work" --out "$out.new" --prefix "$prefix" --config "$tmp/config" \
		--cowpunch "$build/cowpunch" || rc=$?
	if [ $rc != 0 ]; then
		[ -s "$out.new/index.tsv" ] || { rm -rf "$out.new"; exit $rc; }
		echo "bench-cow: the benchmark failed (exit $rc); partial results in $out.new" >&2
		exit $rc
	fi
else
	# A scenario kept here: the guest part runs as a test-bed scenario, results come back in
	# $OUT (build/vm/KERNEL/out/bench-cow/).  fio and env are packed for it.
	mkdir -p "$tmp/scen"
	cp "$tmp/config" "$tmp/scen/bench-cow.config"
	cat >"$tmp/scen/bench-cow.sh" <<'EOF'
# vmtest-tools: /usr/bin/fio
# The COW-path benchmark's guest part (written by bench/cow-path/run.sh).
sh /vm/bench/cow-path/guest.sh --work "$WORK/cpbench" --out "$OUT" --prefix "cpbench-$$-" \
	--config "$IN/bench-cow.config"
EOF
	mkdir -p "$tmp/scen/bench-cow.d"
	mv "$tmp/scen/bench-cow.config" "$tmp/scen/bench-cow.d/"
	# Disk: base image, raw file, thin pool data (size + 64 MiB), the COW files, headroom.
	disk=$((BC_SIZE_MB * 6 + 512))
	# Time limits: generous (the full run takes about half an hour under TCG).
	tmo=$([ $quick = 1 ] && echo 1200 || echo 3600)
	rc=0
	VMTEST_DISK_MB=${VMTEST_DISK_MB:-$disk} VMTEST_MEM=${VMTEST_MEM:-1024} \
		VMTEST_SCENARIO_TIMEOUT=$tmo VMTEST_TIMEOUT=$((tmo + 300)) BUILD_DIR=$build \
		"$top/tests/vm/run.sh" --kernel "$kernel" "$tmp/scen/bench-cow.sh" || rc=$?
	res=$build/vm/$kernel/out/bench-cow
	[ $rc = 0 ] || die "the benchmark failed in the test bed (exit $rc); see $build/vm/logs/"
	[ -s "$res/index.tsv" ] || die "no results came back from the guest ($res/index.tsv)"
	cp -r "$res/." "$out.new/"
	cp "$build/vm/$kernel/out/logs/bench-cow.log" "$out.new/guest.log" 2>/dev/null || true
fi
echo "host=$(uname -srm), $(nproc) CPUs; load average at start $load_start, at end $(date -u +%H:%M) $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out.new/meta"
"$here/report.sh" "$out.new"
# The reclaim benchmarks' figures (docs/benchmarks.md), plotted beside these.
[ ! -s "$top/docs/bench/reclaim/figures.csv" ] ||
	"$here/report.sh" --reclaim "$top/docs/bench/reclaim/figures.csv" "$out.new"
rm -rf "$out"
mv "$out.new" "$out"
echo "bench-cow: results in $out (report.md, results.csv, plots)"
