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
#include "agent/vmcmd.h"
#include "host/reclaimcow.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "reclaim/fsaware.h"
#include "reclaim/reclaim.h"
#include "reclaim/snapstore.h"

void cmd_reclaim_help(FILE *out)
{
	fputs("Usage: cowpunch reclaim [OPTIONS] COW\n"
	      "       cowpunch reclaim --fs-aware --base IMAGE --size BYTES [OPTIONS] COW\n"
	      "       cowpunch reclaim [--fs-aware] [OPTIONS] [--state-dir DIR] ID\n"
	      "\n"
	      "Gives back the host disk space held by the all-zero data chunks of a\n"
	      "dm-snapshot persistent COW file, without changing a byte that the snapshot\n"
	      "shows its reader.  With --fs-aware, also the chunks the guest's ext2/3/4\n"
	      "file system no longer uses (deleted files), in the same pass.\n"
	      "\n"
	      "The exception store is read and validated in full first; a store that breaks\n"
	      "any rule is refused and nothing is written.  Then every data chunk the store\n"
	      "lists is read (chunks that are already holes are skipped) and each chunk that\n"
	      "reads as all zeros is punched out of the sparse file with\n"
	      "fallocate(PUNCH_HOLE|KEEP_SIZE): it still reads as zeros, its exception stays,\n"
	      "and the file keeps its size.  The header, the metadata areas and chunks the\n"
	      "store does not list are never touched.  A crash at any point leaves a valid\n"
	      "store.  The scan reads through the page cache and drops each span from it\n"
	      "as soon as it is judged, so it holds no more than the reads in flight there\n"
	      "and does not evict the page cache of running VMs; its punches run beside the\n"
	      "reads (--direct-reads: O_DIRECT, punches after the scan).\n"
	      "\n"
	      "Fs-aware reclaim (--fs-aware) reads the disk the VM sees (the COW's chunks over\n"
	      "the base IMAGE, zeros past it, BYTES long) in userspace with libext2fs, never\n"
	      "mounting it, and reads only the superblock, group descriptors and block\n"
	      "bitmaps of the ext2/3/4 file system that starts at byte 0 of that disk.  A\n"
	      "data chunk whose whole origin range is free in the block bitmaps is punched\n"
	      "without being read; the guest then reads zeros there, which it may, since it\n"
	      "holds nothing.  This is only safe when the guest's file system was frozen\n"
	      "(fsfreeze -f / FIFREEZE) or cleanly unmounted when the VM was hibernated; see\n"
	      "docs/fsaware.md.  It is refused, with exit 5 and nothing written (no zero\n"
	      "chunks punched either), when the journal needs recovery (mounted and not\n"
	      "frozen), when the superblock records errors (s_state EXT2_ERROR_FS: run\n"
	      "e2fsck), when the file system is not marked clean (s_state lacks\n"
	      "EXT2_VALID_FS: without a journal, ext2 included, it was mounted or crashed,\n"
	      "and the ext4 driver keeps it so when frozen, so such a guest must be cleanly\n"
	      "unmounted), when the superblock or a group descriptor fails its checksum or\n"
	      "libext2fs's checks, when there is no ext2/3/4 superblock at byte 0 (e.g. a\n"
	      "partitioned disk), when the file system claims more blocks than BYTES, or when\n"
	      "its block bitmaps cannot be read.  Chunks past the end of the file system and\n"
	      "chunks holding any used block are never punched as free.\n"
	      "\n"
	      "Two strategies give the chunks back (--strategy).  punch frees each run of\n"
	      "them in place with fallocate(2): each call costs the same whatever its size,\n"
	      "and on a file system mounted 'discard' it waits for a synchronous discard.\n"
	      "rewrite copies every byte of the COW except those chunks into a new file\n"
	      "beside it (.NAME.cowpunch-rewrite, owner, mode and extended attributes carried\n"
	      "over), fsyncs it, renames it over the COW and fsyncs the directory: it costs\n"
	      "the bytes kept, written once, and freeing the old file's extents.  A crash\n"
	      "leaves the old file or the new one, each a valid store the VM reads the same;\n"
	      "the next run removes a temp file left behind.  auto (the default) times\n"
	      "punches beside the COW, counts the runs in the first 1/16 of the scan, and\n"
	      "rewrites only when the punches would cost clearly more.\n"
	      "\n"
	      "COW must not be in use: reclaim takes an exclusive flock(2) on it and refuses\n"
	      "(exit 4) when another process holds a lock on it or when a loop device is\n"
	      "backed by it (detach the VM's disk first).\n"
	      "\n"
	      "Given a VM ID (no '/', and STATE/ID/vm.json exists), reclaims that VM's COW\n"
	      "file under the VM's lock, refuses (exit 4) while the VM is attached, and\n"
	      "records the result, success or failure, in its record ('cowpunch status\n"
	      "ID' shows it).  With --fs-aware, the base image and the disk size come from\n"
	      "the record, and the base must still match its recorded identity (exit 3\n"
	      "otherwise): reading the guest's file system over a different base would\n"
	      "find the wrong blocks free.  The identity is checked on the open base that\n"
	      "is then read, so a base replaced at its path in between is never read.\n"
	      "\n"
	      "With --base and --size instead (a COW file, no VM record), NOTHING PROVES\n"
	      "THAT IMAGE IS THE BASE THE COW WAS WRITTEN OVER.  What is checked: IMAGE is a\n"
	      "whole number of 512-byte sectors and no larger than BYTES (exit 3\n"
	      "otherwise), and the file system must pass every rule above.  What makes a\n"
	      "wrong IMAGE harmless: a chunk counts as free only when the metadata saying\n"
	      "so was written by the guest and is read from the COW (the superblock, and\n"
	      "for each group the block group descriptor and the block bitmap); a chunk\n"
	      "only the base's own bitmaps call free is kept (fs_aware.unverified_chunks).\n"
	      "What is not detected: a wrong IMAGE as such; it can only make the scan\n"
	      "refuse (checksums over a mix of two file systems) or find fewer chunks.\n"
	      "Prefer 'reclaim --fs-aware ID'.  Zero-chunk reclaim never reads the base.\n"
	      "\n"
	      "Options:\n"
	      "      --state-dir DIR  state directory for an ID (default $COWPUNCH_STATE_DIR,\n"
	      "                       else " VMSTORE_DEFAULT_DIR ")\n"
	      "  -n, --dry-run        read and count, but punch nothing\n"
	      "  -j, --json           print one JSON object instead of the summary\n"
	      "  -e, --engine ENGINE  I/O engine: auto (default: io_uring, else libaio, else\n"
	      "                       sync), uring (io_uring reads and IORING_OP_FALLOCATE\n"
	      "                       punches), aio (libaio reads, fallocate(2)), sync (pread(2),\n"
	      "                       fallocate(2)); a forced engine this system cannot run\n"
	      "                       is an error\n"
	      "      --strategy STRATEGY  how the reclaimable chunks are given back: auto\n"
	      "                       (default: the cheaper, measured on this host), punch\n"
	      "                       (fallocate in place) or rewrite (a new file without\n"
	      "                       them, renamed over the old; refused with exit 5 for a\n"
	      "                       file with several links, shared extents, or too little\n"
	      "                       free space)\n"
	      "  -p, --progress       show progress on stderr even when it is not a terminal\n"
	      "      --no-progress    never show progress (default: shown on a terminal)\n"
	      "      --read-size SIZE bytes per read, a power of two from 4k to 4M (default\n"
	      "                       256k; 1M with --direct-reads)\n"
	      "      --queue-depth N  reads in flight, 1 to 256 (default 16)\n"
	      "      --direct-reads   scan with O_DIRECT and punch after the last read (the\n"
	      "                       default reads through the page cache, drops each span\n"
	      "                       once judged and punches beside the reads: faster on\n"
	      "                       ext4, where a punch waits for every direct read)\n"
	      "  -f, --fs-aware       also punch chunks that are free in the guest's ext2/3/4\n"
	      "                       file system (needs --base and --size with a COW)\n"
	      "  -b, --base IMAGE     the read-only base image under the COW (fs-aware)\n"
	      "  -s, --size BYTES     the VM's disk size, a multiple of 512 (fs-aware);\n"
	      "                       suffixes k, M, G, T (powers of 1024)\n"
	      "  -h, --help           show this help\n"
	      "\n"
	      "Output:\n"
	      "  By default a short summary for people.  With --json, one object with the\n"
	      "  keys: exceptions, chunk_bytes, chunks_scanned (listed data chunks read),\n"
	      "  zero_chunks (found all zero: punched, or would be in a dry run), hole_chunks\n"
	      "  (listed data chunks that were already holes, not read), fs_free_chunks\n"
	      "  (punched, unread, because the guest file system does not use them; 0\n"
	      "  without --fs-aware),\n"
	      "  punched_ranges (fallocate calls, coalesced), hole_bridges (how often a\n"
	      "  range was grown across chunks already holes: fallocate calls saved),\n"
	      "  allocated_before,\n"
	      "  allocated_after, reclaimed_bytes (= allocated_before - allocated_after, from\n"
	      "  st_blocks), bytes_read, direct_reads (true when the scan read with\n"
	      "  O_DIRECT), seconds, engine (the engine used), dry_run,\n"
	      "  strategy (punch or rewrite: the one that ran), strategy_reason (why),\n"
	      "  bytes_written (by a rewrite), punch_probe_us and write_probe_mbps (what auto\n"
	      "  measured, 0 when it did not); with\n"
	      "  --fs-aware also fs_aware: an object with status (done or refused), reason\n"
	      "  (why refused, else empty), fs_block_size, fs_blocks, free_blocks_seen (free\n"
	      "  blocks in the block bitmaps), free_chunks (data chunks whose origin range is\n"
	      "  free), base_verified (true for 'reclaim ID': the base's recorded identity\n"
	      "  matched), unverified_chunks (free only in metadata read from an unverified\n"
	      "  base: kept), bytes_read (what libext2fs read) and seconds (time of that\n"
	      "  scan).\n"
	      "  When refused, only fs_aware is printed.\n"
	      "\n"
	      "Exit status:\n"
	      "  0  success (also when nothing was found to reclaim)\n"
	      "  1  runtime error: cannot open the file, I/O error, engine unavailable\n"
	      "  2  usage error\n"
	      "  3  invalid or damaged store: the error names the file offset and the rule\n"
	      "     broken; nothing was written\n"
	      "  4  busy: the file is locked by another process or backs a loop device\n"
	      "  5  fs-aware reclaim refused as unsafe, or --strategy rewrite refused (see\n"
	      "     above): nothing was written\n"
	      "\n"
	      "Examples:\n"
	      "  cowpunch reclaim /var/lib/vms/42/cow.img\n"
	      "  cowpunch reclaim --dry-run --json cow.img | jq .zero_chunks\n"
	      "  cowpunch reclaim --engine sync cow.img    # where io_uring is forbidden\n"
	      "  cowpunch reclaim --strategy rewrite --json cow.img | jq .bytes_written\n"
	      "  cowpunch reclaim --fs-aware --base /var/lib/images/debian.ext4 \\\n"
	      "          --size 10G --json cow.img | jq .fs_free_chunks\n",
	      out);
}

