/*
 * keywayd.c - the resolver daemon: one process holds the master key, opens
 * the stores and counts quotas; applications ask it over a Unix socket in
 * HTTP with JSON bodies (docs/daemon-protocol.md), and the kernel tells it
 * who is asking (SO_PEERCRED).
 *
 * Threads: libmicrohttpd's pool answers requests, all through one kw_ctx.
 * The main thread only waits for signals: SIGHUP opens the configuration
 * anew and swaps it in (requests and leases keep the generation they
 * started with until they let go), SIGTERM and SIGINT stop accepting,
 * let the requests under way finish and exit.  Leases past their time are
 * swept once a second.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "keywayd.h"

#define DEFAULT_SOCKET "/run/keyway/keyway.sock"
#define DEFAULT_MAX_BODY (64 * 1024)
#define DEFAULT_THREADS 4
#define DEFAULT_MAX_CONN 256
#define DEFAULT_TIMEOUT 10
#define DRAIN_SECONDS 10
#define MAX_GROUPS 256

static const char *config_path;
static size_t max_body = DEFAULT_MAX_BODY;

/* ---- logging: stderr, one line each, never a secret ---- */

void kwd_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "keywayd: %s\n", line);
}

/* ---- generations of configuration ---- */

static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kwd_gen *current;

struct kwd_gen *kwd_gen_get(void)
{
	struct kwd_gen *g;

	pthread_mutex_lock(&gen_lock);
	g = current;
	g->refs++;
	pthread_mutex_unlock(&gen_lock);
	return g;
}

static void gen_ref(struct kwd_gen *g)
{
	pthread_mutex_lock(&gen_lock);
	g->refs++;
	pthread_mutex_unlock(&gen_lock);
}

static void gen_free(struct kwd_gen *g)
{
	kw_close(g->ctx);
	kwd_conf_free(&g->conf);
	free(g);
}

void kwd_gen_put(struct kwd_gen *g)
{
	bool last;

	pthread_mutex_lock(&gen_lock);
	last = --g->refs == 0 && g->retired;
	pthread_mutex_unlock(&gen_lock);
	if (last)
		gen_free(g);
}

static struct kwd_gen *gen_open(void)
{
	struct kwd_gen *g = calloc(1, sizeof(*g));
	char err[512];
	kw_status st;

	if (!g) {
		kwd_log("out of memory");
		return NULL;
	}
	if (!kwd_conf_load(config_path, &g->conf, err, sizeof(err))) {
		kwd_log("%s", err);
		free(g);
		return NULL;
	}
	st = kw_open(&g->ctx, config_path);
	if (st != KW_OK) {
		kwd_log("%s", kw_last_error());
		kwd_conf_free(&g->conf);
		free(g);
		return NULL;
	}
	return g;
}

/* Swap g in; the one it replaces goes when its last user lets go. */
static void gen_install(struct kwd_gen *g)
{
	struct kwd_gen *old;
	bool last;

	pthread_mutex_lock(&gen_lock);
	old = current;
	g->refs = 1; /* current's own reference */
	current = g;
	last = false;
	if (old) {
		old->retired = true;
		last = --old->refs == 0;
	}
	pthread_mutex_unlock(&gen_lock);
	if (last)
		gen_free(old);
}

/* ---- responses ---- */

/* A buffer handed to MHD, wiped when MHD is done with it. */
struct wiped {
	size_t len;
	char data[];
};

