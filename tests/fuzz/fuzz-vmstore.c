/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target for the VM record reader: the input is a whole STATE/ID/vm.json,
 * parsed with vmstore_record_parse().  Built with libFuzzer by `make fuzz`
 * (COWPUNCH_LIBFUZZER defined); otherwise main() replays the files named on the
 * command line (`make check`).
 *
 * Invariants beyond "no crash": a refusal is -EBADMSG with a reason; an accepted
 * record holds what the reader promises (a valid ID, absolute paths, a 64-digit
 * fingerprint, a power-of-two chunk size in 4 KiB..1 GiB, a virtual size that holds
 * the base), and what vmstore_record_format() writes of it is read back: once
 * written, a record writes the same bytes every time after (what attach, detach and
 * reclaim do to a record on each save).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/vmstore.h"
#include "tests/unit/helpers/fuzzreplay.h"

/* Inputs above this are ignored: a record is under 2 KiB; the reader refuses > 1 MiB. */
#define FUZZ_MAX_INPUT (64u << 10)

static void check_record(const struct vmstore_record *r)
{
	if (!vmstore_id_valid(r->id) || r->base_path[0] != '/' ||
	    (r->mem_path[0] && r->mem_path[0] != '/') ||
	    strlen(r->base.fingerprint) != VMSTORE_FINGERPRINT_LEN || r->chunk_bytes < 4096 ||
	    r->chunk_bytes > (1u << 30) || (r->chunk_bytes & (r->chunk_bytes - 1)) ||
	    r->virt_bytes == 0 || r->virt_bytes % 512 || r->virt_bytes < r->base.size ||
	    r->cow_dio_active < -1 || r->cow_dio_active > 1)
		abort();
}

/* Formats r and parses the result into *back; aborts unless that is accepted. */
static char *round_trip(const struct vmstore_record *r, struct vmstore_record *back)
{
	char err[256] = "", *json = NULL;
	int e = vmstore_record_format(r, &json);

	if (e == -ENOMEM)
		return NULL;
	if (e != 0 || !json)
		abort();
	if (vmstore_record_parse(json, strlen(json), back, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz-vmstore: a record it wrote is refused: %s\n%s", err, json);
		abort();
	}
	check_record(back);
	return json;
}

/* Returns 1 when vmstore_record_parse() accepted the input, 0 when not. */
static int fuzz_one(const uint8_t *data, size_t size)
{
	struct vmstore_record *r, *once, *twice;
	char err[256], *json1 = NULL, *json2 = NULL;
	int e, accepted = 0;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	/* Records are large (three PATH_MAX paths each): on the heap. */
	r = malloc(sizeof(*r));
	once = malloc(sizeof(*once));
	twice = malloc(sizeof(*twice));
	if (!r || !once || !twice)
		abort();
	memset(err, 0x55, sizeof(err));
	e = vmstore_record_parse((const char *)data, size, r, err, sizeof(err));
	if (e == -EBADMSG) {
		if (!memchr(err, 0, sizeof(err)) || !err[0])
			abort();
		goto out;
	}
	if (e != 0)
		abort();
	accepted = 1;
	check_record(r);
	json1 = round_trip(r, once);
	if (!json1)
		goto out;
	json2 = round_trip(once, twice);
	if (json2 && strcmp(json1, json2) != 0) {
		fprintf(stderr, "fuzz-vmstore: a record reads back different:\n%s---\n%s", json1,
			json2);
		abort();
	}
out:
	free(json2);
	free(json1);
	free(twice);
	free(once);
	free(r);
	return accepted;
}

FUZZ_TARGET("fuzz-vmstore", FUZZ_MAX_INPUT, fuzz_one)