int agent_scan_option(const char *cmd, int c, const char *arg, struct agent_scan_args *s)
{
	switch (c) {
	case 'n':
		s->dry_run = true;
		return 1;
	case 'j':
		s->json = agent_json = true;
		return 1;
	case 'e':
		if (reclaim_engine_parse(arg, &s->engine) < 0) {
			agent_error("%s: unknown engine '%s' (auto, uring, aio or sync)", cmd, arg);
			return -EINVAL;
		}
		return 1;
	case 'p':
		s->progress = 1;
		return 1;
	case AGENT_OPT_STRATEGY:
		if (reclaim_strategy_parse(arg, &s->strategy) < 0) {
			agent_error("%s: unknown strategy '%s' (auto, punch or rewrite)", cmd, arg);
			return -EINVAL;
		}
		return 1;
	case AGENT_OPT_NO_PROGRESS:
		s->progress = 0;
		return 1;
	default:
		return 0;
	}
}

bool agent_want_progress(const struct agent_scan_args *s)
{
	return s->progress == 1 || (s->progress == -1 && isatty(STDERR_FILENO));
}

static int parse_args(int argc, char **argv, struct agent_reclaim_request *a)
{
	enum {
		OPT_READ_SIZE = AGENT_OPT_FIRST_FREE,
		OPT_QUEUE_DEPTH,
		OPT_STATE_DIR,
		OPT_DIRECT_READS
	};
	static const struct option longopts[] = {
		AGENT_SCAN_LONGOPTS,
		{"read-size", required_argument, NULL, OPT_READ_SIZE},
		{"queue-depth", required_argument, NULL, OPT_QUEUE_DEPTH},
		{"direct-reads", no_argument, NULL, OPT_DIRECT_READS},
		{"fs-aware", no_argument, NULL, 'f'},
		{"base", required_argument, NULL, 'b'},
		{"size", required_argument, NULL, 's'},
		{"state-dir", required_argument, NULL, OPT_STATE_DIR},
		{"help", no_argument, NULL, 'h'},
		{}};
	uint64_t v;
	int c, r;

	*a = (struct agent_reclaim_request){.scan = AGENT_SCAN_ARGS_DEFAULT, .base_fd = -1};
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, AGENT_SCAN_SHORTOPTS "hfb:s:", longopts, NULL)) != -1) {
		r = agent_scan_option("reclaim", c, optarg, &a->scan);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		switch (c) {
		case OPT_READ_SIZE:
			if (util_parse_size(optarg, &v) < 0 || v < 4096 || v > (4u << 20) ||
			    (v & (v - 1))) {
				agent_error(
					"reclaim: --read-size '%s': want a power of two, 4k to 4M",
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
		case OPT_DIRECT_READS:
			a->direct_reads = true;
			break;
		case 'f':
			a->fs_aware = true;
			break;
		case 'b':
			a->base_path = optarg;
			break;
		case 's':
			if (util_parse_size(optarg, &v) < 0 || v == 0 || v % 512) {
				agent_error("reclaim: --size '%s': want the disk size in bytes, a "
					    "non-zero multiple of 512",
					    optarg);
				return -EINVAL;
			}
			a->disk_size = v;
			break;
		case OPT_STATE_DIR:
			a->state_dir = optarg;
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
			    optind >= argc ? "missing COW file or VM ID"
					   : "more than one COW file");
		return -EINVAL;
	}
	if (!a->fs_aware && (a->base_path || a->disk_size)) {
		agent_error("reclaim: --base and --size only go with --fs-aware");
		return -EINVAL;
	}
	a->cow_path = argv[optind];
	return 0;
}

/* opaque: a bool set once something is drawn, for the line to be cleared after. */
static void show_progress(void *opaque, uint64_t done, uint64_t total)
{
	char d[32], t[32];

	*(bool *)opaque = true;
	fprintf(stderr, "\rcowpunch: scanning %3.0f%% (%s of %s)   ",
		total ? 100.0 * (double)done / (double)total : 100.0,
		util_format_bytes(done, d, sizeof(d)), util_format_bytes(total, t, sizeof(t)));
	fflush(stderr);
}

static void show_punch_progress(void *opaque, uint64_t done, uint64_t total)
{
	*(bool *)opaque = true;
	fprintf(stderr, "\rcowpunch: punching %3.0f%% (%llu of %llu chunks)   ",
		total ? 100.0 * (double)done / (double)total : 100.0, (unsigned long long)done,
		(unsigned long long)total);
	fflush(stderr);
}

static json_object *fsaware_json(const struct fsaware_result *f)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "status", json_object_new_string(fsaware_status_name(f->status)));
	json_object_object_add(o, "reason", json_object_new_string(f->reason));
	json_object_object_add(o, "fs_block_size", json_object_new_uint64(f->fs_block_size));
	json_object_object_add(o, "fs_blocks", json_object_new_uint64(f->fs_blocks));
	json_object_object_add(o, "free_blocks_seen", json_object_new_uint64(f->free_blocks_seen));
	json_object_object_add(o, "free_chunks", json_object_new_uint64(f->fs_free_chunks));
	json_object_object_add(o, "base_verified", json_object_new_boolean(f->base_verified));
	json_object_object_add(o, "unverified_chunks",
			       json_object_new_uint64(f->unverified_chunks));
	json_object_object_add(o, "bytes_read", json_object_new_uint64(f->bytes_read));
	json_object_object_add(o, "seconds", json_object_new_double(f->seconds));
	return o;
}

