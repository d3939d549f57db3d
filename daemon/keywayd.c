/*
 * keywayd.c - the resolver daemon: one process holds the master key, opens
 * the stores and counts quotas; applications ask it over a Unix socket in
 * HTTP with JSON bodies (docs/daemon-protocol.md), and the kernel tells it
 * who is asking (SO_PEERCRED).
 *
 * Threads: libmicrohttpd gives each connection a thread of its own, and
 * every request goes through one kw_ctx.  A resolve that waits on a slow
 * backend (Vault timing out, a busy ledger) holds only its own
 * connection's thread: every other caller is answered meanwhile, and
 * --max-connections bounds the threads.  (A pool of threads each serving
 * many connections would stall all of a thread's connections behind its
 * slowest resolve.)  The main thread only waits for signals: SIGHUP opens the configuration
 * anew and swaps it in (requests and leases keep the generation they
 * started with until they let go), SIGTERM and SIGINT stop accepting,
 * let the requests under way finish and exit.  Leases past their time are
 * swept once a second, and the refusals held back in the second before
 * are written (refuse.c).
 *
 * The socket is keywayd's own, or the one systemd passed it (sd.c); the
 * service manager is told when keywayd is ready, reloads and stops.
 */
#define _GNU_SOURCE

#include "config.h"

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
#include "sd.h"
#include "parse.h"

#define DEFAULT_SOCKET "/run/keyway/keyway.sock"
#define DEFAULT_MAX_BODY (64 * 1024)
#define DEFAULT_MAX_CONN 256
/* --max-connections at most: below FD_SETSIZE (1024), with room for the
 * files and sockets keywayd holds besides (see serve()). */
#define MAX_CONN_LIMIT 900
/* Connections of the admin socket at most. */
#define ADMIN_MAX_CONN 64
#define DEFAULT_TIMEOUT 10
#define DRAIN_SECONDS 10
/* The stack of a connection's thread: the deepest request (a resolve
 * through Vault's TLS, NSS looking a caller up) uses a fraction of it. */
#define CONN_STACK_SIZE (512 * 1024)

static const char *config_path;
static size_t max_body = DEFAULT_MAX_BODY;

/* ---- logging: stderr, one line each, never a secret ---- */

/* Control characters a caller sent (a newline in a chain's name) are
 * blanked, so that no request can write a line of its own. */
void kwd_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (unsigned char *p = (unsigned char *)line; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = ' ';
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

/* Give back a reference taken with gen_ref() while the caller holds
 * another: g cannot go here. */
static void gen_unref(struct kwd_gen *g)
{
	pthread_mutex_lock(&gen_lock);
	g->refs--;
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
	/* libkeyway first: it says best what is wrong with the file as a
	 * whole (a syntax error, an @include missing). */
	st = kw_open(&g->ctx, config_path);
	if (st != KW_OK) {
		kwd_log("%s", kw_last_error());
		free(g);
		return NULL;
	}
	if (kwd_conf_load(config_path, &g->conf, err, sizeof(err)) !=
	    KWD_CONF_OK) {
		kwd_log("%s", err);
		kw_close(g->ctx);
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
				struct wiped *w, const char *hdr,
				const char *val)
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
	if (hdr)
		MHD_add_response_header(r, hdr, val);
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

/*
 * The answer when there is no memory for the one due: it needs none of
 * its own (MHD's response aside), so that the caller hears why rather
 * than a closed connection.
 */
static const char oom_body[] =
	"{\"error\":\"out of memory\",\"status\":\"error\"}\n";

static enum MHD_Result send_oom(struct MHD_Connection *c)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(sizeof(oom_body) - 1,
					    (void *)oom_body,
					    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, MHD_HTTP_INTERNAL_SERVER_ERROR, r);
	MHD_destroy_response(r);
	return ret;
}

/* j as one line of JSON; j is released. */
static enum MHD_Result send_json_hdr(struct MHD_Connection *c, unsigned code,
				     json_t *j, const char *hdr,
				     const char *val)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	struct wiped *w;
	size_t n;

	json_decref(j);
	if (!s)
		return send_oom(c);
	n = strlen(s);
	w = malloc(sizeof(*w) + n + 2);
	if (!w) {
		free(s);
		return send_oom(c);
	}
	memcpy(w->data, s, n);
	w->data[n] = '\n';
	w->data[n + 1] = '\0';
	w->len = n + 1;
	free(s);
	return send_buf(c, code, w, hdr, val);
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code,
				 json_t *j)
{
	return send_json_hdr(c, code, j, NULL, NULL);
}

/* {"error":MSG,"status":STATUS} and, when not NULL, "code":CODE. */
static enum MHD_Result vsend_error(struct MHD_Connection *c, unsigned http,
				   const char *status, const char *code,
				   const char *fmt, va_list ap)
	__attribute__((format(printf, 5, 0)));

