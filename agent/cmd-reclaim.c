/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cowpunch reclaim: punch the all-zero data chunks out of a detached COW file.
 * Composes the checks that make writing safe (lock, loop attachment, store
 * validation) with the reclaim engine; see docs/reclaim.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "dmops/loopscan.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"

void cmd_reclaim_help(FILE *out)
{
	fputs("Usage: cowpunch reclaim [OPTIONS] COW\n"
	      "\n"
	      "Gives back the host disk space held by the all-zero data chunks of a\n"
	      "dm-snapshot persistent COW file, without changing a byte that the snapshot\n"
	      "shows its reader.\n"
	      "\n"
	      "The exception store is read and validated in full first; a store that breaks\n"
	      "any rule is refused and nothing is written.  Then every data chunk the store\n"
	      "lists is read (chunks that are already holes are skipped) and each chunk that\n"
	      "reads as all zeros is punched out of the sparse file with\n"
	      "fallocate(PUNCH_HOLE|KEEP_SIZE): it still reads as zeros, its exception stays,\n"
	      "and the file keeps its size.  The header, the metadata areas and chunks the\n"
	      "store does not list are never touched.  A crash at any point leaves a valid\n"
	      "store.  Reads use O_DIRECT where the file system allows it, so the scan does\n"
	      "not evict the page cache of running VMs.\n"
	      "\n"
	      "COW must not be in use: reclaim takes an exclusive flock(2) on it and refuses\n"
	      "(exit 4) when another process holds a lock on it or when a loop device is\n"
	      "backed by it (detach the VM's disk first).\n"
	      "\n"
	      "Options:\n"
	      "  -n, --dry-run        read and count, but punch nothing\n"
	      "  -j, --json           print one JSON object instead of the summary\n"
	      "  -e, --engine ENGINE  I/O engine: auto (default: io_uring, else libaio, else\n"
	      "                       sync), uring (io_uring reads and IORING_OP_FALLOCATE\n"
	      "                       punches), aio (libaio reads, fallocate(2)), sync (pread(2),\n"
	      "                       fallocate(2)); a forced engine this system cannot run\n"
	      "                       is an error\n"
	      "  -p, --progress       show progress on stderr even when it is not a terminal\n"
	      "      --no-progress    never show progress (default: shown on a terminal)\n"
	      "      --read-size SIZE bytes per read, a power of two from 4k to 4M (default 1M)\n"
	      "      --queue-depth N  reads in flight, 1 to 256 (default 16)\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "Output:\n"
	      "  By default a short summary for people.  With --json, one object with the\n"
	      "  keys: exceptions, chunk_bytes, chunks_scanned (listed data chunks read),\n"
	      "  zero_chunks (found all zero: punched, or would be in a dry run), hole_chunks\n"
	      "  (listed data chunks that were already holes, not read), fs_free_chunks\n"
	      "  (punched because the guest file system does not use them; 0 here),\n"
	      "  punched_ranges (fallocate calls, coalesced), allocated_before,\n"
	      "  allocated_after, reclaimed_bytes (= allocated_before - allocated_after, from\n"
	      "  st_blocks), bytes_read, seconds, engine (the engine used), dry_run.\n"
	      "\n"
	      "Exit status:\n"
	      "  0  success (also when nothing was found to reclaim)\n"
	      "  1  runtime error: cannot open the file, I/O error, engine unavailable\n"
	      "  2  usage error\n"
	      "  3  invalid or damaged store: the error names the file offset and the rule\n"
	      "     broken; nothing was written\n"
	      "  4  busy: the file is locked by another process or backs a loop device\n"
	      "\n"
	      "Examples:\n"
	      "  cowpunch reclaim /var/lib/vms/42/cow.img\n"
	      "  cowpunch reclaim --dry-run --json cow.img | jq .zero_chunks\n"
	      "  cowpunch reclaim --engine sync cow.img    # where io_uring is forbidden\n",
	      out);
}

struct reclaim_args {
	bool dry_run, json;
	int progress; /* -1 auto (tty), 0 never, 1 always */
	enum reclaim_engine_kind engine;
	uint32_t read_bytes, queue_depth;
	const char *path;
};

