/*
 * fuzzutil.c - guarded memory, planted secrets and error messages checked,
 * for the fuzz targets (fuzzutil.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"

/* Room in front of guarded memory for its size. */
#define FZ_HDR 16

void *fz_secure_alloc(size_t len)
{
	unsigned char *p = calloc(1, FZ_HDR + len);

	if (p == NULL)
		return NULL;
	memcpy(p, &len, sizeof(len));
	return p + FZ_HDR;
}

void fz_secure_free(void *p, size_t len)
{
	unsigned char *base;
	size_t was;

	if (p == NULL)
		return;
	base = (unsigned char *)p - FZ_HDR;
	memcpy(&was, base, sizeof(was));
	if (was != len) {
		fprintf(stderr, "fuzz: secure_free() of %zu bytes for an "
			"allocation of %zu\n", len, was);
		abort();
	}
	memset(p, 0, len);
	free(base);
}

void fz_wipe(void *p, size_t len)
{
	memset(p, 0, len);
}

unsigned char *fz_plant(const uint8_t *data, size_t size, const char *mark,
			size_t *len)
{
	const size_t mark_len = strlen(mark);
	size_t n = size - 1, at = data[0] % (n + 1);
	unsigned char *buf;

	*len = at + mark_len > n ? at + mark_len : n;
	buf = malloc(*len);
	if (buf == NULL)
		return NULL;
	memcpy(buf, data + 1, n);
	memcpy(buf + at, mark, mark_len);
	return buf;
}

const char *fz_bad_message(const char *msg, const char *const *secrets)
{
	for (const char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			return "not one printable line";
	for (; *secrets != NULL; secrets++)
		if (strstr(msg, *secrets) != NULL)
			return "a secret in it";
	return NULL;
}