static void wipe_free(void *p)
{
	struct wiped *w = (struct wiped *)((char *)p - offsetof(struct wiped, data));

	explicit_bzero(w->data, w->len);
	free(w);
}

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned code,
				struct wiped *w)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer_with_free_callback(w->len, w->data,
								wipe_free);
	if (!r) {
		wipe_free(w->data);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

/* j as one line of JSON; j is released. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code,
				 json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	struct wiped *w;
	size_t n;

	json_decref(j);
	if (!s)
		return MHD_NO;
	n = strlen(s);
	w = malloc(sizeof(*w) + n + 2);
	if (!w) {
		free(s);
		return MHD_NO;
	}
	memcpy(w->data, s, n);
	w->data[n] = '\n';
	w->data[n + 1] = '\0';
	w->len = n + 1;
	free(s);
	return send_buf(c, code, w);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code,
				  const char *status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code,
				  const char *status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return send_json(c, code, json_pack("{s:s, s:s}", "error", msg,
					     "status", status));
}

/* The HTTP status that tells a keyway status. */
static unsigned http_status(kw_status st)
{
	switch (st) {
	case KW_OK:
		return MHD_HTTP_OK;
	case KW_ERR_NOTFOUND:
		return MHD_HTTP_NOT_FOUND;
	case KW_ERR_DENIED:
		return MHD_HTTP_FORBIDDEN;
	case KW_ERR_UNAVAIL:
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	case KW_ERR_INVAL:
		return MHD_HTTP_BAD_REQUEST;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* The chain semantics' word: "found", "notfound", "denied", "unavail";
 * "invalid" for a bad request, "error" for every other error. */
static const char *status_word(kw_status st)
{
	switch (st) {
	case KW_OK:
		return "found";
	case KW_ERR_NOTFOUND:
	case KW_ERR_DENIED:
	case KW_ERR_UNAVAIL:
		return kw_status_str(st);
	case KW_ERR_INVAL:
		return "invalid";
	default:
		return "error";
	}
}

/* Append s to b as the inside of a JSON string. */
/* The bytes copied as they are into a JSON string: all but control
 * characters, DEL, '"' (0x22) and '\\' (0x5c). */
static const bool json_plain[256] = {
	[0x20 ... 0x21] = true, [0x23 ... 0x5b] = true, [0x5d ... 0x7e] = true,
	[0x80 ... 0xff] = true
};

static size_t json_escape(char *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i = 0;

	while (i < n) {
		size_t run = i;
		unsigned char ch;

		/* Runs of plain bytes (most strings are one) copied whole. */
		while (run < n && json_plain[(unsigned char)s[run]])
			run++;
		memcpy(b + o, s + i, run - i);
		o += run - i;
		i = run;
		if (i == n)
			break;
		ch = (unsigned char)s[i++];
		if (ch == '"' || ch == '\\') {
			b[o++] = '\\';
			b[o++] = (char)ch;
		} else {
			b[o++] = '\\';
			b[o++] = 'u';
			b[o++] = '0';
			b[o++] = '0';
			b[o++] = hex[ch >> 4];
			b[o++] = hex[ch & 15];
		}
	}
	return o;
}

/*
 * {"key":...,"backend":...,"lease":...} written straight into a buffer
 * that is wiped after sending: the key never passes through jansson, whose
 * strings are freed unwiped.
 */
static enum MHD_Result send_key(struct MHD_Connection *c, const kw_secret *s,
				const char *lease)
{
	const char *key = kw_secret_value(s), *be = kw_secret_backend(s);
	size_t klen = kw_secret_len(s), blen = strlen(be), o;
	struct wiped *w;

	w = malloc(sizeof(*w) + 64 + 6 * (klen + blen) + KWD_LEASE_ID_LEN);
	if (!w)
		return MHD_NO;
#define PUT(lit) (memcpy(w->data + o, lit, sizeof(lit) - 1), \
		  o += sizeof(lit) - 1)
	o = 0;
	PUT("{\"key\":\"");
	o += json_escape(w->data + o, key, klen);
	PUT("\",\"backend\":\"");
	o += json_escape(w->data + o, be, blen);
	PUT("\",\"lease\":\"");
	memcpy(w->data + o, lease, KWD_LEASE_ID_LEN);
	o += KWD_LEASE_ID_LEN;
	PUT("\"}\n");
#undef PUT
	w->len = o;
	return send_buf(c, MHD_HTTP_OK, w);
}

/* ---- the caller ---- */

/* How long a connection's caller's name and groups are trusted before
 * they are looked up again, in seconds. */
#define CALLER_TTL 60

/*
 * Who is at the other end of a connection.  The kernel's credentials
 * (SO_PEERCRED) are those of the process that connected and do not change
 * for the life of the connection, so they are read once; the name and
 * groups (daemon.clients needs them) are looked up when first needed and
 * again once they are CALLER_TTL seconds old, not for every request: the
 * lookups read /etc/passwd and /etc/group through NSS, which costs more
 * than a resolve.  A connection's requests are answered one at a time by
 * one thread, so this needs no lock.
 */
struct caller {
	bool have_cred;
	bool have_groups;
	time_t looked;		/* when name and groups were looked up */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[MAX_GROUPS];
	int ngroups;
	char name[64];
};

static time_t mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void connection_notify(void *cls, struct MHD_Connection *c,
			      void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = calloc(1, sizeof(struct caller));
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		free(*socket_context);
		*socket_context = NULL;
	}
}

/* Who is at the other end of c; their name and groups only with
 * groups (daemon.clients needs them).  NULL when the kernel cannot say. */
static const struct caller *who(struct MHD_Connection *c, bool groups)
{
	const union MHD_ConnectionInfo *ci;
	struct caller *cl;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct passwd pw, *pwp = NULL;
	char buf[4096];
	time_t t;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	cl = ci ? ci->socket_context : NULL;
	if (!cl)
		return NULL;
	if (!cl->have_cred) {
		ci = MHD_get_connection_info(c,
					     MHD_CONNECTION_INFO_CONNECTION_FD);
		if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED,
				      &cred, &len) != 0)
			return NULL;
		cl->pid = cred.pid;
		cl->uid = cred.uid;
		cl->gid = cred.gid;
		cl->have_cred = true;
	}
	if (!groups) {
		if (!cl->have_groups) {
			cl->groups[0] = cl->gid;
			cl->ngroups = 1;
			snprintf(cl->name, sizeof(cl->name), "%u",
				 (unsigned)cl->uid);
		}
		return cl;
	}
	t = mono_seconds();
	if (cl->have_groups && t - cl->looked < CALLER_TTL)
		return cl;
	cl->groups[0] = cl->gid;
	cl->ngroups = 1;
	snprintf(cl->name, sizeof(cl->name), "%u", (unsigned)cl->uid);
	if (getpwuid_r(cl->uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp) {
		int n = MAX_GROUPS;

		snprintf(cl->name, sizeof(cl->name), "%s", pw.pw_name);
		if (getgrouplist(pw.pw_name, cl->gid, cl->groups, &n) >= 0)
			cl->ngroups = n;
	}
	cl->have_groups = true;
	cl->looked = t;
	return cl;
}

