/*
 * admin.c - the admin socket: what `keyway put`, `rotate`, `enable`,
 * `disable`, `rm`, `ls` and `usage` do, over HTTP (docs/daemon-protocol.md,
 * "The admin socket").
 *
 * Only root, keywayd's own user and the members of daemon.admin_group are
 * served; anyone else is refused and the refusal audited.  A caller served
 * acts as the administrator of the host under its own user name, as the
 * keyway command does, and the library's audit trail names it.
 *
 * A key sent to be stored is wiped wherever keywayd held it: the body
 * (keywayd.c), MHD's buffer of the connection (keywayd.c), and jansson's
 * strings, whose memory is wiped when freed (kwd_json_wiped()).
 */
#define _GNU_SOURCE

#include <malloc.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keywayd.h"
#include "parse.h"

/* At most this many rows of the usage log in one answer. */
#define USAGE_MAX_ROWS 100000

/* ---- jansson's memory, wiped ---- */

static void *json_alloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		kwd_json_nomem = true;
	return p;
}

static void json_wipe_free(void *p)
{
	if (p)
		explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

void kwd_json_wiped(void)
{
	json_set_alloc_funcs(json_alloc, json_wipe_free);
}

/* Whether the n bytes at p (not NUL-terminated) are blanks only. */
static bool blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	return true;
}

/* ---- what a request names ---- */

/* What the admin socket serves. */
enum op {
	OP_LS,
	OP_GET,
	OP_PUT,
	OP_ROTATE,
	OP_ENABLE,
	OP_DISABLE,
	OP_RM,
	OP_USAGE,
	OP_HEALTH,
	OP_NONE		/* no such path */
};

/* The op's word in messages and in the audit trail, as the CLI's. */
static const char *const op_names[] = {
	"ls", "get", "put", "rotate", "enable", "disable", "rm", "usage",
	"health", "admin"
};

/* The parts of a path /v1/keys/BACKEND/PROVIDER[/ACTION]. */
struct route {
	enum op op;
	const char *method;	/* the one it takes */
	char backend[256];
	char provider[256];
};

/* Copy the segment at *p (up to '/' or the end) into out; false when it is
 * empty or too long. */
static bool segment(const char **p, char *out, size_t size)
{
	size_t n = strcspn(*p, "/");

	if (n == 0 || n >= size)
		return false;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p += n;
	return true;
}

/* Which op url and method ask for; OP_NONE for a path that is none. */
static void find_route(const char *url, const char *method, struct route *r)
{
	const char *p;

	memset(r, 0, sizeof(*r));
	r->op = OP_NONE;
	if (strcmp(url, "/v1/health") == 0) {
		r->op = OP_HEALTH;
		r->method = MHD_HTTP_METHOD_GET;
		return;
	}
	if (strcmp(url, "/v1/usage") == 0) {
		r->op = OP_USAGE;
		r->method = MHD_HTTP_METHOD_GET;
		return;
	}
	if (strcmp(url, "/v1/keys") == 0) {
		bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

		r->op = post ? OP_PUT : OP_LS;
		r->method = post ? MHD_HTTP_METHOD_POST : MHD_HTTP_METHOD_GET;
		return;
	}
	if (strncmp(url, "/v1/keys/", 9) != 0)
		return;
	p = url + 9;
	if (!segment(&p, r->backend, sizeof(r->backend)) || *p++ != '/' ||
	    !segment(&p, r->provider, sizeof(r->provider)))
		return;
	if (*p == '\0') {
		if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0) {
			r->op = OP_RM;
			r->method = MHD_HTTP_METHOD_DELETE;
		} else {
			r->op = OP_GET;
			r->method = MHD_HTTP_METHOD_GET;
		}
		return;
	}
	r->method = MHD_HTTP_METHOD_POST;
	if (strcmp(p, "/rotate") == 0)
		r->op = OP_ROTATE;
	else if (strcmp(p, "/enable") == 0)
		r->op = OP_ENABLE;
	else if (strcmp(p, "/disable") == 0)
		r->op = OP_DISABLE;
	else
		r->method = NULL;
}

/* ---- the caller ---- */

/* Root, keywayd's own user, or a member of daemon.admin_group. */
static bool is_admin(const struct kwd_conf *dc, const struct kwd_caller *cl)
{
	if (cl->uid == 0 || cl->uid == getuid())
		return true;
	if (dc->admin_gid == (gid_t)-1)
		return false;
	for (int i = 0; i < cl->ngroups; i++)
		if (cl->groups[i] == dc->admin_gid)
			return true;
	return false;
}

