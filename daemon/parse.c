/*
 * parse.c - the Content-Length header and the JSON bodies of keywayd's
 * requests, checked before anything is resolved.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

const char *const kwd_request_fields[] = { "provider", "user", "org",
					   "chain", NULL };
const char *const kwd_report_fields[] = { "lease", "outcome", NULL };

_Thread_local bool kwd_json_nomem;

bool kwd_body_too_big(const char *content_length, size_t max)
{
	return content_length && strtoull(content_length, NULL, 10) > max;
}

static bool known(const char *k, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(k, *names) == 0)
			return true;
	return false;
}

/* A reason is one line: a caller's control characters become spaces. */
static void blank_controls(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

json_t *kwd_parse_body(const char *body, size_t len,
		       const char *const *names, char *err, size_t errsz)
{
	json_error_t e;
	json_t *j, *v;
	const char *k;

	kwd_json_nomem = false;
	j = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &e);
	/* jansson's reader carries on past a failed allocation of its own
	 * text, and can give a string cut short: none of it is taken. */
	if (kwd_json_nomem) {
		json_decref(j);
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	if (!j) {
		/* jansson's text ends with what it read there (" near
		 * 'TEXT'"): the body's own bytes, which may be a key sent by
		 * mistake, or control characters.  Where it is says enough. */
		const char *near = strstr(e.text, " near ");
		int n = near ? (int)(near - e.text) : (int)strlen(e.text);

		snprintf(err, errsz, "invalid JSON at line %d column %d: %.*s",
			 e.line, e.column, n, e.text);
		blank_controls(err);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		snprintf(err, errsz, "the body must be a JSON object");
		return NULL;
	}
	json_object_foreach(j, k, v) {
		if (!known(k, names)) {
			snprintf(err, errsz, "unknown field \"%.64s\"", k);
			blank_controls(err);
			json_decref(j);
			return NULL;
		}
		if (!json_is_string(v) && !json_is_null(v)) {
			snprintf(err, errsz, "field \"%s\" must be a string", k);
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

bool kwd_parse_report(json_t *j, const char **id, kw_outcome *outcome,
		      char *err, size_t errsz)
{
	const char *oc;

	*id = json_string_value(json_object_get(j, "lease"));
	oc = json_string_value(json_object_get(j, "outcome"));
	if (!*id || !oc) {
		snprintf(err, errsz,
			 "fields \"lease\" and \"outcome\" are required");
		return false;
	}
	if (strcmp(oc, "used") == 0) {
		*outcome = KW_USED;
	} else if (strcmp(oc, "unused") == 0) {
		*outcome = KW_UNUSED;
	} else {
		snprintf(err, errsz, "outcome must be \"used\" or \"unused\"");
		return false;
	}
	return true;
}