/* ---- requests ---- */

struct request {
	char *body;
	size_t len;
	bool too_big;
	bool answered;
};

static const char *const request_fields[] = { "provider", "user", "org",
					      "chain", NULL };

#define MAX_FIELDS 4

/* The fields of a request's body: the value of each name allowed, NULL
 * when left out or null.  They point into j when jansson read the body,
 * else into the body itself. */
struct fields {
	const char *const *names;
	const char *v[MAX_FIELDS];
	json_t *j;
};

static bool known(const char *k, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(k, *names) == 0)
			return true;
	return false;
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

/*
 * Read a body of the shape clients send, {"name":"value", ...}: each name
 * one of those allowed and given once, each value null or a string of
 * printable ASCII without escapes.  The strings are ended in place.  False,
 * with the body untouched, for anything else, which jansson then reads
 * (and words the error of, when there is one): both accept and refuse the
 * same bodies, this one only the common ones, faster.
 */
static bool parse_plain(struct request *rq, struct fields *f)
{
	const char *p = rq->body, *e = p + rq->len;
	size_t ends[MAX_FIELDS], nends = 0;
	unsigned seen = 0;

	if (!p)
		return false;
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
				return false;
			k = p;
			while (p < e && plain_char(*p))
				p++;
			if (p == e || *p != '"')
				return false;
			for (i = 0; f->names[i]; i++)
				if (strlen(f->names[i]) == (size_t)(p - k) &&
				    memcmp(f->names[i], k, (size_t)(p - k)) == 0)
					break;
			if (!f->names[i] || i >= MAX_FIELDS || seen & 1u << i)
				return false;
			seen |= 1u << i;
			p = skip_space(p + 1, e);
			if (p == e || *p++ != ':')
				return false;
			p = skip_space(p, e);
			if (e - p >= 4 && memcmp(p, "null", 4) == 0) {
				p += 4;
			} else {
				if (p == e || *p++ != '"')
					return false;
				f->v[i] = p;
				while (p < e && plain_char(*p))
					p++;
				if (p == e || *p != '"')
					return false;
				ends[nends++] = (size_t)(p - rq->body);
				p++;
			}
			p = skip_space(p, e);
			if (p == e)
				return false;
			if (*p == '}') {
				p++;
				break;
			}
			if (*p++ != ',')
				return false;
			p = skip_space(p, e);
		}
	}
	if (skip_space(p, e) != e)
		return false;
	for (size_t i = 0; i < nends; i++)
		rq->body[ends[i]] = '\0';
	return true;
}