static enum MHD_Result vsend_error(struct MHD_Connection *c, unsigned http,
				   const char *status, const char *code,
				   const char *fmt, va_list ap)
{
	char msg[1024];
	json_t *j;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	j = json_pack("{s:s, s:s, s:s*}", "error", msg, "status", status,
		      "code", code);
	/* jansson takes only UTF-8: a caller's bytes that are not, or a
	 * character cut in two by a length limit, are shown as '?'. */
	if (!j) {
		for (char *p = msg; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		j = json_pack("{s:s, s:s, s:s*}", "error", msg, "status",
			      status, "code", code);
	}
	return send_json(c, http, j);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned http,
				  const char *status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned http,
				  const char *status, const char *fmt, ...)
{
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	ret = vsend_error(c, http, status, NULL, fmt, ap);
	va_end(ap);
	return ret;
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

/* For the statuses status_word() calls "error": which one, so that a
 * client can tell them apart (docs/daemon-protocol.md, "Statuses"). */
const char *kwd_code_word(kw_status st)
{
	switch (st) {
	case KW_ERR_BACKEND:
		return "backend";
	case KW_ERR_CRYPTO:
		return "crypto";
	case KW_ERR_CONFIG:
		return "config";
	case KW_ERR_MODULE:
		return "module";
	case KW_ERR_NOMEM:
		return "nomem";
	case KW_ERR_IO:
		return "io";
	case KW_ERR_PERM:
		return "perm";
	case KW_ERR_EXISTS:
		return "exists";
	case KW_ERR_UNSUPPORTED:
		return "unsupported";
	case KW_ERR_INTERNAL:
		return "internal";
	default:
		return NULL;
	}
}

/* The answer to a call of the library's that failed with st. */
static enum MHD_Result send_status(struct MHD_Connection *c, kw_status st,
				   const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum MHD_Result send_status(struct MHD_Connection *c, kw_status st,
				   const char *fmt, ...)
{
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	ret = vsend_error(c, http_status(st), status_word(st), kwd_code_word(st),
			  fmt, ap);
	va_end(ap);
	return ret;
}

/* The bytes copied as they are into a JSON string: all but control
 * characters, DEL, '"' (0x22) and '\\' (0x5c). */
static const bool json_plain[256] = {
	[0x20 ... 0x21] = true, [0x23 ... 0x5b] = true, [0x5d ... 0x7e] = true,
	[0x80 ... 0xff] = true
};

/* Append s to b as the inside of a JSON string. */
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

/* Room for what write_key() writes for s: taken before the key is leased,
 * so that a key is never leased without an answer to carry it. */
static struct wiped *key_answer(const kw_secret *s)
{
	size_t klen = kw_secret_len(s), blen = strlen(kw_secret_backend(s));
	struct wiped *w = malloc(sizeof(struct wiped) + 64 +
				 6 * (klen + blen) + KWD_LEASE_ID_LEN);

	if (w)
		w->len = 0;
	return w;
}

/*
 * {"key":...,"backend":...,"lease":...} written straight into a buffer
 * that is wiped after sending: the key never passes through jansson, whose
 * strings are freed unwiped.  w is key_answer(s).  Written before the
 * key is leased: from then on the lease table may let go of s.
 */
static void write_key(struct wiped *w, const kw_secret *s, const char *lease)
{
	const char *key = kw_secret_value(s), *be = kw_secret_backend(s);
	size_t klen = kw_secret_len(s), blen = strlen(be), o;

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
}

/* ---- the caller ---- */

/* How long a connection's caller's name is trusted before it is looked
 * up again, in seconds. */
#define CALLER_TTL 60

/*
 * Who is at the other end of a Unix connection, kept with the connection
 * (its socket context).  The kernel's credentials (SO_PEERCRED) and groups
 * (SO_PEERGROUPS: the primary group and the supplementary groups the
 * process that connected held when it connected) do not change for the
 * life of the connection, so they are read once; daemon.clients and
 * daemon.admin_group go by them, never by /etc/group, so a process that
 * dropped its groups has none and one given a group (systemd's
 * SupplementaryGroups=) has it.  The name, only for logs and the audit
 * trail, is looked up through NSS when first needed and again once it is
 * CALLER_TTL seconds old, not for every request.  A connection's requests
 * are answered one at a time by its own thread, so this needs no lock.
 */
struct caller {
	bool have_cred;
	bool have_name;
	time_t looked;		/* when the name was looked up */
	struct kwd_caller k;
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

/* The groups the process at the other end of fd holds, after its primary
 * group gid, into k (at most KWD_MAX_GROUPS in all).  Without
 * SO_PEERGROUPS (Linux before 4.13) only the primary group. */
static void peer_groups(int fd, gid_t gid, struct kwd_caller *k)
{
	gid_t some[KWD_MAX_GROUPS], *g = some;
	socklen_t len = sizeof(some);
	size_t n;

	k->groups[0] = gid;
	k->ngroups = 1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) != 0) {
		if (errno != ERANGE || !(g = malloc(len)))
			return;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) != 0) {
			free(g);
			return;
		}
	}
	n = len / sizeof(gid_t);
	for (size_t i = 0; i < n && k->ngroups < KWD_MAX_GROUPS; i++)
		if (g[i] != gid)
			k->groups[k->ngroups++] = g[i];
	if (g != some)
		free(g);
}