/* ---- answers ---- */

/* The HTTP status and word of a status of the management API. */
static unsigned admin_status(kw_status st, const char **word)
{
	switch (st) {
	case KW_OK:
		*word = "ok";
		return MHD_HTTP_OK;
	case KW_ERR_NOTFOUND:
		*word = "notfound";
		return MHD_HTTP_NOT_FOUND;
	case KW_ERR_EXISTS:
		*word = "conflict";
		return MHD_HTTP_CONFLICT;
	case KW_ERR_INVAL:
	case KW_ERR_UNSUPPORTED:
		*word = "invalid";
		return MHD_HTTP_BAD_REQUEST;
	case KW_ERR_PERM:
		*word = "refused";
		return MHD_HTTP_FORBIDDEN;
	case KW_ERR_DENIED:
		*word = "denied";
		return MHD_HTTP_FORBIDDEN;
	case KW_ERR_UNAVAIL:
		*word = "unavail";
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	default:
		*word = "error";
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

static enum MHD_Result lib_error(struct MHD_Connection *c, const char *op,
				 kw_status st)
{
	const char *word;
	unsigned code = admin_status(st, &word);

	if (code >= 500)
		kwd_log("%s: %s", op, kw_last_error());
	return kwd_send_coded(c, code, word,
			      code >= 500 ? kwd_code_word(st) : NULL, "%s",
			      kw_last_error());
}

/* "2026-12-02T22:10:04Z", or null for 0 (never). */
static json_t *json_time(int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	char buf[32];

	if (t == 0 || !gmtime_r(&tt, &tm))
		return json_null();
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

/* ---- the query ---- */

struct query {
	const char *const *allowed;
	const char *bad;	/* the first name not allowed */
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind,
				 const char *key, const char *value)
{
	struct query *q = cls;

	for (const char *const *n = q->allowed; *n; n++)
		if (strcmp(key, *n) == 0)
			return MHD_YES;
	q->bad = key;
	return MHD_NO;
}

/* False after answering 400 when the query names anything not allowed. */
static bool query_ok(struct MHD_Connection *c, const char *const *allowed,
		     enum MHD_Result *ret)
{
	struct query q = { allowed, NULL };

	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, check_arg, &q);
	if (!q.bad)
		return true;
	*ret = kwd_send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
			      "unknown query parameter \"%.64s\"", q.bad);
	return false;
}

/* A query parameter; NULL when absent or empty. */
static const char *arg(struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						    name);

	return v && *v ? v : NULL;
}

static bool parse_scope(const char *s, kw_scope *scope)
{
	if (!s)
		*scope = KW_SCOPE_NONE;
	else if (strcmp(s, "user") == 0)
		*scope = KW_SCOPE_USER;
	else if (strcmp(s, "org") == 0)
		*scope = KW_SCOPE_ORG;
	else if (strcmp(s, "system") == 0)
		*scope = KW_SCOPE_SYSTEM;
	else
		return false;
	return true;
}

/* ---- one request ---- */

struct admin {
	struct MHD_Connection *c;
	struct kwd_gen *g;
	kw_actor actor;
	struct route r;
	const char *body;
	size_t len;
};

/* ls and get: the keys listed, filtered by scope and provider. */
struct listing {
	json_t *keys;
	kw_scope scope;
	const char *provider;
	bool nomem;
};

static kw_status list_one(void *arg, const kw_key_info *k)
{
	struct listing *l = arg;
	json_t *o;

	if (l->scope != KW_SCOPE_NONE && k->scope != l->scope)
		return KW_OK;
	if (l->provider && strcmp(l->provider, k->provider) != 0)
		return KW_OK;
	o = json_pack("{s:s, s:s, s:o, s:s, s:o, s:b, s:s, s:I, s:o, s:o, "
		      "s:o, s:o}",
		      "backend", k->backend, "scope", kw_scope_str(k->scope),
		      "owner", str_or_null(k->owner), "provider", k->provider,
		      "name", str_or_null(k->name), "active", k->active != 0,
		      "masked", k->masked ? k->masked : "",
		      "usage_count", (json_int_t)(k->usage_count > INT64_MAX ?
						  INT64_MAX : k->usage_count),
		      "last_used", json_time(k->last_used),
		      "created", json_time(k->created),
		      "rotated", json_time(k->rotated),
		      "key_id", str_or_null(k->key_id));
	if (!o || json_array_append_new(l->keys, o) != 0) {
		l->nomem = true;
		return KW_ERR_NOMEM;
	}
	return KW_OK;
}

