/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The agent's HTTP endpoint (libmicrohttpd): GET /metrics serves the last
 * exposition text the main loop published, GET /healthz says whether the last
 * cycle ended within two intervals.  Default address 127.0.0.1:9479.
 *
 * Threads: libmicrohttpd runs one internal polling thread that answers every
 * connection; the main loop never blocks on it.  The main loop publishes a
 * finished text with httpd_publish() (a copy is swapped in under a mutex), and
 * the HTTP thread only copies it out, so a scrape never sees half a cycle.
 * The HTTP thread runs with every signal blocked: signals (SIGTERM, SIGHUP)
 * always reach the main loop.
 */
#ifndef COWPUNCH_AGENT_HTTPD_H
#define COWPUNCH_AGENT_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HTTPD_DEFAULT_LISTEN "127.0.0.1:9479"

struct httpd;

/*
 * Listens on addr (from util_parse_listen(); port 0 picks a free one, for
 * tests) and starts serving.  Before the first httpd_publish(), /metrics is
 * 503 and /healthz is 503 "no cycle has finished yet".  Returns 0 and writes
 * *ret, or -errno: -EADDRINUSE (port taken), -EADDRNOTAVAIL (no such local
 * address), -EACCES (port below 1024 without the right), -ENOMEM, or -EIO when
 * libmicrohttpd refuses to start.
 */
int httpd_start(const struct sockaddr *addr, socklen_t addrlen, struct httpd **ret);

/* The port actually listened on (useful after port 0). */
uint16_t httpd_port(const struct httpd *h);

/*
 * Publishes a finished exposition text (copied) and the health inputs: when
 * the last cycle ended, in CLOCK_MONOTONIC nanoseconds (0: none has finished
 * yet, e.g. the all-zero text published at start), and the interval between
 * cycles in nanoseconds.  /healthz is 200 "ok" while now - end <= 2 *
 * interval, else 503 with the reason.  0 or -ENOMEM (the old text stays).
 */
int httpd_publish(struct httpd *h, const char *text, size_t len, uint64_t last_cycle_end_ns,
		  uint64_t interval_ns);

/* Stops serving (waits for the HTTP thread) and frees h.  NULL is a no-op. */
void httpd_stop(struct httpd *h);

/*
 * The verdict behind /healthz, exposed for tests: 200 (why = "ok"), or 503
 * with the reason in why.  published: whether anything was published at all;
 * last_cycle_end_ns 0 means no cycle has finished yet.
 */
int httpd_health(int published, uint64_t now_ns, uint64_t last_cycle_end_ns, uint64_t interval_ns,
		 char *why, size_t whylen);

#endif