/* Who is at the other end of c, with their groups; their name only with
 * name (else their uid as a number).  Kept with the connection, or in
 * spare when there was no memory to: read afresh then.  NULL when the
 * kernel cannot say. */
static const struct kwd_caller *who(struct MHD_Connection *c, bool name,
				    struct caller *spare)
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
	if (!cl) {
		memset(spare, 0, sizeof(*spare));
		cl = spare;
	}
	if (!cl->have_cred) {
		ci = MHD_get_connection_info(c,
					     MHD_CONNECTION_INFO_CONNECTION_FD);
		if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED,
				      &cred, &len) != 0)
			return NULL;
		cl->k.pid = cred.pid;
		cl->k.uid = cred.uid;
		peer_groups(ci->connect_fd, cred.gid, &cl->k);
		snprintf(cl->k.name, sizeof(cl->k.name), "%u",
			 (unsigned)cl->k.uid);
		cl->have_cred = true;
	}
	if (!name)
		return &cl->k;
	t = mono_seconds();
	if (cl->have_name && t - cl->looked < CALLER_TTL)
		return &cl->k;
	snprintf(cl->k.name, sizeof(cl->k.name), "%u", (unsigned)cl->k.uid);
	if (getpwuid_r(cl->k.uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp)
		snprintf(cl->k.name, sizeof(cl->k.name), "%s", pw.pw_name);
	cl->have_name = true;
	cl->looked = t;
	return &cl->k;
}

/* ---- requests ---- */

struct request {
	char *body;
	size_t len;
	size_t cap;
	bool too_big;
	bool nomem;    /* no memory for the body: answered 500 */
	bool answered;
};

/* The state of a request there was no memory for: answered already,
 * never written, never freed. */
static struct request oom_request = { .answered = true };

/* Read the body into f with only the names allowed (release it with
 * kwd_fields_free()); false after answering 400, or 500 when jansson
 * found no memory. */
static bool parse_body(struct MHD_Connection *c, struct request *rq,
		       const char *const *names, struct kwd_fields *f,
		       enum MHD_Result *ret)
{
	char err[512];

	kwd_json_nomem = false;
	if (kwd_parse_fields(rq->body, rq->len, names, f, err, sizeof(err)))
		return true;
	if (kwd_json_nomem)
		*ret = send_oom(c);
	else
		*ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid", "%s",
				  err);
	return false;
}

/* A TCP caller: the chains of daemon.tcp_chains, a rate for each
 * address, taken before the chain is looked at. */
static bool admit_tcp(struct MHD_Connection *c, const char *what,
		      struct kwd_gen *g, kw_request *req, uid_t *uid,
		      enum MHD_Result *ret)
{
	const char *chain = req->chain ? req->chain : "default";
	char peer[96], key[KWD_KEY_MAX], line[512];
	struct kwd_refusal r = { 0 };

	kwd_tcp_key(c, key, sizeof(key));
	if (!kwd_rate_take(key, g->conf.rate_limit)) {
		*ret = send_error(c, MHD_HTTP_TOO_MANY_REQUESTS, "limited",
				  "%s is over daemon.rate_limit (%u requests "
				  "a second)", key, g->conf.rate_limit);
		return false;
	}
	if (!kwd_conf_tcp_allows(&g->conf, chain)) {
		kwd_tcp_peer(c, peer, sizeof(peer));
		snprintf(line, sizeof(line), "audit: refused %s of chain "
			 "\"%.*s\" to %s: not in daemon.tcp_chains in %s", what,
			 kwd_field_len(chain), chain, peer, config_path);
		r.op = what;
		r.caller = peer;
		r.uid = -1;
		r.chain = chain;
		r.provider = req->provider;
		r.reason = "not in daemon.tcp_chains";
		r.line = line;
		kwd_refused(g, key, &r);
		*ret = send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				  "TCP callers may not use chain \"%s\" (not "
				  "in daemon.tcp_chains)", chain);
		return false;
	}
	*uid = KWD_TCP_UID;
	return true;
}

/* The request in f, checked against what the caller may use; false after
 * answering. */
static bool admit(struct MHD_Connection *c, enum kwd_via via,
		  const char *what, const struct kwd_fields *f,
		  struct kwd_gen *g, kw_request *req, uid_t *uid,
		  enum MHD_Result *ret)
{
	const struct kwd_caller *cl;
	struct caller spare;
	char key[KWD_KEY_MAX];