static enum MHD_Result do_list(struct admin *a, bool one)
{
	static const char *const ls_args[] = { "backend", "scope", "owner",
					       "provider", NULL };
	static const char *const get_args[] = { "scope", "owner", NULL };
	struct listing l = { 0 };
	const char *backend, *owner = arg(a->c, "owner");
	enum MHD_Result ret;
	kw_status st;

	if (!query_ok(a->c, one ? get_args : ls_args, &ret))
		return ret;
	if (!parse_scope(arg(a->c, "scope"), &l.scope))
		return kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				      "scope must be user, org or system");
	backend = one ? a->r.backend : arg(a->c, "backend");
	l.provider = one ? a->r.provider : arg(a->c, "provider");
	l.keys = json_array();
	if (!l.keys)
		return MHD_NO;
	st = kw_key_list(a->g->ctx, &a->actor, backend, owner, list_one, &l);
	if (l.nomem) {
		json_decref(l.keys);
		return kwd_send_coded(a->c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				      "error", "nomem",
				      "out of memory");
	}
	if (st != KW_OK) {
		json_decref(l.keys);
		return lib_error(a->c, op_names[a->r.op], st);
	}
	if (!one)
		return kwd_send_json(a->c, MHD_HTTP_OK,
				     json_pack("{s:o}", "keys", l.keys), NULL,
				     NULL);
	if (json_array_size(l.keys) == 0) {
		json_decref(l.keys);
		return kwd_send_error(a->c, MHD_HTTP_NOT_FOUND, "notfound",
				      "no key for provider \"%s\"%s%s in "
				      "backend \"%s\"", a->r.provider,
				      owner ? " of " : "", owner ? owner : "",
				      a->r.backend);
	}
	ret = kwd_send_json(a->c, MHD_HTTP_OK,
			    json_incref(json_array_get(l.keys, 0)), NULL, NULL);
	json_decref(l.keys);
	return ret;
}

/*
 * The key named by ref, checked as the keyway command checks it before a
 * key is read: the backend exists, and a user or org key names its owner.
 * False after answering.
 */
static bool check_ref(struct admin *a, kw_key_ref *ref, kw_scope *scope,
		      enum MHD_Result *ret)
{
	kw_status st = kw_backend_scope(a->g->ctx, ref->backend, scope);

	if (st != KW_OK) {
		*ret = lib_error(a->c, op_names[a->r.op], st);
		return false;
	}
	if (!ref->owner && (*scope == KW_SCOPE_USER || *scope == KW_SCOPE_ORG)) {
		*ret = kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				      "missing owner (backend \"%s\" holds %s "
				      "keys: name the %s)", ref->backend,
				      kw_scope_str(*scope),
				      kw_scope_str(*scope));
		return false;
	}
	return true;
}

/* {"done":"stored","backend":...,"scope":...,"owner":...,"provider":...} */
static enum MHD_Result done(struct admin *a, unsigned code, const char *what,
			    const kw_key_ref *ref, kw_scope scope,
			    const char *masked)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s}", "done", what,
			      "backend", ref->backend, "scope",
			      kw_scope_str(scope), "owner",
			      str_or_null(ref->owner), "provider",
			      ref->provider);

	if (o && masked)
		json_object_set_new(o, "masked", json_string(masked));
	return kwd_send_json(a->c, code, o, NULL, NULL);
}

/* A name safe to repeat in an error: a short word of letters, digits, '_'
 * and '-' (a key sent under a wrong field name is not). */
static bool plain_word(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz"
			  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");

	return n > 0 && n <= 32 && s[n] == '\0';
}

/*
 * The body as an object of strings with only the names allowed; NULL after
 * answering 400.  Unlike the main socket's, an error repeats nothing of
 * the body: it may hold a key.
 */
static json_t *admin_body(struct admin *a, const char *const *names,
			  enum MHD_Result *ret)
{
	json_error_t e;
	json_t *j, *v;
	const char *k;

