/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * metricsd: the agent's metrics endpoint without the agent, for tests.  It
 * fills a struct metrics (host/metrics.h) from commands, serves it with
 * agent/httpd on loopback and writes the textfile, exactly as the agent's
 * main loop will; tests/prom points a real Prometheus at it.
 *
 *   metricsd [--listen ADDR:PORT | --port N] [--port-file FILE] [--textfile PATH]
 *            [--per-vm] [--interval DUR] [--version V] [--state FILE] [-e CMD]...
 *            [--tick CMD]... [--once]
 *
 * Commands, one per line in FILE (# starts a comment) or one per -e:
 *   reclaimed KIND BYTES [VM]     KIND zero|fs_free|mem_zero
 *   scanned BYTES
 *   reclaim RESULT [COUNT]        RESULT ok|unchanged|attached|busy|refused|failed
 *   observe SECONDS               one per-VM reclaim duration
 *   host ATTACHED DETACHED COW_ALLOCATED COW_VIRTUAL MEM_ALLOCATED
 *   vm ID COW_ALLOCATED MEM_ALLOCATED
 *   cycle AGO DURATION            the last cycle ended AGO seconds ago (wall and
 *                                 monotonic clocks both), and took DURATION s
 * --tick commands run once a second, after which the text is published and the
 * textfile written again (a counter that grows, a cycle that stays fresh).
 * --port 0 (the default) takes a free port; --port-file gets its number once
 * serving.  Runs until SIGTERM or SIGINT; --once writes the textfile (or the
 * text to stdout without --textfile) and exits without serving.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/httpd.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "host/metrics.h"

#define NSEC_PER_SEC 1000000000ULL

static const char *const kinds[METRICS_KIND_N] = {"zero", "fs_free", "mem_zero"};
static const char *const results[METRICS_RESULT_N] = {"ok",   "unchanged", "attached",
						      "busy", "refused",   "failed"};

struct cycle {
	uint64_t end_mono_ns; /* 0: no cycle yet */
};

static int lookup(const char *word, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(word, names[i]))
			return i;
	return -1;
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Applies one command; 0, or -EINVAL after printing what is wrong with it. */
static int apply(struct metrics *m, struct cycle *cy, const char *where, const char *line)
{
	char w[5][128];
	unsigned long long a[5] = {0};
	double d1 = 0, d2 = 0;
	int n = sscanf(line, "%127s %127s %127s %127s %127s %127s", w[0], w[1], w[2], w[3], w[4],
		       w[4]);
	int k;

	if (n <= 0 || w[0][0] == '#')
		return 0;
	for (int i = 1; i < n && i < 5; i++)
		a[i] = strtoull(w[i], NULL, 0);
	if (!strcmp(w[0], "reclaimed") && (n == 3 || n == 4) &&
	    (k = lookup(w[1], kinds, METRICS_KIND_N)) >= 0) {
		if (metrics_add_reclaimed(m, n == 4 ? w[3] : NULL, (enum metrics_kind)k, a[2]) < 0)
			return -ENOMEM;
	} else if (!strcmp(w[0], "scanned") && n == 2) {
		metrics_add_scanned(m, a[1]);
	} else if (!strcmp(w[0], "reclaim") && (n == 2 || n == 3) &&
		   (k = lookup(w[1], results, METRICS_RESULT_N)) >= 0) {
		for (unsigned long long i = 0; i < (n == 3 ? a[2] : 1); i++)
			metrics_count_reclaim(m, (enum metrics_result)k);
	} else if (!strcmp(w[0], "observe") && n == 2 && sscanf(w[1], "%lf", &d1) == 1) {
		metrics_observe_duration(m, d1);
	} else if (!strcmp(w[0], "host") && sscanf(line, "host %llu %llu %llu %llu %llu", &a[0],
						   &a[1], &a[2], &a[3], &a[4]) == 5) {
		struct metrics_host h = {
			.vms = {a[0], a[1]},
			.cow_allocated_bytes = a[2],
			.cow_virtual_bytes = a[3],
			.mem_allocated_bytes = a[4],
		};

		metrics_set_host(m, &h);
	} else if (!strcmp(w[0], "vm") && n == 4) {
		if (metrics_set_vm(m, w[1], a[2], a[3]) < 0)
			return -ENOMEM;
	} else if (!strcmp(w[0], "cycle") && n == 3 && sscanf(w[1], "%lf", &d1) == 1 &&
		   sscanf(w[2], "%lf", &d2) == 1 && d1 >= 0) {
		uint64_t ago = (uint64_t)(d1 * NSEC_PER_SEC), mono = clock_ns(CLOCK_MONOTONIC);

		metrics_cycle_end(m, (double)(clock_ns(CLOCK_REALTIME) - ago) / NSEC_PER_SEC, d2);
		/* Before boot, for the monotonic clock, is its first nanosecond (0 means "none"). */
		cy->end_mono_ns = mono > ago ? mono - ago : 1;
		metrics_cycle_begin(m);
	} else {
		fprintf(stderr, "metricsd: %s: not a command: '%s'\n", where, line);
		return -EINVAL;
	}
	return 0;
}

static int apply_file(struct metrics *m, struct cycle *cy, const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[512], where[600];
	int no = 0, r;

	if (!f) {
		fprintf(stderr, "metricsd: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		no++;
		line[strcspn(line, "\n")] = '\0';
		snprintf(where, sizeof(where), "%s:%d", path, no);
		r = apply(m, cy, where, line);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Formats m, publishes it and writes the textfile.  0 or -errno, printed. */
static int export(const struct metrics *m, const struct cycle *cy, struct httpd *h,
		  const char *textfile, uint64_t interval_ns)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = metrics_format(m, &text, &len);

	if (r == 0 && h)
		r = httpd_publish(h, text, len, cy->end_mono_ns, interval_ns);
	if (r < 0) {
		fprintf(stderr, "metricsd: %s\n", strerror(-r));
		return r;
	}
	if (textfile) {
		r = metrics_write_textfile(textfile, text, len);
		if (r < 0) {
			fprintf(stderr, "metricsd: %s: %s\n", textfile, strerror(-r));
			return r;
		}
	} else if (!h) {
		fwrite(text, 1, len, stdout);
	}
	return 0;
}

static int write_port_file(const char *path, uint16_t port)
{
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%u\n", port);
	int r = metrics_write_textfile(path, buf, (size_t)n);

	if (r < 0)
		fprintf(stderr, "metricsd: %s: %s\n", path, strerror(-r));
	return r;
}

static void usage(void)
{
	fputs("usage: metricsd [--listen ADDR:PORT | --port N] [--port-file FILE] "
	      "[--textfile PATH] [--per-vm] [--interval DUR] [--version V] [--state FILE] "
	      "[-e CMD]... [--tick CMD]... [--once]\n",
	      stderr);
}

/* A command source given on the command line, in order. */
struct source {
	bool is_file; /* --state FILE, else -e CMD */
	const char *s;
};

struct options {
	struct sockaddr_storage ss;
	socklen_t sslen;
	const char *textfile, *port_file, *version;
	struct source *pre;
	const char **ticks;
	int npre, nticks;
	uint64_t interval_ns;
	bool per_vm, once;
};

/* Serves m until SIGTERM or SIGINT, running the ticks every second.  An exit status. */
static int serve(struct metrics *m, struct cycle *cy, const struct options *o)
{
	struct httpd *h = NULL;
	sigset_t stop;
	int r;

	/* SIGTERM and SIGINT are taken with sigtimedwait, also the tick clock. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	r = httpd_start((const struct sockaddr *)&o->ss, o->sslen, &h);
	if (r < 0) {
		fprintf(stderr, "metricsd: cannot listen: %s\n", strerror(-r));
		return 1;
	}
	r = 1;
	if (export(m, cy, h, o->textfile, o->interval_ns) < 0 ||
	    (o->port_file && write_port_file(o->port_file, httpd_port(h)) < 0))
		goto out;
	printf("metricsd: serving on port %u\n", httpd_port(h));
	fflush(stdout);
	for (;;) {
		struct timespec one = {.tv_sec = 1};

		if (sigtimedwait(&stop, NULL, &one) >= 0)
			break;
		if (errno != EAGAIN && errno != EINTR)
			goto out;
		for (int i = 0; i < o->nticks; i++)
			if (apply(m, cy, "--tick", o->ticks[i]) < 0)
				goto out;
		if (o->nticks && export(m, cy, h, o->textfile, o->interval_ns) < 0)
			goto out;
	}
	r = 0;
out:
	httpd_stop(h);
	return r;
}

/* Parses the command line into *o; 0, or an exit status after printing why. */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"port", required_argument, NULL, 'p'},
		{"port-file", required_argument, NULL, 'P'},
		{"textfile", required_argument, NULL, 't'},
		{"per-vm", no_argument, NULL, 'v'},
		{"interval", required_argument, NULL, 'i'},
		{"version", required_argument, NULL, 'V'},
		{"state", required_argument, NULL, 's'},
		{"tick", required_argument, NULL, 'T'},
		{"once", no_argument, NULL, 'o'},
		{NULL, 0, NULL, 0},
	};
	struct sockaddr_in *a4 = (struct sockaddr_in *)&o->ss;
	int c;

	*a4 = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = {htonl(INADDR_LOOPBACK)}};
	o->sslen = sizeof(*a4);
	while ((c = getopt_long(argc, argv, "e:", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (util_parse_listen(optarg, &o->ss, &o->sslen) < 0) {
				fprintf(stderr,
					"metricsd: --listen '%s': expected IPV4:PORT or [IPV6]:PORT\n",
					optarg);
				return 2;
			}
			break;
		case 'p':
			a4->sin_port = htons((uint16_t)atoi(optarg));
			break;
		case 'P':
			o->port_file = optarg;
			break;
		case 't':
			o->textfile = optarg;
			break;
		case 'v':
			o->per_vm = true;
			break;
		case 'i':
			if (util_parse_duration(optarg, &o->interval_ns) < 0) {
				fprintf(stderr, "metricsd: --interval '%s': not a duration\n",
					optarg);
				return 2;
			}
			break;
		case 'V':
			o->version = optarg;
			break;
		case 's':
		case 'e':
			o->pre[o->npre++] = (struct source){.is_file = c == 's', .s = optarg};
			break;
		case 'T':
			o->ticks[o->nticks++] = optarg;
			break;
		case 'o':
			o->once = true;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (optind != argc) {
		usage();
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_free_ struct source *pre = calloc((size_t)argc, sizeof(*pre));
	_cleanup_free_ const char **ticks = calloc((size_t)argc, sizeof(*ticks));
	struct options o = {
		.version = "0.0.0-metricsd",
		.interval_ns = 60 * NSEC_PER_SEC,
		.pre = pre,
		.ticks = ticks,
	};
	struct cycle cy = {0};
	struct metrics m;
	int r;

	if (!pre || !ticks)
		return 1;
	r = parse_options(argc, argv, &o);
	if (r)
		return r;
	if (metrics_init(&m, o.version, o.per_vm, (double)o.interval_ns / NSEC_PER_SEC) < 0)
		return 1;
	metrics_cycle_begin(&m);
	for (int i = 0; i < o.npre && r == 0; i++) {
		r = o.pre[i].is_file ? apply_file(&m, &cy, o.pre[i].s)
				     : apply(&m, &cy, "-e", o.pre[i].s);
		r = r == -EINVAL ? 2 : r < 0 ? 1 : 0;
	}
	if (r == 0)
		r = o.once ? export(&m, &cy, NULL, o.textfile, o.interval_ns) < 0
			   : serve(&m, &cy, &o);
	metrics_free(&m);
	return r;
}
