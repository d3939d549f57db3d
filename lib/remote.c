/*
 * remote.c - libkeyway as a client of keywayd(8) (docs/daemon-protocol.md):
 * kw_resolve() is POST /v1/resolve, kw_explain() POST /v1/explain, a
 * report or the end of a secret POST /v1/report with its lease, and
 * kw_check() GET /v1/health, in HTTP/1.1 over the daemon's Unix socket.
 *
 * Each request takes an idle libcurl easy handle from a small pool of the
 * context's (or makes one) and puts it back after, so that a request goes
 * out on a connection kept alive; no lock is held while the daemon is
 * asked.  Every request has one deadline, keyway.daemon's timeout_ms.
 *
 * The key arrives in the answer's body, which our write callback keeps in
 * guarded memory, wiped when freed; the string jansson makes of it is
 * wiped in place before it is freed.  What cannot be wiped: libcurl's own
 * receive buffer and the text jansson's parser keeps of the token while
 * it reads it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include <keyway/keyway.h>

#include "chain.h"
#include "context.h"
#include "curl_dl.h"
#include "error.h"
#include "remote.h"
#include "request.h"
#include "secmem.h"
#include "secret.h"

/* Idle handles (each with its connection) a context keeps. */
#define REMOTE_IDLE_MAX 8
/* The largest answer taken: an explain of a long chain is well under. */
#define REMOTE_BODY_MAX (1u << 20)
/* The host name in the URL: keywayd ignores it. */
#define REMOTE_URL "http://keyway"

struct kwi_remote {
	atomic_uint refs;
	unsigned forks;        /* kwi_forks() when it was made */
	char *socket;
	char *file;            /* where keyway.daemon is written */
	int line;
	long timeout_ms;
	struct curl_slist *headers;
	pthread_mutex_t lock;  /* guards idle[] and nidle */
	CURL *idle[REMOTE_IDLE_MAX];
	size_t nidle;
};

kw_status kwi_remote_new(const struct kwi_remote_conf *c,
			 struct kwi_remote **out)
{
	struct kwi_remote *r;
	char why[256];

	*out = NULL;
	if (!kwi_curl_load(why, sizeof(why)))
		return kwi_error(KW_ERR_INTERNAL, "%s", why);
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return KW_ERR_NOMEM;
	atomic_init(&r->refs, 1);
	r->forks = kwi_forks();
	r->socket = strdup(c->socket);
	r->file = strdup(c->file);
	r->line = c->line;
	r->timeout_ms = c->timeout_ms;
	r->headers = kwi_curl.slist_append(NULL, "Content-Type: application/json");
	/* Never wait for a "100 Continue": libcurl asks for one past a body
	 * size of its own, which some versions put at 1 KiB. */
	if (r->headers != NULL &&
	    kwi_curl.slist_append(r->headers, "Expect:") == NULL) {
		kwi_curl.slist_free_all(r->headers);
		r->headers = NULL;
	}
	if (r->socket == NULL || r->file == NULL || r->headers == NULL) {
		kwi_curl.slist_free_all(r->headers);
		free(r->socket);
		free(r->file);
		free(r);
		return KW_ERR_NOMEM;
	}
	pthread_mutex_init(&r->lock, NULL);
	*out = r;
	return KW_OK;
}

