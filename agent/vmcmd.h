/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the VM lifecycle subcommands share: ID checks, loading a record under
 * the VM's lock, attach (with the base identity check) and detach.  Every
 * function here prints its own error once and returns an exit code.
 */
#ifndef COWPUNCH_AGENT_VMCMD_H
#define COWPUNCH_AGENT_VMCMD_H

#include <stdbool.h>
#include <stdio.h>

struct json_object;

#include "host/vmstore.h"
#include "dmops/vmdisk.h"

struct vmcmd {
	const char *state;
	const char *id;
	int lock_fd;
	char *cow_path;
	struct vmstore_record rec;
};

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

/* EXIT_OK when id is a valid VM ID, else prints why and returns EXIT_USAGE. */
int vmcmd_check_id(const char *id);

/*
 * Takes the VM's lock (when lock; then also removes the temp files of killed
 * record writes) and loads its record.  Returns EXIT_OK with *c filled
 * (release with vmcmd_close()), EXIT_BUSY when locked, EXIT_INVALID on a
 * damaged record, EXIT_RUNTIME when there is no such VM.
 */
int vmcmd_open(const char *state, const char *id, bool lock, struct vmcmd *c);
void vmcmd_close(struct vmcmd *c);

/*
 * Attaches the VM: refuses (EXIT_INVALID) when the base image no longer has the
 * recorded identity, builds the devices under the host loop lock, records the
 * attach time.  Returns an exit code; *ret filled on EXIT_OK.
 */
int vmcmd_attach(struct vmcmd *c, struct vmdisk_attached *ret);

/* Detaches (EXIT_BUSY while the overlay is open) and records the time. */
int vmcmd_detach(struct vmcmd *c);

/* Saves the record; prints on failure.  Returns an exit code. */
int vmcmd_save(struct vmcmd *c);

/*
 * Describes a VM as a JSON object (record, kernel state, COW allocation): the
 * one source for 'list' and 'status', text and --json.  "attached" is null
 * (and "dm_error" set) when device-mapper cannot be asked.  NULL on no memory.
 */
struct json_object *vmcmd_describe(const struct vmcmd *c);

/*
 * The COW loop's I/O at the last attach, from a vmcmd_describe() object:
 * "direct", "buffered", or "-" when not known (not attached since recorded).
 */
const char *vmcmd_cow_io(struct json_object *o);

/*
 * For `cowpunch reclaim ID`: when arg names a VM in state (no '/', and
 * STATE/arg/vm.json exists), takes its lock, refuses while it is attached
 * (EXIT_BUSY) and sets *ret_is_vm; c->cow_path is then the file to reclaim.
 * Otherwise returns EXIT_OK with *ret_is_vm false (arg is a COW path).
 */
int vmcmd_open_for_reclaim(const char *state, const char *arg, struct vmcmd *c, bool *ret_is_vm);

/*
 * Records a reclaim in the VM's record: a finished one (exit_code EXIT_OK, rep
 * given; a dry run is not recorded) or a failed one (rep NULL: nothing given
 * back, the COW's allocation now).  Returns exit_code, or EXIT_RUNTIME when the
 * record cannot be saved (printed).
 */
struct reclaim_report;
int vmcmd_record_reclaim(struct vmcmd *c, int exit_code, const struct reclaim_report *rep);

/* Path of the discard tail file (a sparse zero file shared by every VM). */
char *vmcmd_tail_path(const char *state);

#endif
