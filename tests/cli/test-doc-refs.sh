#!/usr/bin/env bash
# Every Markdown file the repository's files name (docs/x.md, README.md, ...) must be one the
# repository has: the docs stand alone, and a reader following a reference must find it.
# A bare name (format.md) counts when a tracked file of that name exists; a path in a
# Markdown file may also be relative to that file's folder.
set -u
. "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
git ls-files >"$dir/files" || { echo "FAIL: not a git checkout"; exit 1; }
n=0
while IFS=: read -r file ref; do
	n=$((n + 1))
	# A shell variable's path ("$dir/report.md") names no file of the repository.
	case $ref in *'$'*) continue ;; esac
	grep -qxF "$ref" "$dir/files" && continue
	# A Markdown link is relative to the file it is in (docs/x.md naming bench/y.md).
	case $file in
	*.md) [ "${file%/*}" != "$file" ] && grep -qxF "${file%/*}/$ref" "$dir/files" && continue ;;
	esac
	case $ref in
	*/*) ;;
	*) grep -q "/$ref\$\|^$ref\$" "$dir/files" && continue ;;
	esac
	fail "$file names $ref, which the repository does not have"
done < <(grep -oE '[$A-Za-z0-9_./-]+\.md\b' $(cat "$dir/files") 2>/dev/null | grep -v '^tests/cli/test-doc-refs.sh:')
[ "$n" -gt 10 ] || fail "found only $n references: the scan is broken"
finish doc-refs
