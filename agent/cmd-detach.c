/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
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
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 'S'},
		{0},
	};
	const char *state_opt = NULL;
	struct vmcmd c;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt != 'S')
			return EXIT_USAGE;
		state_opt = optarg;
	}
	if (optind != argc - 1) {
		agent_error("detach: want exactly one VM ID (see 'cowpunch detach --help')");
		return EXIT_USAGE;
	}
	r = vmcmd_open(vmstore_state_dir(state_opt), argv[optind], true, &c);
	if (r != EXIT_OK)
		return r;
	r = vmcmd_detach(&c);
	vmcmd_close(&c);
	return r;
}
