/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"

void cmd_attach_help(FILE *out)
{
	fputs("Usage: cowpunch attach ID [--state-dir DIR]\n"
	      "\n"
	      "Builds VM ID's devices again from its record: the shared read-only loop of the\n"
	      "base image (reused when another VM has it), a loop for the COW file, base-ID and\n"
	      "overlay-ID.  Prints /dev/mapper/overlay-ID.  Attaching an attached VM does\n"
	      "nothing and succeeds.  A base-ID left behind by a killed attach is removed\n"
	      "first.  Before anything is built, the base image must still have the size,\n"
	      "mtime and sampled sha256 recorded at create: a COW on a different base is a\n"
	      "corrupt disk.  On failure nothing is left behind.\n"
	      "\n"
	      "Options:\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  attached (or was already)\n"
	      "  1  runtime error (no such VM, I/O, device-mapper)\n"
	      "  2  usage error (bad ID)\n"
	      "  3  the base image changed since create, or the record is damaged: refused\n"
	      "  4  locked by another cowpunch command, or the COW file is in use elsewhere\n"
	      "\n"
	      "Example:\n"
	      "  cowpunch attach vm1\n",
	      out);
}

int cmd_attach(int argc, char **argv)
{
	const char *state, *id;
	struct host_error err = {""};
	struct vmdisk_attached att;
	struct vm v;
	int r;

	r = vmcmd_parse_id_args(argc, argv, NULL, &state, &id);
	if (r != EXIT_OK)
		return r;
	r = vmcmd_open(state, id, true, &v);
	if (r != EXIT_OK)
		return r;
	r = vm_attach(&v, &att, &err);
	vm_close(&v);
	if (r < 0)
		return agent_host_error(r, &err);
	printf("%s\n", att.overlay_path);
	return EXIT_OK;
}
