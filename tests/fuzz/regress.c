/*
 * regress.c - runs a fuzz target over kept inputs, without libFuzzer: each
 * file of each directory named on the command line (by default the
 * target's corpus and regression inputs under $KEYWAY_SRCDIR/tests/fuzz/)
 * is one TAP test point.  A target aborts on what it finds wrong; the
 * "# input" line before it names the input that did it.
 *
 *     KEYWAY_SRCDIR=/path/to/keyway tests/fuzz/regress_file [DIR...]
 *
 * Built for each target with the target linked in (regress_file: fuzz_file.c
 * and backends/file/format.c; regress_vault: fuzz_vault.c and the vault
 * module but http.c; ...); FUZZ_TARGET is the target's name.
 */
#include "config.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#ifndef FUZZ_TARGET
#error "FUZZ_TARGET must name the target"
#endif

struct input {
	char *path;
	char *name;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct input *)a)->path,
		      ((const struct input *)b)->path);
}

/* Append the files of dir to *in; false when dir cannot be read. */
static bool list_dir(const char *dir, struct input **in, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return false;
	while ((de = readdir(d)) != NULL) {
		struct input *more;
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		more = realloc(*in, (*n + 1) * sizeof(**in));
		if (more == NULL)
			abort();
		*in = more;
		len = strlen(dir) + strlen(de->d_name) + 2;
		(*in)[*n].path = malloc(len);
		if ((*in)[*n].path == NULL)
			abort();
		snprintf((*in)[*n].path, len, "%s/%s", dir, de->d_name);
		(*in)[*n].name = (*in)[*n].path + strlen(dir) + 1;
		(*n)++;
	}
	closedir(d);
	return true;
}

/* The whole of path, in a malloc'd block of exactly its size (one byte for
 * an empty file), so that AddressSanitizer sees a read past its end; its
 * size in *len.  NULL when it cannot be read. */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	size_t cap = 0, got;

	*len = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		unsigned char *more;

		if (*len == cap) {
			cap = cap ? 2 * cap : 4096;
			more = realloc(buf, cap);
			if (more == NULL)
				abort();
			buf = more;
		}
		got = fread(buf + *len, 1, cap - *len, f);
		*len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		buf = NULL;
	} else {
		unsigned char *exact = realloc(buf, *len > 0 ? *len : 1);

		if (exact == NULL)
			abort();
		buf = exact;
	}
	fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	const char *src = getenv("KEYWAY_SRCDIR");
	char dirs[2][1024];
	struct input *in = NULL;
	size_t n = 0, failed = 0;

	if (argc < 2) {
		if (src == NULL) {
			printf("Bail out! KEYWAY_SRCDIR is not set\n");
			return 99;
		}
		snprintf(dirs[0], sizeof(dirs[0]), "%s/tests/fuzz/corpus/%s",
			 src, FUZZ_TARGET);
		snprintf(dirs[1], sizeof(dirs[1]), "%s/tests/fuzz/regress/%s",
			 src, FUZZ_TARGET);
		for (int i = 0; i < 2; i++) {
			if (!list_dir(dirs[i], &in, &n)) {
				printf("Bail out! cannot read %s\n", dirs[i]);
				return 99;
			}
		}
	}
	for (int i = 1; i < argc; i++) {
		if (!list_dir(argv[i], &in, &n)) {
			printf("Bail out! cannot read %s\n", argv[i]);
			return 99;
		}
	}
	if (n == 0) {
		printf("Bail out! no input to run\n");
		return 99;
	}
	qsort(in, n, sizeof(*in), by_name);
	printf("1..%zu\n", n);
	for (size_t i = 0; i < n; i++) {
		unsigned char *buf;
		size_t len;

		buf = slurp(in[i].path, &len);
		if (buf == NULL) {
			printf("not ok %zu - %s: cannot be read\n", i + 1,
			       in[i].path);
			failed++;
			continue;
		}
		printf("# input %s\n", in[i].path);
		fflush(stdout);
		LLVMFuzzerTestOneInput(buf, len);
		printf("ok %zu - %s %s\n", i + 1, FUZZ_TARGET, in[i].name);
		free(buf);
	}
	for (size_t i = 0; i < n; i++)
		free(in[i].path);
	free(in);
	return failed ? 1 : 0;
}