	kwd_json_nomem = false;
	j = json_loadb(a->body, a->len, JSON_REJECT_DUPLICATES, &e);
	/* jansson can give a string cut short after a failed allocation. */
	if (kwd_json_nomem) {
		json_decref(j);
		*ret = kwd_send_coded(a->c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				      "error", "nomem",
				      "out of memory");
		explicit_bzero(&e, sizeof(e));
		return NULL;
	}
	if (!j) {
		*ret = kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				      "invalid JSON at line %d column %d",
				      e.line, e.column);
		explicit_bzero(&e, sizeof(e));
		return NULL;
	}
	if (!json_is_object(j)) {
		*ret = kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				      "the body must be a JSON object");
		goto fail;
	}
	json_object_foreach(j, k, v) {
		const char *const *n;

		for (n = names; *n && strcmp(k, *n) != 0; n++)
			;
		if (!*n) {
			if (plain_word(k))
				*ret = kwd_send_error(a->c,
						      MHD_HTTP_BAD_REQUEST,
						      "invalid",
						      "unknown field \"%s\"", k);
			else
				*ret = kwd_send_error(a->c,
						      MHD_HTTP_BAD_REQUEST,
						      "invalid",
						      "an unknown field");
			goto fail;
		}
		if (!json_is_string(v) && !json_is_null(v)) {
			*ret = kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST,
					      "invalid",
					      "field \"%s\" must be a string", k);
			goto fail;
		}
	}
	return j;
fail:
	json_decref(j);
	return NULL;
}

/* put (POST /v1/keys) and rotate (POST /v1/keys/B/P/rotate). */
static enum MHD_Result do_put(struct admin *a)
{
	static const char *const put_fields[] = { "backend", "scope", "owner",
						  "provider", "name", "key",
						  NULL };
	static const char *const rotate_fields[] = { "name", "key", NULL };
	static const char *const rotate_args[] = { "scope", "owner", NULL };
	static const char *const no_args[] = { NULL };
	bool rotate = a->r.op == OP_ROTATE;
	kw_key_ref ref = KW_KEY_REF_INIT;
	char masked[KW_MASK_SIZE] = "";
	enum MHD_Result ret = MHD_NO;
	const char *key;
	json_t *j, *k;
	kw_scope scope;
	size_t klen;
	kw_status st;

	if (!query_ok(a->c, rotate ? rotate_args : no_args, &ret))
		return ret;
	j = admin_body(a, rotate ? rotate_fields : put_fields, &ret);
	if (!j)
		return ret;
	if (rotate) {
		ref.backend = a->r.backend;
		ref.provider = a->r.provider;
		ref.owner = arg(a->c, "owner");
		if (!parse_scope(arg(a->c, "scope"), &ref.scope)) {
			ret = kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST,
					     "invalid", "scope must be user, "
					     "org or system");
			goto out;
		}
	} else {
		ref.backend = json_string_value(json_object_get(j, "backend"));
		ref.provider = json_string_value(json_object_get(j,
								 "provider"));
		ref.owner = json_string_value(json_object_get(j, "owner"));
		if (!parse_scope(json_string_value(json_object_get(j, "scope")),
				 &ref.scope)) {
			ret = kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST,
					     "invalid", "scope must be user, "
					     "org or system");
			goto out;
		}
		if (!ref.backend || !ref.provider) {
			ret = kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST,
					     "invalid", "fields \"backend\", "
					     "\"provider\" and \"key\" are "
					     "required");
			goto out;
		}
	}
	k = json_object_get(j, "key");
	key = json_string_value(k);
	klen = json_string_length(k);
	if (!key || klen == 0) {
		ret = kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				     "field \"key\" is required: the key to "
				     "store, as a string");
		goto out;
	}
	if (!check_ref(a, &ref, &scope, &ret))
		goto out;
	st = kw_key_put(a->g->ctx, &a->actor, &ref, key, klen,
			json_string_value(json_object_get(j, "name")),
			rotate ? KW_PUT_ROTATE : KW_PUT_CREATE);
	if (st != KW_OK) {
		ret = lib_error(a->c, op_names[a->r.op], st);
		goto out;
	}
	kw_mask(key, klen, masked, sizeof(masked));
	ret = done(a, rotate ? MHD_HTTP_OK : MHD_HTTP_CREATED,
		   rotate ? "rotated" : "stored", &ref, scope, masked);
out:
	explicit_bzero(masked, sizeof(masked));
	/* Its strings are wiped as they are freed. */
	json_decref(j);
	return ret;
}

/* enable, disable, rm. */
static enum MHD_Result do_state(struct admin *a)
{
	static const char *const args[] = { "scope", "owner", NULL };
	kw_key_ref ref = KW_KEY_REF_INIT;
	enum MHD_Result ret;
	const char *what;
	kw_scope scope;
	kw_status st;