static int parse_args(int argc, char **argv, struct reclaim_args *a)
{
	enum { OPT_NO_PROGRESS = 256, OPT_READ_SIZE, OPT_QUEUE_DEPTH };
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "engine", required_argument, NULL, 'e' },
		{ "progress", no_argument, NULL, 'p' },
		{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
		{ "read-size", required_argument, NULL, OPT_READ_SIZE },
		{ "queue-depth", required_argument, NULL, OPT_QUEUE_DEPTH },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	uint64_t v;
	int c;

	*a = (struct reclaim_args){ .progress = -1, .engine = RECLAIM_ENGINE_AUTO };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "nje:ph", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			a->dry_run = true;
			break;
		case 'j':
			a->json = true;
			break;
		case 'e':
			if (reclaim_engine_parse(optarg, &a->engine) < 0) {
				agent_error("reclaim: unknown engine '%s' (auto, uring, aio or sync)",
					    optarg);
				return -EINVAL;
			}
			break;
		case 'p':
			a->progress = 1;
			break;
		case OPT_NO_PROGRESS:
			a->progress = 0;
			break;
		case OPT_READ_SIZE:
			if (util_parse_size(optarg, &v) < 0 || v < 4096 || v > (4u << 20) ||
			    (v & (v - 1))) {
				agent_error("reclaim: --read-size '%s': want a power of two, 4k to 4M",
					    optarg);
				return -EINVAL;
			}
			a->read_bytes = (uint32_t)v;
			break;
		case OPT_QUEUE_DEPTH:
			if (util_parse_size(optarg, &v) < 0 || v < 1 || v > 256) {
				agent_error("reclaim: --queue-depth '%s': want 1 to 256", optarg);
				return -EINVAL;
			}
			a->queue_depth = (uint32_t)v;
			break;
		case 'h':
			cmd_reclaim_help(stdout);
			return 1;
		default:
			agent_error("reclaim: unknown or incomplete option '%s' (see 'cowpunch "
				    "reclaim --help')",
				    argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		agent_error("reclaim: %s (see 'cowpunch reclaim --help')",
			    optind >= argc ? "missing COW file" : "more than one COW file");
		return -EINVAL;
	}
	a->path = argv[optind];
	return 0;
}

static void show_progress(void *opaque, uint64_t done, uint64_t total)
{
	char d[32], t[32];

	fprintf(stderr, "\rcowpunch: scanning %3.0f%% (%s of %s)   ",
		total ? 100.0 * (double)done / (double)total : 100.0,
		util_format_bytes(done, d, sizeof(d)), util_format_bytes(total, t, sizeof(t)));
	fflush(stderr);
}

static void print_json(const struct reclaim_report *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "exceptions", json_object_new_uint64(r->exceptions));
	json_object_object_add(o, "chunk_bytes", json_object_new_uint64(r->chunk_bytes));
	json_object_object_add(o, "chunks_scanned", json_object_new_uint64(r->chunks_scanned));
	json_object_object_add(o, "zero_chunks", json_object_new_uint64(r->zero_chunks));
	json_object_object_add(o, "hole_chunks", json_object_new_uint64(r->hole_chunks));
	json_object_object_add(o, "fs_free_chunks", json_object_new_uint64(r->fs_free_chunks));
	json_object_object_add(o, "punched_ranges", json_object_new_uint64(r->punched_ranges));
	json_object_object_add(o, "allocated_before", json_object_new_uint64(r->allocated_before));
	json_object_object_add(o, "allocated_after", json_object_new_uint64(r->allocated_after));
	json_object_object_add(o, "reclaimed_bytes", json_object_new_uint64(r->reclaimed_bytes));
	json_object_object_add(o, "bytes_read", json_object_new_uint64(r->bytes_read));
	json_object_object_add(o, "seconds", json_object_new_double(r->seconds));
	json_object_object_add(o, "engine",
			       json_object_new_string(reclaim_engine_name(r->engine)));
	json_object_object_add(o, "dry_run", json_object_new_boolean(r->dry_run));
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static void print_human(const char *path, const struct reclaim_report *r)
{
	char a[32], b[32], c[32], d[32];
	double rate = r->seconds > 0 ? (double)r->bytes_read / r->seconds : 0;

	if (r->dry_run)
		printf("%s: dry run, nothing written: %llu zero chunks (%s) would be punched in "
		       "%llu ranges; %s allocated now\n",
		       path, (unsigned long long)r->zero_chunks,
		       util_format_bytes(r->zero_chunks * r->chunk_bytes, a, sizeof(a)),
		       (unsigned long long)r->punched_ranges,
		       util_format_bytes(r->allocated_before, b, sizeof(b)));
	else
		printf("%s: reclaimed %s of %s allocated (%s left), %llu zero chunks in %llu "
		       "ranges\n",
		       path, util_format_bytes(r->reclaimed_bytes, a, sizeof(a)),
		       util_format_bytes(r->allocated_before, b, sizeof(b)),
		       util_format_bytes(r->allocated_after, c, sizeof(c)),
		       (unsigned long long)r->zero_chunks, (unsigned long long)r->punched_ranges);
	printf("  %llu exceptions of %s chunks: %llu read, %llu already holes\n",
	       (unsigned long long)r->exceptions, util_format_bytes(r->chunk_bytes, a, sizeof(a)),
	       (unsigned long long)r->chunks_scanned, (unsigned long long)r->hole_chunks);
	printf("  read %s in %.2f s (%s/s), engine %s\n",
	       util_format_bytes(r->bytes_read, c, sizeof(c)), r->seconds,
	       util_format_bytes((uint64_t)rate, d, sizeof(d)), reclaim_engine_name(r->engine));
}

