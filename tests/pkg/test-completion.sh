#!/usr/bin/env bash
# The bash completion, driven the way bash drives it: source contrib/bash-completion/cowpunch,
# set COMP_WORDS and COMP_CWORD, call _cowpunch, compare COMPREPLY.  Commands and options are
# expected as `cowpunch --help` and `cowpunch CMD --help` list them; VM IDs from temporary
# state directories (a VM is a folder holding a vm.json).
set -u
. "$(dirname "$0")/lib.sh"
require "$COWPUNCH"
PATH=$(dirname "$COWPUNCH"):$PATH
unset COWPUNCH_STATE_DIR
# shellcheck source=../../contrib/bash-completion/cowpunch
. "$ROOT/contrib/bash-completion/cowpunch"
complete -p cowpunch | grep -q -- '-F _cowpunch' || fail "the script does not register _cowpunch"

# A: three VMs, a folder without vm.json, a stray file; B: one VM.  The working folder
# holds a file and a folder, for the completions that offer paths.
a=$dir/state-a b=$dir/state-b
mkdir -p "$a"/vm1 "$a"/vm2 "$a"/web-3 "$a"/novm "$b"/other "$dir/cwd/images"
for v in "$a"/vm1 "$a"/vm2 "$a"/web-3 "$b"/other; do echo '{}' >"$v/vm.json"; done
touch "$a/stray.json" "$dir/cwd/vmdisk.cow"
cd "$dir/cwd" || exit 1

# is WANT WORD...: completing the last WORD of "cowpunch WORD..." offers exactly WANT
# (a space-separated list, any order).
is() {
	local want got
	want=$(printf "%s\n" $1 | sed "/^$/d" | sort | tr "\n" " ")
	shift
	COMP_WORDS=(cowpunch "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_cowpunch 2>>"$dir/stderr"
	got=$(printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort | tr '\n' ' ')
	[ "$got" = "$want" ] || fail "cowpunch $* <TAB>: got '$got', want '$want'"
}

cmds=$(help_commands)
is "$cmds help" ""
is "reclaim" rec
is "--help -h --version" -
is "$cmds" help ""
is "attach" help at

# Every command's options, from its --help (long ones, and --help, which all take).
for c in $cmds; do
	is "$(help_options "$c" | grep -- '^--') --help" "$c" --
done
is "--dry-run" reclaim --dr
is "--json" list --js
is "-n" reclaim -n

# Option values.
is "auto uring aio sync" reclaim --engine ""
is "sync" reclaim -e s
is "images" attach --state-dir i
is "images" reclaim --base=i
is "" create vm9 --size ""

# VM IDs: $COWPUNCH_STATE_DIR, then --state-dir in either form, which wins.
export COWPUNCH_STATE_DIR=$a
for c in attach detach destroy status; do
	is "vm1 vm2 web-3" "$c" ""
done
is "vm1 vm2" attach v
is "vm1 vm2 web-3" status --json ""
is "other" detach --state-dir "$b" ""
is "other" destroy --state-dir = "$b" ""
is "other" status "--state-dir=$b" ""
is "" status vm1 ""
is "" status --state-dir "$b" other ""
is "" create ""
# reclaim takes an ID or a COW file.
is "vm1 vm2 vmdisk.cow" reclaim v
is "vm1 vm2 web-3 images vmdisk.cow" reclaim --engine sync ""
export COWPUNCH_STATE_DIR=$dir/none
is "" attach ""
unset COWPUNCH_STATE_DIR

# The default state directory is the one cowpunch itself uses.
default=$("$COWPUNCH" attach --help | tr -s ' \n' ' ' | sed -n 's/.*else \([^ )]*\)).*/\1/p')
[ "$_cowpunch_default_state_dir" = "$default" ] ||
	fail "the script's default state dir is $_cowpunch_default_state_dir, cowpunch's is '$default'"

[ -s "$dir/stderr" ] && fail "completion wrote to stderr: $(cat "$dir/stderr")"
finish test-completion
