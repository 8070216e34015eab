/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"
#include "common/cleanup.h"

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
	_cleanup_free_ char *json = NULL, *lock = NULL, *dir = NULL;
	const char *state, *id;
	struct vmcmd c;
	int r;

	r = vmcmd_parse_id_args(argc, argv, NULL, &state, &id);
	if (r != EXIT_OK)
		return r;
	r = vmcmd_open(state, id, true, &c);
	if (r != EXIT_OK)
		return r;
	r = vmcmd_detach(&c);
	if (r != EXIT_OK) {
		vmcmd_close(&c);
		return r;
	}
	json = vmstore_path(state, c.id, "vm.json");
	lock = vmstore_path(state, c.id, "lock");
	dir = vmstore_path(state, c.id, NULL);
	if (!json || !lock || !dir) {
		vmcmd_close(&c);
		return EXIT_RUNTIME;
	}
	/*
	 * The COW goes first: a crash after it leaves a record without a COW, which
	 * destroy removes when run again.  The other order would leave a COW without
	 * a record, which create refuses to touch (it may be a VM whose record was lost).
	 */
	if ((unlink(c.cow_path) < 0 && errno != ENOENT) || unlink(json) < 0) {
		agent_error("%s: %s", dir, strerror(errno));
		vmcmd_close(&c);
		return EXIT_RUNTIME;
	}
	unlink(lock);
	vmcmd_close(&c);
	if (rmdir(dir) < 0) {
		agent_error("%s: %s (the VM is destroyed; remove the folder by hand)", dir,
			    strerror(errno));
		return EXIT_RUNTIME;
	}
	return EXIT_OK;
}
