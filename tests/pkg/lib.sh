# Shared helpers for tests/pkg/test-*.sh (sourced, not run): tests/cli/lib.sh (fail, require,
# finish, $dir), plus what `cowpunch --help` and the rendered man pages say.
# shellcheck source=../cli/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cli/lib.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# The commands listed under "Commands:" by `cowpunch --help`, one per line.
help_commands() {
	"$COWPUNCH" --help | awk '/^Commands:/ { on = 1; next } on && !NF { exit } on { print $1 }'
}

# help_options CMD: the options (long and short) in the "Options:" section of
# `cowpunch CMD --help`, sorted, one per line.  Only an option line's leading words count
# (options, and the upper-case name of their value), not its description.
help_options() {
	"$COWPUNCH" "$1" --help | awk '
		/^Options:/ { on = 1; next }
		on && /^[^ ]/ { exit }
		on && /^ +-/ {
			n = split($0, w, /[ ,]+/)
			for (i = 1; i <= n; i++) {
				if (w[i] == "" || w[i] ~ /^[A-Z][A-Z_]*$/) continue
				if (w[i] !~ /^--?[A-Za-z0-9]/) break
				print w[i]
			}
		}' | sort -u
}

# help_exit_codes CMD: the exit statuses listed under "Exit status:" by `cowpunch CMD --help`.
help_exit_codes() {
	"$COWPUNCH" "$1" --help | awk '/^Exit status:/ { on = 1; next } on && !NF { exit }
		on && $1 ~ /^[0-9]+$/ { print $1 }' | sort -un
}

# man_text PAGE: the page rendered as plain text, 200 columns (no line breaks in option lists);
# rendered once per test.
man_text() {
	local txt=$dir/rendered/${1//\//_}
	if [ ! -f "$txt" ]; then
		mkdir -p "$dir/rendered"
		LC_ALL=C MANWIDTH=200 man -l "$1" >"$txt" 2>/dev/null
	fi
	cat "$txt"
}

# man_section PAGE NAME: the lines of one section (NAME as in the page: OPTIONS, EXIT STATUS).
man_section() {
	man_text "$1" | awk -v s="$2" '$0 == s { on = 1; next } on && /^[A-Z]/ { exit } on'
}

# man_options PAGE: the options on the term lines of the OPTIONS section, sorted.
man_options() {
	man_section "$1" OPTIONS | grep -E '^ {7}-' |
		grep -oE '(^|[ ,])--?[A-Za-z0-9][A-Za-z0-9-]*' | tr -d ' ,' | sort -u
}

# man_exit_codes PAGE: the statuses of the EXIT STATUS section (a term line each).
man_exit_codes() {
	man_section "$1" "EXIT STATUS" | awk '/^       [0-9]+ *$/ { print $1 }' | sort -un
}

# words LIST: a newline list on one line, for messages.
words() {
	printf '%s' "$1" | tr '\n' ' '
}