static void put_json(json_object *o)
{
	agent_print_json(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* fs may be NULL: no fs-aware pass. */
static void print_json(const struct reclaim_report *r, const struct fsaware_result *fs)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "exceptions", json_object_new_uint64(r->exceptions));
	json_object_object_add(o, "chunk_bytes", json_object_new_uint64(r->chunk_bytes));
	json_object_object_add(o, "chunks_scanned", json_object_new_uint64(r->chunks_scanned));
	json_object_object_add(o, "zero_chunks", json_object_new_uint64(r->zero_chunks));
	json_object_object_add(o, "hole_chunks", json_object_new_uint64(r->hole_chunks));
	json_object_object_add(o, "fs_free_chunks", json_object_new_uint64(r->fs_free_chunks));
	json_object_object_add(o, "punched_ranges", json_object_new_uint64(r->punched_ranges));
	json_object_object_add(o, "hole_bridges", json_object_new_uint64(r->hole_bridges));
	json_object_object_add(o, "allocated_before", json_object_new_uint64(r->allocated_before));
	json_object_object_add(o, "allocated_after", json_object_new_uint64(r->allocated_after));
	json_object_object_add(o, "reclaimed_bytes", json_object_new_uint64(r->reclaimed_bytes));
	json_object_object_add(o, "bytes_read", json_object_new_uint64(r->bytes_read));
	json_object_object_add(o, "direct_reads", json_object_new_boolean(r->direct_reads));
	json_object_object_add(o, "seconds", json_object_new_double(r->seconds));
	json_object_object_add(o, "engine", json_object_new_string(reclaim_engine_name(r->engine)));
	json_object_object_add(o, "dry_run", json_object_new_boolean(r->dry_run));
	agent_add_strategy_json(o, r);
	if (fs)
		json_object_object_add(o, "fs_aware", fsaware_json(fs));
	put_json(o);
}

