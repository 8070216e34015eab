/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"
#include "common/util.h"

void cmd_list_help(FILE *out)
{
	fputs("Usage: cowpunch list [--json] [--state-dir DIR]\n"
	      "\n"
	      "Lists the VMs in the state directory: ID, attached or not, whether the COW\n"
	      "loop did direct I/O at the last attach (COW-IO: direct, buffered, or - when\n"
	      "not known), virtual size, what the COW file holds on the host (st_blocks),\n"
	      "bytes given back by the last reclaim, what the memory snapshot file holds\n"
	      "on the host (MEM-ALLOC; - when the VM has none or it is missing), and the\n"
	      "base image.  A VM whose record\n"
	      "is damaged is listed with its error and makes the exit status 3.  With no\n"
	      "VMs, the text is the one line 'no VMs in DIR' (with --json, []).  Takes no\n"
	      "lock.\n"
	      "\n"
	      "Options:\n"
	      "  --json           print a JSON array of the objects 'status --json' prints\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  listed (also when there are no VMs)\n"
	      "  1  runtime error (the state directory cannot be read)\n"
	      "  2  usage error\n"
	      "  3  at least one record is damaged\n"
	      "\n"
	      "Example:\n"
	      "  cowpunch list --json | jq -r '.[] | select(.attached == false) | .id'\n",
	      out);
}

static void list_print_row(json_object *o)
{
	char b1[32], b2[32], b3[32], b4[32];
	json_object *v, *rc;
	const char *att = "?";

	if (json_object_object_get_ex(o, "attached", &v) && v)
		att = json_object_get_boolean(v) ? "yes" : "no";
	util_format_bytes(
		(uint64_t)json_object_get_int64(json_object_object_get(o, "virtual_size")), b1,
		sizeof(b1));
	v = json_object_object_get(o, "cow_allocated");
	if (v)
		util_format_bytes((uint64_t)json_object_get_int64(v), b2, sizeof(b2));
	else
		snprintf(b2, sizeof(b2), "-");
	if (json_object_object_get_ex(o, "last_reclaim", &rc) && rc)
		util_format_bytes((uint64_t)json_object_get_int64(
					  json_object_object_get(rc, "reclaimed_bytes")),
				  b3, sizeof(b3));
	else
		snprintf(b3, sizeof(b3), "-");
	v = json_object_object_get(o, "mem_allocated");
	if (v)
		util_format_bytes((uint64_t)json_object_get_int64(v), b4, sizeof(b4));
	else
		snprintf(b4, sizeof(b4), "-");
	printf("%-20s %-8s %-8s %12s %12s %12s %12s  %s\n",
	       json_object_get_string(json_object_object_get(o, "id")), att, vmcmd_cow_io(o), b1,
	       b2, b3, b4, json_object_get_string(json_object_object_get(o, "base")));
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"state-dir", required_argument, NULL, 'S'},
		{0},
	};
	const char *state_opt = NULL, *state;
	json_object *arr;
	bool json = false;
	char **ids = NULL;
	int opt, n, rc = EXIT_OK;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
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
	if (optind != argc) {
		agent_error("list: takes no arguments (see 'cowpunch list --help')");
		return EXIT_USAGE;
	}
	state = vmstore_state_dir(state_opt);
	n = vmstore_list(state, &ids);
	if (n < 0) {
		agent_error("%s: %s", state, strerror(-n));
		return EXIT_RUNTIME;
	}
	arr = json_object_new_array();
	if (!json && n == 0)
		printf("no VMs in %s\n", state);
	else if (!json)
		printf("%-20s %-8s %-8s %12s %12s %12s %12s  %s\n", "ID", "ATTACHED", "COW-IO",
		       "SIZE", "COW-ALLOC", "RECLAIMED", "MEM-ALLOC", "BASE");
	for (int i = 0; i < n; i++) {
		struct vm v;
		json_object *o;
		int r = vmcmd_open(state, ids[i], false, &v);

		if (r != EXIT_OK) {
			rc = r; /* the error is printed; go on with the others */
			continue;
		}
		o = vm_describe(&v);
		vm_close(&v);
		if (!o)
			continue;
		if (json)
			json_object_array_add(arr, o);
		else {
			list_print_row(o);
			json_object_put(o);
		}
	}
	if (json)
		vmcmd_print_json(arr);
	json_object_put(arr);
	vmstore_list_free(ids, n);
	return rc;
}
