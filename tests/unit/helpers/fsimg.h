/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test-only helpers to build ext2/3/4 images on the host without mounting them
 * (mkfs.ext4 -d, debugfs -w) and to run shell commands.
 */
#ifndef COWPUNCH_TESTS_HELPERS_FSIMG_H
#define COWPUNCH_TESTS_HELPERS_FSIMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Runs `sh -c` on the formatted command (the caller redirects output); returns the exit status or -1. */
int fsimg_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True when mkfs.ext4, debugfs and e2fsck are on PATH. */
bool fsimg_tools_present(void);

/* Writes len pseudo-random bytes (xorshift seeded with seed) to a new file at path. Returns 0 or -errno. */
int fsimg_random_file(const char *path, uint64_t len, uint64_t seed);

/* Creates a fresh temporary directory (mkdtemp under $TMPDIR or /var/tmp) into buf. Returns 0 or -errno. */
int fsimg_tmpdir(char *buf, size_t len);

/*
 * Diffs the disk image guest against base (zeros past base's end) chunk by chunk,
 * over disk bytes, and writes a fresh store (storegen: the kernel's allocation
 * order and area layout) to cow_fd holding every differing chunk as an exception,
 * in origin order: the COW a kernel would hold after the guest's writes, except
 * that chunks rewritten with the same bytes are not in it.  Returns 0 or -errno.
 */
int fsimg_diff_store(const char *base, const char *guest, int cow_fd, uint64_t chunk,
		     uint64_t disk);

/*
 * Rewrites, in the image guest, every block of the file `name` of the file system
 * in base (blocks of block_size bytes, as `debugfs -R "blocks NAME"` lists them)
 * with random bytes: a guest overwriting a file in place, no metadata changed.
 * Returns the number of blocks rewritten, or -errno (-EIO if a command failed).
 */
int fsimg_rewrite_file(const char *base, const char *name, const char *guest, uint32_t block_size);

/* rm -rf of a directory made by fsimg_tmpdir. */
void fsimg_rmtree(const char *dir);

#endif
