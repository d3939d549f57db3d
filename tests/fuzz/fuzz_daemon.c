/*
 * fuzz_daemon.c - a fuzz target for what keywayd(8) reads of a request
 * before it resolves anything (daemon/parse.c): the Content-Length
 * header and the JSON bodies of /v1/resolve, /v1/explain and /v1/report.
 *
 * The first input byte says what the rest is (its value modulo 4):
 *
 *   0  a /v1/resolve or /v1/explain body;
 *   1  a /v1/report body;
 *   2  as 0 or 1 (the next byte's lowest bit), with a made-up secret
 *      (FZ_MARK) written over the body from the offset the byte after
 *      picks (into a string, in the corpus);
 *   3  a Content-Length header's value.
 *
 * What must hold, else abort():
 *
 *   - a body taken is a JSON object of strings and nulls named only as
 *     the endpoint allows, and a report taken has a lease and an outcome
 *     of "used" or "unused";
 *   - a body read in place (kwd_parse_plain(), without jansson) is one
 *     jansson takes too, with the same values, and one it does not read
 *     is left as it was, for jansson;
 *   - a refusal has one printable line of reason without FZ_MARK (which
 *     keywayd sends back and may log), but in a field's name it quotes;
 *   - a Content-Length too big is one whose digits say more than the
 *     limit, and a header of no digits is never too big;
 *   - everything is released (LeakSanitizer sees what is not).
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "parse.h"

#define FZ_MARK "sk-fuzz-SECRET-planted-7d1c"
#define FZ_MAX_BODY (64 * 1024)

static bool fz_verbose;
static bool fz_ready;

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_daemon: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

static bool named(const char *k, const char *const *names)
{
	for (; *names != NULL; names++)
		if (strcmp(k, *names) == 0)
			return true;
	return false;
}

static void check_refusal(const char *err)
{
	if (err[0] == '\0')
		die("a refusal without a reason", NULL);
	/* UTF-8 passes (a field's name is the caller's own); controls do
	 * not. */
	for (const char *p = err; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			die("a reason that is not one printable line", err);
	/* A field's name is quoted back to the caller who wrote it (64
	 * bytes at most); a value never is. */
	if (strncmp(err, "unknown field \"", 15) != 0 &&
	    strncmp(err, "field \"", 7) != 0 && strstr(err, FZ_MARK) != NULL)
		die("a reason holds the secret", err);
}

/* Where kwd_parse_plain() takes a body, jansson must take it too, with
 * the same values. */
static void same_as_jansson(const char *orig, size_t len,
			    const char *const *names,
			    const struct kwd_fields *f)
{
	char err[512] = "";
	json_t *j;

	j = kwd_parse_body(len > 0 ? orig : NULL, len, names, err,
			   sizeof(err));
	if (j == NULL)
		die("a body read in place that jansson refuses", err);
	for (size_t i = 0; names[i] != NULL; i++) {
		const char *a = f->v[i];
		const char *b = json_string_value(json_object_get(j, names[i]));

		if ((a == NULL) != (b == NULL) ||
		    (a != NULL && strcmp(a, b) != 0))
			die("a field read in place unlike jansson", names[i]);
	}
	json_decref(j);
}

static void body(const char *orig, size_t len, bool report)
{
	const char *const *names = report ? kwd_report_fields
					  : kwd_request_fields;
	char err[512] = "";
	const char *k, *id;
	kw_outcome outcome;
	struct kwd_fields f;
	json_t *v;
	char *buf;

	/* Read from a copy: the strings of a plain body are ended in place. */
	buf = malloc(len > 0 ? len : 1);
	if (buf == NULL)
		die("out of memory", NULL);
	if (len > 0)
		memcpy(buf, orig, len);
	if (kwd_parse_plain(len > 0 ? buf : NULL, len, names, &f)) {
		same_as_jansson(orig, len, names, &f);
		memcpy(buf, orig, len);
	} else {
		for (size_t i = 0; i < KWD_MAX_FIELDS; i++)
			if (f.v[i] != NULL)
				die("a body refused with a field left set",
				    NULL);
		if (len > 0 && memcmp(buf, orig, len) != 0)
			die("a body refused but changed", NULL);
	}
	if (!kwd_parse_fields(len > 0 ? buf : NULL, len, names, &f, err,
			      sizeof(err))) {
		if (fz_verbose)
			fprintf(stderr, "# %zu bytes: %s\n", len, err);
		check_refusal(err);
		free(buf);
		return;
	}
	if (fz_verbose)
		fprintf(stderr, "# %zu bytes: taken%s\n", len,
			f.j ? "" : " in place");
	if (f.j != NULL) {
		if (!json_is_object(f.j))
			die("a body taken that is not an object", NULL);
		json_object_foreach(f.j, k, v) {
			if (!named(k, names))
				die("a body taken with a field not allowed", k);
			if (!json_is_string(v) && !json_is_null(v))
				die("a body taken with a field neither string "
				    "nor null", k);
		}
	}
	if (report) {
		err[0] = '\0';
		if (kwd_parse_report(&f, &id, &outcome, err, sizeof(err))) {
			if (id == NULL ||
			    (outcome != KW_USED && outcome != KW_UNUSED))
				die("a report taken without a lease or an "
				    "outcome", NULL);
		} else {
			check_refusal(err);
		}
	}
	kwd_fields_free(&f);
	free(buf);
}

static void header(const uint8_t *data, size_t size)
{
	char *cl = malloc(size + 1);
	bool digits = false;
	const char *p;

	if (cl == NULL)
		die("out of memory", NULL);
	memcpy(cl, data, size);
	cl[size] = '\0';
	p = cl + strspn(cl, " \t\n\v\f\r");
	if (*p == '+' || *p == '-')
		p++;
	digits = *p >= '0' && *p <= '9';
	if (kwd_body_too_big(cl, FZ_MAX_BODY) && !digits)
		die("a Content-Length of no digits is too big", cl);
	if (kwd_body_too_big(NULL, 0))
		die("no Content-Length is too big", NULL);
	free(cl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t mark_len = strlen(FZ_MARK);
	size_t at, len;
	char *buf;

	if (!fz_ready) {
		fz_verbose = getenv("KWFUZZ_VERBOSE") != NULL;
		fz_ready = true;
	}
	if (size == 0)
		return 0;
	switch (data[0] % 4) {
	case 0:
	case 1:
		/* Exactly its size, so that a read past it is seen. */
		buf = malloc(size - 1 > 0 ? size - 1 : 1);
		if (buf == NULL)
			die("out of memory", NULL);
		memcpy(buf, data + 1, size - 1);
		body(buf, size - 1, data[0] % 4 == 1);
		free(buf);
		break;
	case 2:
		if (size < 3)
			break;
		size -= 3;
		at = data[2] % (size + 1);
		len = at + mark_len > size ? at + mark_len : size;
		buf = malloc(len);
		if (buf == NULL)
			die("out of memory", NULL);
		memcpy(buf, data + 3, size);
		memcpy(buf + at, FZ_MARK, mark_len);
		body(buf, len, data[1] & 1);
		free(buf);
		break;
	default:
		header(data + 1, size - 1);
		break;
	}
	return 0;
}
