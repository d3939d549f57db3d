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

static bool json_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* A character that stands for itself inside a JSON string. */
static bool plain_char(char ch)
{
	return ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
}

static const char *skip_space(const char *p, const char *e)
{
	while (p < e && json_space(*p))
		p++;
	return p;
}

bool kwd_parse_plain(char *body, size_t len, const char *const *names,
		     struct kwd_fields *f)
{
	const char *p, *e;
	size_t ends[KWD_MAX_FIELDS], nends = 0;
	unsigned seen = 0;

	memset(f, 0, sizeof(*f));
	f->names = names;
	if (!body)
		return false;
	p = body;
	e = body + len;
	p = skip_space(p, e);
	if (p == e || *p++ != '{')
		return false;
	p = skip_space(p, e);
	if (p < e && *p == '}') {
		p++;
	} else {
		for (;;) {
			const char *k;
			size_t i;

			if (p == e || *p++ != '"')
				goto other;
			k = p;
			while (p < e && plain_char(*p))
				p++;
			if (p == e || *p != '"')
				goto other;
			for (i = 0; i < KWD_MAX_FIELDS && names[i]; i++)
				if (strlen(names[i]) == (size_t)(p - k) &&
				    memcmp(names[i], k, (size_t)(p - k)) == 0)
					break;
			if (i >= KWD_MAX_FIELDS || !names[i] || seen & 1u << i)
				goto other;
			seen |= 1u << i;
			p = skip_space(p + 1, e);
			if (p == e || *p++ != ':')
				goto other;
			p = skip_space(p, e);
			if (e - p >= 4 && memcmp(p, "null", 4) == 0) {
				p += 4;
			} else {
				if (p == e || *p++ != '"')
					goto other;
				f->v[i] = p;
				while (p < e && plain_char(*p))
					p++;
				if (p == e || *p != '"')
					goto other;
				ends[nends++] = (size_t)(p - body);
				p++;
			}
			p = skip_space(p, e);
			if (p == e)
				goto other;
			if (*p == '}') {
				p++;
				break;
			}
			if (*p++ != ',')
				goto other;
			p = skip_space(p, e);
		}
	}
	if (skip_space(p, e) != e)
		goto other;
	for (size_t i = 0; i < nends; i++)
		body[ends[i]] = '\0';
	return true;
other:
	memset(f->v, 0, sizeof(f->v));
	return false;
}

bool kwd_parse_fields(char *body, size_t len, const char *const *names,
		      struct kwd_fields *f, char *err, size_t errsz)
{
	json_t *j;

	if (kwd_parse_plain(body, len, names, f))
		return true;
	j = kwd_parse_body(body, len, names, err, errsz);
	if (!j)
		return false;
	f->j = j;
	for (size_t i = 0; i < KWD_MAX_FIELDS && names[i]; i++)
		f->v[i] = json_string_value(json_object_get(j, names[i]));
	return true;
}

const char *kwd_field(const struct kwd_fields *f, const char *name)
{
	for (size_t i = 0; f->names && i < KWD_MAX_FIELDS && f->names[i]; i++)
		if (strcmp(f->names[i], name) == 0)
			return f->v[i];
	return NULL;
}

void kwd_fields_free(struct kwd_fields *f)
{
	json_decref(f->j);
	f->j = NULL;
}

bool kwd_parse_report(const struct kwd_fields *f, const char **id,
		      kw_outcome *outcome, char *err, size_t errsz)
{
	const char *oc;

	*id = kwd_field(f, "lease");
	oc = kwd_field(f, "outcome");
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