/* Parse the body as an object of strings with only the names allowed into
 * f (release it with fields_free()); false after answering 400. */
static bool parse_body(struct MHD_Connection *c, struct request *rq,
		       const char *const *names, struct fields *f,
		       enum MHD_Result *ret)
{
	json_error_t e;
	json_t *j, *v;
	const char *k;

	memset(f, 0, sizeof(*f));
	f->names = names;
	if (parse_plain(rq, f))
		return true;
	memset(f->v, 0, sizeof(f->v));
	j = json_loadb(rq->body ? rq->body : "", rq->len,
		       JSON_REJECT_DUPLICATES, &e);
	if (!j) {
		*ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
				  "invalid JSON at line %d column %d: %s",
				  e.line, e.column, e.text);
		return false;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		*ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
				  "the body must be a JSON object");
		return false;
	}
	json_object_foreach(j, k, v) {
		if (!known(k, names)) {
			*ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
					  "unknown field \"%.64s\"", k);
			json_decref(j);
			return false;
		}
		if (!json_is_string(v) && !json_is_null(v)) {
			*ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
					  "field \"%s\" must be a string", k);
			json_decref(j);
			return false;
		}
	}
	f->j = j;
	for (size_t i = 0; names[i] && i < MAX_FIELDS; i++)
		f->v[i] = json_string_value(json_object_get(j, names[i]));
	return true;
}

static void fields_free(struct fields *f)
{
	json_decref(f->j);
	f->j = NULL;
}

static const char *field(const struct fields *f, const char *k)
{
	for (size_t i = 0; f->names[i] && i < MAX_FIELDS; i++)
		if (strcmp(f->names[i], k) == 0)
			return f->v[i];
	return NULL;
}

/* The request in f, checked against what the caller may use; false after
 * answering. */
static bool admit(struct MHD_Connection *c, const char *what,
		  const struct fields *f,
		  struct kwd_gen *g, kw_request *req, uid_t *uid,
		  enum MHD_Result *ret)
{
	const struct caller *cl;

	kw_request_init(req);
	req->provider = field(f, "provider");
	req->user = field(f, "user");
	req->org = field(f, "org");
	req->chain = field(f, "chain");
	if (!req->provider) {
		*ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
				  "field \"provider\" is required");
		return false;
	}
	cl = who(c, g->conf.have_clients);
	if (!cl) {
		*ret = send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				  "cannot tell who is asking");
		return false;
	}
	if (!kwd_conf_allows(&g->conf, cl->uid, cl->groups, cl->ngroups,
			     req->chain ? req->chain : "default")) {
		char name[sizeof(cl->name)];

		snprintf(name, sizeof(name), "%s", cl->name);
		/* Named in the log even without daemon.clients. */
		if (!g->conf.have_clients) {
			struct passwd pw, *pwp = NULL;
			char buf[4096];

			if (getpwuid_r(cl->uid, &pw, buf, sizeof(buf), &pwp) ==
			    0 && pwp)
				snprintf(name, sizeof(name), "%s", pw.pw_name);
		}
		kwd_log("audit: refused %s of chain \"%s\" to uid %u (%s) pid %d: "
			"not allowed by daemon.clients in %s", what,
			req->chain ? req->chain : "default", (unsigned)cl->uid,
			name, (int)cl->pid, config_path);
		*ret = send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				  "uid %u (%s) may not use chain \"%s\"",
				  (unsigned)cl->uid, name,
				  req->chain ? req->chain : "default");
		return false;
	}
	if (!kwd_rate_take(cl->uid, g->conf.rate_limit)) {
		*ret = send_error(c, MHD_HTTP_TOO_MANY_REQUESTS, "limited",
				  "uid %u is over daemon.rate_limit (%u "
				  "requests a second)", (unsigned)cl->uid,
				  g->conf.rate_limit);
		return false;
	}
	*uid = cl->uid;
	return true;
}

