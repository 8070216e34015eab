/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the VM lifecycle subcommands share on the CLI side: the --state-dir
 * help, the ID arguments, JSON output, and host/vm.h's calls with their errors
 * printed and mapped to exit codes.
 */
#ifndef COWPUNCH_AGENT_VMCMD_H
#define COWPUNCH_AGENT_VMCMD_H

#include <stdbool.h>
#include <stdio.h>

#include "host/vm.h"

struct json_object;

/* Help text shared by every VM subcommand (the --state-dir option). */
void vmcmd_help_state_dir(FILE *out);

/*
 * Parses `cowpunch CMD [--json] [--state-dir DIR] ID` (argv[0] is CMD; --json
 * only when ret_json is not NULL).  Returns EXIT_OK with the out-params set,
 * or EXIT_USAGE after printing why.
 */
int vmcmd_parse_id_args(int argc, char **argv, bool *ret_json, const char **ret_state,
			const char **ret_id);

/* Prints a JSON value the way every cowpunch command does (pretty, no escaped '/'). */
void vmcmd_print_json(struct json_object *o);

/*
 * vm_open(), printing why it fails.  Returns EXIT_OK with *v filled (release
 * with vm_close()), EXIT_USAGE for a bad ID, EXIT_BUSY when locked,
 * EXIT_INVALID on a damaged record, EXIT_RUNTIME when there is no such VM.
 */
int vmcmd_open(const char *state, const char *id, bool lock, struct vm *v);

/*
 * The COW loop's I/O at the last attach, from a vm_describe() object:
 * "direct", "buffered", or "-" when not known (not attached since recorded).
 */
const char *vmcmd_cow_io(struct json_object *o);

#endif
