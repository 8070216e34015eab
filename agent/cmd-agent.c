/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cowpunch agent: the reclamation daemon.  One cycle over the VMs of the state
 * directory every interval (host/cycle.h), metrics on HTTP (agent/httpd.h) and
 * in a textfile, a log line per event on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/httpd.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "host/cycle.h"
#include "host/metrics.h"
#include "host/vmstore.h"

#define AGENT_DEFAULT_INTERVAL "10m"

void cmd_agent_help(FILE *out)
{
	fputs("Usage: cowpunch agent [--state-dir DIR] [--interval DUR] [--listen ADDR:PORT]\n"
	      "                      [--textfile PATH] [--max-read-rate RATE] [--parallel N]\n"
	      "                      [--per-vm-metrics] [--engine ENGINE] [--strategy STRATEGY]\n"
	      "                      [--no-fs-aware] [--once]\n"
	      "\n"
	      "Runs the reclamation agent: every interval, one cycle over every VM in the\n"
	      "state directory gives back the host disk space their COW files and memory\n"
	      "snapshot files no longer need, and the bytes given back are exported as\n"
	      "Prometheus metrics.  One process; a VM that needs work is reclaimed in a child\n"
	      "process, so a crash on one VM's data costs that VM's reclaim, not the agent.\n"
	      "\n"
	      "Each cycle visits every VM:\n"
	      "  - attached, or locked by another cowpunch command: skipped at once, never\n"
	      "    waited for;\n"
	      "  - detached and unchanged since its last recorded reclaim (same inode, size,\n"
	      "    st_blocks, mtime and ctime of the COW file and of the memory file): skipped\n"
	      "    without reading a byte of data, so idle hibernated VMs cost a stat() each;\n"
	      "  - otherwise reclaimed, as 'cowpunch reclaim --fs-aware ID' does, where the\n"
	      "    record has a base image (a refusal, e.g. a guest file system that was\n"
	      "    neither frozen nor unmounted, is recorded with its reason and zero-only\n"
	      "    reclaim runs instead), then its memory file is sparsified ('cowpunch set ID\n"
	      "    --mem-file PATH' names it) as 'cowpunch sparsify' does.  The result goes\n"
	      "    into the VM's record ('cowpunch status ID').\n"
	      "Reads go at the idle I/O priority (ioprio_set IOPRIO_CLASS_IDLE), throttled to\n"
	      "RATE bytes per second across the whole agent, so running VMs keep their disk.\n"
	      "\n"
	      "Signals: SIGTERM or SIGINT stop the agent within 2 seconds; a reclaim in\n"
	      "progress stops between two batches of punches, its store valid, and its record\n"
	      "says it was interrupted.  SIGHUP starts a cycle now.\n"
	      "\n"
	      "Options:\n"
	      "      --state-dir DIR      state directory (default $COWPUNCH_STATE_DIR, else\n"
	      "                           " VMSTORE_DEFAULT_DIR ")\n"
	      "  -i, --interval DUR       time from the start of one cycle to the next, e.g.\n"
	      "                           90s, 10m, 1h (default " AGENT_DEFAULT_INTERVAL ")\n"
	      "  -l, --listen ADDR:PORT   serve /metrics and /healthz over HTTP on ADDR:PORT\n"
	      "                           (numeric IPv4, or [IPv6]:PORT; default " HTTPD_DEFAULT_LISTEN
	      "\n"
	      "                           without --once); 'none' serves nothing\n"
	      "  -t, --textfile PATH      after each cycle, write the metrics to PATH\n"
	      "                           atomically (node_exporter's textfile collector)\n"
	      "  -r, --max-read-rate RATE data bytes read per second, all VMs together, e.g.\n"
	      "                           50M (default: unlimited; reads are idle I/O anyway)\n"
	      "  -P, --parallel N         VMs reclaimed at once, 1 to 64 (default 1)\n"
	      "      --per-vm-metrics     also export per-VM series (label vm): a dozen series\n"
	      "                           per VM, so off by default\n"
	      "  -e, --engine ENGINE      I/O engine: auto (default), uring, aio or sync\n"
	      "      --strategy STRATEGY  how a COW's chunks and a memory file's zero blocks\n"
	      "                           are given back: auto (default: the cheaper, measured\n"
	      "                           on this host), punch (in place) or rewrite (a new\n"
	      "                           file renamed over it; see cowpunch-reclaim(8)); a\n"
	      "                           memory file another process has open or mapped is\n"
	      "                           punched under auto, a forced rewrite of it fails\n"
	      "      --no-fs-aware        zero-only reclaim, even for VMs with a base image\n"
	      "      --once               run one cycle and exit (cron, systemd timers)\n"
	      "  -h, --help               show this help\n"
	      "\n"
	      "Metrics (docs/metrics.md): cowpunch_reclaimed_bytes_total{kind=\"zero\"|\"fs_free\"|\n"
	      "\"mem_zero\"}, cowpunch_scanned_bytes_total, cowpunch_reclaims_total{result=\"ok\"|\n"
	      "\"unchanged\"|\"attached\"|\"busy\"|\"refused\"|\"failed\"},\n"
	      "cowpunch_cow_reclaims_total{strategy=\"punch\"|\"rewrite\"},\n"
	      "cowpunch_mem_reclaims_total{strategy=\"punch\"|\"rewrite\"},\n"
	      "cowpunch_reclaim_duration_seconds, cowpunch_vms{state}, cowpunch_cow_allocated_bytes,\n"
	      "cowpunch_cow_virtual_bytes, cowpunch_mem_allocated_bytes,\n"
	      "cowpunch_last_cycle_timestamp_seconds, cowpunch_last_cycle_duration_seconds,\n"
	      "cowpunch_build_info.  /healthz answers 200 while the last cycle ended within two\n"
	      "intervals, else 503.\n"
	      "\n"
	      "Exit status:\n"
	      "  0  stopped by SIGTERM or SIGINT; with --once, the cycle ran and no VM failed\n"
	      "  1  runtime error (state directory, HTTP address in use); with --once, a VM\n"
	      "     failed (its log line and its record say why)\n"
	      "  2  usage error\n"
	      "\n"
	      "Examples:\n"
	      "  cowpunch agent --interval 15m --max-read-rate 100M\n"
	      "  cowpunch agent --once --textfile /var/lib/node_exporter/cowpunch.prom\n"
	      "  kill -HUP $(pidof cowpunch)      # a cycle now\n",
	      out);
}

