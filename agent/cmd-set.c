/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"
#include "common/cleanup.h"

void cmd_set_help(FILE *out)
{
	fputs("Usage: cowpunch set ID --mem-file PATH [--json] [--state-dir DIR]\n"
	      "       cowpunch set ID --no-mem-file [--json] [--state-dir DIR]\n"
	      "\n"
	      "Changes what VM ID's record says beyond its disk: the VM's memory snapshot\n"
	      "file, which the agent reclaims with its COW file (the all-zero blocks of it\n"
	      "are punched out while the VM is hibernated).  The path is made absolute; the\n"
	      "file need not exist yet (the orchestrator writes it at hibernation).  It may\n"
	      "not be the VM's base image or COW file.  Takes the VM's lock, so it waits for\n"
	      "no command and is refused (exit 4) while another one works on the VM; the\n"
	      "record is rewritten atomically.  Prints the new value: the path, or 'none'.\n"
	      "\n"
	      "Options:\n"
	      "  --mem-file PATH  record PATH as the VM's memory snapshot file\n"
	      "  --no-mem-file    record that the VM has none\n"
	      "  --json           print {\"id\": ID, \"mem_file\": PATH or null}\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  set\n"
	      "  1  runtime error (no such VM, I/O)\n"
	      "  2  usage error (bad ID, no or both options, the base image or COW as PATH)\n"
	      "  3  the record is damaged\n"
	      "  4  locked by another cowpunch command\n"
	      "\n"
	      "Examples:\n"
	      "  cowpunch set vm1 --mem-file /srv/vms/vm1/mem.snap\n"
	      "  cowpunch set vm1 --no-mem-file\n",
	      out);
}

int cmd_set(int argc, char **argv)
{
	enum { OPT_NO_MEM_FILE = 256 };
	static const struct option opts[] = {
		{"mem-file", required_argument, NULL, 'm'},
		{"no-mem-file", no_argument, NULL, OPT_NO_MEM_FILE},
		{"json", no_argument, NULL, 'j'},
		{"state-dir", required_argument, NULL, 'S'},
		{0},
	};
	const char *state_opt = NULL, *mem_opt = NULL, *state, *id;
	_cleanup_free_ char *mem = NULL;
	struct host_error err = {""};
	bool json = false, no_mem = false;
	struct vm v;
	json_object *o;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			mem_opt = optarg;
			break;
		case OPT_NO_MEM_FILE:
			no_mem = true;
			break;
		case 'j':
			json = agent_json = true;
			break;
		case 'S':
			state_opt = optarg;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		agent_error("set: want exactly one VM ID (see 'cowpunch set --help')");
		return EXIT_USAGE;
	}
	id = argv[optind];
	if (!mem_opt == !no_mem) {
		agent_error("set: want one of --mem-file PATH and --no-mem-file");
		return EXIT_USAGE;
	}
	if (mem_opt) {
		r = vm_mem_path(mem_opt, &mem, &err);
		if (r < 0) {
			agent_error("set: %s", err.msg);
			return r == -EINVAL ? EXIT_USAGE : agent_exit_code(r);
		}
	}
	state = vmstore_state_dir(state_opt);
	r = vmcmd_open(state, id, true, &v);
	if (r != EXIT_OK)
		return r;
	r = vm_set_mem_path(&v, mem, &err);
	vm_close(&v);
	if (r == -EINVAL) {
		agent_error("%s", err.msg);
		return EXIT_USAGE;
	}
	if (r < 0)
		return agent_host_error(r, &err);
	if (json) {
		o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_string(id));
		json_object_object_add(o, "mem_file", mem ? json_object_new_string(mem) : NULL);
		vmcmd_print_json(o);
		json_object_put(o);
	} else
		printf("%s\n", mem ? mem : "none");
	return EXIT_OK;
}