int cmd_reclaim(int argc, char **argv)
{
	struct snapstore_info info = { 0 };
	struct snapstore_error err = { 0 };
	struct reclaim_report rep;
	struct reclaim_opts opts;
	struct reclaim_args a;
	_cleanup_close_ int fd = -1;
	char loop[64];
	struct stat st;
	int r;

	r = parse_args(argc, argv, &a);
	if (r != 0)
		return r > 0 ? EXIT_OK : EXIT_USAGE;

	/* O_DIRECT keeps the scan out of the page cache; some file systems refuse it. */
	fd = open(a.path, O_RDWR | O_CLOEXEC | O_DIRECT);
	if (fd < 0 && errno == EINVAL)
		fd = open(a.path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		agent_error("%s: cannot open for writing: %s", a.path, strerror(-r));
		return r == -EBUSY ? EXIT_BUSY : EXIT_RUNTIME;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		agent_error("%s: not a regular file", a.path);
		return EXIT_RUNTIME;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		if (r == -EWOULDBLOCK) {
			agent_error("%s: locked by another process (flock): busy, not touched",
				    a.path);
			return EXIT_BUSY;
		}
		agent_error("%s: cannot lock: %s", a.path, strerror(-r));
		return EXIT_RUNTIME;
	}
	r = loopdev_find_backing(st.st_dev, st.st_ino, loop, sizeof(loop));
	if (r > 0) {
		agent_error("%s: attached as the backing file of %s: busy, not touched (detach "
			    "it first)",
			    a.path, loop);
		return EXIT_BUSY;
	}
	if (r < 0) {
		agent_error("%s: cannot tell whether a loop device uses it (/sys/block, "
			    "/dev/loop*): %s; not touched",
			    a.path, strerror(-r));
		return EXIT_RUNTIME;
	}

	r = snapstore_load(fd, &info, NULL, NULL, &err);
	if (r == -EBADMSG) {
		agent_error("%s: invalid store at offset %llu: %s; nothing written", a.path,
			    (unsigned long long)err.offset, err.rule);
		return EXIT_INVALID;
	}
	if (r < 0) {
		agent_error("%s: cannot read the store: %s", a.path, strerror(-r));
		return EXIT_RUNTIME;
	}

	opts = (struct reclaim_opts){
		.engine = a.engine,
		.dry_run = a.dry_run,
		.read_bytes = a.read_bytes,
		.queue_depth = a.queue_depth,
	};
	if (a.progress == 1 || (a.progress == -1 && isatty(STDERR_FILENO)))
		opts.progress = show_progress;
	r = reclaim_run(fd, &info, &opts, &rep);
	if (opts.progress)
		fputs("\r\033[K", stderr);
	snapstore_info_free(&info);
	if (r == -ENOTSUP && a.engine != RECLAIM_ENGINE_AUTO) {
		agent_error("%s: engine '%s' is not available on this system; nothing written "
			    "(try --engine auto)",
			    a.path, reclaim_engine_name(a.engine));
		return EXIT_RUNTIME;
	}
	if (r < 0) {
		agent_error("%s: reclaim failed: %s (what was punched so far read as zeros "
			    "before; the store stays valid)",
			    a.path, strerror(-r));
		return EXIT_RUNTIME;
	}
	if (a.json)
		print_json(&rep);
	else
		print_human(a.path, &rep);
	return EXIT_OK;
}