	kw_request_init(req);
	req->provider = kwd_field(f, "provider");
	req->user = kwd_field(f, "user");
	req->org = kwd_field(f, "org");
	req->chain = kwd_field(f, "chain");
	if (!req->provider) {
		*ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid",
				  "field \"provider\" is required");
		return false;
	}
	if (via == KWD_VIA_TCP)
		return admit_tcp(c, what, g, req, uid, ret);
	cl = who(c, g->conf.have_clients, &spare);
	if (!cl) {
		*ret = send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				  "cannot tell who is asking");
		return false;
	}
	/* Before the caller's rights: a refusal costs a request too. */
	snprintf(key, sizeof(key), "uid %u", (unsigned)cl->uid);
	if (!kwd_rate_take(key, g->conf.rate_limit)) {
		*ret = send_error(c, MHD_HTTP_TOO_MANY_REQUESTS, "limited",
				  "uid %u is over daemon.rate_limit (%u "
				  "requests a second)", (unsigned)cl->uid,
				  g->conf.rate_limit);
		return false;
	}
	if (!kwd_conf_allows(&g->conf, cl->uid, cl->groups, cl->ngroups,
			     req->chain ? req->chain : "default")) {
		const char *chain = req->chain ? req->chain : "default";
		struct kwd_refusal r = { 0 };
		char name[sizeof(cl->name)], line[512];

		snprintf(name, sizeof(name), "%s", cl->name);
		/* Named in the log even without daemon.clients. */
		if (!g->conf.have_clients) {
			struct passwd pw, *pwp = NULL;
			char buf[4096];

			if (getpwuid_r(cl->uid, &pw, buf, sizeof(buf), &pwp) ==
			    0 && pwp)
				snprintf(name, sizeof(name), "%s", pw.pw_name);
		}
		snprintf(line, sizeof(line), "audit: refused %s of chain "
			 "\"%.*s\" to uid %u (%s) pid %d: not allowed by "
			 "daemon.clients in %s", what, kwd_field_len(chain),
			 chain, (unsigned)cl->uid, name, (int)cl->pid,
			 config_path);
		r.op = what;
		r.caller = name;
		r.uid = cl->uid;
		r.pid = cl->pid;
		r.chain = chain;
		r.provider = req->provider;
		r.reason = "not allowed by daemon.clients";
		r.line = line;
		kwd_refused(g, key, &r);
		*ret = send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				  "uid %u (%s) may not use chain \"%s\"",
				  (unsigned)cl->uid, name, chain);
		return false;
	}
	*uid = cl->uid;
	return true;
}

/* A denial: 429 for a quota used up (with Retry-After when its window's
 * end is known), else 403. */
static enum MHD_Result send_denied(struct MHD_Connection *c, const char *err)
{
	char secs[24];
	long retry;

	if (!kwd_quota_denial(err, &retry))
		return send_error(c, MHD_HTTP_FORBIDDEN, "denied", "%s", err);
	snprintf(secs, sizeof(secs), "%ld", retry);
	return send_json_hdr(c, MHD_HTTP_TOO_MANY_REQUESTS,
			     json_pack("{s:s, s:s}", "error", err, "status",
				       "denied"),
			     retry > 0 ? "Retry-After" : NULL, secs);
}

static enum MHD_Result do_resolve(struct MHD_Connection *c,
				  enum kwd_via via, struct request *rq)
{
	enum MHD_Result ret = MHD_NO;
	struct kwd_gen *g = kwd_gen_get();
	char lease[KWD_LEASE_ID_LEN + 1];
	struct wiped *w;
	kw_secret *s = NULL;
	kw_request req;
	uid_t uid;
	kw_status st;
	struct kwd_fields f = { 0 };

	if (!parse_body(c, rq, kwd_request_fields, &f, &ret))
		goto out;
	if (!admit(c, via, "resolve", &f, g, &req, &uid, &ret))
		goto out;
	/* Room for the lease before the key: a key is never resolved (nor
	 * its quota charged) to be dropped for want of room. */
	switch (kwd_lease_reserve(uid, g->conf.max_leases)) {
	case KWD_ROOM_OK:
		break;
	case KWD_ROOM_FULL:
		ret = send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavail",
				 "keywayd holds daemon.max_leases (%u) keys "
				 "unreported; report leases, or raise it",
				 g->conf.max_leases);
		goto out;
	case KWD_ROOM_NOMEM:
		ret = send_oom(c);
		goto out;
	}
	st = kw_resolve(g->ctx, &req, &s);
	if (st != KW_OK)
		kwd_lease_unreserve(uid);
	if (st == KW_ERR_DENIED) {
		ret = send_denied(c, kw_last_error());
		goto out;
	}
	if (st != KW_OK) {
		if (http_status(st) >= 500)
			kwd_log("resolve: %s", kw_last_error());
		ret = send_status(c, st, "%s", kw_last_error());
		goto out;
	}
	w = key_answer(s);
	if (w && kwd_lease_id(lease)) {
		write_key(w, s, lease);
		/* The lease's own reference to g; s and it are the lease's
		 * once added, and not touched here again. */
		gen_ref(g);
		if (kwd_lease_add(s, g, uid, g->conf.lease_ttl, lease)) {
			ret = send_buf(c, MHD_HTTP_OK, w, NULL, NULL);
			goto out;
		}
		gen_unref(g);
	} else {
		kwd_lease_unreserve(uid);
	}
	if (w)
		wipe_free(w->data);
	if (kw_secret_report(s, KW_UNUSED) != KW_OK)
		kwd_log("resolve: %s", kw_last_error());
	kw_secret_free(s);
	ret = send_status(c, KW_ERR_NOMEM, "out of memory");