struct agent_args {
	const char *state_opt, *listen, *textfile;
	uint64_t interval_ns, rate;
	unsigned parallel;
	bool per_vm, once, no_fs_aware;
	enum reclaim_engine_kind engine;
	enum reclaim_strategy strategy;
};

static int parse_args(int argc, char **argv, struct agent_args *a)
{
	enum { OPT_STATE_DIR = 256, OPT_PER_VM, OPT_NO_FS_AWARE, OPT_ONCE, OPT_STRATEGY };
	static const struct option longopts[] = {
		{"state-dir", required_argument, NULL, OPT_STATE_DIR},
		{"interval", required_argument, NULL, 'i'},
		{"listen", required_argument, NULL, 'l'},
		{"textfile", required_argument, NULL, 't'},
		{"max-read-rate", required_argument, NULL, 'r'},
		{"parallel", required_argument, NULL, 'P'},
		{"per-vm-metrics", no_argument, NULL, OPT_PER_VM},
		{"engine", required_argument, NULL, 'e'},
		{"no-fs-aware", no_argument, NULL, OPT_NO_FS_AWARE},
		{"strategy", required_argument, NULL, OPT_STRATEGY},
		{"once", no_argument, NULL, OPT_ONCE},
		{"help", no_argument, NULL, 'h'},
		{}};
	const char *interval = AGENT_DEFAULT_INTERVAL;
	uint64_t v;
	int c;

	*a = (struct agent_args){.parallel = 1, .engine = RECLAIM_ENGINE_AUTO};
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "i:l:t:r:P:e:h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_STATE_DIR:
			a->state_opt = optarg;
			break;
		case 'i':
			interval = optarg;
			break;
		case 'l':
			a->listen = optarg;
			break;
		case 't':
			a->textfile = optarg;
			break;
		case 'r':
			if (util_parse_rate(optarg, &a->rate) < 0) {
				agent_error("agent: --max-read-rate '%s': want bytes per second, "
					    "e.g. 50M, or 'unlimited'",
					    optarg);
				return -EINVAL;
			}
			break;
		case 'P':
			if (util_parse_size(optarg, &v) < 0 || v < 1 || v > CYCLE_PARALLEL_MAX) {
				agent_error("agent: --parallel '%s': want 1 to %d", optarg,
					    CYCLE_PARALLEL_MAX);
				return -EINVAL;
			}
			a->parallel = (unsigned)v;
			break;
		case OPT_PER_VM:
			a->per_vm = true;
			break;
		case 'e':
			if (reclaim_engine_parse(optarg, &a->engine) < 0) {
				agent_error("agent: unknown engine '%s' (auto, uring, aio or sync)",
					    optarg);
				return -EINVAL;
			}
			break;
		case OPT_STRATEGY:
			if (reclaim_strategy_parse(optarg, &a->strategy) < 0) {
				agent_error("agent: unknown strategy '%s' (auto, punch or rewrite)",
					    optarg);
				return -EINVAL;
			}
			break;
		case OPT_NO_FS_AWARE:
			a->no_fs_aware = true;
			break;
		case OPT_ONCE:
			a->once = true;
			break;
		case 'h':
			cmd_agent_help(stdout);
			return 1;
		default:
			agent_error("agent: unknown or incomplete option '%s' (see 'cowpunch agent "
				    "--help')",
				    argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		agent_error("agent: unexpected argument '%s' (see 'cowpunch agent --help')",
			    argv[optind]);
		return -EINVAL;
	}
	if (util_parse_duration(interval, &a->interval_ns) < 0 || a->interval_ns < 1000000000ULL) {
		agent_error("agent: --interval '%s': want a duration of at least 1s, e.g. 90s, "
			    "10m, 1h",
			    interval);
		return -EINVAL;
	}
	if (!a->listen && !a->once)
		a->listen = HTTPD_DEFAULT_LISTEN;
	if (a->listen && !strcmp(a->listen, "none"))
		a->listen = NULL;
	return 0;
}

