/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"

void vmcmd_help_state_dir(FILE *out)
{
	fputs("  --state-dir DIR  state directory (default $COWPUNCH_STATE_DIR, else\n"
	      "                   " VMSTORE_DEFAULT_DIR ")\n",
	      out);
}

int vmcmd_parse_id_args(int argc, char **argv, bool *ret_json, const char **ret_state,
			const char **ret_id)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"state-dir", required_argument, NULL, 'S'},
		{0},
	};
	const char *state_opt = NULL;
	bool json = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'S')
			state_opt = optarg;
		else if (opt == 'j' && ret_json)
			json = agent_json = true;
		else {
			if (opt == 'j')
				agent_error("%s: no --json here", argv[0]);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		agent_error("%s: want exactly one VM ID (see 'cowpunch %s --help')", argv[0],
			    argv[0]);
		return EXIT_USAGE;
	}
	if (ret_json)
		*ret_json = json;
	*ret_state = vmstore_state_dir(state_opt);
	*ret_id = argv[optind];
	return EXIT_OK;
}

void vmcmd_print_json(json_object *o)
{
	/* The caller keeps its reference. */
	agent_print_json(json_object_get(o), JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
}

int vmcmd_open(const char *state, const char *id, bool lock, struct vm *v)
{
	struct host_error err = {""};
	int r = vm_open(state, id, lock, v, &err);

	if (r == -EINVAL) {
		agent_error("%s", err.msg);
		return EXIT_USAGE;
	}
	return r < 0 ? agent_host_error(r, &err) : EXIT_OK;
}

const char *vmcmd_cow_io(json_object *o)
{
	json_object *v;

	if (!json_object_object_get_ex(o, "cow_direct_io_active", &v) || !v)
		return "-";
	return json_object_get_boolean(v) ? "direct" : "buffered";
}
