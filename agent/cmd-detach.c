/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"

void cmd_detach_help(FILE *out)
{
	fputs("Usage: cowpunch detach ID [--state-dir DIR]\n"
	      "\n"
	      "Tears down VM ID's devices (hibernation): removes overlay-ID, then base-ID.\n"
	      "The COW loop goes with them; the base image's loop goes when no other VM uses\n"
	      "it.  The COW file and the record stay, ready for 'cowpunch reclaim ID' and\n"
	      "'cowpunch attach ID'.  Refuses while overlay-ID is open (the VM is running).\n"
	      "Detaching a detached VM does nothing and succeeds.\n"
	      "\n"
	      "Options:\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  detached (or was not attached)\n"
	      "  1  runtime error (no such VM, device-mapper)\n"
	      "  2  usage error (bad ID)\n"
	      "  3  the record is damaged\n"
	      "  4  overlay-ID is open (stop the VM first), or locked by another command\n"
	      "\n"
	      "Example:\n"
	      "  cowpunch detach vm1 && cowpunch reclaim vm1\n",
	      out);
}

int cmd_detach(int argc, char **argv)
{
	const char *state, *id;
	struct host_error err = {""};
	struct vm v;
	int r;

	r = vmcmd_parse_id_args(argc, argv, NULL, &state, &id);
	if (r != EXIT_OK)
		return r;
	r = vmcmd_open(state, id, true, &v);
	if (r != EXIT_OK)
		return r;
	r = vm_detach(&v, &err);
	vm_close(&v);
	return r < 0 ? agent_host_error(r, &err) : EXIT_OK;
}