out:
	kwd_fields_free(&f);
	kwd_gen_put(g);
	return ret;
}

static enum MHD_Result do_explain(struct MHD_Connection *c,
				  enum kwd_via via, struct request *rq)
{
	enum MHD_Result ret = MHD_NO;
	struct kwd_gen *g = kwd_gen_get();
	kw_trace *t = NULL;
	struct kwd_fields f = { 0 };
	json_t *steps, *out;
	kw_request req;
	uid_t uid;
	kw_status st, res;

	if (!parse_body(c, rq, kwd_request_fields, &f, &ret))
		goto out;
	if (!admit(c, via, "explain", &f, g, &req, &uid, &ret))
		goto out;
	st = kw_explain(g->ctx, &req, &t);
	if (st != KW_OK) {
		ret = send_status(c, st, "%s", kw_last_error());
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
	kwd_fields_free(&f);
	kwd_gen_put(g);
	return ret;
}

static enum MHD_Result do_report(struct MHD_Connection *c,
				 enum kwd_via via, struct request *rq)
{
	enum MHD_Result ret = MHD_NO;
	const char *id, *oc;
	kw_outcome outcome;
	const struct kwd_caller *cl;
	struct caller spare;
	uid_t uid;
	char err[128];
	kw_status st;
	struct kwd_fields f = { 0 };

	if (!parse_body(c, rq, kwd_report_fields, &f, &ret))
		return ret;
	if (!kwd_parse_report(&f, &id, &outcome, err, sizeof(err))) {
		ret = send_error(c, MHD_HTTP_BAD_REQUEST, "invalid", "%s", err);
		goto out;
	}
	oc = outcome == KW_USED ? "used" : "unused";
	if (via == KWD_VIA_TCP) {
		uid = KWD_TCP_UID;
	} else if ((cl = who(c, false, &spare))) {
		uid = cl->uid;
	} else {
		ret = send_error(c, MHD_HTTP_FORBIDDEN, "refused",
				 "cannot tell who is asking");
		goto out;
	}
	switch (kwd_lease_report(id, uid, outcome, &st)) {
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
		ret = send_status(c, st, "%s", kw_last_error());
		break;
	}
out:
	kwd_fields_free(&f);
	return ret;
}

/* Anyone who can connect may ask; how many keys are held, only a caller
 * allowed some chain (a TCP caller has shown the token). */
static enum MHD_Result do_health(struct MHD_Connection *c, enum kwd_via via)
{
	json_t *j = json_pack("{s:s, s:s}", "status", "ok", "version",
			      kw_version());
	const struct kwd_caller *cl;
	struct caller spare;
	struct kwd_gen *g;
	bool some = via == KWD_VIA_TCP;

	if (!some && (cl = who(c, false, &spare))) {
		g = kwd_gen_get();
		some = kwd_conf_allows_some(&g->conf, cl->uid, cl->groups,
					    cl->ngroups);
		kwd_gen_put(g);
	}
	if (j && some &&
	    json_object_set_new(j, "leases",
				json_integer((json_int_t)kwd_lease_count())) != 0) {
		json_decref(j);
		j = NULL;
	}
	return send_json(c, MHD_HTTP_OK, j);
}

/* Add n bytes to the body; a body outgrown is wiped, not left behind by
 * realloc(). */
static bool body_append(struct request *rq, const char *p, size_t n)
{
	size_t cap = rq->cap ? rq->cap : 1024;
	char *nb;

	if (rq->len + n > rq->cap) {
		while (cap < rq->len + n)
			cap *= 2;
		nb = malloc(cap);
		if (!nb)
			return false;
		if (rq->body) {
			memcpy(nb, rq->body, rq->len);
			explicit_bzero(rq->body, rq->cap);
			free(rq->body);
		}
		rq->body = nb;
		rq->cap = cap;
	}
	memcpy(rq->body + rq->len, p, n);
	rq->len += n;
	return true;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct request *rq = *con_cls;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	enum kwd_via via = cls ? *(const enum kwd_via *)cls : KWD_VIA_UNIX;

	if (!rq) {
		const char *cl;

		rq = calloc(1, sizeof(*rq));
		if (!rq) {
			*con_cls = &oom_request;
			return send_oom(c);
		}
		*con_cls = rq;
		/* Nothing of a TCP request is read before its token. */
		if (via == KWD_VIA_TCP) {
			struct kwd_gen *g = kwd_gen_get();
			enum MHD_Result ret;
			bool ok = kwd_tcp_admit(c, g, url, &ret);

			kwd_gen_put(g);
			if (!ok) {
				rq->answered = true;
				return ret;
			}
		}
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (kwd_body_too_big(cl, max_body)) {
			rq->answered = true;
			return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
					  "invalid",
					  "the body is larger than %zu bytes",
					  max_body);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rq->answered && !rq->too_big && !rq->nomem) {
			if (rq->len + *upload_size > max_body) {
				rq->too_big = true;
			} else if (!body_append(rq, upload, *upload_size)) {
				/* Read the rest, then say why. */
				rq->nomem = true;
			}
		}
		/* A key sent to the admin socket is not left in MHD's
		 * buffer of the connection once it is copied. */
		if (via == KWD_VIA_ADMIN)
			explicit_bzero((char *)upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->answered)
		return MHD_YES;
	rq->answered = true;
	if (rq->too_big)
		return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid",
				  "the body is larger than %zu bytes", max_body);
	if (rq->nomem)
		return send_oom(c);
	if (via == KWD_VIA_ADMIN)
		return kwd_admin_answer(c, url, method, rq->body, rq->len);

