/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mkvms: fills a state directory with detached VMs, as `cowpunch create` and a
 * hibernation would leave them, without device-mapper: for each VM a record
 * (STATE/ID/vm.json), a COW file holding a valid store, and optionally a memory
 * file.  For the agent's tests and benchmarks.  See usage().
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "host/vmstore.h"
#include "tests/unit/helpers/storegen.h"

static void usage(FILE *out)
{
	fputs("Usage: mkvms [OPTIONS] STATE COUNT\n"
	      "Makes COUNT detached VMs PREFIX-0000.. in STATE (created if missing).\n"
	      "  --base IMAGE     the VMs' base image (default: STATE/base.img, 16 MiB of\n"
	      "                   zeros, made if missing); the disk size is the base's size\n"
	      "  --prefix P       VM ID prefix (default vm)\n"
	      "  --chunks N       exceptions per COW, 4 KiB chunks (default 64)\n"
	      "  --zero-pct P     of those, P%% written as zeros (default 50)\n"
	      "  --origin-from C  first origin chunk used (default 0); exceptions go to\n"
	      "                   origin chunks C, C+2, C+4, ...\n"
	      "  --mem-size SIZE  also a memory file STATE/ID/mem of SIZE bytes, recorded:\n"
	      "                   runs of 4 KiB pages, about half of them zero\n"
	      "  --seed S         data seed (default 1)\n",
	      out);
}

static int write_mem(const char *path, uint64_t size, uint64_t seed)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	_cleanup_free_ char *buf = malloc(1 << 16);
	uint64_t off = 0, s = seed;

	if (fd < 0 || !buf)
		return fd < 0 ? -errno : -ENOMEM;
	while (off < size) {
		/* Runs of 1..16 pages, zero or data, alternating with a random length. */
		uint64_t pages =
			1 + ((s = s * 6364136223846793005ULL + 1442695040888963407ULL) >> 60);
		size_t len = (size_t)(pages * 4096 < size - off ? pages * 4096 : size - off);
		bool zero = (s >> 32) & 1;

		if (zero)
			memset(buf, 0, len);
		else
			storegen_pattern(buf, len, s);
		if (util_pwrite_full(fd, buf, len, off) != (ssize_t)len)
			return -EIO;
		off += len;
	}
	return fsync(fd) < 0 ? -errno : 0;
}

static int make_vm(const char *state, const char *id, const char *base, uint64_t chunks,
		   unsigned zero_pct, uint64_t origin_from, uint64_t mem_size, uint64_t seed)
{
	_cleanup_free_ char *dir = vmstore_path(state, id, NULL);
	_cleanup_free_ char *cow = vmstore_path(state, id, "cow");
	_cleanup_free_ char *mem = vmstore_path(state, id, "mem");
	_cleanup_close_ int fd = -1;
	struct vmstore_record rec = {0};
	struct storegen *sg = NULL;
	char data[4096];
	int r;

	if (!dir || !cow || !mem)
		return -ENOMEM;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = open(cow, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = storegen_create(fd, 8, false, &sg);
	for (uint64_t i = 0; r == 0 && i < chunks; i++) {
		bool zero = (i * 100) / (chunks ? chunks : 1) < zero_pct;

		if (zero)
			memset(data, 0, sizeof(data));
		else
			storegen_pattern(data, sizeof(data), seed ^ (i * 0x9e3779b97f4a7c15ULL));
		r = storegen_add_buf(sg, origin_from + 2 * i, data, NULL);
	}
	storegen_free(sg);
	if (r < 0)
		return r;
	if (fsync(fd) < 0)
		return -errno;
	snprintf(rec.id, sizeof(rec.id), "%s", id);
	snprintf(rec.base_path, sizeof(rec.base_path), "%s", base);
	r = vmstore_identity_read(base, &rec.base);
	if (r < 0)
		return r;
	rec.virt_bytes = rec.base.size;
	rec.chunk_bytes = 4096;
	rec.cow_bytes = (uint64_t)lseek(fd, 0, SEEK_END);
	rec.created = time(NULL);
	rec.detached = rec.created;
	if (mem_size) {
		r = write_mem(mem, mem_size, seed);
		if (r < 0)
			return r;
		snprintf(rec.mem_path, sizeof(rec.mem_path), "%s", mem);
	}
	return vmstore_record_save(state, &rec);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"base", required_argument, NULL, 'b'},
					     {"prefix", required_argument, NULL, 'p'},
					     {"chunks", required_argument, NULL, 'c'},
					     {"zero-pct", required_argument, NULL, 'z'},
					     {"mem-size", required_argument, NULL, 'm'},
					     {"seed", required_argument, NULL, 's'},
					     {"origin-from", required_argument, NULL, 'o'},
					     {"help", no_argument, NULL, 'h'},
					     {0}};
	const char *base = NULL, *prefix = "vm";
	uint64_t chunks = 64, zero_pct = 50, mem_size = 0, seed = 1, count, origin_from = 0;
	_cleanup_free_ char *base_default = NULL, *state = NULL;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		uint64_t *v = opt == 'c'   ? &chunks
			      : opt == 'z' ? &zero_pct
			      : opt == 'm' ? &mem_size
			      : opt == 's' ? &seed
			      : opt == 'o' ? &origin_from
					   : NULL;

		if (opt == 'b')
			base = optarg;
		else if (opt == 'p')
			prefix = optarg;
		else if (v && util_parse_size(optarg, v) == 0)
			continue;
		else {
			usage(opt == 'h' ? stdout : stderr);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (argc - optind != 2 || util_parse_size(argv[optind + 1], &count) < 0 || zero_pct > 100) {
		usage(stderr);
		return 2;
	}
	state = realpath(argv[optind], NULL);
	if (!state && mkdir(argv[optind], 0700) == 0)
		state = realpath(argv[optind], NULL);
	if (!state) {
		fprintf(stderr, "mkvms: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	if (!base) {
		if (asprintf(&base_default, "%s/base.img", state) < 0)
			return 1;
		if (access(base_default, F_OK) < 0) {
			int fd = open(base_default, O_WRONLY | O_CREAT | O_CLOEXEC, 0400);

			if (fd < 0 || ftruncate(fd, 16 << 20) < 0) {
				fprintf(stderr, "mkvms: %s: %s\n", base_default, strerror(errno));
				return 1;
			}
			close(fd);
		}
		base = base_default;
	}
	for (uint64_t i = 0; i < count; i++) {
		char id[VMSTORE_ID_MAX + 1];

		snprintf(id, sizeof(id), "%s-%04llu", prefix, (unsigned long long)i);
		r = make_vm(state, id, base, chunks, (unsigned)zero_pct, origin_from, mem_size,
			    seed + i);
		if (r < 0) {
			fprintf(stderr, "mkvms: %s/%s: %s\n", state, id, strerror(-r));
			return 1;
		}
	}
	return 0;
}
