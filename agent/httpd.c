/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "agent/httpd.h"
#include "common/cleanup.h"

#define NSEC_PER_SEC 1000000000ULL

struct httpd {
	struct MHD_Daemon *daemon;
	uint16_t port;
	pthread_mutex_t lock; /* guards what follows: the main loop writes, the HTTP thread reads */
	char *text;	      /* NULL until the first httpd_publish() */
	size_t len;
	uint64_t last_cycle_end_ns;
	uint64_t interval_ns;
};

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

int httpd_health(int published, uint64_t now_ns, uint64_t last_cycle_end_ns, uint64_t interval_ns,
		 char *why, size_t whylen)
{
	uint64_t age, limit;

	if (!published || !last_cycle_end_ns) {
		snprintf(why, whylen, "no cycle has finished yet");
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	age = now_ns > last_cycle_end_ns ? now_ns - last_cycle_end_ns : 0;
	limit = interval_ns > UINT64_MAX / 2 ? UINT64_MAX : 2 * interval_ns;
	if (age <= limit) {
		snprintf(why, whylen, "ok");
		return MHD_HTTP_OK;
	}
	snprintf(why, whylen, "the last cycle ended %.0f s ago, more than two intervals (%.0f s)",
		 (double)age / NSEC_PER_SEC, (double)limit / NSEC_PER_SEC);
	return MHD_HTTP_SERVICE_UNAVAILABLE;
}

/* Queues status with body (copied) and an optional extra header. */
static enum MHD_Result httpd_reply(struct MHD_Connection *c, unsigned status, const char *body,
				   size_t len, bool body_owned, const char *content_type,
				   const char *header, const char *value)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(
		len, (void *)body, body_owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
	if (!r) {
		if (body_owned)
			free((void *)body);
		return MHD_NO;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
	    (header && MHD_add_response_header(r, header, value) != MHD_YES)) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* A one-line plain text answer, with an optional extra header. */
static enum MHD_Result httpd_text(struct MHD_Connection *c, unsigned status, const char *msg,
				  const char *header, const char *value)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s\n", msg);

	return httpd_reply(c, status, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1,
			   false, "text/plain; charset=utf-8", header, value);
}

static enum MHD_Result httpd_metrics(struct httpd *h, struct MHD_Connection *c)
{
	char *copy = NULL;
	size_t len = 0;
	bool have;

	pthread_mutex_lock(&h->lock);
	have = h->text != NULL;
	if (have) {
		len = h->len;
		copy = malloc(len ? len : 1);
		if (copy)
			memcpy(copy, h->text, len);
	}
	pthread_mutex_unlock(&h->lock);
	if (!have)
		return httpd_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no metrics published yet", NULL,
				  NULL);
	if (!copy)
		return MHD_NO;
	return httpd_reply(c, MHD_HTTP_OK, copy, len, true,
			   "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
}

static enum MHD_Result httpd_healthz(struct httpd *h, struct MHD_Connection *c)
{
	uint64_t end, interval;
	char why[160];
	int published, status;

	pthread_mutex_lock(&h->lock);
	published = h->text != NULL;
	end = h->last_cycle_end_ns;
	interval = h->interval_ns;
	pthread_mutex_unlock(&h->lock);
	status = httpd_health(published, monotonic_ns(), end, interval, why, sizeof(why));
	return httpd_text(c, (unsigned)status, why, NULL, NULL);
}

static enum MHD_Result httpd_answer(void *cls, struct MHD_Connection *c, const char *url,
				    const char *method, const char *version,
				    const char *upload_data, size_t *upload_data_size,
				    void **req_cls)
{
	struct httpd *h = cls;

	/* HEAD is GET without the body (RFC 9110 9.3.2); libmicrohttpd drops the body. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return httpd_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
				  MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (!strcmp(url, "/metrics"))
		return httpd_metrics(h, c);
	if (!strcmp(url, "/healthz"))
		return httpd_healthz(h, c);
	return httpd_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz", NULL, NULL);
}

/* A bound, listening, non-blocking socket.  fd or -errno. */
static int httpd_listen_socket(const struct sockaddr *addr, socklen_t addrlen)
{
	_cleanup_close_ int fd = -1;
	int one = 1;

	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A restarted agent must not wait for the old connections' TIME_WAIT. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, addr, addrlen) < 0 || listen(fd, 16) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static uint16_t httpd_bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int httpd_start(const struct sockaddr *addr, socklen_t addrlen, struct httpd **ret)
{
	_cleanup_close_ int fd = -1;
	struct httpd *h;
	sigset_t all, old;
	int mhd_fd;

	fd = httpd_listen_socket(addr, addrlen);
	if (fd < 0)
		return fd;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	h->port = httpd_bound_port(fd);
	/*
	 * libmicrohttpd gets a duplicate: whether it closes the socket on a failed
	 * start is not documented, and a leak there beats a double close.
	 */
	mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (mhd_fd < 0) {
		int r = -errno;

		pthread_mutex_destroy(&h->lock);
		free(h);
		return r;
	}
	/* The HTTP thread inherits this mask: no signal is ever delivered to it. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	h->daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, httpd_answer, h,
				     MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mhd_fd,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!h->daemon) {
		pthread_mutex_destroy(&h->lock);
		free(h);
		return -EIO;
	}
	*ret = h;
	return 0;
}

uint16_t httpd_port(const struct httpd *h)
{
	return h->port;
}

int httpd_publish(struct httpd *h, const char *text, size_t len, uint64_t last_cycle_end_ns,
		  uint64_t interval_ns)
{
	char *copy = malloc(len ? len : 1), *old;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	pthread_mutex_lock(&h->lock);
	old = h->text;
	h->text = copy;
	h->len = len;
	h->last_cycle_end_ns = last_cycle_end_ns;
	h->interval_ns = interval_ns;
	pthread_mutex_unlock(&h->lock);
	free(old);
	return 0;
}

void httpd_stop(struct httpd *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	pthread_mutex_destroy(&h->lock);
	free(h->text);
	free(h);
}
