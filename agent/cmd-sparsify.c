/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cowpunch sparsify: punch the all-zero blocks out of regular files (a VM's
 * memory snapshot, a raw disk image).  Composes the checks that make writing
 * safe (lock, loop attachment, other writers) with reclaim/sparsify.h; see
 * docs/reclaim.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/sparsify.h"

void cmd_sparsify_help(FILE *out)
{
	fputs("Usage: cowpunch sparsify [OPTIONS] FILE...\n"
	      "\n"
	      "Gives back the disk space held by the all-zero blocks of regular files,\n"
	      "without changing a byte of their content: what 'fallocate --dig-holes' does,\n"
	      "with cowpunch's scan and engines.  Meant for the other file of a hibernated\n"
	      "VM, its memory snapshot (guest RAM, mostly zero pages in an idle guest), and\n"
	      "for raw disk images; a VM restored from the file sees the same memory.\n"
	      "\n"
	      "Each FILE is read block by block, in the file system's block size (the unit\n"
	      "in which it allocates and frees space, usually 4 KiB); blocks that are\n"
	      "already holes are not read.  Every block that reads as all zeros is punched\n"
	      "out with fallocate(PUNCH_HOLE|KEEP_SIZE): it still reads as zeros and the\n"
	      "file keeps its size.  Runs of zero blocks, and zero blocks with only holes\n"
	      "between them, are punched with one call each.  A last block the file only\n"
	      "partly covers (its size not a multiple of the block size) is never read or\n"
	      "punched.  A crash at any point leaves the file reading exactly as before.\n"
	      "Reads use O_DIRECT where the file system allows it; what is already in the\n"
	      "page cache is read from there.\n"
	      "\n"
	      "Nobody else may write a FILE while it is sparsified: a block written between\n"
	      "the read that found it zero and the punch would be lost.  So each FILE is\n"
	      "refused (exit 4), and left untouched, when:\n"
	      "  - the kernel counts a writer: any process, in any namespace, with the file\n"
	      "    open for writing, even only through a mapping or a descriptor it passed\n"
	      "    on (sparsify asks with a read lease, F_SETLEASE, which the kernel grants\n"
	      "    only when nobody has it open for writing, and drops at once);\n"
	      "  - another process has it open for writing (a /proc/PID/fd entry whose\n"
	      "    /proc/PID/fdinfo flags are O_WRONLY or O_RDWR) or mapped shared and\n"
	      "    writable (/proc/PID/maps), as fuser(1) and lsof(8) find them: the\n"
	      "    error names the process;\n"
	      "  - another process holds a flock(2) on it (sparsify takes an exclusive one;\n"
	      "    this only stops tools that take the same lock);\n"
	      "  - a loop device is backed by it.\n"
	      "Readers, and private mappings of the file opened read-only (a VM restored\n"
	      "from a memory snapshot maps it so), are no danger and are allowed; a process\n"
	      "that opened it read-write counts as a writer.  When neither the kernel\n"
	      "(leases need the file's owner or root, and a file system that has them)\n"
	      "nor /proc (other users' processes need root) can tell, the file is not\n"
	      "touched (exit 1).  The looks are made once, before the first read: a\n"
	      "process that opens the file for writing afterwards is not seen, so only\n"
	      "sparsify files that no VM or tool will start writing meanwhile.\n"
	      "\n"
	      "FILEs are handled one after another; a refusal or an error on one does not\n"
	      "stop the others.  SIGINT, SIGTERM or SIGHUP stop the run between two reads\n"
	      "or two batches of punches: reads in flight finish, what was punched stays\n"
	      "punched (it read as zeros), and the remaining FILEs are left untouched.\n"
	      "\n"
	      "Options:\n"
	      "  -n, --dry-run        read and count, but punch nothing\n"
	      "  -j, --json           print one JSON object instead of the summary\n"
	      "  -e, --engine ENGINE  I/O engine: auto (default: io_uring, else libaio, else\n"
	      "                       sync), uring, aio or sync, as for 'cowpunch reclaim';\n"
	      "                       a forced engine this system cannot run is an error\n"
	      "      --strategy STRATEGY  how the reclaimable chunks are given back: auto\n"
	      "                       (default: the cheaper, measured on this host), punch\n"
	      "                       (fallocate in place) or rewrite (a new file without\n"
	      "                       them, renamed over the old; refused with exit 5 for a\n"
	      "                       file with several links, shared extents, or too little\n"
	      "                       free space, or a file another process has open or\n"
	      "                       mapped), as for 'cowpunch reclaim'\n"
	      "  -p, --progress       show progress on stderr even when it is not a terminal\n"
	      "      --no-progress    never show progress (default: shown on a terminal)\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "Output:\n"
	      "  One summary per FILE (and a total for several): the bytes given back,\n"
	      "  measured from st_blocks, the zero blocks and the punch calls.  With --json,\n"
	      "  one object: dry_run; files, one object per FILE in the order given, with\n"
	      "  path and status (ok, busy, error, or skipped after a signal); for ok:\n"
	      "  size, block_bytes, blocks (whole blocks), tail_bytes (after the last whole\n"
	      "  block, never touched), blocks_scanned (read and judged), zero_blocks\n"
	      "  (punched, or would be in a dry run), hole_blocks (already holes, not read),\n"
	      "  punched_ranges (fallocate calls), hole_bridges (ranges grown across holes),\n"
	      "  allocated_before and allocated_after (st_blocks * 512), reclaimed_bytes\n"
	      "  (their difference), bytes_read, cached_bytes (of those, from the page\n"
	      "  cache), seconds, engine, strategy, strategy_reason, bytes_written,\n"
	      "  punch_probe_us, write_probe_mbps (as for 'cowpunch reclaim'); otherwise\n"
	      "  error and exit_code; then totals (files,\n"
	      "  ok, failed, zero_blocks, punched_ranges, allocated_before, allocated_after,\n"
	      "  reclaimed_bytes, bytes_read, seconds) and exit_code.\n"
	      "\n"
	      "Exit status:\n"
	      "  0  every FILE was sparsified (or scanned, with --dry-run), also when there\n"
	      "     was nothing to give back\n"
	      "  1  runtime error on a FILE: missing, not a regular file, cannot be opened\n"
	      "     for writing, I/O error, engine unavailable, whether another process\n"
	      "     writes it cannot be told, or stopped by a signal\n"
	      "  2  usage error: nothing was touched\n"
	      "  4  busy: a FILE is locked, backs a loop device, or is open for writing\n"
	      "     elsewhere; it was not touched\n"
	      "  5  --strategy rewrite refused (links, shared extents, free space, or another\n"
	      "     process has the file open): it was not touched\n"
	      "With several FILEs, the highest status among them (5, then 4, then 1).\n"
	      "\n"
	      "Examples:\n"
	      "  cowpunch sparsify /var/lib/vms/42/mem.snap\n"
	      "  cowpunch sparsify --dry-run --json mem.snap disk.raw | jq .totals.zero_blocks\n"
	      "  cowpunch sparsify --engine sync mem.snap   # where io_uring is forbidden\n",
	      out);
}

