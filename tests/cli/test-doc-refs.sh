#!/usr/bin/env bash
# Every Markdown file the repository's files name (docs/x.md, README.md, ...) must be one the
# repository has: the docs stand alone, and a reader following a reference must find it.
# A bare name (format.md) counts when a tracked file of that name exists.
set -u
. "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
git ls-files >"$dir/files" || { echo "FAIL: not a git checkout"; exit 1; }
n=0
while IFS=: read -r file ref; do
	n=$((n + 1))
	grep -qxF "$ref" "$dir/files" && continue
	case $ref in
	*/*) ;;
	*) grep -q "/$ref\$\|^$ref\$" "$dir/files" && continue ;;
	esac
	fail "$file names $ref, which the repository does not have"
done < <(grep -oE '[A-Za-z0-9_./-]+\.md\b' $(cat "$dir/files") 2>/dev/null | grep -v '^tests/cli/test-doc-refs.sh:')
[ "$n" -gt 10 ] || fail "found only $n references: the scan is broken"
finish doc-refs