void agent_add_strategy_json(struct json_object *o, const struct reclaim_report *r)
{
	json_object_object_add(o, "strategy",
			       json_object_new_string(reclaim_strategy_name(r->strategy)));
	json_object_object_add(o, "strategy_reason", json_object_new_string(r->strategy_reason));
	json_object_object_add(o, "bytes_written", json_object_new_uint64(r->bytes_written));
	json_object_object_add(o, "punch_probe_us", json_object_new_double(r->punch_probe_us));
	json_object_object_add(o, "write_probe_mbps", json_object_new_double(r->write_probe_mbps));
}

void agent_print_strategy(const struct reclaim_report *r)
{
	char a[32];

	if (r->strategy == RECLAIM_STRATEGY_REWRITE)
		printf("  strategy rewrite (%s written to a new file, renamed over the old): %s\n",
		       util_format_bytes(r->bytes_written, a, sizeof(a)), r->strategy_reason);
	else
		printf("  strategy punch: %s\n", r->strategy_reason);
}

void agent_print_reclaimed(const char *path, const struct reclaim_report *r, const char *unit)
{
	char a[32], b[32], c[32];

	if (r->dry_run)
		printf("%s: dry run, nothing written: %llu zero %s (%s) would be punched in "
		       "%llu ranges; %s allocated now\n",
		       path, (unsigned long long)r->zero_chunks, unit,
		       util_format_bytes(r->zero_chunks * r->chunk_bytes, a, sizeof(a)),
		       (unsigned long long)r->punched_ranges,
		       util_format_bytes(r->allocated_before, b, sizeof(b)));
	else
		printf("%s: reclaimed %s of %s allocated (%s left), %llu zero %s in %llu "
		       "ranges\n",
		       path, util_format_bytes(r->reclaimed_bytes, a, sizeof(a)),
		       util_format_bytes(r->allocated_before, b, sizeof(b)),
		       util_format_bytes(r->allocated_after, c, sizeof(c)),
		       (unsigned long long)r->zero_chunks, unit,
		       (unsigned long long)r->punched_ranges);
}