struct args {
	struct agent_scan_args scan;
	char **files;
	int nfiles;
};

static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {
		AGENT_SCAN_LONGOPTS, {"help", no_argument, NULL, 'h'}, {}};
	int c, r;

	*a = (struct args){.scan = AGENT_SCAN_ARGS_DEFAULT};
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, AGENT_SCAN_SHORTOPTS "h", longopts, NULL)) != -1) {
		r = agent_scan_option("sparsify", c, optarg, &a->scan);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		switch (c) {
		case 'h':
			cmd_sparsify_help(stdout);
			return 1;
		default:
			agent_error("sparsify: unknown or incomplete option '%s' (see 'cowpunch "
				    "sparsify --help')",
				    argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind >= argc) {
		agent_error("sparsify: missing FILE (see 'cowpunch sparsify --help')");
		return -EINVAL;
	}
	a->files = argv + optind;
	a->nfiles = argc - optind;
	return 0;
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* Stops the run at the next read or batch of punches instead of killing it mid-way. */
static void catch_signals(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {.sa_handler = on_signal};

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &sa, NULL);
	/* A lease break during sparsify_probe_writers() must not kill us (SIGIO's default). */
	signal(SIGIO, SIG_IGN);
}

static const char *progress_path;

static void show_progress(void *opaque, uint64_t done, uint64_t total)
{
	char d[32], t[32];

	fprintf(stderr, "\rcowpunch: %s: scanning %3.0f%% (%s of %s)   ", progress_path,
		total ? 100.0 * (double)done / (double)total : 100.0,
		util_format_bytes(done, d, sizeof(d)), util_format_bytes(total, t, sizeof(t)));
	fflush(stderr);
}

static void show_punch_progress(void *opaque, uint64_t done, uint64_t total)
{
	fprintf(stderr, "\rcowpunch: %s: punching %3.0f%% (%llu of %llu blocks)   ", progress_path,
		total ? 100.0 * (double)done / (double)total : 100.0, (unsigned long long)done,
		(unsigned long long)total);
	fflush(stderr);
}

/*
 * Opens path for writing under an exclusive flock after checking it is a
 * regular file (a device or FIFO is never opened for writing), and refuses
 * when a loop device or another process may write it.  Prints why it refuses.
 * Returns EXIT_OK and writes *ret_fd, or the exit code.
 */
static int open_exclusive(const char *path, int *ret_fd)
{
	_cleanup_close_ int fd = -1, ro = -1;
	struct sparsify_writer w;
	struct stat st, st2;
	int probe, r;

	if (stat(path, &st) < 0) {
		agent_error("%s: %s", path, strerror(errno));
		return EXIT_RUNTIME;
	}
	if (!S_ISREG(st.st_mode)) {
		agent_error("%s: not a regular file: not touched", path);
		return EXIT_RUNTIME;
	}
	/*
	 * The kernel's own count of writers first, before this process opens the
	 * file for writing itself (sparsify_probe_writers).  O_NONBLOCK: fail
	 * rather than wait when another process holds a write lease on it.
	 */
	ro = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (ro < 0 && errno == EWOULDBLOCK) {
		agent_error("%s: leased by another process (F_SETLEASE): busy, not touched", path);
		return EXIT_BUSY;
	}
	if (ro < 0 || fstat(ro, &st) < 0) {
		agent_error("%s: %s", path, strerror(errno));
		return EXIT_RUNTIME;
	}
	probe = sparsify_probe_writers(ro);
	r = agent_open_cow_exclusive(path, &fd);
	if (r != EXIT_OK)
		return r;
	if (fstat(fd, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
		agent_error("%s: replaced by another file while being opened: not touched", path);
		return EXIT_RUNTIME;
	}
	/* After the lock, like the loop-device look in agent_open_cow_exclusive(). */
	r = sparsify_find_writer(st.st_dev, st.st_ino, &w);
	if (r == 1 && w.fd >= 0) {
		agent_error("%s: open for writing by process %d (%s, descriptor %d): busy, not "
			    "touched",
			    path, (int)w.pid, w.comm, w.fd);
		return EXIT_BUSY;
	}
	if (r == 1) {
		agent_error("%s: mapped shared and writable by process %d (%s): busy, not touched",
			    path, (int)w.pid, w.comm);
		return EXIT_BUSY;
	}
	if (probe == 1) {
		agent_error("%s: open for writing by another process (the kernel counts a writer; "
			    "none this process may see in /proc): busy, not touched",
			    path);
		return EXIT_BUSY;
	}
	if (r < 0 && probe < 0) {
		agent_error("%s: cannot tell whether another process has it open for writing: "
			    "/proc/PID/fd: %s, read lease: %s%s; not touched",
			    path, strerror(-r), strerror(-probe),
			    r == -EACCES ? " (run as root)" : "");
		return EXIT_RUNTIME;
	}
	*ret_fd = TAKE_FD(fd);
	return EXIT_OK;
}

/* Sparsifies one file; returns its exit code and fills *rep on EXIT_OK. */
static int sparsify_file(const char *path, const struct args *a, struct sparsify_report *rep)
{
	_cleanup_close_ int fd = -1;
	struct reclaim_opts opts = {
		.engine = a->scan.engine,
		.dry_run = a->scan.dry_run,
		.strategy = a->scan.strategy,
		.path = path,
		.stop = &stop_signal,
	};
	double t0;
	int r;

	r = open_exclusive(path, &fd);
	if (r != EXIT_OK)
		return r;
	if (agent_want_progress(&a->scan)) {
		progress_path = path;
		opts.progress = show_progress;
		opts.punch_progress = show_punch_progress;
	}
	r = sparsify_run(fd, &opts, rep);
	if (opts.progress)
		fputs("\r\033[K", stderr);
	if (r == -EPERM && opts.strategy == RECLAIM_STRATEGY_REWRITE) {
		agent_error("rewrite refused: %s; nothing written (try --strategy punch)",
			    rep->scan.strategy_reason);
		return EXIT_UNSAFE;
	}
	if (r == -ENOTSUP && a->scan.engine != RECLAIM_ENGINE_AUTO) {
		agent_error("%s: engine '%s' is not available on this system; nothing written "
			    "(try --engine auto)",
			    path, reclaim_engine_name(a->scan.engine));
		return EXIT_RUNTIME;
	}
	if (r == -ECANCELED) {
		agent_error("%s: stopped by signal %d; what was punched read as zeros and still "
			    "does, the file reads as before",
			    path, (int)stop_signal);
		return EXIT_RUNTIME;
	}
	if (r < 0) {
		agent_error("%s: sparsify failed: %s (what was punched so far read as zeros; the "
			    "file reads as before)",
			    path, strerror(-r));
		return EXIT_RUNTIME;
	}
	if (rep->scan.strategy == RECLAIM_STRATEGY_REWRITE) {
		/* The old file's last descriptor: closing it gives its blocks back, here. */
		t0 = util_now();
		close(TAKE_FD(fd));
		rep->scan.seconds += util_now() - t0;
	}
	return EXIT_OK;
}

struct totals {
	unsigned files, ok, failed;
	uint64_t zero_blocks, zero_bytes, punched_ranges, before, after, reclaimed, bytes_read;
	double seconds;
};

static void add_totals(struct totals *t, const struct sparsify_report *rep)
{
	const struct reclaim_report *s = &rep->scan;

	t->ok++;
	t->zero_blocks += s->zero_chunks;
	t->zero_bytes += s->zero_chunks * s->chunk_bytes;
	t->punched_ranges += s->punched_ranges;
	t->before += s->allocated_before;
	t->after += s->allocated_after;
	t->reclaimed += s->reclaimed_bytes;
	t->bytes_read += s->bytes_read;
	t->seconds += s->seconds;
}

static void json_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

/* status: NULL when rc is EXIT_OK, else "busy", "error" or "skipped". */
static json_object *file_json(const char *path, int rc, const char *status,
			      const struct sparsify_report *rep)
{
	json_object *o = json_object_new_object();
	const struct reclaim_report *s = &rep->scan;

	json_object_object_add(o, "path", json_object_new_string(path));
	if (rc != EXIT_OK) {
		json_object_object_add(o, "status", json_object_new_string(status));
		json_object_object_add(o, "error", json_object_new_string(agent_last_error()));
		json_object_object_add(o, "exit_code", json_object_new_int(rc));
		return o;
	}
	json_object_object_add(o, "status", json_object_new_string("ok"));
	json_u64(o, "size", rep->file_size);
	json_u64(o, "block_bytes", s->chunk_bytes);
	json_u64(o, "blocks", rep->blocks);
	json_u64(o, "tail_bytes", rep->tail_bytes);
	json_u64(o, "blocks_scanned", s->chunks_scanned);
	json_u64(o, "zero_blocks", s->zero_chunks);
	json_u64(o, "hole_blocks", s->hole_chunks);
	json_u64(o, "punched_ranges", s->punched_ranges);
	json_u64(o, "hole_bridges", s->hole_bridges);
	json_u64(o, "allocated_before", s->allocated_before);
	json_u64(o, "allocated_after", s->allocated_after);
	json_u64(o, "reclaimed_bytes", s->reclaimed_bytes);
	json_u64(o, "bytes_read", s->bytes_read);
	json_u64(o, "cached_bytes", s->cached_bytes);
	json_object_object_add(o, "seconds", json_object_new_double(s->seconds));
	json_object_object_add(o, "engine", json_object_new_string(reclaim_engine_name(s->engine)));
	agent_add_strategy_json(o, s);
	return o;
}

static json_object *totals_json(const struct totals *t)
{
	json_object *o = json_object_new_object();

	json_u64(o, "files", t->files);
	json_u64(o, "ok", t->ok);
	json_u64(o, "failed", t->failed);
	json_u64(o, "zero_blocks", t->zero_blocks);
	json_u64(o, "punched_ranges", t->punched_ranges);
	json_u64(o, "allocated_before", t->before);
	json_u64(o, "allocated_after", t->after);
	json_u64(o, "reclaimed_bytes", t->reclaimed);
	json_u64(o, "bytes_read", t->bytes_read);
	json_object_object_add(o, "seconds", json_object_new_double(t->seconds));
	return o;
}

static void print_human(const char *path, const struct sparsify_report *rep)
{
	const struct reclaim_report *s = &rep->scan;
	char a[32], b[32], c[32];

	agent_print_reclaimed(path, s, "blocks");
	printf("  %s in %llu blocks of %s: %llu read, %llu already holes",
	       util_format_bytes(rep->file_size, a, sizeof(a)), (unsigned long long)rep->blocks,
	       util_format_bytes(s->chunk_bytes, b, sizeof(b)),
	       (unsigned long long)s->chunks_scanned, (unsigned long long)s->hole_chunks);
	if (rep->tail_bytes)
		printf("; the last %llu bytes (part of a block) left as they are",
		       (unsigned long long)rep->tail_bytes);
	printf("\n  read %s; %.2f s, engine %s\n", util_format_bytes(s->bytes_read, c, sizeof(c)),
	       s->seconds, reclaim_engine_name(s->engine));
	agent_print_strategy(s);
}

int cmd_sparsify(int argc, char **argv)
{
	struct totals t = {0};
	json_object *out = NULL, *files = NULL;
	struct args a;
	int r, rc = EXIT_OK;

	r = parse_args(argc, argv, &a);
	if (r != 0)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	catch_signals();
	if (a.scan.json) {
		out = json_object_new_object();
		files = json_object_new_array();
		json_object_object_add(out, "dry_run", json_object_new_boolean(a.scan.dry_run));
		json_object_object_add(out, "files", files);
	}
	for (int i = 0; i < a.nfiles; i++) {
		struct sparsify_report rep;
		const char *status = "skipped";

		t.files++;
		if (stop_signal) {
			agent_error("%s: not started: stopped by signal %d", a.files[i],
				    (int)stop_signal);
			r = EXIT_RUNTIME;
		} else {
			r = sparsify_file(a.files[i], &a, &rep);
			status = r == EXIT_BUSY ? "busy" : "error";
		}
		if (r == EXIT_OK)
			add_totals(&t, &rep);
		else
			t.failed++;
		if (r > rc)
			rc = r;
		if (files)
			json_object_array_add(files, file_json(a.files[i], r, status, &rep));
		else if (r == EXIT_OK)
			print_human(a.files[i], &rep);
	}
	if (out) {
		json_object_object_add(out, "totals", totals_json(&t));
		json_object_object_add(out, "exit_code", json_object_new_int(rc));
		agent_print_json(out, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	} else if (a.nfiles > 1) {
		char b[32], c[32];

		printf("total: %s %s of %s allocated in %u files, %llu zero blocks in %llu ranges"
		       "%s\n",
		       a.scan.dry_run ? "would reclaim" : "reclaimed",
		       util_format_bytes(a.scan.dry_run ? t.zero_bytes : t.reclaimed, b, sizeof(b)),
		       util_format_bytes(t.before, c, sizeof(c)), t.ok,
		       (unsigned long long)t.zero_blocks, (unsigned long long)t.punched_ranges,
		       t.failed ? "; some files failed (see above)" : "");
	}
	return rc;
}