static enum MHD_Result do_resolve(struct MHD_Connection *c,
				  struct request *rq)
{
	enum MHD_Result ret = MHD_NO;
	struct kwd_gen *g = kwd_gen_get();
	char lease[KWD_LEASE_ID_LEN + 1];
	kw_secret *s = NULL;
	kw_request req;
	uid_t uid;
	kw_status st;
	struct fields f = { 0 };

	if (!parse_body(c, rq, request_fields, &f, &ret))
		goto out;
	if (!admit(c, "resolve", &f, g, &req, &uid, &ret))
		goto out;
	st = kw_resolve(g->ctx, &req, &s);
	if (st != KW_OK) {
		if (http_status(st) >= 500)
			kwd_log("resolve: %s", kw_last_error());
		ret = send_error(c, http_status(st), status_word(st), "%s",
				 kw_last_error());
		goto out;
	}
	if (!kwd_lease_add(s, g, uid, g->conf.lease_ttl, lease)) {
		if (kw_secret_report(s, KW_UNUSED) != KW_OK)
			kwd_log("resolve: %s", kw_last_error());
		kw_secret_free(s);
		ret = send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "error",
				 "out of memory");
		goto out;
	}
	/* The lease holds s and its own reference to g. */
	gen_ref(g);
	ret = send_key(c, s, lease);
out:
	fields_free(&f);
	kwd_gen_put(g);
	return ret;
}

static enum MHD_Result do_explain(struct MHD_Connection *c,
				  struct request *rq)
{
	enum MHD_Result ret = MHD_NO;
	struct kwd_gen *g = kwd_gen_get();
	kw_trace *t = NULL;
	struct fields f = { 0 };
	json_t *steps, *out;
	kw_request req;
	uid_t uid;
	kw_status st, res;

	if (!parse_body(c, rq, request_fields, &f, &ret))
		goto out;
	if (!admit(c, "explain", &f, g, &req, &uid, &ret))
		goto out;
	st = kw_explain(g->ctx, &req, &t);
	if (st != KW_OK) {
		ret = send_error(c, http_status(st), status_word(st), "%s",
				 kw_last_error());
		goto out;
	}
	steps = json_array();
	for (size_t i = 0; i < kw_trace_len(t); i++) {
		const kw_trace_step *sp = kw_trace_get(t, i);

		json_array_append_new(steps, json_pack(
			"{s:I, s:s, s:s, s:s, s:s, s:I, s:s, s:s}",
			"index", (json_int_t)sp->index,
			"backend", sp->backend, "module", sp->module,
			"status", status_word(sp->status),
			"action", kw_action_str(sp->action),
			"skip", (json_int_t)sp->skip, "detail", sp->detail,
			"masked", sp->masked));
	}
	res = kw_trace_result(t);
	out = json_pack("{s:s, s:s, s:s?, s:s, s:o}",
			"chain", kw_trace_chain(t),
			"result", status_word(res),
			"backend", kw_trace_backend(t),
			"summary", kw_trace_summary(t), "steps", steps);
	ret = send_json(c, MHD_HTTP_OK, out);
out:
	kw_trace_free(t);
	fields_free(&f);
	kwd_gen_put(g);
	return ret;
}

static enum MHD_Result do_report(struct MHD_Connection *c,
				 struct request *rq)
{
	static const char *const names[] = { "lease", "outcome", NULL };
	enum MHD_Result ret = MHD_NO;
	const char *id, *oc;
	kw_outcome outcome;
	const struct caller *cl;
	kw_status st;
	struct fields f = { 0 };

