#!/usr/bin/env bash
# Runs every test-*.sh of a folder (tests/cli unless given) with COWPUNCH pointing at the built
# binary.  Each script exits 0 (pass), 77 (skip, with a reason printed) or anything else (fail).
# Usage: tests/cli/run.sh [BUILD [DIR]]
set -u
build=${1:-build}
here=$(cd "${2:-$(dirname "$0")}" && pwd)
export COWPUNCH=$(cd "$build" && pwd)/cowpunch
export BUILD_DIR=$(cd "$build" && pwd)
pass=0 fail=0 skip=0 failed=()
for t in "$here"/test-*.sh; do
	[ -e "$t" ] || continue
	echo "== $(basename "$t")"
	bash "$t"
	rc=$?
	case $rc in
	0) pass=$((pass + 1)) ;;
	77) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)); failed+=("$(basename "$t") (exit $rc)") ;;
	esac
done
for f in "${failed[@]}"; do echo "FAILED: $f"; done
echo "$(basename "$here"): $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