static void print_human(const char *path, const struct reclaim_report *r,
			const struct fsaware_result *fs)
{
	char a[32], b[32], c[32];

	agent_print_reclaimed(path, r, "chunks");
	if (fs)
		printf("  fs-aware: %llu chunks (%s) free in the guest's file system%s: %llu of "
		       "%llu blocks of %u bytes free, %s of metadata read\n",
		       (unsigned long long)r->fs_free_chunks,
		       util_format_bytes(r->fs_free_chunks * r->chunk_bytes, a, sizeof(a)),
		       r->dry_run ? " (would be punched)" : " punched unread",
		       (unsigned long long)fs->free_blocks_seen, (unsigned long long)fs->fs_blocks,
		       fs->fs_block_size, util_format_bytes(fs->bytes_read, b, sizeof(b)));
	if (fs && fs->unverified_chunks)
		printf("  fs-aware: %llu more chunks free only in metadata read from the base, kept: "
		       "the base is not verified (--base, no VM record)\n",
		       (unsigned long long)fs->unverified_chunks);
	printf("  %llu exceptions of %s chunks: %llu read, %llu already holes\n",
	       (unsigned long long)r->exceptions, util_format_bytes(r->chunk_bytes, a, sizeof(a)),
	       (unsigned long long)r->chunks_scanned, (unsigned long long)r->hole_chunks);
	printf("  read %s (%s); %.2f s in all, engine %s\n",
	       util_format_bytes(r->bytes_read, c, sizeof(c)),
	       r->direct_reads ? "O_DIRECT" : "through the page cache, dropped after", r->seconds,
	       reclaim_engine_name(r->engine));
	agent_print_strategy(r);
}

