#!/usr/bin/env bash
# Runs each libFuzzer target (built by `make fuzz`) for SECONDS on a scratch copy of its
# corpus, seeded also with the kernel-written stores in tests/fixtures/kernel-stores.
# Usage: tests/fuzz/run.sh SECONDS FUZZ_BUILD_DIR WORK_DIR [TARGET...]
# New inputs, crashes (crash-*, oom-*, timeout-*) and each target's log go to
# WORK_DIR/NAME/; nothing is written into tests/fuzz/corpus.  Prints one line per
# target (execs, cov, ft, corpus size) and exits 1 when any target found something.
# FUZZ_JOBS=N (default: the number of CPUs) runs up to N targets at once, one CPU each;
# their reports are printed in the order the targets were given.
set -uo pipefail

secs=${1:?usage: run.sh SECONDS FUZZ_BUILD_DIR WORK_DIR [TARGET...]}
bin=${2:?}
work=${3:?}
shift 3
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$here/../fixtures/kernel-stores
rss=${FUZZ_RSS_MB:-2048}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in "$here"/fuzz-*.c; do
		n=${f##*/}
		targets+=("${n%.c}")
	done
fi

# The kernel-written stores, cut to the target's 2 MiB limit (the structure is at the start).
seed_kernel_stores() {
	for f in "$fixtures"/*.cow.xz; do
		[ -e "$f" ] || continue
		n=${f##*/}
		xz -dc "$f" | head -c $((2 << 20)) >"$1/kernel-${n%.cow.xz}"
	done
}

# fuzz_one T: runs target T; its report to WORK_DIR/T/report, its verdict (0 or 1) to .../failed.
fuzz_one() {
	local t=$1 exe d nseeds start rc took last execs cov ft corp new found
	exe=$bin/tests/fuzz/$t
	d=$work/$t
	rm -rf "$d"
	mkdir -p "$d/new" "$d/seeds"
	[ -d "$here/corpus/$t" ] && cp "$here/corpus/$t"/* "$d/seeds/"
	[ "$t" = fuzz-snapstore ] && seed_kernel_stores "$d/seeds"
	nseeds=$(find "$d/seeds" -type f | wc -l)
	start=$(date +%s)
	# New inputs go into the first directory (new/); seeds/ is only read.
	"$exe" -max_total_time="$secs" -rss_limit_mb="$rss" -timeout=30 -print_final_stats=1 \
		-artifact_prefix="$d/" "$d/new" "$d/seeds" >"$d/log" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	last=$(grep -E '^#[0-9]+' "$d/log" | tail -1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$d/log")
	cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
	ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
	corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
	new=$(find "$d/new" -type f | wc -l)
	found=$(find "$d" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'oom-*' \
		-o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'leak-*' | head -5)
	{
		echo "fuzz-run: $t: ${took}s, ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}," \
			"corpus ${corp:-?} (${nseeds} seeds, ${new} new), exit $rc"
		if [ $rc -ne 0 ] || [ -n "$found" ]; then
			echo "fuzz-run: $t FOUND SOMETHING: ${found:-see the log}; log: $d/log"
			grep -E 'ERROR|SUMMARY|runtime error|abort' "$d/log" | head -10
			echo 1 >"$d/failed"
		else
			echo 0 >"$d/failed"
		fi
	} >"$d/report"
}

for t in "${targets[@]}"; do
	if [ ! -x "$bin/tests/fuzz/$t" ]; then
		echo "fuzz-run: $bin/tests/fuzz/$t is missing (make fuzz)" >&2
		exit 2
	fi
done
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
running=0
for t in "${targets[@]}"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	fuzz_one "$t" &
	running=$((running + 1))
done
wait
failed=0
for t in "${targets[@]}"; do
	cat "$work/$t/report"
	[ "$(cat "$work/$t/failed" 2>/dev/null)" = 0 ] || failed=1
done
exit $failed
