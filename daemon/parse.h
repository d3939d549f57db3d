/*
 * parse.h - the bytes of a request that keywayd(8) reads before it knows
 * who is asking: the Content-Length header and the JSON bodies of
 * /v1/resolve, /v1/explain and /v1/report (docs/daemon-protocol.md).
 * Neither the socket nor libmicrohttpd is needed here, so that
 * tests/fuzz/fuzz_daemon.c can run them alone.
 */
#ifndef KEYWAYD_PARSE_H
#define KEYWAYD_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include <keyway/keyway.h>

/* The fields of a /v1/resolve or /v1/explain body. */
extern const char *const kwd_request_fields[];
/* The fields of a /v1/report body. */
extern const char *const kwd_report_fields[];

/* Set by jansson's allocator in keywayd (kwd_json_wiped()) when it finds
 * no memory: a body jansson could not read for want of memory is no bad
 * request.  kwd_parse_body() clears it first. */
extern _Thread_local bool kwd_json_nomem;

/* Does a Content-Length header's value (NULL: none) say more than max
 * bytes? */
bool kwd_body_too_big(const char *content_length, size_t max);

/* The len bytes of body (NULL when len is 0) as a JSON object whose
 * members are strings or null and are all named in names (NULL ended).
 * NULL with a one-line reason in err when they are not; the caller owns
 * what is returned (json_decref). */
json_t *kwd_parse_body(const char *body, size_t len,
		       const char *const *names, char *err, size_t errsz);

#define KWD_MAX_FIELDS 4

/* The fields of a body: the value of each name allowed (names[i] gives
 * v[i]), NULL when left out or null.  They point into j when jansson read
 * the body, else into the body itself. */
struct kwd_fields {
	const char *const *names;
	const char *v[KWD_MAX_FIELDS];
	json_t *j;
};

/*
 * Read a body of the shape clients send, {"name":"value", ...}: each name
 * one of names (at most KWD_MAX_FIELDS of them) and given once, each value
 * null or a string of printable ASCII without escapes.  Its strings are
 * ended in place (the body is changed) and f points into it.  False, with
 * the body untouched, for anything else: kwd_parse_body() then reads it.
 * Both take and refuse the same bodies, this one only the common ones,
 * without jansson.
 */
bool kwd_parse_plain(char *body, size_t len, const char *const *names,
		     struct kwd_fields *f);

/* The len bytes of body (NULL when len is 0) into f, as
 * kwd_parse_plain() reads them or else kwd_parse_body(); false with a
 * one-line reason in err.  Release f with kwd_fields_free(). */
bool kwd_parse_fields(char *body, size_t len, const char *const *names,
		      struct kwd_fields *f, char *err, size_t errsz);
/* The value of name in f; NULL when left out, null or not allowed. */
const char *kwd_field(const struct kwd_fields *f, const char *name);
void kwd_fields_free(struct kwd_fields *f);

/* A /v1/report body, read by kwd_parse_fields(): its lease id (pointing
 * into f) and its outcome.  False with a one-line reason in err. */
bool kwd_parse_report(const struct kwd_fields *f, const char **id,
		      kw_outcome *outcome, char *err, size_t errsz);

#endif