	if (strcmp(url, "/v1/health") == 0) {
		if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
			goto method;
		return do_health(c, via);
	}
	if (strcmp(url, "/v1/resolve") == 0) {
		if (!post)
			goto method;
		return do_resolve(c, via, rq);
	}
	if (strcmp(url, "/v1/explain") == 0) {
		if (!post)
			goto method;
		return do_explain(c, via, rq);
	}
	if (strcmp(url, "/v1/report") == 0) {
		if (!post)
			goto method;
		return do_report(c, via, rq);
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

	if (!rq || rq == &oom_request) {
		*con_cls = NULL;
		return;
	}
	if (rq->body)
		explicit_bzero(rq->body, rq->cap);
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
	return kwd_listen_unix(path, dc->socket_mode, dc->socket_gid,
			       "--socket");
}

/* ---- what admin.c and tcp.c share ---- */

bool kwd_who(struct MHD_Connection *c, bool name, struct kwd_caller *cl)
{
	struct caller spare;
	const struct kwd_caller *k = who(c, name, &spare);

	if (!k)
		return false;
	*cl = *k;
	return true;
}

enum MHD_Result kwd_send_json(struct MHD_Connection *c, unsigned code,
			      json_t *j, const char *hdr, const char *val)
{
	return send_json_hdr(c, code, j, hdr, val);
}

enum MHD_Result kwd_send_error(struct MHD_Connection *c, unsigned code,
			       const char *status, const char *fmt, ...)
{
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	ret = vsend_error(c, code, status, NULL, fmt, ap);
	va_end(ap);
	return ret;
}

enum MHD_Result kwd_send_coded(struct MHD_Connection *c, unsigned http,
			       const char *status, const char *code,
			       const char *fmt, ...)
{
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	ret = vsend_error(c, http, status, code, fmt, ap);
	va_end(ap);
	return ret;
}

/*
 * Serve fd as via says (NULL: the main socket), a thread for each
 * connection, at most max_conn of them.  With select(), not poll():
 * libmicrohttpd then stops accepting at max_conn, and the connections past
 * it wait in the socket's backlog (with poll() it accepts and closes
 * them).  select() takes descriptors below FD_SETSIZE only, hence
 * MAX_CONN_LIMIT.
 */
static struct MHD_Daemon *serve(int fd, const enum kwd_via *via,
				unsigned max_conn, unsigned timeout)
{
	return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
				MHD_USE_INTERNAL_POLLING_THREAD |
				MHD_USE_ITC | MHD_USE_ERROR_LOG,
				0, NULL, NULL, handle, (void *)via,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_THREAD_STACK_SIZE,
				(size_t)CONN_STACK_SIZE,
				MHD_OPTION_CONNECTION_LIMIT, max_conn,
				MHD_OPTION_CONNECTION_TIMEOUT, timeout,
				MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
				MHD_OPTION_NOTIFY_CONNECTION, connection_notify,
				NULL,
				MHD_OPTION_END);
}

/* A listener besides the main socket: the admin socket, TCP. */
struct extra {
	struct MHD_Daemon *d;
	int fd;
	char *path;	/* a Unix socket's, removed at the end */
};

static const enum kwd_via via_admin = KWD_VIA_ADMIN, via_tcp = KWD_VIA_TCP;

/* The admin socket (--admin-socket, else daemon.admin_socket) and
 * daemon.tcp, when asked for; false after logging. */
static bool extras_start(const struct kwd_conf *dc, const char *admin_opt,
			 unsigned max_conn, unsigned timeout,
			 struct extra *admin, struct extra *tcp)
{
	const char *path = admin_opt ? admin_opt : dc->admin_socket;
	bool from_sd;