	if (!parse_body(c, rq, names, &f, &ret))
		return ret;
	id = field(&f, "lease");
	oc = field(&f, "outcome");
	if (!id || !oc) {
		ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
				 "fields \"lease\" and \"outcome\" are required");
		goto out;
	}
	if (strcmp(oc, "used") == 0) {
		outcome = KW_USED;
	} else if (strcmp(oc, "unused") == 0) {
		outcome = KW_UNUSED;
	} else {
		ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
				 "outcome must be \"used\" or \"unused\"");
		goto out;
	}
	cl = who(c, false);
	if (!cl) {
		ret = send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				 "cannot tell who is asking");
		goto out;
	}
	switch (kwd_lease_report(id, cl->uid, outcome, &st)) {
	case KWD_REPORT_OK:
		ret = send_json(c, MHD_HTTP_OK,
				json_pack("{s:s, s:s}", "lease", id,
					  "outcome", oc));
		break;
	case KWD_REPORT_UNKNOWN:
		ret = send_error(c, MHD_HTTP_NOT_FOUND, "notfound",
				 "no lease \"%.40s\"", id);
		break;
	case KWD_REPORT_GONE:
		ret = send_error(c, MHD_HTTP_CONFLICT, "conflict",
				 "lease \"%.40s\" was already reported, or "
				 "expired and counted as used", id);
		break;
	case KWD_REPORT_FAILED:
		kwd_log("report: %s", kw_last_error());
		ret = send_error(c, http_status(st), status_word(st), "%s",
				 kw_last_error());
		break;
	}
out:
	fields_free(&f);
	return ret;
}

static enum MHD_Result do_health(struct MHD_Connection *c)
{
	return send_json(c, MHD_HTTP_OK,
			 json_pack("{s:s, s:s, s:I}", "status", "ok",
				   "version", kw_version(), "leases",
				   (json_int_t)kwd_lease_count()));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct request *rq = *con_cls;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

	if (!rq) {
		const char *cl;

		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > max_body) {
			rq->answered = true;
			return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
					  "invalid",
					  "the body is larger than %zu bytes",
					  max_body);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rq->answered && !rq->too_big) {
			if (rq->len + *upload_size > max_body) {
				rq->too_big = true;
			} else {
				char *nb = realloc(rq->body,
						   rq->len + *upload_size);

				if (!nb)
					return MHD_NO;
				memcpy(nb + rq->len, upload, *upload_size);
				rq->body = nb;
				rq->len += *upload_size;
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->answered)
		return MHD_YES;
	rq->answered = true;
	if (rq->too_big)
		return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid",
				  "the body is larger than %zu bytes", max_body);

	if (strcmp(url, "/v1/health") == 0) {
		if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
			goto method;
		return do_health(c);
	}
	if (strcmp(url, "/v1/resolve") == 0) {
		if (!post)
			goto method;
		return do_resolve(c, rq);
	}
	if (strcmp(url, "/v1/explain") == 0) {
		if (!post)
			goto method;
		return do_explain(c, rq);
	}
	if (strcmp(url, "/v1/report") == 0) {
		if (!post)
			goto method;
		return do_report(c, rq);
	}
	return send_error(c, MHD_HTTP_NOT_FOUND, "invalid",
			  "no endpoint %.64s (expected /v1/resolve, "
			  "/v1/report, /v1/explain or /v1/health)", url);
method:
	return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid",
			  "%.16s is not allowed on %.64s", method, url);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *con_cls;

	if (!rq)
		return;
	if (rq->body)
		explicit_bzero(rq->body, rq->len);
	free(rq->body);
	free(rq);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	kwd_log("http: %s", line);
}

/* ---- the socket ---- */

