/*
 * output.c - what the commands of keyway(1) print alike: exit statuses and
 * library errors, secrets on stdout, times, tables and JSON.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

int cli_exit_status(kw_status st)
{
	switch (st) {
	case KW_OK:
		return EXIT_OK;
	case KW_ERR_NOTFOUND:
		return EXIT_NOTFOUND;
	case KW_ERR_DENIED:
		return EXIT_DENIED;
	case KW_ERR_UNAVAIL:
		return EXIT_UNAVAIL;
	default:
		return EXIT_ERR;
	}
}

const char *cli_str(const char *s)
{
	return s ? s : "";
}

int cli_lib_error(kw_status st)
{
	const char *msg = kw_last_error();

	if (!msg || !*msg)
		msg = kw_status_str(st);
	fprintf(stderr, "keyway: %s\n", msg);
	return cli_exit_status(st);
}

/*
 * Unbuffered, stdio writes straight from buf and keeps no copy of the
 * secret in its own heap buffer; hence before anything else goes to stdout.
 */
int cli_write_secret(const char *buf, size_t len)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (fwrite(buf, 1, len, stdout) != len || putchar('\n') == EOF ||
	    fflush(stdout) != 0) {
		fprintf(stderr, "keyway: write error: %s\n", strerror(errno));
		clearerr(stdout);
		return EXIT_ERR;
	}
	return EXIT_OK;
}

/* The key never left this process: give back what resolving it charged.
 * A refund that fails leaves a charge too many, which is not worth failing
 * the command for. */
void cli_refund(kw_secret *key)
{
	kw_status st;

	if (!key)
		return;
	st = kw_secret_report(key, KW_UNUSED);
	(void)st;
}

void cli_format_time(int64_t t, enum cli_time_style style, char *buf,
		     size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	size_t n = 0;

	if (gmtime_r(&tt, &tm)) {
		switch (style) {
		case TIME_DAY:
			n = strftime(buf, size, "%Y-%m-%d", &tm);
			break;
		case TIME_ISO:
			n = strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
			break;
		case TIME_TABLE:
			n = strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm);
			break;
		}
	}
	if (n == 0)
		snprintf(buf, size, "%" PRId64, t);
}

void *cli_grow(void *v, size_t *cap, size_t n, size_t size, size_t first)
{
	size_t want;

	if (n < *cap)
		return v;
	want = *cap ? 2 * *cap : first;
	v = reallocarray(v, want, size);
	if (v)
		*cap = want;
	return v;
}

/* Grow each of the ncols column widths to fit s. */
static void widen(size_t *width, const char *const *s, int ncols)
{
	size_t len;
	int i;

	for (i = 0; i < ncols; i++) {
		len = strlen(s[i]);
		if (len > width[i])
			width[i] = len;
	}
}

/* One table line: two spaces between columns, none after the last. */
static void print_cells(const char *const *s, const size_t *width,
			int ncols)
{
	int i;

	for (i = 0; i < ncols - 1; i++)
		printf("%-*s  ", (int)width[i], s[i]);
	printf("%s\n", s[ncols - 1]);
}

/* Each row's cells are made twice, to measure and to print, rather than
 * kept: a table may have many rows. */
void cli_print_table(const char *const *header, int ncols,
		     const void *rows, size_t nrows, cli_cells_fn *cells)
{
	const char *s[CLI_MAX_COLS];
	char buf[CLI_MAX_COLS][CLI_CELL_SIZE];
	size_t width[CLI_MAX_COLS] = { 0 }, i;

	widen(width, header, ncols);
	for (i = 0; i < nrows; i++) {
		cells(rows, i, s, buf);
		widen(width, s, ncols);
	}
	print_cells(header, width, ncols);
	for (i = 0; i < nrows; i++) {
		cells(rows, i, s, buf);
		print_cells(s, width, ncols);
	}
}

json_t *cli_json_text(const char *s)
{
	return s != NULL && *s != '\0' ? json_string(s) : json_null();
}

json_t *cli_json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *cli_json_time(int64_t t)
{
	char buf[48];

	if (t == 0)
		return json_null();
	cli_format_time(t, TIME_ISO, buf, sizeof(buf));
	return json_string(buf);
}

json_t *cli_json_list(const void *items, size_t n,
		      json_t *(*item)(const void *items, size_t i))
{
	json_t *list, *o;
	size_t i;

	list = json_array();
	if (!list)
		return NULL;
	for (i = 0; i < n; i++) {
		o = item(items, i);
		if (!o || json_array_append_new(list, o) != 0) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

int cli_print_json(json_t *o, const char *cmd, const char *what,
		   const char *why)
{
	char *text = NULL;

	if (o)
		text = json_dumps(o, JSON_FLAGS);
	json_decref(o);
	if (!text) {
		fprintf(stderr, "keyway: %s: cannot encode %s as JSON (out of "
			"memory, or %s that is not UTF-8)\n", cmd, what, why);
		return EXIT_ERR;
	}
	puts(text);
	free(text);
	return EXIT_OK;
}
