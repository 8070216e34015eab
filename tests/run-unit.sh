#!/usr/bin/env bash
# Runs cmocka unit test programs and counts their cases, from cmocka's per-case lines on
# stdout ("[ RUN      ] NAME", then "[       OK ] NAME", "[  SKIPPED ] NAME" or
# "[  FAILED  ] NAME").  A case says why it skips with a line "SKIP: REASON" (rt_skip() in
# tests/unit/reclaim/rtest.h); a whole program may skip by printing "SKIP: REASON" and
# exiting 77, counted as one skipped case.  A program that dies inside a case fails that
# case; one that exits non-zero without a failed case fails once more on its own.
#
# Lists every skipped case with its reason and every failure, then closes with
# "unit: N passed, N failed, N skipped" (cases).  Under CI=true a case skipped because
# "engine NAME unavailable" fails when tests/tools/engineprobe ($ENGINE_PROBE) finds
# that this machine offers the engine: a runner that can run it must.
set -u
export CMOCKA_MESSAGE_OUTPUT=stdout # the per-case lines parsed below, whatever the caller set
pass=0 fail=0 skip=0 skips=() failed=()
out=$(mktemp "${TMPDIR:-/tmp}/run-unit.XXXXXX")
trap 'rm -f "$out"' EXIT

offered=
if [ "${CI:-}" = true ]; then
	probe=${ENGINE_PROBE:-build/tests/tools/engineprobe}
	if ! offered=$("$probe"); then
		echo "run-unit: CI=true but the engine probe $probe does not run" >&2
		exit 1
	fi
fi

# skipped WHAT REASON: counts a skip, or under CI a failure when REASON is an engine
# unavailable that this machine offers.
skipped() {
	local engine probe_line
	if [ "${CI:-}" = true ] && [[ $2 =~ engine\ (uring|aio)\ unavailable ]]; then
		engine=${BASH_REMATCH[1]}
		probe_line=$(grep "^$engine " <<<"$offered")
		if [ "$probe_line" = "$engine yes" ]; then
			fail=$((fail + 1))
			failed+=("$1: skipped an engine this machine offers ($probe_line); reason: $2")
			return
		fi
	fi
	skip=$((skip + 1)) skips+=("$1: ${2:-(no reason given)}")
}

# count PROGRAM RC: parses the program's stdout in $out.
count() {
	local prog=$1 rc=$2 line name current= reason= prog_reason= ran=0 cases=0 before=$fail
	while IFS= read -r line; do
		case $line in
		'[ RUN      ] '*) current=${line#'[ RUN      ] '} reason= ;;
		'SKIP: '*)
			if [ -n "$current" ]; then reason=${line#SKIP: }; else prog_reason=${line#SKIP: }; fi
			;;
		'[       OK ] '* | '[  SKIPPED ] '* | '[  FAILED  ] '*)
			name=${line:13}
			[ "$name" = "$current" ] || continue # cmocka's closing list, not a case
			cases=$((cases + 1))
			case $line in
			'[       OK ]'*) pass=$((pass + 1)) ;;
			'[  FAILED  ]'*) fail=$((fail + 1)) failed+=("$prog: $name") ;;
			*) skipped "$prog: $name" "$reason" ;;
			esac
			current=
			;;
		'[==========] '*' test(s) run.') ran=${line#'[==========] '} ran=${ran%% *} ;;
		esac
	done <"$out"
	if [ "$rc" -eq 77 ] && [ "$cases" -eq 0 ]; then
		skipped "$prog (all cases)" "$prog_reason"
		return
	fi
	if [ -n "$current" ]; then # died inside a case
		fail=$((fail + 1)) failed+=("$prog: $current (exit $rc inside the case)")
	elif [ "$rc" -ne 0 ] && [ "$fail" -eq "$before" ]; then
		fail=$((fail + 1)) failed+=("$prog (exit $rc)")
	elif [ "$rc" -eq 0 ] && [ "$ran" -ne "$cases" ]; then
		fail=$((fail + 1)) failed+=("$prog: cmocka ran $ran case(s), $cases counted here")
	fi
}

for t in "$@"; do
	echo "== $t"
	"$t" | tee "$out"
	rc=${PIPESTATUS[0]}
	count "$t" "$rc"
done
for s in "${skips[@]}"; do echo "SKIPPED: $s"; done
for f in "${failed[@]}"; do echo "FAILED: $f"; done
echo "unit: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