static int listen_on(const char *path, const struct kwd_conf *dc)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		kwd_log("socket %s: the path is longer than %zu bytes; choose "
			"a shorter one", path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			kwd_log("socket %s: exists and is not a socket; remove "
				"it or choose another --socket", path);
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		kwd_log("socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r != 0) {
		kwd_log("socket %s: cannot bind: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (dc->socket_gid != (gid_t)-1 && chown(path, (uid_t)-1,
						 dc->socket_gid) != 0) {
		kwd_log("socket %s: cannot set its group (daemon.socket_group): "
			"%s", path, strerror(errno));
		goto fail;
	}
	if (chmod(path, dc->socket_mode) != 0) {
		kwd_log("socket %s: cannot set its mode: %s", path,
			strerror(errno));
		goto fail;
	}
	if (listen(fd, 128) != 0) {
		kwd_log("socket %s: cannot listen: %s", path, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	unlink(path);
	close(fd);
	return -1;
}

/* ---- main ---- */

static void print_problem(void *arg, const char *line)
{
	fprintf(stderr, "%s\n", line);
}

/* --check: the daemon section, then what `keyway check` checks. */
static int check_config(void)
{
	struct kwd_conf dc;
	char err[512];
	bool ok = true;

	if (!kwd_conf_load(config_path, &dc, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		ok = false;
	}
	kwd_conf_free(&dc);
	if (kw_check(config_path, print_problem, NULL) != KW_OK)
		ok = false;
	return ok ? 0 : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: keywayd -c CONFIG [--socket PATH] [--threads N]\n"
		"               [--max-connections N] [--timeout SECONDS]\n"
		"               [--max-body BYTES]\n"
		"       keywayd -c CONFIG --check\n");
}

static bool number(const char *opt, const char *s, unsigned long lo,
		   unsigned long hi, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno || !*s || *end || *out < lo || *out > hi) {
		fprintf(stderr, "keywayd: %s %s: expected a number from %lu "
			"to %lu\n", opt, s, lo, hi);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 't' },
		{ "max-connections", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "max-body", required_argument, NULL, 'b' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	unsigned long threads = DEFAULT_THREADS, max_conn = DEFAULT_MAX_CONN;
	unsigned long timeout = DEFAULT_TIMEOUT, v;
	const char *sock_opt = NULL, *sock;
	bool check = false;
	struct MHD_Daemon *d;
	struct kwd_gen *g;
	sigset_t sigs;
	int opt, fd;
	char *sock_path;

	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			sock_opt = optarg;
			break;
		case 't':
			if (!number("--threads", optarg, 1, 256, &threads))
				return 2;
			break;
		case 'm':
			if (!number("--max-connections", optarg, 1, 65536,
				    &max_conn))
				return 2;
			break;
		case 'T':
			if (!number("--timeout", optarg, 1, 3600, &timeout))
				return 2;
			break;
		case 'b':
			if (!number("--max-body", optarg, 64, 1 << 24, &v))
				return 2;
			max_body = v;
			break;
		case 'k':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !config_path) {
		usage(stderr);
		return 2;
	}

	if (check)
		return check_config();

	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	/* Every thread started from here on leaves these to sigwait. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	g = gen_open();
	if (!g)
		return 1;
	gen_install(g);
	sock = sock_opt ? sock_opt :
	       g->conf.socket ? g->conf.socket : DEFAULT_SOCKET;
	sock_path = strdup(sock);
	if (!sock_path)
		return 1;
	fd = listen_on(sock_path, &g->conf);
	if (fd < 0)
		return 1;

	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			     MHD_USE_ITC | MHD_USE_ERROR_LOG,
			     0, NULL, NULL, handle, NULL,
			     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
			     MHD_OPTION_LISTEN_SOCKET, fd,
			     MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conn,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout,
			     MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
			     MHD_OPTION_NOTIFY_CONNECTION, connection_notify,
			     NULL,
			     MHD_OPTION_END);
	if (!d) {
		kwd_log("cannot start serving on %s", sock_path);
		unlink(sock_path);
		return 1;
	}
	kwd_log("serving %s on %s (%lu threads)", config_path, sock_path,
		threads);

	for (;;) {
		struct timespec tick = { 1, 0 };
		int sig = sigtimedwait(&sigs, NULL, &tick);

		kwd_lease_sweep();
		if (sig == SIGHUP) {
			g = gen_open();
			if (g) {
				gen_install(g);
				kwd_log("reloaded %s", config_path);
			} else {
				kwd_log("kept the configuration in use: %s "
					"could not be loaded", config_path);
			}
		} else if (sig == SIGTERM || sig == SIGINT) {
			break;
		}
	}

	kwd_log("stopping: finishing the requests under way");
	fd = MHD_quiesce_daemon(d);
	for (int i = 0; i < DRAIN_SECONDS * 10; i++) {
		const union MHD_DaemonInfo *di =
			MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

		if (!di || di->num_connections == 0)
			break;
		usleep(100000);
	}
	MHD_stop_daemon(d);
	if (fd >= 0)
		close(fd);
	unlink(sock_path);
	free(sock_path);
	kwd_lease_drain();
	pthread_mutex_lock(&gen_lock);
	g = current;
	current = NULL;
	pthread_mutex_unlock(&gen_lock);
	gen_free(g);
	kwd_rate_free();
	kwd_log("stopped");
	return 0;
}
