/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The entry points of every fuzz target (tests/fuzz/README.md): libFuzzer's
 * LLVMFuzzerTestOneInput() and, without libFuzzer, the replay main(), with
 * which a target is a plain program that feeds each file named on its command
 * line to the target, so any crash reproduces under `make check`, and checks
 * that the target accepts exactly the inputs named valid-*.
 */
#ifndef COWPUNCH_TESTS_HELPERS_FUZZREPLAY_H
#define COWPUNCH_TESTS_HELPERS_FUZZREPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Reads each of argv[1..argc) (up to max + 1 bytes, so the target sees oversized
 * inputs as such) and calls one(data, size), which returns 1 when the target
 * accepted the input and 0 when it refused it (and aborts on a broken
 * invariant).  A file named valid-* must be accepted, any other refused.
 * Returns 0; 1 when a file cannot be read or an input's verdict does not match
 * its name (each named on stderr with name).
 */
int fuzz_replay_main(int argc, char **argv, const char *name, size_t max,
		     int (*one)(const uint8_t *data, size_t size));

/*
 * A fuzz target's entry points, written once at the end of tests/fuzz/NAME.c
 * as FUZZ_TARGET("NAME", MAX, one): libFuzzer's LLVMFuzzerTestOneInput(),
 * which calls one(data, size) (its verdict is the replay's business), and,
 * unless COWPUNCH_LIBFUZZER is defined (`make fuzz`), the replay main() of
 * fuzz_replay_main() over the files named on the command line.
 */
#define FUZZ_ENTRY_(one)                                              \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)  \
	{                                                             \
		one(data, size);                                      \
		return 0;                                             \
	}
#ifdef COWPUNCH_LIBFUZZER
#define FUZZ_TARGET(name, max, one) FUZZ_ENTRY_(one)
#else
#define FUZZ_TARGET(name, max, one)                                  \
	FUZZ_ENTRY_(one)                                             \
	int main(int argc, char **argv)                              \
	{                                                            \
		return fuzz_replay_main(argc, argv, name, max, one); \
	}
#endif

#endif