	admin->fd = tcp->fd = -1;
	if (path) {
		admin->path = strdup(path);
		if (!admin->path)
			return false;
		admin->fd = kwd_listen_unix(path, dc->admin_socket_mode,
					    dc->admin_gid, "--admin-socket");
		if (admin->fd < 0)
			return false;
		admin->d = serve(admin->fd, &via_admin, ADMIN_MAX_CONN, timeout);
		if (!admin->d) {
			kwd_log("cannot start serving the admin socket %s",
				path);
			return false;
		}
		kwd_log("admin socket on %s", path);
	}
	if (!dc->tcp && kwd_sd_has("keyway-tcp")) {
		/* Its callers would wait on it for nothing. */
		kwd_log("socket activation: systemd passed a socket named "
			"\"keyway-tcp\" and %s sets no daemon.tcp; set "
			"daemon.tcp (with tcp_token_file and tcp_chains) or "
			"disable keyway-tcp.socket", config_path);
		return false;
	}
	if (dc->tcp) {
		/* A port systemd holds (keyway-tcp.socket) cannot be taken
		 * by another user before keywayd starts. */
		tcp->fd = kwd_sd_tcp_socket("keyway-tcp", &dc->tcp_addr);
		from_sd = tcp->fd >= 0;
		if (tcp->fd == -1)
			tcp->fd = kwd_listen_tcp(&dc->tcp_addr, dc->tcp_addrlen,
						 "daemon.tcp");
		if (tcp->fd < 0)
			return false;
		tcp->d = serve(tcp->fd, &via_tcp, max_conn, timeout);
		if (!tcp->d) {
			kwd_log("cannot start serving TCP on %s", dc->tcp);
			return false;
		}
		kwd_log("serving TCP on %s%s (requests need the token of "
			"daemon.tcp_token_file)", dc->tcp,
			from_sd ? " from systemd" : "");
	}
	return true;
}

static void extra_stop(struct extra *e)
{
	if (e->d) {
		MHD_quiesce_daemon(e->d);
		MHD_stop_daemon(e->d);
	}
	if (e->fd >= 0)
		close(e->fd);
	if (e->path && e->fd >= 0)
		kwd_unlink_unix(e->path);
	free(e->path);
	memset(e, 0, sizeof(*e));
	e->fd = -1;
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

	switch (kwd_conf_load(config_path, &dc, err, sizeof(err))) {
	case KWD_CONF_OK:
		kwd_conf_free(&dc);
		break;
	case KWD_CONF_CLIENT:
		/* Nothing of it is keywayd's to check. */
		fprintf(stderr, "%s\n", err);
		return 1;
	case KWD_CONF_UNREAD:
		/* kw_check() says it, and better. */
		ok = false;
		break;
	case KWD_CONF_BAD:
		fprintf(stderr, "%s\n", err);
		ok = false;
		break;
	}
	if (kw_check(config_path, print_problem, NULL) != KW_OK)
		ok = false;
	if (ok)
		printf("ok\n");
	return ok ? 0 : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: keywayd -c CONFIG [--socket PATH] [--admin-socket PATH]\n"
		"               [--max-connections N] [--timeout SECONDS]\n"
		"               [--max-body BYTES]\n"
		"       keywayd -c CONFIG --check\n"
		"       keywayd --version\n");
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

/*
 * What the listening sockets were made with: a reload does not make them
 * again, so a change to these settings is told, not taken.
 */
static struct kwd_conf started;

static bool same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void keep_started(const struct kwd_conf *dc)
{
	started.socket = dc->socket ? strdup(dc->socket) : NULL;
	started.socket_mode = dc->socket_mode;
	started.socket_gid = dc->socket_gid;
	started.admin_socket = dc->admin_socket ? strdup(dc->admin_socket)
						: NULL;
	started.admin_socket_mode = dc->admin_socket_mode;
	started.admin_gid = dc->admin_gid;
	started.tcp = dc->tcp ? strdup(dc->tcp) : NULL;
}