int agent_open_cow_exclusive(const char *path, int *ret_fd)
{
	struct host_error err = {""};
	int r = host_open_cow_exclusive(path, ret_fd, &err);

	return r < 0 ? agent_host_error(r, &err) : EXIT_OK;
}

/* The request for host/reclaimcow.c, with the progress shown when asked. */
static struct host_reclaim_request reclaim_request(const struct agent_reclaim_request *a,
						   bool *drawn)
{
	struct host_reclaim_request req = {
		.cow_path = a->cow_path,
		.fs_aware = a->fs_aware,
		.base_path = a->base_path,
		.base_fd = a->base_fd,
		.base_verified = a->base_verified,
		.disk_size = a->disk_size,
		.dry_run = a->scan.dry_run,
		.engine = a->scan.engine,
		.strategy = a->scan.strategy,
		.read_bytes = a->read_bytes,
		.queue_depth = a->queue_depth,
		.direct_reads = a->direct_reads,
	};

	*drawn = false;
	if (agent_want_progress(&a->scan)) {
		req.progress = show_progress;
		req.punch_progress = show_punch_progress;
		req.progress_opaque = drawn;
	}
	return req;
}

/*
 * Prints the outcome of host_reclaim_cow() or host_reclaim_vm(): the report
 * (r 0, or a record not saved after the reclaim ran: ran), the refusal, or the
 * error.  Returns the exit code.
 */
