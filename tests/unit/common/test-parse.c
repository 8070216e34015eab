/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The agent's option parsers: --interval, --max-read-rate, --listen. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/util.h"

#define SEC 1000000000ULL

struct parse_case {
	const char *s;
	uint64_t v;
};

/*
 * Every ok case parses to its value; every bad one is refused with -EINVAL and
 * leaves the result alone.
 */
static void check_parser(int (*parse)(const char *, uint64_t *), const struct parse_case *ok,
			 size_t nok, const char *const *bad, size_t nbad)
{
	uint64_t v = 12345;

	for (size_t i = 0; i < nok; i++) {
		if (parse(ok[i].s, &v) != 0 || v != ok[i].v)
			fail_msg("'%s': got %llu, expected %llu", ok[i].s, (unsigned long long)v,
				 (unsigned long long)ok[i].v);
	}
	for (size_t i = 0; i < nbad; i++) {
		v = 12345;
		if (parse(bad[i], &v) != -EINVAL || v != 12345)
			fail_msg("'%s' was not refused with -EINVAL, or wrote the result", bad[i]);
	}
	assert_int_equal(parse(NULL, &v), -EINVAL);
}

static void test_duration(void **state)
{
	static const struct parse_case ok[] = {
		{"90s", 90 * SEC},
		{"10m", 600 * SEC},
		{"1h", 3600 * SEC},
		{"500ms", 500000000},
		{"90", 90 * SEC},
		{"0", 0},
		{"0.5", SEC / 2},
		{"1.5h", 5400 * SEC},
		{"1h30m", 5400 * SEC},
		{"2d", 172800 * SEC},
		{"250us", 250000},
		{"7ns", 7},
		{"1m0.5s", 60 * SEC + SEC / 2},
		{"18446744073s", 18446744073 * SEC},
	};
	static const char *const bad[] = {
		"",    "s",   "-1",    "-5s", "1x",  "10M",	  "1 h",  " 1h", "1h ", "10m30",
		"1.s", ".5s", "1..5s", "5sm", "1hh", "unlimited", "0x10", "1e3", "+1s",
	};
	uint64_t v = 12345;

	check_parser(util_parse_duration, ok, ARRAY_SIZE(ok), bad, ARRAY_SIZE(bad));
	/* 2^64 ns is 18446744073.7 s: one second more does not fit. */
	assert_int_equal(util_parse_duration("18446744074s", &v), -ERANGE);
	assert_int_equal(util_parse_duration("213504d", &v), -ERANGE);
	assert_int_equal(util_parse_duration("18446744073s1s", &v), -ERANGE);
	assert_int_equal(util_parse_duration("99999999999999999999999s", &v), -ERANGE);
	assert_int_equal(v, 12345);
	assert_int_equal(util_parse_duration("213503d", &v), 0);
	assert_int_equal(v, 213503ULL * 86400 * SEC);
}

static void test_rate(void **state)
{
	static const struct parse_case ok[] = {
		{"50M", 50ULL << 20},
		{"50M/s", 50ULL << 20},
		{"50MiB/s", 50ULL << 20},
		{"1.5G", 3ULL << 29},
		{"4096", 4096},
		{"4096/s", 4096},
		{"0", 0},
		{"unlimited", 0},
		{"Unlimited", 0},
		{"100k", 100 * 1024ULL},
	};
	static const char *const bad[] = {"",	  "/s",	   "-1M", "50MB",   "fast",
					  "50 M", "50M/h", "M",	  "50M/s/s"};
	uint64_t v;

	check_parser(util_parse_rate, ok, ARRAY_SIZE(ok), bad, ARRAY_SIZE(bad));
	assert_int_equal(util_parse_rate("17000000P", &v), -ERANGE);
}

static void test_listen(void **state)
{
	static const char *const bad[] = {
		"",
		"127.0.0.1",
		"127.0.0.1:",
		"127.0.0.1:0",
		"127.0.0.1:65536",
		"127.0.0.1:99999",
		"127.0.0.1:123456",
		"127.0.0.1:-1",
		"127.0.0.1:+80",
		"127.0.0.1:80x",
		"127.0.0.1: 80",
		":9479",
		"localhost:9479",
		"256.0.0.1:80",
		"1.2.3:80",
		"::1:9479",
		"[::1]",
		"[::1]:",
		"[::1]9479",
		"[::1:9479",
		"[127.0.0.1]:80",
		"[]:80",
		"[::g]:80",
		"0.0.0.0:80:80",
		"[fe80::1%eth0]:80",
	};
	struct sockaddr_storage ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	socklen_t len = 0;
	char buf[INET6_ADDRSTRLEN];

	assert_int_equal(util_parse_listen("127.0.0.1:9479", &ss, &len), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(a4->sin_family, AF_INET);
	assert_int_equal(ntohs(a4->sin_port), 9479);
	assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(util_parse_listen("0.0.0.0:1", &ss, &len), 0);
	assert_int_equal(ntohs(a4->sin_port), 1);
	assert_int_equal(util_parse_listen("10.1.2.3:65535", &ss, &len), 0);
	assert_int_equal(ntohs(a4->sin_port), 65535);
	assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x0a010203);

	assert_int_equal(util_parse_listen("[::1]:9479", &ss, &len), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(a6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(a6->sin6_port), 9479);
	assert_true(IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr));
	assert_int_equal(util_parse_listen("[2001:db8::7]:80", &ss, &len), 0);
	assert_string_equal(inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof(buf)), "2001:db8::7");
	assert_int_equal(util_parse_listen("[::]:9479", &ss, &len), 0);
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr));

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		len = 777;
		if (util_parse_listen(bad[i], &ss, &len) != -EINVAL || len != 777)
			fail_msg("'%s' was not refused with -EINVAL, or wrote the result", bad[i]);
	}
	assert_int_equal(util_parse_listen(NULL, &ss, &len), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_listen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
