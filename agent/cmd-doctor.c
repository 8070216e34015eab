/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>

#include "agent/agent.h"
#include "agent/vmcmd.h"
#include "host/doctor.h"
#include "host/vmstore.h"

void cmd_doctor_help(FILE *out)
{
	fputs("Usage: cowpunch doctor [--state-dir DIR] [--json] [--fix]\n"
	      "\n"
	      "Checks whether this host can be trusted with cowpunch's disks, and says per\n"
	      "check ok, warning or fail, why, and what to do:\n"
	      "  device-mapper     the driver is loaded and answers (its version)\n"
	      "  dm-targets        the snapshot, linear and zero targets and their versions\n"
	      "  discard-selftest  whether this kernel corrupts data on discards not aligned\n"
	      "                    to the chunk size of a discard_zeroes_cow snapshot: on\n"
	      "                    scratch files in STATE/.doctor, its own loop devices and dm\n"
	      "                    devices cowpunch-doctor-PID-*, all removed afterwards, it\n"
	      "                    writes two neighbouring chunks, discards across the end of\n"
	      "                    one and compares the other.  The result is kept in\n"
	      "                    STATE/.doctor/discard-RELEASE.json for the running kernel;\n"
	      "                    'create --discard' is refused unless it says safe\n"
	      "  io_uring          usable, or what blocks it (the sysctl\n"
	      "                    kernel.io_uring_disabled, a seccomp filter, no kernel support)\n"
	      "  direct-io         O_DIRECT on the state directory's file system\n"
	      "  punch-hole        PUNCH_HOLE frees blocks there (st_blocks drops)\n"
	      "  leftover-devices  dm devices named base-ID or overlay-ID that no record\n"
	      "                    explains, self-test devices of a dead doctor, loop devices\n"
	      "                    backed by files in the state directory that no dm device holds\n"
	      "  stale-locks       lock files of VMs that do not exist, temp records of dead\n"
	      "                    writers, killed creates, killed self-tests' scratch folders\n"
	      "  records           records whose COW file or base image is gone, COW files\n"
	      "                    without a record\n"
	      "Run it as root, with no other cowpunch command running when --fix is given.\n"
	      "\n"
	      "Options:\n"
	      "  --json           print a JSON array, one object per check: check, status\n"
	      "                   (ok, warning, fail), reason, action, items (what a leftover\n"
	      "                   check found: kind, name, detail, fixable, fixed, error)\n"
	      "  --fix            remove the leftovers cowpunch made and nothing uses: never a\n"
	      "                   device a record explains, an open device, a COW file that may\n"
	      "                   hold a guest's data, or a record\n",
	      out);
	vmcmd_help_state_dir(out);
	fputs("\n"
	      "Exit status:\n"
	      "  0  every check ok (warnings allowed)\n"
	      "  1  a check failed\n"
	      "  2  usage error\n"
	      "\n"
	      "Examples:\n"
	      "  cowpunch doctor\n"
	      "  cowpunch doctor --json | jq -r '.[] | select(.status != \"ok\") | .check'\n"
	      "  cowpunch doctor --fix\n",
	      out);
}

static json_object *doctor_json(const struct doctor_report *rep)
{
	json_object *a = json_object_new_array();

	for (int i = 0; a && i < DOCTOR_NCHECKS; i++) {
		const struct doctor_check *c = &rep->checks[i];
		json_object *o = json_object_new_object(), *items = json_object_new_array();

		json_object_object_add(o, "check", json_object_new_string(c->name));
		json_object_object_add(o, "status",
				       json_object_new_string(doctor_status_name(c->status)));
		json_object_object_add(o, "reason", json_object_new_string(c->reason));
		json_object_object_add(o, "action", json_object_new_string(c->action));
		for (unsigned k = 0; k < c->nitems; k++) {
			const struct doctor_item *it = &c->items[k];
			json_object *j = json_object_new_object();

			json_object_object_add(j, "kind", json_object_new_string(it->kind));
			json_object_object_add(j, "name", json_object_new_string(it->name));
			json_object_object_add(j, "detail", json_object_new_string(it->detail));
			json_object_object_add(j, "fixable", json_object_new_boolean(it->fixable));
			json_object_object_add(j, "fixed", json_object_new_boolean(it->fixed));
			json_object_object_add(j, "error", json_object_new_string(it->error));
			json_object_array_add(items, j);
		}
		json_object_object_add(o, "items", items);
		json_object_array_add(a, o);
	}
	return a;
}

static void doctor_print_text(const struct doctor_report *rep)
{
	unsigned n[3] = {0};

	for (int i = 0; i < DOCTOR_NCHECKS; i++) {
		const struct doctor_check *c = &rep->checks[i];

		n[c->status]++;
		printf("%-7s %-16s %s\n",
		       c->status == DOCTOR_FAIL ? "FAIL" : doctor_status_name(c->status), c->name,
		       c->reason);
		for (unsigned k = 0; k < c->nitems; k++) {
			const struct doctor_item *it = &c->items[k];

			printf("        - %s %s: %s", it->kind, it->name, it->detail);
			if (it->fixed)
				printf(" [removed]");
			else if (it->error[0])
				printf(" [not removed: %s]", it->error);
			printf("\n");
		}
		if (c->action[0] && c->status != DOCTOR_OK)
			printf("        what to do: %s\n", c->action);
	}
	printf("doctor: %u ok, %u warning%s, %u failed\n", n[DOCTOR_OK], n[DOCTOR_WARNING],
	       n[DOCTOR_WARNING] == 1 ? "" : "s", n[DOCTOR_FAIL]);
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"fix", no_argument, NULL, 'f'},
		{"state-dir", required_argument, NULL, 'S'},
		{0},
	};
	const char *state_opt = NULL;
	bool json = false, fix = false;
	struct doctor_report rep;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = agent_json = true;
			break;
		case 'f':
			fix = true;
			break;
		case 'S':
			state_opt = optarg;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		agent_error("doctor: takes no arguments (see 'cowpunch doctor --help')");
		return EXIT_USAGE;
	}
	r = doctor_run(vmstore_state_dir(state_opt), fix, &rep);
	if (r < 0) {
		agent_error("doctor: %s", "out of memory");
		return EXIT_RUNTIME;
	}
	if (json) {
		json_object *a = doctor_json(&rep);

		vmcmd_print_json(a);
		json_object_put(a);
	} else
		doctor_print_text(&rep);
	r = doctor_report_failed(&rep) ? EXIT_RUNTIME : EXIT_OK;
	doctor_report_free(&rep);
	return r;
}