	if (!query_ok(a->c, args, &ret))
		return ret;
	if (!blank(a->body, a->len) &&
	    !(a->len == 2 && memcmp(a->body, "{}", 2) == 0))
		return kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				      "%s takes no body: the key is named by "
				      "the path and the query",
				      op_names[a->r.op]);
	ref.backend = a->r.backend;
	ref.provider = a->r.provider;
	ref.owner = arg(a->c, "owner");
	if (!parse_scope(arg(a->c, "scope"), &ref.scope))
		return kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				      "scope must be user, org or system");
	if (!check_ref(a, &ref, &scope, &ret))
		return ret;
	switch (a->r.op) {
	case OP_RM:
		st = kw_key_delete(a->g->ctx, &a->actor, &ref);
		what = "deleted";
		break;
	case OP_ENABLE:
		st = kw_key_set_active(a->g->ctx, &a->actor, &ref, 1);
		what = "enabled";
		break;
	default:
		st = kw_key_set_active(a->g->ctx, &a->actor, &ref, 0);
		what = "disabled";
		break;
	}
	if (st != KW_OK)
		return lib_error(a->c, op_names[a->r.op], st);
	return done(a, MHD_HTTP_OK, what, &ref, scope, NULL);
}

/* "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SSZ" or seconds since the epoch. */
static bool parse_when(const char *s, int64_t *t)
{
	struct tm tm = { 0 }, back;
	char *end;
	int n = 0;
	time_t tt;

	if (strspn(s, "0123456789") == strlen(s) && *s) {
		*t = (int64_t)strtoll(s, &end, 10);
		return true;
	}
	if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &n) != 3 || n != 10)
		return false;
	if (s[10] != '\0' &&
	    (sscanf(s + 10, "T%2d:%2d:%2dZ%n", &tm.tm_hour, &tm.tm_min,
		    &tm.tm_sec, &n) != 3 || n != 10))
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	back = tm;
	tt = timegm(&tm);
	if (tt == (time_t)-1 || tm.tm_mday != back.tm_mday ||
	    tm.tm_mon != back.tm_mon || tm.tm_hour != back.tm_hour ||
	    tm.tm_min != back.tm_min || tm.tm_sec != back.tm_sec)
		return false;
	*t = (int64_t)tt;
	return true;
}

struct usage_rows {
	json_t *rows;
	bool truncated;
	bool nomem;
};

static kw_status usage_one(void *arg, const kw_usage_row *row)
{
	struct usage_rows *u = arg;
	json_t *o;

	if (json_array_size(u->rows) >= USAGE_MAX_ROWS) {
		u->truncated = true;
		return KW_ERR_INTERNAL; /* stops the walk; not an error */
	}
	o = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
		      "time", json_time(row->time),
		      "chain", str_or_null(row->chain),
		      "backend", str_or_null(row->backend),
		      "provider", str_or_null(row->provider),
		      "user", str_or_null(row->user),
		      "org", str_or_null(row->org),
		      "outcome", str_or_null(row->outcome));
	if (!o || json_array_append_new(u->rows, o) != 0) {
		u->nomem = true;
		return KW_ERR_NOMEM;
	}
	return KW_OK;
}

static enum MHD_Result do_usage(struct admin *a)
{
	static const char *const args[] = { "since", "until", "user", "org",
					     "backend", NULL };
	kw_usage_filter f = KW_USAGE_FILTER_INIT;
	struct usage_rows u = { 0 };
	const char *since = arg(a->c, "since"), *until = arg(a->c, "until");
	int64_t now = (int64_t)time(NULL);
	enum MHD_Result ret;
	kw_scope scope;
	kw_status st;

	if (!query_ok(a->c, args, &ret))
		return ret;
	f.since = now - now % 86400;
	if ((since && !parse_when(since, &f.since)) ||
	    (until && !parse_when(until, &f.until)))
		return kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				      "since and until are dates "
				      "(YYYY-MM-DD), UTC times "
				      "(YYYY-MM-DDTHH:MM:SSZ) or seconds "
				      "since 1970");
	if (until && f.until <= f.since)
		return kwd_send_error(a->c, MHD_HTTP_BAD_REQUEST, "invalid",
				      "until is not after since%s",
				      since ? "" : " (the start of today, UTC)");
	f.user = arg(a->c, "user");
	f.org = arg(a->c, "org");
	f.backend = arg(a->c, "backend");
	/* A typo would answer nothing, as if nothing had been used. */
	if (f.backend &&
	    (st = kw_backend_scope(a->g->ctx, f.backend, &scope)) != KW_OK)
		return lib_error(a->c, "usage", st);
	u.rows = json_array();
	if (!u.rows)
		return MHD_NO;
	st = kw_usage(a->g->ctx, &a->actor, &f, usage_one, &u);
	if (u.nomem) {
		json_decref(u.rows);
		return kwd_send_coded(a->c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				      "error", "nomem",
				      "out of memory");
	}
	if (st != KW_OK && !u.truncated) {
		json_decref(u.rows);
		return lib_error(a->c, "usage", st);
	}
	return kwd_send_json(a->c, MHD_HTTP_OK,
			     json_pack("{s:o, s:o, s:b}", "since",
				       json_time(f.since), "rows", u.rows,
				       "truncated", u.truncated),
			     NULL, NULL);
}

