#!/usr/bin/env bash
# Runs every tests/cli/test-*.sh with COWPUNCH pointing at the built binary.
# Each script exits 0 (pass), 77 (skip, with a reason printed) or anything else (fail).
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
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
echo "cli: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
