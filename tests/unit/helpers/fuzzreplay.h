/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The replay main() of every fuzz target (tests/fuzz/README.md): without libFuzzer
 * a target is a plain program that feeds each file named on its command line to
 * its LLVMFuzzerTestOneInput, so any crash reproduces under `make check`.
 */
#ifndef COWPUNCH_TESTS_HELPERS_FUZZREPLAY_H
#define COWPUNCH_TESTS_HELPERS_FUZZREPLAY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Reads each of argv[1..argc) (up to max + 1 bytes, so the target sees oversized
 * inputs as such) and calls one(data, size).  Returns 0, or 1 when a file
 * cannot be read (named on stderr with name).
 */
int fuzz_replay_main(int argc, char **argv, const char *name, size_t max,
		     int (*one)(const uint8_t *data, size_t size));

#endif