static volatile sig_atomic_t agent_stop, agent_hup;

static void agent_on_signal(int sig)
{
	if (sig == SIGHUP)
		agent_hup = 1;
	else
		agent_stop = sig;
}

static uint64_t agent_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void agent_log_vm(void *opaque, const struct cycle_vm *vm)
{
	const char *result = metrics_result_name(vm->result);
	char z[32], f[32], m[32], rd[32];

	if (vm->result == METRICS_RESULT_UNCHANGED)
		return; /* the common case on an idle host: counted, not logged */
	if (!vm->ran) {
		fprintf(stderr, "cowpunch: agent: vm=%s result=%s%s%s\n", vm->id, result,
			vm->reason[0] ? ": " : "", vm->reason);
		return;
	}
	fprintf(stderr,
		"cowpunch: agent: vm=%s result=%s%s%s%s%s reclaimed zero=%s fs_free=%s mem_zero=%s "
		"read=%s in %.2fs%s%s%s\n",
		vm->id, result, vm->cow_reclaimed ? " strategy=" : "",
		vm->cow_reclaimed ? metrics_strategy_name(vm->cow_strategy) : "",
		vm->mem_reclaimed ? " mem_strategy=" : "",
		vm->mem_reclaimed ? metrics_strategy_name(vm->mem_strategy) : "",
		util_format_bytes(vm->reclaimed[METRICS_KIND_ZERO], z, sizeof(z)),
		util_format_bytes(vm->reclaimed[METRICS_KIND_FS_FREE], f, sizeof(f)),
		util_format_bytes(vm->reclaimed[METRICS_KIND_MEM_ZERO], m, sizeof(m)),
		util_format_bytes(vm->scanned_bytes, rd, sizeof(rd)), vm->seconds,
		vm->interrupted ? " (interrupted: store valid)" : "", vm->reason[0] ? ": " : "",
		vm->reason);
}

/* Formats the metrics and hands them to the HTTP server and the textfile. */
static int agent_publish(const struct agent_args *a, struct metrics *m, struct httpd *h,
			 uint64_t last_end_ns)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r;

	r = metrics_format(m, &text, &len);
	if (r < 0)
		return r;
	if (h)
		httpd_publish(h, text, len, last_end_ns, a->interval_ns);
	if (a->textfile && last_end_ns) {
		r = metrics_write_textfile(a->textfile, text, len);
		if (r < 0) {
			agent_error("agent: %s: cannot write the metrics textfile: %s", a->textfile,
				    strerror(-r));
			return r;
		}
	}
	return 0;
}

