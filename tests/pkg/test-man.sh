#!/usr/bin/env bash
# The man pages say what --help says: for every command `cowpunch --help` lists (so a command
# added without a page fails here), build/man/cowpunch-CMD.8 exists with the sections a man
# page needs; every option of `cowpunch CMD --help` is in the page's OPTIONS and every option
# there is in --help (-h/--help excepted: main.c takes them for every command, and every page
# lists them); the exit statuses of both agree.  cowpunch(8) lists every command and points
# to its page.  No page is left for a command that is gone.
set -u
. "$(dirname "$0")/lib.sh"
require "$COWPUNCH" man
man_dir=$BUILD_DIR/man

cmds=$(help_commands)
[ -n "$cmds" ] || fail "'cowpunch --help' lists no commands"
for c in $cmds; do
	page=$man_dir/cowpunch-$c.8
	if [ ! -f "$ROOT/man/cowpunch-$c.8.scd" ] || [ ! -f "$page" ]; then
		fail "command '$c' (in 'cowpunch --help') has no man page: add man/cowpunch-$c.8.scd"
		continue
	fi
	for s in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
		man_text "$page" | grep -qx "$s" || fail "$page: no $s section"
	done
	man_section "$page" NAME | grep -q "^ *cowpunch-$c - " ||
		fail "$page: NAME is not 'cowpunch-$c - ...'"

	h=$(help_options "$c")
	m=$(man_options "$page")
	for o in -h --help; do
		grep -qx -- "$o" <<<"$m" || fail "$page: OPTIONS lacks $o (every command takes it)"
	done
	for o in $h; do
		grep -qx -- "$o" <<<"$m" ||
			fail "$page: option $o of 'cowpunch $c --help' is not in OPTIONS"
	done
	for o in $m; do
		case $o in -h | --help) continue ;; esac
		grep -qx -- "$o" <<<"$h" ||
			fail "$page: option $o in OPTIONS is not in 'cowpunch $c --help'"
	done

	he=$(help_exit_codes "$c")
	me=$(man_exit_codes "$page")
	[ -n "$me" ] || fail "$page: EXIT STATUS lists no status"
	if [ -n "$he" ] && [ "$he" != "$me" ]; then
		fail "$page: exit statuses '$(words "$me")' differ from 'cowpunch $c --help': '$(words "$he")'"
	fi
	echo "cowpunch-$c.8: options $(words "$m")"
done

top=$man_dir/cowpunch.8
if [ -f "$top" ]; then
	listed=$(man_section "$top" COMMANDS | awk '/^       [a-z]/ { print $1 }' | sort -u)
	for c in $cmds help; do
		grep -qx -- "$c" <<<"$listed" || fail "$top: COMMANDS lacks '$c'"
	done
	for c in $listed; do
		[ "$c" = help ] || grep -qx -- "$c" <<<"$cmds" ||
			fail "$top: COMMANDS lists '$c', which 'cowpunch --help' does not"
	done
	seealso=$(man_section "$top" "SEE ALSO")
	for c in $cmds; do
		grep -q "cowpunch-$c(8)" <<<"$seealso" || fail "$top: SEE ALSO lacks cowpunch-$c(8)"
	done
	[ "$(man_exit_codes "$top")" = "$(printf '%s\n' 0 1 2 3 4 5)" ] ||
		fail "$top: EXIT STATUS is not 0-5 as in 'cowpunch --help'"
else
	fail "no $top"
fi

# A page for a command that is not there any more.
for src in "$ROOT"/man/cowpunch-*.8.scd; do
	c=${src##*/cowpunch-}
	c=${c%.8.scd}
	grep -qx -- "$c" <<<"$cmds" || fail "$src: 'cowpunch --help' has no command '$c'"
done
finish test-man
