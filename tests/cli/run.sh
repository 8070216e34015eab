#!/usr/bin/env bash
# Runs every test-*.sh of a folder (tests/cli unless given) with COWPUNCH pointing at the built
# binary.  Each script exits 0 (pass), 77 (skip, with a reason printed) or anything else (fail).
# Usage: tests/cli/run.sh [BUILD [DIR]]   (CLI_JOBS=N: N scripts at once, see below)
# VALGRIND=1 (make valgrind): every cowpunch the tests run runs under valgrind's memcheck, each
# process logging to BUILD/valgrind/logs/PID.log (text) and PID.xml; any error (invalid access,
# uninitialised value, definite leak, bad free, bad syscall argument) fails the run, also in a
# test that does not look at the exit status.  Valgrind's warnings (a syscall or ioctl it does
# not know) are not errors.
set -u
build=${1:-build}
here=$(cd "${2:-$(dirname "$0")}" && pwd)
export COWPUNCH=$(cd "$build" && pwd)/cowpunch
export BUILD_DIR=$(cd "$build" && pwd)
if [ "${VALGRIND:-0}" = 1 ]; then
	command -v valgrind >/dev/null || { echo "valgrind is missing (scripts/deps.sh check)"; exit 1; }
	vg=$BUILD_DIR/valgrind
	rm -rf "$vg" && mkdir -p "$vg/logs"
	supp=$(cd "$(dirname "$0")" && pwd)/valgrind.supp
	# exec: the process keeps its PID, so tests that signal cowpunch signal it.
	cat >"$vg/cowpunch" <<-EOF
		#!/bin/sh
		exec valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \\
			--show-leak-kinds=definite --suppressions=$supp --log-file=$vg/logs/%p.log \\
			--xml=yes --xml-file=$vg/logs/%p.xml \\
			$COWPUNCH "\$@"
	EOF
	chmod +x "$vg/cowpunch"
	# The binary itself, for runs a test kills on purpose (test-vm-lifecycle.sh).
	export COWPUNCH_PLAIN=$COWPUNCH
	COWPUNCH=$vg/cowpunch
fi
pass=0 fail=0 skip=0 failed=()
# CLI_JOBS=N runs up to N test scripts at once (make valgrind: 2, the machine's cores, since
# memcheck makes each one CPU-bound); each script's output is printed whole when it ends.
jobs=${CLI_JOBS:-1}
outdir=$(mktemp -d)
trap 'rm -rf "$outdir"' EXIT
# run_one T [OUT]: runs T, its output to OUT (standard output when none), its status to a file.
# Standard output is duplicated, not reopened: opening /dev/stdout would truncate a log file
# the runner's output is redirected to (tests/cli/test-runner.sh).
run_one() {
	local t=$1 o=$outdir/$(basename "$1") start rc
	start=$(date +%s)
	if [ $# -gt 1 ]; then exec 3>"$2"; else exec 3>&1; fi
	{
		echo "== $(basename "$t")"
		bash "$t" 3>&-
		rc=$?
		echo "== $(basename "$t"): exit $rc, $(($(date +%s) - start)) s"
	} >&3 2>&1
	exec 3>&-
	echo "$rc" >"$o.rc"
}
tests=("$here"/test-*.sh)
[ -e "${tests[0]}" ] || tests=()
# In parallel, the longest scripts (under valgrind) start first, so that no long one starts last.
if [ "$jobs" -gt 1 ]; then
	slow=(test-vm-lifecycle.sh test-sparsify.sh test-inspect.sh test-agent.sh test-kernel-stores.sh)
	order=()
	for n in "${slow[@]}"; do [ -e "$here/$n" ] && order+=("$here/$n"); done
	for t in ${tests[@]+"${tests[@]}"}; do
		case " ${slow[*]} " in *" $(basename "$t") "*) ;; *) order+=("$t") ;; esac
	done
	tests=(${order[@]+"${order[@]}"})
fi
running=0
for t in ${tests[@]+"${tests[@]}"}; do
	if [ "$jobs" -le 1 ]; then
		run_one "$t"
		continue
	fi
	if [ $running -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	run_one "$t" "$outdir/$(basename "$t").out" &
	running=$((running + 1))
done
wait
for t in ${tests[@]+"${tests[@]}"}; do
	o=$outdir/$(basename "$t")
	[ "$jobs" -le 1 ] || cat "$o.out"
	rc=$(cat "$o.rc" 2>/dev/null || echo 1)
	case $rc in
	0) pass=$((pass + 1)) ;;
	77) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)); failed+=("$(basename "$t") (exit $rc)") ;;
	esac
done
if [ "${VALGRIND:-0}" = 1 ]; then
	runs=$(find "$vg/logs" -name '*.xml' | wc -l)
	bad=$(grep -l '<error>' "$vg"/logs/*.xml 2>/dev/null | sort)
	for f in $bad; do
		# Each error: what memcheck saw, then its stack (function file:line).
		echo "valgrind: $f:"
		sed -n '/<error>/,/<\/error>/p' "$f" | sed -nE \
			-e 's|.*<what>(.*)</what>.*|  \1|p' -e 's|.*<text>(.*)</text>.*|  \1|p' \
			-e 's|.*<fn>(.*)</fn>.*|    at \1|p' -e 's|.*<line>(.*)</line>.*|      line \1|p' |
			head -60
		fail=$((fail + 1))
		failed+=("valgrind: errors in $f")
	done
	echo "valgrind: $runs cowpunch process(es) checked, $(echo $bad | wc -w) with errors"
fi
for f in "${failed[@]}"; do echo "FAILED: $f"; done
echo "$(basename "$here"): $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