static void tell_unchanged(const struct kwd_conf *dc)
{
	static const char fmt[] = "daemon.%s changed in %s: the sockets stay "
				  "as they were made; restart keywayd to "
				  "take it";

	if (!same_str(started.socket, dc->socket))
		kwd_log(fmt, "socket", config_path);
	if (started.socket_mode != dc->socket_mode)
		kwd_log(fmt, "socket_mode", config_path);
	if (started.socket_gid != dc->socket_gid)
		kwd_log(fmt, "socket_group", config_path);
	if (!same_str(started.admin_socket, dc->admin_socket))
		kwd_log(fmt, "admin_socket", config_path);
	if (started.admin_socket_mode != dc->admin_socket_mode)
		kwd_log(fmt, "admin_socket_mode", config_path);
	if (started.admin_gid != dc->admin_gid)
		kwd_log("daemon.admin_group changed in %s: it decides who may "
			"manage keys now, but the admin socket keeps its group "
			"until keywayd restarts", config_path);
	if (!same_str(started.tcp, dc->tcp))
		kwd_log(fmt, "tcp", config_path);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "admin-socket", required_argument, NULL, 'a' },
		{ "threads", required_argument, NULL, 't' },
		{ "max-connections", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "max-body", required_argument, NULL, 'b' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	unsigned long max_conn = DEFAULT_MAX_CONN;
	unsigned long timeout = DEFAULT_TIMEOUT, v;
	const char *sock_opt = NULL, *sock, *admin_opt = NULL;
	struct extra admin = { .fd = -1 }, tcp = { .fd = -1 };
	bool check = false, activated, threads_opt = false;
	char sd_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	struct MHD_Daemon *d;
	struct kwd_gen *g;
	sigset_t sigs;
	int opt, fd;
	char *sock_path;

	while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			sock_opt = optarg;
			break;
		case 'a':
			admin_opt = optarg;
			break;
		case 't':
			/* Taken, so that the command lines of before still
			 * start keywayd, and said to do nothing. */
			if (!number("--threads", optarg, 1, 256, &v))
				return 2;
			threads_opt = true;
			break;
		case 'm':
			if (!number("--max-connections", optarg, 1,
				    MAX_CONN_LIMIT, &max_conn))
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
		case 'V':
			printf("keywayd %s\n", PACKAGE_VERSION);
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

	/* Before any thread: it unsets variables. */
	if (!kwd_sd_init())
		return 1;
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	/* A file past RLIMIT_FSIZE fails its write (EFBIG), which the store
	 * or the audit trail reports. */
	signal(SIGXFSZ, SIG_IGN);
	kwd_json_wiped();
	/* Every thread started from here on leaves these to sigwait. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	g = gen_open();
	if (!g)
		return 1;
	/* Every connection of every socket is a descriptor select() must
	 * take: TCP's (as many as the main socket's) count with the rest. */
	if (g->conf.tcp && 2 * max_conn > MAX_CONN_LIMIT) {
		kwd_log("--max-connections %lu: with daemon.tcp the main socket "
			"and TCP hold up to %lu connections together, past the "
			"%d keywayd can serve; give --max-connections %d or "
			"fewer", max_conn, 2 * max_conn, MAX_CONN_LIMIT,
			MAX_CONN_LIMIT / 2);
		gen_free(g);
		return 1;
	}
	gen_install(g);
	keep_started(&g->conf);
	/* systemd's socket, when it passed one, is served as it made it:
	 * its path, mode and group are the socket unit's. */
	fd = kwd_sd_socket("keyway", sd_path, sizeof(sd_path));
	if (fd == -1 && kwd_sd_passed() > 0) {
		kwd_log("socket activation: none of the %d sockets systemd "
			"passed is named \"keyway\"; set FileDescriptorName="
			"keyway in its socket unit", kwd_sd_passed());
		return 1;
	}
	if (fd == -2)
		return 1;
	activated = fd >= 0;
	sock = activated ? sd_path : sock_opt ? sock_opt :
	       g->conf.socket ? g->conf.socket : DEFAULT_SOCKET;
	sock_path = strdup(sock);
	if (!sock_path)
		return 1;
	if (activated && sock_opt && strcmp(sock_opt, sock_path) != 0)
		kwd_log("--socket %s is not used: systemd passed the socket %s",
			sock_opt, sock_path);
	if (!activated)
		fd = listen_on(sock_path, &g->conf);
	if (fd < 0) {
		free(sock_path);
		return 1;
	}

	d = serve(fd, NULL, (unsigned)max_conn, (unsigned)timeout);
	if (!d) {
		kwd_log("cannot start serving on %s", sock_path);
		if (!activated)
			kwd_unlink_unix(sock_path);
		return 1;
	}
	kwd_log("serving %s on %s%s (a thread per connection, at most %lu)",
		config_path, sock_path, activated ? " from systemd" : "",
		max_conn);
	if (threads_opt)
		kwd_log("--threads is not used: each connection has a thread of "
			"its own, at most --max-connections of them; drop the "
			"option");
	if (!extras_start(&g->conf, admin_opt, (unsigned)max_conn,
			  (unsigned)timeout, &admin, &tcp)) {
		extra_stop(&admin);
		extra_stop(&tcp);
		MHD_stop_daemon(d);
		if (!activated)
			kwd_unlink_unix(sock_path);
		return 1;
	}
	kwd_sd_notify("READY=1\nSTATUS=serving %s on %s", config_path,
		      sock_path);

	for (;;) {
		struct timespec tick = { 1, 0 };
		int sig = sigtimedwait(&sigs, NULL, &tick);

		kwd_lease_sweep();
		kwd_refused_flush(false);
		if (sig == SIGHUP) {
			kwd_sd_reloading();
			g = gen_open();
			if (g) {
				tell_unchanged(&g->conf);
				gen_install(g);
				kwd_log("reloaded %s", config_path);
				kwd_sd_notify("READY=1\nSTATUS=serving %s on %s",
					      config_path, sock_path);
			} else {
				kwd_log("kept the configuration in use: %s "
					"could not be loaded", config_path);
				kwd_sd_notify("READY=1\nSTATUS=serving the "
					      "configuration of before: %s could "
					      "not be loaded", config_path);
			}
		} else if (sig == SIGTERM || sig == SIGINT) {
			break;
		}
	}

	kwd_log("stopping: finishing the requests under way");
	kwd_sd_notify("STOPPING=1\nSTATUS=finishing the requests under way");
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
	/* systemd's socket stays for the next start, queueing clients. */
	if (!activated)
		kwd_unlink_unix(sock_path);
	extra_stop(&admin);
	extra_stop(&tcp);
	free(sock_path);
	free(started.socket);
	free(started.admin_socket);
	free(started.tcp);
	kwd_lease_drain();
	kwd_refused_flush(true);
	kwd_refused_free();
	pthread_mutex_lock(&gen_lock);
	g = current;
	current = NULL;
	pthread_mutex_unlock(&gen_lock);
	gen_free(g);
	kwd_rate_free();
	kwd_log("stopped");
	return 0;
}
