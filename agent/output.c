/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What every command prints through: errors on stderr, JSON on stdout, the
 * JSON for a failed --json command, and the exit status of a library result.
 */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>

#include "agent/agent.h"

bool agent_json;
static bool json_printed;
static char last_error[1024];

void agent_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	fprintf(stderr, "cowpunch: %s\n", last_error);
}

const char *agent_last_error(void)
{
	return last_error;
}

void agent_print_json(struct json_object *o, int flags)
{
	puts(json_object_to_json_string_ext(o, flags));
	fflush(stdout);
	json_printed = true;
	json_object_put(o);
}

int agent_json_failure(int rc)
{
	json_object *o;

	if (rc == EXIT_OK || !agent_json || json_printed)
		return rc;
	o = json_object_new_object();
	json_object_object_add(o, "error",
			       json_object_new_string(last_error[0] ? last_error : "failed"));
	json_object_object_add(o, "exit_code", json_object_new_int(rc));
	agent_print_json(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
				    JSON_C_TO_STRING_NOSLASHESCAPE);
	return rc;
}

int agent_exit_code(int neg_errno)
{
	return host_exit_status(neg_errno);
}

int agent_host_error(int r, const struct host_error *err)
{
	agent_error("%s", err->msg[0] ? err->msg : "failed");
	return agent_exit_code(r);
}