static void agent_signals(void)
{
	struct sigaction sa = {.sa_handler = agent_on_signal};

	/* No SA_RESTART: a signal ends the wait it arrives in. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* A lease break while a memory file's writers are probed must not kill us. */
	signal(SIGIO, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
}

/*
 * Sleeps until deadline (monotonic ns), a SIGHUP or a stop.  The signals are
 * blocked outside ppoll(), so one that comes between the check and the wait
 * still ends the wait.
 */
static void agent_sleep_until(uint64_t deadline)
{
	sigset_t block, old;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (;;) {
		uint64_t now = agent_mono_ns();
		struct timespec ts;

		if (agent_stop || agent_hup || now >= deadline)
			break;
		ts.tv_sec = (time_t)((deadline - now) / 1000000000ULL);
		ts.tv_nsec = (long)((deadline - now) % 1000000000ULL);
		ppoll(NULL, 0, &ts, &old);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

int cmd_agent(int argc, char **argv)
{
	struct cycle_throttle *throttle = NULL;
	struct httpd *h = NULL;
	struct agent_args a;
	struct metrics m;
	struct cycle_opts opts;
	uint64_t last_end = 0;
	unsigned failed_vms = 0;
	const char *state;
	int r, rc = EXIT_OK;

	r = parse_args(argc, argv, &a);
	if (r != 0)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	if (a.listen) {
		struct sockaddr_storage ss;
		socklen_t len;

		if (util_parse_listen(a.listen, &ss, &len) < 0) {
			agent_error(
				"agent: --listen '%s': want a numeric IPV4:PORT or [IPV6]:PORT, "
				"port 1-65535, or 'none'",
				a.listen);
			return EXIT_USAGE;
		}
		r = httpd_start((const struct sockaddr *)&ss, len, &h);
		if (r < 0) {
			agent_error("agent: cannot serve metrics on %s: %s", a.listen,
				    strerror(-r));
			return EXIT_RUNTIME;
		}
	}
	state = vmstore_state_dir(a.state_opt);
	if (access(state, R_OK | X_OK) < 0) {
		agent_error("agent: state directory %s: %s", state, strerror(errno));
		rc = EXIT_RUNTIME;
		goto out_http;
	}
	r = metrics_init(&m, COWPUNCH_VERSION, a.per_vm, (double)a.interval_ns / 1e9);
	if (r < 0) {
		agent_error("agent: %s", strerror(-r));
		rc = EXIT_RUNTIME;
		goto out_http;
	}
	if (a.rate) {
		r = cycle_throttle_new(a.rate, &throttle);
		if (r < 0) {
			agent_error("agent: read rate limiter: %s", strerror(-r));
			rc = EXIT_RUNTIME;
			goto out_metrics;
		}
	}
	r = cycle_set_idle_ioprio();
	if (r < 0)
		fprintf(stderr, "cowpunch: agent: warning: cannot take the idle I/O priority: %s\n",
			strerror(-r));
	agent_signals();
	agent_publish(&a, &m, h, 0);
	opts = (struct cycle_opts){
		.state = state,
		.parallel = a.parallel,
		.engine = a.engine,
		.strategy = a.strategy,
		.no_fs_aware = a.no_fs_aware,
		.throttle = throttle,
		.stop = &agent_stop,
		.on_vm = agent_log_vm,
	};
	fprintf(stderr, "cowpunch: agent: started on %s%s%s, interval %.0fs\n", state,
		h ? ", metrics on " : "", h ? a.listen : "", (double)a.interval_ns / 1e9);
	while (!agent_stop) {
		uint64_t start = agent_mono_ns();
		struct cycle_summary s;

		agent_hup = 0;
		r = cycle_run(&opts, &m, &s);
		if (r < 0) {
			agent_error("agent: cycle over %s failed: %s", state, strerror(-r));
			if (a.once) {
				rc = EXIT_RUNTIME;
				break;
			}
		} else {
			char cow[32], virt[32], mem[32];

			failed_vms += s.results[METRICS_RESULT_FAILED];
			last_end = agent_mono_ns();
			fprintf(stderr,
				"cowpunch: agent: cycle%s: %u VMs (%u reclaimed, %u unchanged, %u "
				"attached, %u busy, %u refused, %u failed) in %.2fs; COW files hold "
				"%s of %s, memory files %s\n",
				s.interrupted ? " interrupted" : "", s.vms,
				s.results[METRICS_RESULT_OK], s.results[METRICS_RESULT_UNCHANGED],
				s.results[METRICS_RESULT_ATTACHED], s.results[METRICS_RESULT_BUSY],
				s.results[METRICS_RESULT_REFUSED], s.results[METRICS_RESULT_FAILED],
				s.seconds,
				util_format_bytes(s.host.cow_allocated_bytes, cow, sizeof(cow)),
				util_format_bytes(s.host.cow_virtual_bytes, virt, sizeof(virt)),
				util_format_bytes(s.host.mem_allocated_bytes, mem, sizeof(mem)));
			if (agent_publish(&a, &m, h, last_end) < 0 && a.once)
				rc = EXIT_RUNTIME;
		}
		if (a.once)
			break;
		agent_sleep_until(start + a.interval_ns);
	}
	if (agent_stop)
		fprintf(stderr, "cowpunch: agent: stopped by signal %d\n", (int)agent_stop);
	if (a.once && rc == EXIT_OK && failed_vms)
		rc = EXIT_RUNTIME;
	cycle_throttle_free(throttle);
out_metrics:
	metrics_free(&m);
out_http:
	if (h)
		httpd_stop(h);
	return rc;
}