void kwi_remote_put(struct kwi_remote *r)
{
	if (r == NULL || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	/*
	 * In a child of fork() the handles and their connections are the
	 * parent's copies, and another thread of the parent may have held
	 * the lock at fork(): leave them.
	 */
	if (r->forks == kwi_forks()) {
		for (size_t i = 0; i < r->nidle; i++)
			kwi_curl.easy_cleanup(r->idle[i]);
		pthread_mutex_destroy(&r->lock);
		kwi_curl.slist_free_all(r->headers);
	}
	free(r->socket);
	free(r->file);
	free(r);
}

static struct kwi_remote *remote_get(struct kwi_remote *r)
{
	atomic_fetch_add(&r->refs, 1);
	return r;
}

/* ---- the transport ---- */

/* An answer's body, in guarded memory. */
struct body {
	char *data;
	size_t len;
	size_t cap;
	bool too_big;
	bool nomem;
};

static void body_free(struct body *b)
{
	kwi_secure_free(b->data, b->cap);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Grown by copying into a new guarded block, the old one wiped: never
 * realloc()ed. */
static size_t write_body(char *data, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t add = size * n, cap;
	char *grown;

	if (add > REMOTE_BODY_MAX - b->len) {
		b->too_big = true;
		return 0;
	}
	if (b->len + add + 1 > b->cap) {
		cap = b->cap != 0 ? b->cap : 1024;
		while (cap < b->len + add + 1)
			cap *= 2;
		grown = kwi_secure_alloc(cap);
		if (grown == NULL) {
			b->nomem = true;
			return 0;
		}
		if (b->len != 0)
			memcpy(grown, b->data, b->len);
		kwi_secure_free(b->data, b->cap);
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, add);
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

/* The connection's socket, close-on-exec from the start (keyway.h). */
static curl_socket_t open_socket(void *arg, curlsocktype purpose,
				 struct curl_sockaddr *a)
{
	(void)arg;
	(void)purpose;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static CURL *handle_new(struct kwi_remote *r)
{
	CURL *h = kwi_curl.easy_init();

	if (h == NULL)
		return NULL;
	if (kwi_curl.easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, r->socket) !=
		    CURLE_OK ||
	    kwi_curl.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http") != CURLE_OK ||
	    kwi_curl.easy_setopt(h, CURLOPT_NOPROXY, "*") != CURLE_OK ||
	    kwi_curl.easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    kwi_curl.easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms) !=
		    CURLE_OK ||
	    kwi_curl.easy_setopt(h, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK ||
	    kwi_curl.easy_setopt(h, CURLOPT_USERAGENT,
			     "libkeyway/" PACKAGE_VERSION) != CURLE_OK ||
	    kwi_curl.easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket) !=
		    CURLE_OK ||
	    kwi_curl.easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body) !=
		    CURLE_OK) {
		kwi_curl.easy_cleanup(h);
		return NULL;
	}
	return h;
}

static CURL *handle_take(struct kwi_remote *r)
{
	CURL *h = NULL;

	pthread_mutex_lock(&r->lock);
	if (r->nidle > 0)
		h = r->idle[--r->nidle];
	pthread_mutex_unlock(&r->lock);
	return h != NULL ? h : handle_new(r);
}

static void handle_give(struct kwi_remote *r, CURL *h)
{
	pthread_mutex_lock(&r->lock);
	if (r->nidle < REMOTE_IDLE_MAX) {
		r->idle[r->nidle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&r->lock);
	kwi_curl.easy_cleanup(h);
}

/* Why the daemon could not be asked, as one line. */
static kw_status transport_error(const struct kwi_remote *r, CURL *h,
				 CURLcode cc, const struct body *b)
{
	long err = 0;

	if (b->nomem || cc == CURLE_OUT_OF_MEMORY)
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	if (b->too_big)
		return kwi_error(KW_ERR_BACKEND,
				 "keywayd at %s answered more than %u bytes; "
				 "is it keywayd's socket (keyway.daemon in "
				 "%s)?",
				 r->socket, REMOTE_BODY_MAX, r->file);
	if (cc == CURLE_OPERATION_TIMEDOUT)
		return kwi_error(KW_ERR_UNAVAIL,
				 "keywayd at %s did not answer within %ld ms; "
				 "see its log, or raise keyway.daemon's "
				 "timeout_ms in %s",
				 r->socket, r->timeout_ms, r->file);
	if (cc == CURLE_COULDNT_CONNECT) {
		(void)kwi_curl.easy_getinfo(h, CURLINFO_OS_ERRNO, &err);
		return kwi_error(KW_ERR_UNAVAIL,
				 "keywayd at %s cannot be reached: %s; start "
				 "keywayd, or correct keyway.daemon in %s",
				 r->socket,
				 err != 0 ? strerror((int)err)
					  : kwi_curl.easy_strerror(cc),
				 r->file);
	}
	return kwi_error(KW_ERR_UNAVAIL,
			 "keywayd at %s: %s; see keywayd's log (keyway.daemon "
			 "in %s)",
			 r->socket, kwi_curl.easy_strerror(cc), r->file);
}

/*
 * Ask the daemon: POST body (GET when body is NULL) to path.  On KW_OK
 * *code is the HTTP status and *json the answer parsed (the caller's to
 * json_decref()), an object; a body holding a key is left in b for the
 * caller to wipe and free.  Otherwise kw_last_error() says why.
 */
static kw_status ask(struct kwi_remote *r, const char *path,
		     const char *body, long *code, json_t **json,
		     struct body *b)
{
	char url[64];
	json_error_t e;
	CURLcode cc;
	CURL *h;

	*json = NULL;
	*code = 0;
	memset(b, 0, sizeof(*b));
	h = handle_take(r);
	if (h == NULL)
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	snprintf(url, sizeof(url), "%s%s", REMOTE_URL, path);
	kwi_curl.easy_setopt(h, CURLOPT_URL, url);
	kwi_curl.easy_setopt(h, CURLOPT_WRITEDATA, b);
	if (body != NULL) {
		kwi_curl.easy_setopt(h, CURLOPT_POSTFIELDS, body);
		kwi_curl.easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	} else {
		kwi_curl.easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	cc = kwi_curl.easy_perform(h);
	if (cc != CURLE_OK) {
		kw_status st = transport_error(r, h, cc, b);

		/* A handle that failed keeps no connection worth having. */
		kwi_curl.easy_cleanup(h);
		body_free(b);
		return st;
	}
	kwi_curl.easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
	kwi_curl.easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
	handle_give(r, h);
	*json = json_loadb(b->data != NULL ? b->data : "", b->len, 0, &e);
	if (*json == NULL || !json_is_object(*json)) {
		json_decref(*json);
		*json = NULL;
		body_free(b);
		return kwi_error(KW_ERR_BACKEND,
				 "keywayd at %s answered HTTP %ld with a body "
				 "that is not keywayd's JSON; is it keywayd's "
				 "socket (keyway.daemon in %s)?",
				 r->socket, *code, r->file);
	}
	return KW_OK;
}

/* Which error an answer "error" stands for, by its "code"; KW_ERR_BACKEND
 * for a code this library does not know, or none (an older keywayd). */
static kw_status error_of(const char *code)
{
	static const struct {
		const char *code;
		kw_status st;
	} codes[] = {
		{ "backend", KW_ERR_BACKEND },
		{ "crypto", KW_ERR_CRYPTO },
		{ "config", KW_ERR_CONFIG },
		{ "module", KW_ERR_MODULE },
		{ "nomem", KW_ERR_NOMEM },
		{ "io", KW_ERR_IO },
		{ "perm", KW_ERR_PERM },
		{ "exists", KW_ERR_EXISTS },
		{ "unsupported", KW_ERR_UNSUPPORTED },
		{ "internal", KW_ERR_INTERNAL },
	};

	for (size_t i = 0; code != NULL && i < sizeof(codes) / sizeof(codes[0]);
	     i++)
		if (strcmp(code, codes[i].code) == 0)
			return codes[i].st;
	return KW_ERR_BACKEND;
}

/* The keyway status a word of the protocol stands for; http decides
 * words it does not know. */
static kw_status status_of(const char *word, long http)
{
	static const struct {
		const char *word;
		kw_status st;
	} words[] = {
		{ "found", KW_OK },
		{ "notfound", KW_ERR_NOTFOUND },
		{ "denied", KW_ERR_DENIED },
		{ "unavail", KW_ERR_UNAVAIL },
		{ "invalid", KW_ERR_INVAL },
		{ "error", KW_ERR_BACKEND },
		{ "refused", KW_ERR_PERM },    /* the caller may not */
		{ "limited", KW_ERR_DENIED },  /* daemon.rate_limit */
		{ "conflict", KW_ERR_INVAL },  /* a lease reported twice */
	};

	for (size_t i = 0; word != NULL && i < sizeof(words) / sizeof(words[0]);
	     i++)
		if (strcmp(word, words[i].word) == 0)
			return words[i].st;
	switch (http) {
	case 200:
		return KW_OK;
	case 400:
	case 413:
		return KW_ERR_INVAL;
	case 403:
		return KW_ERR_PERM;
	case 404:
		return KW_ERR_NOTFOUND;
	case 429:
		return KW_ERR_DENIED;
	case 503:
		return KW_ERR_UNAVAIL;
	default:
		return KW_ERR_BACKEND;
	}
}

/*
 * An answer other than 200 as kw_last_error() and a status.  A chain's
 * verdict ("notfound", "denied", ...) is the library's own message,
 * passed on as it is, so that it reads as it would in-process; what the
 * daemon says of the caller or the lease names the daemon.
 */
static kw_status answer_error(const struct kwi_remote *r, long code,
			      json_t *j)
{
	const char *word = json_string_value(json_object_get(j, "status"));
	const char *msg = json_string_value(json_object_get(j, "error"));
	kw_status st = status_of(word, code);
	char line[1024];

	if (st == KW_ERR_BACKEND && word != NULL && strcmp(word, "error") == 0)
		st = error_of(json_string_value(json_object_get(j, "code")));
	bool own = word != NULL &&
		   (strcmp(word, "notfound") == 0 ||
		    strcmp(word, "denied") == 0 ||
		    strcmp(word, "unavail") == 0 ||
		    strcmp(word, "invalid") == 0 || strcmp(word, "error") == 0);

	if (st == KW_OK)
		st = KW_ERR_BACKEND;
	snprintf(line, sizeof(line), "%s",
		 msg != NULL && msg[0] != '\0' ? msg : "no reason given");
	for (char *p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	if (own)
		return kwi_error(st, "%s", line);
	return kwi_error(st, "keywayd at %s: %s (HTTP %ld)", r->socket, line,
			 code);
}

/* {"provider":...,"user":...,"org":...,"chain":...}, the fields set; NULL
 * when out of memory. */
static char *request_body(const struct kwi_query_in *in)
{
	json_t *j = json_pack("{s:s}", "provider", in->provider);
	char *s = NULL;

	if (j == NULL)
		return NULL;
	if ((in->user == NULL ||
	     json_object_set_new(j, "user", json_string(in->user)) == 0) &&
	    (in->org == NULL ||
	     json_object_set_new(j, "org", json_string(in->org)) == 0) &&
	    (in->chain == NULL ||
	     json_object_set_new(j, "chain", json_string(in->chain)) == 0))
		s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

/* The key of a parsed answer wiped where jansson keeps it. */
static void wipe_string(json_t *v)
{
	if (json_is_string(v))
		kwi_wipe((char *)json_string_value(v), json_string_length(v));
}

/* POST req, which is freed here (NULL: out of memory), to keywayd's path;
 * KW_OK with its answer in *j when keywayd answered 200, else a status
 * and kw_last_error().  *j, NULL or not, is the caller's to json_decref(). */
static kw_status post(struct kwi_remote *r, const char *path, char *req,
		      json_t **j)
{
	struct body b;
	long code;
	kw_status st;

	*j = NULL;
	if (req == NULL)
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	st = ask(r, path, req, &code, j, &b);
	free(req);
	body_free(&b);
	if (st == KW_OK && code != 200)
		st = answer_error(r, code, *j);
	return st;
}

/* Tell the daemon what became of a lease; a status and kw_last_error(). */
static kw_status report_lease(struct kwi_remote *r, const char *lease,
			      kw_outcome outcome)
{
	json_t *j, *o;
	char *req;
	kw_status st;

	o = json_pack("{s:s, s:s}", "lease", lease, "outcome",
		      outcome == KW_UNUSED ? "unused" : "used");
	req = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	st = post(r, "/v1/report", req, &j);
	json_decref(j);
	return st;
}

/* ---- what the API calls ---- */

static kw_status make_secret(struct kwi_remote *r, json_t *j,
			     kw_secret **out)
{
	json_t *key = json_object_get(j, "key");
	const char *be = json_string_value(json_object_get(j, "backend"));
	const char *lease = json_string_value(json_object_get(j, "lease"));
	size_t klen, blen, size;
	struct kw_secret *s;

	/* jansson refuses a string holding a NUL byte (\u0000) unless
	 * told otherwise, so a key is read whole or not at all. */
	if (!json_is_string(key) || json_string_length(key) == 0 ||
	    be == NULL || lease == NULL || strlen(lease) > KWI_LEASE_MAX ||
	    strlen(be) > 256) {
		/* The lease of a malformed answer is given back. */
		if (lease != NULL && strlen(lease) <= KWI_LEASE_MAX)
			(void)report_lease(r, lease, KW_UNUSED);
		return kwi_error(KW_ERR_BACKEND,
				 "keywayd at %s answered a resolve without "
				 "its key, backend or lease; is it keywayd's "
				 "socket (keyway.daemon in %s)?",
				 r->socket, r->file);
	}
	klen = json_string_length(key);
	blen = strlen(be);
	size = sizeof(*s) + blen + 1 + klen + 1;
	s = kwi_secure_alloc(size);
	if (s == NULL) {
		(void)report_lease(r, lease, KW_UNUSED);
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	}
	s->size = size;
	s->len = klen;
	s->forks = kwi_forks();
	memcpy(s->data, be, blen + 1);
	s->value = s->data + blen + 1;
	memcpy(s->value, json_string_value(key), klen + 1);
	s->provider = "";
	memcpy(s->lease, lease, strlen(lease) + 1);
	s->remote = remote_get(r);
	*out = s;
	return KW_OK;
}

kw_status kwi_remote_resolve(struct kwi_remote *r,
			     const struct kwi_query_in *in, kw_secret **out)
{
	json_t *j;
	kw_status st;

	*out = NULL;
	st = post(r, "/v1/resolve", request_body(in), &j);
	if (st == KW_OK)
		st = make_secret(r, j, out);
	wipe_string(json_object_get(j, "key"));
	json_decref(j);
	return st;
}

static bool word_in(const char *w, const char *const *words, int *i)
{
	for (*i = 0; w != NULL && words[*i] != NULL; (*i)++)
		if (strcmp(w, words[*i]) == 0)
			return true;
	return false;
}

/* One step of an explain answer into t; false when it is malformed. */
static bool trace_step(kw_trace *t, json_t *o, kw_status *nomem)
{
	static const char *const actions[] = { "done", "continue", "die",
					       "skip", NULL };
	kw_trace_step s;
	json_t *idx = json_object_get(o, "index");
	json_t *skip = json_object_get(o, "skip");
	const char *action = json_string_value(json_object_get(o, "action"));
	const char *status = json_string_value(json_object_get(o, "status"));
	int a;

	memset(&s, 0, sizeof(s));
	s.backend = json_string_value(json_object_get(o, "backend"));
	s.module = json_string_value(json_object_get(o, "module"));
	s.detail = json_string_value(json_object_get(o, "detail"));
	s.masked = json_string_value(json_object_get(o, "masked"));
	if (!json_is_integer(idx) || json_integer_value(idx) < 1 ||
	    !json_is_integer(skip) || json_integer_value(skip) < 0 ||
	    json_integer_value(idx) > 65536 ||
	    json_integer_value(skip) > 65536 || s.backend == NULL ||
	    s.module == NULL || status == NULL || !word_in(action, actions, &a))
		return false;
	s.index = (unsigned)json_integer_value(idx);
	s.skip = (unsigned)json_integer_value(skip);
	s.action = (kw_action)a;
	s.status = status_of(status, 500);
	if (s.detail == NULL)
		s.detail = "";
	if (s.masked == NULL)
		s.masked = "";
	*nomem = kwi_trace_add(t, &s);
	return true;
}

/* The trace an explain answer j tells, into *out. */
static kw_status make_trace(struct kwi_remote *r, json_t *j, kw_trace **out)
{
	const char *chain = json_string_value(json_object_get(j, "chain"));
	const char *result = json_string_value(json_object_get(j, "result"));
	const char *summary = json_string_value(json_object_get(j, "summary"));
	json_t *backend = json_object_get(j, "backend");
	json_t *steps = json_object_get(j, "steps");
	kw_status st = KW_OK;
	size_t i;
	json_t *o;

	if (chain == NULL || result == NULL || !json_is_array(steps) ||
	    json_array_size(steps) > 4096 ||
	    (backend != NULL && !json_is_null(backend) &&
	     !json_is_string(backend)))
		goto bad;
	if (kwi_trace_alloc(chain, json_array_size(steps), out) != KW_OK)
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	json_array_foreach(steps, i, o) {
		if (!trace_step(*out, o, &st))
			goto bad;
		if (st != KW_OK)
			goto nomem;
	}
	if (kwi_trace_verdict(*out, status_of(result, 500),
			      json_string_value(backend),
			      summary != NULL ? summary : "") != KW_OK)
		goto nomem;
	return KW_OK;
nomem:
	kw_trace_free(*out);
	*out = NULL;
	return kwi_error(KW_ERR_NOMEM, "out of memory");
bad:
	kw_trace_free(*out);
	*out = NULL;
	return kwi_error(KW_ERR_BACKEND,
			 "keywayd at %s answered an explain that is not a "
			 "trace; is it keywayd's socket (keyway.daemon in "
			 "%s)?",
			 r->socket, r->file);
}

kw_status kwi_remote_explain(struct kwi_remote *r,
			     const struct kwi_query_in *in, kw_trace **out)
{
	json_t *j;
	kw_status st;

	*out = NULL;
	st = post(r, "/v1/explain", request_body(in), &j);
	if (st == KW_OK)
		st = make_trace(r, j, out);
	json_decref(j);
	return st;
}

kw_status kwi_remote_report(struct kw_secret *s, kw_outcome outcome)
{
	return report_lease(s->remote, s->lease, outcome);
}

void kwi_remote_secret_end(struct kw_secret *s)
{
	char saved[1024];

	/* Unreported, it was used: its lease goes now rather than when the
	 * daemon's lease_ttl runs out.  A child's inherited copy is the
	 * parent's to report.  kw_secret_free() leaves kw_last_error() as
	 * it found it, as it does in-process. */
	if (!s->reported && s->forks == kwi_forks() &&
	    s->remote->forks == kwi_forks()) {
		snprintf(saved, sizeof(saved), "%s", kw_last_error());
		(void)report_lease(s->remote, s->lease, KW_USED);
		(void)kwi_error(KW_OK, "%s", saved);
	}
	kwi_remote_put(s->remote);
	s->remote = NULL;
}

kw_status kwi_remote_health(struct kwi_remote *r)
{
	const char *status;
	json_t *j = NULL;
	struct body b;
	long code;
	kw_status st;

	st = ask(r, "/v1/health", NULL, &code, &j, &b);
	body_free(&b);
	if (st != KW_OK)
		return st;
	status = json_string_value(json_object_get(j, "status"));
	if (code != 200)
		st = answer_error(r, code, j);
	else if (status == NULL || strcmp(status, "ok") != 0)
		st = kwi_error(KW_ERR_UNAVAIL,
			       "keywayd at %s is not healthy (status "
			       "\"%.32s\")",
			       r->socket, status != NULL ? status : "");
	json_decref(j);
	return st;
}

void kwi_remote_check(struct kwi_remote *r, struct kwi_diag *d)
{
	kw_status st = kwi_remote_health(r);

	if (st != KW_OK)
		kwi_diag(d, st, r->file, r->line, "keyway.daemon: %s",
			 kw_last_error());
}

kw_status (kwi_remote_no_management)(const struct kwi_remote *r)
{
	return kwi_error(KW_ERR_UNSUPPORTED,
			 "management is not available through keywayd at %s "
			 "(keyway.daemon in %s); use keywayd's admin socket, "
			 "or a configuration that opens the stores",
			 r->socket, r->file);
}
