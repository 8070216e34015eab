/* SPDX-License-Identifier: GPL-2.0-or-later */
/* agent/httpd over real loopback sockets, with a minimal HTTP/1.0 client. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/httpd.h"

#define SEC 1000000000ULL

struct reply {
	int status;
	char *head; /* status line and headers */
	char *body;
	size_t body_len;
};

static void reply_free(struct reply *r)
{
	free(r->head);
	free(r->body);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static struct sockaddr_in loopback4(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int connect_to(int family, uint16_t port)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a4 = loopback4(port);
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	int r;

	if (fd < 0)
		return -errno;
	a6.sin6_addr = in6addr_loopback;
	r = family == AF_INET ? connect(fd, (struct sockaddr *)&a4, sizeof(a4))
			      : connect(fd, (struct sockaddr *)&a6, sizeof(a6));
	if (r < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* One request over HTTP/1.0 (the server closes after answering); fails the test on errors. */
static struct reply request_family(int family, uint16_t port, const char *method, const char *path)
{
	struct reply rep = {0};
	char req[512], *all = NULL, *sep;
	size_t len = 0, cap = 0;
	int fd = connect_to(family, port);
	ssize_t n;

	if (fd < 0)
		fail_msg("connect to port %u: %s", port, strerror(-fd));
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
		     method, path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	for (;;) {
		if (len + 65536 > cap) {
			cap = (cap + 65536) * 2;
			char *grown = realloc(all, cap + 1);

			assert_non_null(grown);
			all = grown;
		}
		n = read(fd, all + len, cap - len);
		assert_true(n >= 0);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	all[len] = '\0';
	sep = strstr(all, "\r\n\r\n");
	if (!sep)
		fail_msg("no end of headers in the reply to %s %s: '%s'", method, path, all);
	assert_int_equal(sscanf(all, "HTTP/1.%*d %d", &rep.status), 1);
	rep.body_len = len - (size_t)(sep + 4 - all);
	rep.body = malloc(rep.body_len + 1);
	assert_non_null(rep.body);
	memcpy(rep.body, sep + 4, rep.body_len);
	rep.body[rep.body_len] = '\0';
	*sep = '\0';
	rep.head = all;
	return rep;
}

static struct reply request(uint16_t port, const char *method, const char *path)
{
	return request_family(AF_INET, port, method, path);
}

static struct httpd *start4(void)
{
	struct sockaddr_in a = loopback4(0);
	struct httpd *h = NULL;

	assert_int_equal(httpd_start((struct sockaddr *)&a, sizeof(a), &h), 0);
	assert_non_null(h);
	assert_true(httpd_port(h) != 0);
	return h;
}

static void assert_reply(struct reply *r, int status, const char *body)
{
	if (r->status != status || strcmp(r->body, body))
		fail_msg("expected %d '%s', got %d '%s'", status, body, r->status, r->body);
	reply_free(r);
}

static void test_routes(void **state)
{
	struct httpd *h = start4();
	uint16_t port = httpd_port(h);
	const char *text = "# TYPE x counter\nx 1\n";
	struct reply r;

	/* Nothing published: nothing to serve, and not healthy. */
	r = request(port, "GET", "/metrics");
	assert_reply(&r, 503, "no metrics published yet\n");
	r = request(port, "GET", "/healthz");
	assert_reply(&r, 503, "no cycle has finished yet\n");

	assert_int_equal(httpd_publish(h, text, strlen(text), 0, 60 * SEC), 0);
	r = request(port, "GET", "/metrics");
	assert_non_null(
		strstr(r.head, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"));
	assert_reply(&r, 200, text);
	r = request(port, "GET", "/metrics?name[]=x");
	assert_reply(&r, 200, text);
	/* Published at start, before the first cycle: still not healthy. */
	r = request(port, "GET", "/healthz");
	assert_reply(&r, 503, "no cycle has finished yet\n");

	r = request(port, "HEAD", "/metrics");
	assert_reply(&r, 200, "");
	r = request(port, "GET", "/");
	assert_reply(&r, 404, "not found: try /metrics or /healthz\n");
	r = request(port, "GET", "/metricsx");
	assert_reply(&r, 404, "not found: try /metrics or /healthz\n");
	r = request(port, "GET", "/healthz/x");
	assert_reply(&r, 404, "not found: try /metrics or /healthz\n");
	r = request(port, "POST", "/metrics");
	assert_non_null(strstr(r.head, "\r\nAllow: GET, HEAD"));
	assert_reply(&r, 405, "method not allowed\n");
	r = request(port, "PUT", "/healthz");
	assert_reply(&r, 405, "method not allowed\n");
	r = request(port, "DELETE", "/nothing");
	assert_reply(&r, 405, "method not allowed\n");
	httpd_stop(h);
}

static void test_health(void **state)
{
	struct httpd *h = start4();
	uint16_t port = httpd_port(h);
	uint64_t now = now_ns();
	struct reply r;
	char why[160];

	assert_true(now > 10 * SEC);
	assert_int_equal(httpd_publish(h, "x 1\n", 4, now, 60 * SEC), 0);
	r = request(port, "GET", "/healthz");
	assert_reply(&r, 200, "ok\n");
	/* Interval 1 s, the cycle ended 3 s ago: more than two intervals. */
	assert_int_equal(httpd_publish(h, "x 1\n", 4, now - 3 * SEC, SEC), 0);
	r = request(port, "GET", "/healthz");
	assert_int_equal(r.status, 503);
	assert_non_null(strstr(r.body, "more than two intervals (2 s)"));
	reply_free(&r);
	/* The verdict itself, at the boundary. */
	assert_int_equal(httpd_health(1, 100 * SEC, 80 * SEC, 10 * SEC, why, sizeof(why)), 200);
	assert_string_equal(why, "ok");
	assert_int_equal(httpd_health(1, 100 * SEC + 1, 80 * SEC, 10 * SEC, why, sizeof(why)), 503);
	assert_string_equal(why, "the last cycle ended 20 s ago, more than two intervals (20 s)");
	assert_int_equal(httpd_health(1, 50 * SEC, 80 * SEC, 10 * SEC, why, sizeof(why)), 200);
	assert_int_equal(httpd_health(0, 100 * SEC, 80 * SEC, 10 * SEC, why, sizeof(why)), 503);
	assert_int_equal(httpd_health(1, 100 * SEC, 0, 10 * SEC, why, sizeof(why)), 503);
	assert_int_equal(httpd_health(1, UINT64_MAX, 1, UINT64_MAX, why, sizeof(why)), 200);
	httpd_stop(h);
}

/* A large text arrives whole. */
static void test_large_text(void **state)
{
	struct httpd *h = start4();
	size_t len = 3 << 20;
	char *text = malloc(len + 1);
	struct reply r;

	assert_non_null(text);
	for (size_t i = 0; i < len; i++)
		text[i] = (char)('a' + i % 26);
	text[len] = '\0';
	assert_int_equal(httpd_publish(h, text, len, now_ns(), SEC), 0);
	r = request(httpd_port(h), "GET", "/metrics");
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, len);
	assert_memory_equal(r.body, text, len);
	reply_free(&r);
	free(text);
	httpd_stop(h);
}

struct publisher {
	struct httpd *h;
	_Atomic bool stop;
	char *texts[2];
	size_t len;
	_Atomic int published;
};

static void *publish_loop(void *arg)
{
	struct publisher *p = arg;

	while (!p->stop) {
		if (httpd_publish(p->h, p->texts[p->published % 2], p->len, 1, SEC) < 0)
			abort(); /* cmocka's asserts are for the main thread */
		p->published++;
	}
	return NULL;
}

/* Scrapes during a storm of publishes each see one whole text, never a mix. */
static void test_no_torn_reads(void **state)
{
	struct publisher p = {.h = start4(), .len = 200000};
	pthread_t t;
	int start;

	for (int k = 0; k < 2; k++) {
		p.texts[k] = malloc(p.len);
		assert_non_null(p.texts[k]);
		memset(p.texts[k], k ? 'B' : 'A', p.len);
	}
	assert_int_equal(httpd_publish(p.h, p.texts[0], p.len, 1, SEC), 0);
	assert_int_equal(pthread_create(&t, NULL, publish_loop, &p), 0);
	/*
	 * At least 100 scrapes, and on until the publisher swapped texts 100 times
	 * meanwhile: on a loaded machine its thread may not run at first.
	 */
	start = p.published;
	for (int i = 0; i < 100 || (p.published - start < 100 && i < 5000); i++) {
		struct reply r = request(httpd_port(p.h), "GET", "/metrics");

		assert_int_equal(r.status, 200);
		assert_int_equal(r.body_len, p.len);
		for (size_t j = 1; j < p.len; j++)
			if (r.body[j] != r.body[0])
				fail_msg("scrape %d mixes two texts at byte %zu", i, j);
		reply_free(&r);
	}
	assert_true(p.published - start >= 100);
	p.stop = true;
	pthread_join(t, NULL);
	free(p.texts[0]);
	free(p.texts[1]);
	httpd_stop(p.h);
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* The SigBlk mask of thread tid, from /proc. */
static unsigned long long sigblk(const char *tid)
{
	char path[64], line[256];
	unsigned long long mask = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigBlk: %llx", &mask) == 1)
			break;
	fclose(f);
	return mask;
}

/* One HTTP thread, which takes no signal; stop closes the socket and leaks no fd. */
static void test_thread_and_stop(void **state)
{
	int fds = count_dir("/proc/self/fd"), threads = count_dir("/proc/self/task");
	unsigned long long want = (1ULL << (SIGTERM - 1)) | (1ULL << (SIGINT - 1)) |
				  (1ULL << (SIGHUP - 1)) | (1ULL << (SIGCHLD - 1)) |
				  (1ULL << (SIGPIPE - 1)) | (1ULL << (SIGUSR1 - 1));
	struct httpd *h = start4();
	uint16_t port = httpd_port(h);
	struct reply r;
	char self[32];
	DIR *d;
	struct dirent *e;
	int others = 0, fd;

	assert_int_equal(count_dir("/proc/self/task"), threads + 1);
	/*
	 * A new thread runs with every signal blocked until glibc's start-up code
	 * sets the inherited mask: after an answered request it has done so.
	 */
	r = request(port, "GET", "/healthz");
	reply_free(&r);
	snprintf(self, sizeof(self), "%ld", (long)syscall(SYS_gettid));
	assert_int_equal(sigblk(self) & want, 0);
	d = opendir("/proc/self/task");
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !strcmp(e->d_name, self))
			continue;
		others++;
		if ((sigblk(e->d_name) & want) != want)
			fail_msg("thread %s does not block the main loop's signals: %llx",
				 e->d_name, sigblk(e->d_name));
	}
	closedir(d);
	assert_int_equal(others, threads);
	httpd_stop(h);
	assert_int_equal(count_dir("/proc/self/task"), threads);
	assert_int_equal(count_dir("/proc/self/fd"), fds);
	fd = connect_to(AF_INET, port);
	assert_int_equal(fd, -ECONNREFUSED);
	httpd_stop(NULL);
}

static void test_bind_errors(void **state)
{
	struct httpd *h = start4(), *h2 = (struct httpd *)0x1;
	struct sockaddr_in taken = loopback4(httpd_port(h));
	struct sockaddr_in nowhere = loopback4(9479);

	assert_int_equal(httpd_start((struct sockaddr *)&taken, sizeof(taken), &h2), -EADDRINUSE);
	assert_ptr_equal(h2, (struct httpd *)0x1);
	/* 192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface of this machine. */
	assert_int_equal(inet_pton(AF_INET, "192.0.2.1", &nowhere.sin_addr), 1);
	assert_int_equal(httpd_start((struct sockaddr *)&nowhere, sizeof(nowhere), &h2),
			 -EADDRNOTAVAIL);
	assert_ptr_equal(h2, (struct httpd *)0x1);
	httpd_stop(h);
}

static void test_ipv6(void **state)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct httpd *h = NULL;
	struct reply r;
	int r6;

	r6 = httpd_start((struct sockaddr *)&a, sizeof(a), &h);
	if (r6 == -EAFNOSUPPORT || r6 == -EADDRNOTAVAIL) {
		/* Not a silent pass: the whole test program fails, naming the reason. */
		fail_msg("this machine has no IPv6 loopback (%s): cannot test [::1]",
			 strerror(-r6));
	}
	assert_int_equal(r6, 0);
	assert_int_equal(httpd_publish(h, "v6 1\n", 5, now_ns(), SEC), 0);
	r = request_family(AF_INET6, httpd_port(h), "GET", "/metrics");
	assert_reply(&r, 200, "v6 1\n");
	httpd_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_large_text),
		cmocka_unit_test(test_no_torn_reads),
		cmocka_unit_test(test_thread_and_stop),
		cmocka_unit_test(test_bind_errors),
		cmocka_unit_test(test_ipv6),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
