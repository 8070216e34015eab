/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target for the option parsers in common/util.c: util_parse_size() (--size,
 * --chunk-size), util_parse_duration() (--interval), util_parse_rate()
 * (--max-read-rate) and util_parse_listen() (--listen).  The first byte of the input
 * picks the parser ('s' size, 'd' duration, 'r' rate, 'l' listen; any other byte by
 * its value modulo 4), the rest is the argument (cut at its first NUL, as argv is).
 * Built with libFuzzer by `make fuzz` (COWPUNCH_LIBFUZZER defined); otherwise main()
 * replays the files named on the command line (`make check`).
 *
 * Invariants beyond "no crash": a parser returns 0, -EINVAL or -ERANGE (listen: 0
 * or -EINVAL); a refusal leaves the result alone; an accepted value, written back in
 * the parser's plainest form (bytes, nanoseconds, "IP:PORT"), parses to the same
 * value; an accepted listen address is a sockaddr_in or sockaddr_in6 with a port.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tests/unit/helpers/fuzzreplay.h"

/* Arguments longer than this are ignored: no option value is near it. */
#define FUZZ_MAX_INPUT 4096u
#define SENTINEL       0x5a5a5a5a5a5a5a5aULL

/* One of the number parsers: returns 1 when it accepted s. */
static int fuzz_number(int (*parse)(const char *, uint64_t *), const char *s, const char *unit)
{
	uint64_t v = SENTINEL, again = SENTINEL;
	char plain[32];
	int r = parse(s, &v);

	if (r == -EINVAL || r == -ERANGE) {
		if (v != SENTINEL)
			abort();
		return 0;
	}
	if (r != 0)
		abort();
	snprintf(plain, sizeof(plain), "%" PRIu64 "%s", v, unit);
	if (parse(plain, &again) != 0 || again != v)
		abort();
	return 1;
}

static int fuzz_listen(const char *s)
{
	struct sockaddr_storage ss, again;
	socklen_t len = 777, len2 = 0;
	char addr[INET6_ADDRSTRLEN], plain[INET6_ADDRSTRLEN + 16];
	uint16_t port;
	int r = util_parse_listen(s, &ss, &len);

	if (r == -EINVAL) {
		if (len != 777)
			abort();
		return 0;
	}
	if (r != 0)
		abort();
	if (ss.ss_family == AF_INET && len == sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;

		port = ntohs(a->sin_port);
		if (!inet_ntop(AF_INET, &a->sin_addr, addr, sizeof(addr)))
			abort();
		snprintf(plain, sizeof(plain), "%s:%u", addr, port);
	} else if (ss.ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;

		port = ntohs(a->sin6_port);
		if (!inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr)))
			abort();
		snprintf(plain, sizeof(plain), "[%s]:%u", addr, port);
	} else
		abort();
	if (port == 0 || util_parse_listen(plain, &again, &len2) != 0 || len2 != len ||
	    memcmp(&again, &ss, len) != 0)
		abort();
	return 1;
}

/* Returns 1 when the parser the first byte picks accepted the rest, 0 when not. */
static int fuzz_one(const uint8_t *data, size_t size)
{
	static const char kinds[] = "sdrl";
	const char *k;
	char *s;
	int kind, accepted = 0;

	if (size == 0 || size > FUZZ_MAX_INPUT)
		return 0;
	k = data[0] ? strchr(kinds, data[0]) : NULL;
	kind = k ? (int)(k - kinds) : data[0] % 4;
	s = malloc(size);
	if (!s)
		abort();
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	switch (kind) {
	case 0:
		accepted = fuzz_number(util_parse_size, s, "");
		break;
	case 1:
		accepted = fuzz_number(util_parse_duration, s, "ns");
		break;
	case 2:
		accepted = fuzz_number(util_parse_rate, s, "");
		break;
	default:
		accepted = fuzz_listen(s);
		break;
	}
	free(s);
	return accepted;
}

FUZZ_TARGET("fuzz-args", FUZZ_MAX_INPUT, fuzz_one)