static int reclaim_print(const struct agent_reclaim_request *a, int r, bool ran, bool drawn,
			 const struct reclaim_report *rep, const struct fsaware_result *fs,
			 const struct host_error *err)
{
	if (drawn)
		fputs("\r\033[K", stderr);
	if (r == HOST_RECLAIM_REFUSED) {
		agent_error("%s", err->msg);
		if (a->scan.json) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "fs_aware", fsaware_json(fs));
			put_json(o);
		}
		return EXIT_UNSAFE;
	}
	if (r == HOST_REWRITE_REFUSED)
		return agent_host_error(r, err);
	if (r == 0 || ran) {
		if (a->scan.json)
			print_json(rep, a->fs_aware ? fs : NULL);
		else
			print_human(a->cow_path, rep, a->fs_aware ? fs : NULL);
	}
	return r < 0 ? agent_host_error(r, err) : EXIT_OK;
}

int agent_reclaim_cow(const struct agent_reclaim_request *a, struct reclaim_report *ret_report,
		      struct fsaware_result *ret_fs)
{
	struct host_error err = {""};
	struct host_reclaim_request req;
	struct fsaware_result fs = {0};
	struct reclaim_report rep;
	bool drawn;
	int r;

	req = reclaim_request(a, &drawn);
	r = host_reclaim_cow(&req, &rep, &fs, NULL, &err);
	r = reclaim_print(a, r, false, drawn, &rep, &fs, &err);
	if (r == EXIT_OK && ret_report)
		*ret_report = rep;
	if (ret_fs && a->fs_aware && (r == EXIT_OK || r == EXIT_UNSAFE))
		*ret_fs = fs;
	return r;
}

/* reclaim ID: the record supplies the COW and, for --fs-aware, the base and size. */
static int reclaim_vm(struct agent_reclaim_request *a, struct vm *vm)
{
	struct host_error err = {""};
	struct host_reclaim_request req;
	struct fsaware_result fs = {0};
	struct reclaim_report rep = {0};
	bool drawn;
	int r;

	if (a->base_path || a->disk_size) {
		agent_error("reclaim: %s is a VM: its base and size come from its record; "
			    "--base and --size go with a COW file",
			    vm->id);
		return EXIT_USAGE;
	}
	a->cow_path = vm->cow_path;
	req = reclaim_request(a, &drawn);
	r = host_reclaim_vm(vm, &req, &rep, &fs, NULL, &err);
	/* chunk_bytes is set once the reclaim ran, also when its record was not saved. */
	return reclaim_print(a, r, rep.chunk_bytes != 0, drawn, &rep, &fs, &err);
}

int cmd_reclaim(int argc, char **argv)
{
	_cleanup_(vm_close) struct vm vm = {.lock_fd = -1};
	struct agent_reclaim_request a;
	struct host_error err = {""};
	bool is_vm = false;
	int r;

	r = parse_args(argc, argv, &a);
	if (r != 0)
		return r > 0 ? EXIT_OK : EXIT_USAGE;
	r = vm_open_for_reclaim(vmstore_state_dir(a.state_dir), a.cow_path, &vm, &is_vm, &err);
	if (r == -EINVAL) {
		agent_error("%s", err.msg);
		return EXIT_USAGE;
	}
	if (r < 0)
		return agent_host_error(r, &err);
	if (is_vm)
		return reclaim_vm(&a, &vm);
	if (a.fs_aware && (!a.base_path || !a.disk_size)) {
		agent_error("reclaim: --fs-aware on a COW file needs --base IMAGE and --size BYTES "
			    "(see 'cowpunch reclaim --help')");
		return EXIT_USAGE;
	}
	return agent_reclaim_cow(&a, NULL, NULL);
}
