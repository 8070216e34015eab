#!/usr/bin/env bash
# Runs cmocka unit test programs; an exit of 77 is a skip and must say why.
# Prints one closing line "N passed, N failed, N skipped" (programs, not cases).
set -u
pass=0 fail=0 skip=0 failed=()
for t in "$@"; do
	echo "== $t"
	"$t"
	rc=$?
	case $rc in
	0) pass=$((pass + 1)) ;;
	77) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)); failed+=("$t (exit $rc)") ;;
	esac
done
for f in "${failed[@]}"; do echo "FAILED: $f"; done
echo "unit: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
