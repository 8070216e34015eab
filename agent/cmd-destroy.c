/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"

void cmd_destroy_help(FILE *out)
{
	fputs("Usage: cowpunch destroy ID [--state-dir DIR]\n"
	      "\n"
	      "Detaches VM ID (as 'cowpunch detach') and deletes its COW file, record and\n"
	      "folder.  The VM's writes are gone for good; the base image is untouched.\n"
	      "Refuses while overlay-ID is open.\n"
	      "\n"
	      "Options:\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  destroyed\n"
	      "  1  runtime error (no such VM, I/O, device-mapper)\n"
	      "  2  usage error (bad ID)\n"
	      "  3  the record is damaged (nothing deleted; remove STATE/ID by hand)\n"
	      "  4  overlay-ID is open, or locked by another command\n"
	      "\n"
	      "Example:\n"
	      "  cowpunch destroy vm1\n",
	      out);
}

int cmd_destroy(int argc, char **argv)
{
	struct host_error err = {""};
	const char *state, *id;
	struct vm v;
	int r;

	r = vmcmd_parse_id_args(argc, argv, NULL, &state, &id);
	if (r != EXIT_OK)
		return r;
	r = vmcmd_open(state, id, true, &v);
	if (r != EXIT_OK)
		return r;
	r = vm_destroy(&v, &err);
	vm_close(&v);
	return r < 0 ? agent_host_error(r, &err) : EXIT_OK;
}