/* The caller's name as the actor: a user name, else "uid N". */
static void actor_name(struct kwd_caller *cl)
{
	if (strspn(cl->name, "0123456789") == strlen(cl->name))
		snprintf(cl->name, sizeof(cl->name), "uid %u",
			 (unsigned)cl->uid);
}

enum MHD_Result kwd_admin_answer(struct MHD_Connection *c, const char *url,
				 const char *method, const char *body,
				 size_t len)
{
	struct admin a = { .c = c, .body = body ? body : "", .len = len };
	struct kwd_caller cl;
	enum MHD_Result ret;

	a.g = kwd_gen_get();
	find_route(url, method, &a.r);
	if (!kwd_who(c, true, &cl)) {
		ret = kwd_send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				     "cannot tell who is asking");
		goto out;
	}
	actor_name(&cl);
	if (!is_admin(&a.g->conf, &cl)) {
		const char *reason = "not root, keywayd's user or in "
				     "daemon.admin_group";
		struct kwd_refusal r = { 0 };
		char key[KWD_KEY_MAX], line[256];

		/* A refusal takes from the caller's rate, as on the main
		 * socket; an admin's requests do not. */
		snprintf(key, sizeof(key), "uid %u", (unsigned)cl.uid);
		if (!kwd_rate_take(key, a.g->conf.rate_limit)) {
			ret = kwd_send_error(c, MHD_HTTP_TOO_MANY_REQUESTS,
					     "limited", "uid %u is over "
					     "daemon.rate_limit (%u requests a "
					     "second)", (unsigned)cl.uid,
					     a.g->conf.rate_limit);
			goto out;
		}
		snprintf(line, sizeof(line), "audit: refused %s to %s: %s",
			 op_names[a.r.op], cl.name, reason);
		r.op = op_names[a.r.op];
		r.caller = cl.name;
		r.uid = cl.uid;
		r.pid = cl.pid;
		r.reason = reason;
		r.line = line;
		kwd_refused(a.g, key, &r);
		ret = kwd_send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				     "uid %u (%s) may not use the admin socket "
				     "(%s)", (unsigned)cl.uid, cl.name, reason);
		goto out;
	}
	if (a.r.op == OP_NONE) {
		ret = kwd_send_error(c, MHD_HTTP_NOT_FOUND, "invalid",
				     "no endpoint %.64s on the admin socket "
				     "(expected /v1/keys, /v1/keys/BACKEND/"
				     "PROVIDER[/rotate|/enable|/disable], "
				     "/v1/usage or /v1/health)", url);
		goto out;
	}
	if (strcmp(method, a.r.method) != 0) {
		ret = kwd_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid",
				     "%.16s is not allowed on %.64s", method,
				     url);
		goto out;
	}
	a.actor = (kw_actor)KW_ACTOR_INIT;
	a.actor.user = cl.name;
	a.actor.role = KW_ROLE_SYSADMIN;
	switch (a.r.op) {
	case OP_LS:
		ret = do_list(&a, false);
		break;
	case OP_GET:
		ret = do_list(&a, true);
		break;
	case OP_PUT:
	case OP_ROTATE:
		ret = do_put(&a);
		break;
	case OP_ENABLE:
	case OP_DISABLE:
	case OP_RM:
		ret = do_state(&a);
		break;
	case OP_USAGE:
		ret = do_usage(&a);
		break;
	default:
		ret = kwd_send_json(c, MHD_HTTP_OK,
				    json_pack("{s:s, s:s}", "status", "ok",
					      "version", kw_version()),
				    NULL, NULL);
		break;
	}
out:
	kwd_gen_put(a.g);
	return ret;
}
