/*
 * vault.h - what the files of the vault module share.
 *
 * vault.c holds the descriptor and the settings; http.c the transport
 * (libcurl handles kept alive in a small pool, retries, timeouts);
 * answer.c what an answer says (the response buffer, its JSON, Vault's
 * errors); auth.c the token (a token file, VAULT_TOKEN, or an
 * AppRole login renewed before it runs out); tpl.c the path template;
 * cache.c the in-memory cache of answers; kv.c the KV v1 and v2 paths, a
 * key read and lookup; kv_write.c put, enable/disable and rm; kv_list.c
 * ls.
 */
#ifndef KW_VAULT_H
#define KW_VAULT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include <keyway/module.h>

#define VAULT_WHY 600          /* room for one message */
#define VAULT_TOKEN_MAX 1024   /* longest token accepted */
#define VAULT_POOL_MAX 8       /* idle connections kept */
#define VAULT_BODY_MAX (8u << 20) /* largest response read */
#define VAULT_CHECK_MS 5000    /* a token lookup-self found good is
				* not asked about again so soon */
#define VAULT_RENEW_SHARE 33   /* % of a lookup's time for renewal and
				* login while the token is still valid */
#define VAULT_TTL_MAX ((int64_t)10 * 366 * 86400) /* longest token TTL
				* taken (s): more is taken as this */
#define VAULT_LOGIN_HOLDOFF_MS 1000 /* no login again so soon after one
				       that failed */

/* ---- the path template (tpl.c) ---- */

enum vault_part_kind { VP_TEXT, VP_SCOPE, VP_OWNER, VP_PROVIDER };

struct vault_part {
	enum vault_part_kind kind;
	const char *text; /* VP_TEXT: into the template's copy */
	size_t len;
};

/* One segment of the path, between slashes. */
struct vault_seg {
	struct vault_part *parts;
	size_t nparts;
	bool owner_only; /* just "{owner}": left out for system keys */
	bool fixed;      /* text only */
};

struct vault_tpl {
	char *copy;
	struct vault_seg *segs;
	size_t nsegs;
};

/* Parse `text`; on failure *why says what is wrong (no secret in it). */
KW_WARN_UNUSED kw_status vault_tpl_parse(struct vault_tpl *t, const char *text,
					 kw_scope scope, char *why,
					 size_t whylen);
void vault_tpl_free(struct vault_tpl *t);
/*
 * The path of a key relative to the mount, each segment URL-escaped, in
 * a malloc'd *out.  KW_ERR_INVAL (why says so) when the owner or provider
 * cannot be a path segment (empty, ".", "..", or holding '/').
 */
KW_WARN_UNUSED kw_status vault_tpl_expand(const struct vault_tpl *t,
					  kw_scope scope, const char *owner,
					  const char *provider, char **out,
					  char *why, size_t whylen);
/* Whether `text` (one name a LIST returned) matches segment seg; binds
 * *owner and *provider (malloc'd; freed and replaced as it goes). */
bool vault_seg_match(const struct vault_seg *seg, kw_scope scope,
		     const char *text, char **owner, char **provider);
/* One segment made URL-safe: malloc'd, NULL when out of memory. */
char *vault_escape(const char *text, size_t len);

/* ---- the cache (cache.c) ---- */

struct vault_centry;

struct vault_cache {
	pthread_mutex_t lock;
	struct vault_centry **buckets;
	size_t nbuckets;
	size_t count;
	int64_t ttl_ms; /* 0: no cache */
	uint64_t gen;   /* moved by every drop */
};

KW_WARN_UNUSED kw_status vault_cache_init(struct vault_cache *c,
					  int64_t ttl_ms);
void vault_cache_free(const kw_host *host, struct vault_cache *c);
/*
 * A fresh answer for `path`: KW_OK with the secret replied, KW_ERR_DENIED
 * (disabled), or KW_ERR_NOTFOUND when there is none in the cache.  *gen
 * is the cache's generation when it was asked: pass it to
 * vault_cache_put, which keeps nothing when a drop came in between (the
 * answer Vault gave may predate the change that dropped).
 */
kw_status vault_cache_get(const kw_host *host, struct vault_cache *c,
			  const char *path, kw_reply *r, uint64_t *gen);
void vault_cache_put(const kw_host *host, struct vault_cache *c,
		     const char *path, const char *value, size_t len,
		     bool active, uint64_t gen);
void vault_cache_drop(const kw_host *host, struct vault_cache *c,
		      const char *path);

/* ---- state ---- */

enum vault_method { VAULT_AUTH_TOKEN, VAULT_AUTH_APPROLE };

struct vault_auth {
	enum vault_method method;
	const char *token_file;     /* or NULL */
	const char *role_id_file;
	const char *secret_id_file;
	const char *approle_mount;  /* "approle" */
	char *approle_mount_esc;    /* ... URL-escaped */
	/* Secure memory, NUL-terminated: */
	char *role_id;
	char *secret_id;
	pthread_mutex_t lock;       /* guards what follows */
	char *token;                /* VAULT_TOKEN_MAX bytes; "" if none */
	uint64_t gen;               /* bumped whenever token changes */
	int64_t renew_at_ms;        /* monotonic; 0: never */
	int64_t expires_ms;         /* monotonic; 0: never */
	bool renewable;
	bool busy;                  /* a login or renewal is under way */
	pthread_cond_t done;        /* ... and has ended (CLOCK_MONOTONIC) */
	int64_t failed_ms;          /* when a login last failed; 0: it did
				       not */
	kw_status failed_rc;        /* ... with what */
	char failed_why[VAULT_WHY];
	uint64_t checked_gen;       /* the token lookup-self last found good */
	int64_t checked_ms;         /* ... when; 0: none */
};

struct vault_state {
	const kw_host *host;
	kw_instance *inst;
	kw_scope scope;
	char *base;             /* "https://host:8200/v1/" */
	const char *address;
	const char *namespace;  /* or NULL */
	char *mount;            /* escaped, segment by segment */
	const char *mount_raw;
	/* 1 or 2; 0 until "auto" has asked: set once, read by every
	 * thread. */
	_Atomic int kv_version;
	bool kv_auto;           /* kv_version = "auto" */
	const char *field;
	struct vault_tpl tpl;
	/* TLS */
	const char *ca_file, *ca_path, *client_cert;
	char *client_key;       /* secure memory: the PEM read privately */
	size_t client_key_len;
	bool skip_verify;
	/* timing */
	int64_t timeout_ms, connect_timeout_ms;
	int retries;
	/* idle curl handles, each with its kept-alive connection */
	pthread_mutex_t pool_lock;
	CURL *idle[VAULT_POOL_MAX];
	size_t nidle;
	struct vault_cache cache;
	struct vault_auth auth;
};

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t vault_now_ms(void);

/* ---- HTTP (http.c) ---- */

/* An answer from Vault.  body is secure memory, wiped when freed. */
struct vault_resp {
	long status;        /* HTTP status, 0 when none came */
	char *body;
	size_t len, cap;
	json_t *json;       /* the body parsed, or NULL */
	int attempts;
	kw_status body_rc;  /* KW_ERR_BACKEND: the body passed
			       VAULT_BODY_MAX; KW_ERR_NOMEM: no memory for
			       it; KW_OK */
};

void vault_resp_free(const kw_host *host, struct vault_resp *resp);
/* Add len bytes of data to resp's body (answer.c); false with
 * resp->body_rc set past VAULT_BODY_MAX or without memory. */
bool vault_resp_append(const kw_host *host, struct vault_resp *resp,
		       const char *data, size_t len);
/* What a whole answer (resp->status and body) means: its body parsed
 * into resp->json; KW_OK for 2xx with a JSON object or no body, else as
 * vault_http() says, with why. */
KW_WARN_UNUSED kw_status vault_answer(struct vault_resp *resp,
				      const char *method, const char *path,
				      char *why, size_t whylen);
/* why for an answer still refused after the last attempt. */
void vault_answer_refused(struct vault_resp *resp, const char *method,
			  const char *path, char *why, size_t whylen);
/* Whether an answer of this HTTP status is worth asking again. */
bool vault_retryable(long status);

/*
 * One request: METHOD {base}{path}, path already escaped, body (len
 * bytes, or NULL) sent as JSON, token (or NULL) as X-Vault-Token.
 * Connection errors, timeouts, 412, 429 and 5xx but 501 are tried again
 * up to st->retries times with jittered backoff, never past deadline_ms.
 * KW_OK for 2xx; otherwise the status the answer means (404
 * KW_ERR_NOTFOUND, 401/403 KW_ERR_PERM, out of retries KW_ERR_UNAVAIL,
 * other KW_ERR_BACKEND), with one line in why that names the path and
 * the HTTP status.  resp holds the last answer either way.
 */
KW_WARN_UNUSED kw_status vault_http(struct vault_state *st, const char *method,
				    const char *path, const char *body,
				    size_t len, const char *token,
				    int64_t deadline_ms,
				    struct vault_resp *resp, char *why,
				    size_t whylen);
/* vault_http() with the current token (auth.c), logging in again once
 * when an AppRole token is refused. */
KW_WARN_UNUSED kw_status vault_request(struct vault_state *st,
				       const char *method, const char *path,
				       const char *body, size_t len,
				       int64_t deadline_ms,
				       struct vault_resp *resp, char *why,
				       size_t whylen);
void vault_pool_free(struct vault_state *st);
/* Whether Vault's errors in resp mention `text`. */
bool vault_resp_says(const struct vault_resp *resp, const char *text);
/* The body, serialized into secure memory (*out, *len; free with
 * vault_body_free()). */
KW_WARN_UNUSED kw_status vault_body(const kw_host *host, const json_t *j,
				    char **out, size_t *len);
void vault_body_free(const kw_host *host, char *body, size_t len);

/* ---- auth (auth.c) ---- */

/* Read what the auth group names; reports through host->error(). */
KW_WARN_UNUSED kw_status vault_auth_open(struct vault_state *st);
void vault_auth_free(struct vault_state *st);
/*
 * The token to send, copied into buf (VAULT_TOKEN_MAX bytes), logging in
 * or renewing first when it is missing or about to run out.  *gen: which
 * token it is, for vault_auth_refused().
 */
KW_WARN_UNUSED kw_status vault_auth_token(struct vault_state *st,
					  int64_t deadline_ms, char *buf,
					  uint64_t *gen, char *why,
					  size_t whylen);
/* Token gen was refused (401/403): forget it, so that the next call logs
 * in, unless auth/token/lookup-self says it is fine (a policy that denies
 * the path, which a login does not change).  Returns whether a login can
 * make a new one. */
bool vault_auth_refused(struct vault_state *st, uint64_t gen,
			int64_t deadline_ms);

/* ---- KV (kv.c; writes in kv_write.c, ls in kv_list.c) ---- */

#define VAULT_DESC_MAX 300

/* A key as read: pointers into resp->json. */
struct vault_kv_rec {
	json_t *data;     /* the secret's fields */
	json_t *custom;   /* v2 custom_metadata, or NULL */
	int64_t version;  /* v2: the latest version, 0 when none */
	bool active;
	const char *name;
	bool deleted;     /* v2: the latest version is deleted/destroyed */
};

/* keyway's name for a key, into buf (VAULT_DESC_MAX bytes). */
const char *vault_describe(char *buf, kw_scope scope, const char *owner,
			   const char *provider);
/* When a call that starts now must end. */
int64_t vault_deadline(const struct vault_state *st);
/* "{mount}/{what}/{rel}" ("{mount}/{rel}" for an empty what), and the
 * data path of the mount's KV version; malloc'd, NULL without memory. */
char *vault_kv_path(const struct vault_state *st, const char *what,
		    const char *rel);
char *vault_data_path(const struct vault_state *st, const char *rel);
/* Seconds since the epoch of an RFC 3339 time, 0 when there is none. */
int64_t vault_rfc3339(const char *s);
/*
 * Read the secret at rel: KW_OK with rec filled (the latest version
 * live), KW_ERR_NOTFOUND (rec->version and rec->deleted still say what
 * was seen), or a failure, with why.  rec points into resp.
 */
KW_WARN_UNUSED kw_status vault_kv_read(struct vault_state *st,
				       const char *rel, int64_t deadline_ms,
				       struct vault_resp *resp,
				       struct vault_kv_rec *rec, char *why,
				       size_t whylen);
/* GET the v2 metadata of rel into *meta (pointing into resp): KW_OK
 * when its latest version is live, KW_ERR_NOTFOUND (*meta still set when
 * there is metadata) otherwise. */
KW_WARN_UNUSED kw_status vault_kv_meta(struct vault_state *st,
				       const char *rel, int64_t deadline_ms,
				       struct vault_resp *resp, json_t **meta,
				       char *why, size_t whylen);
/* The path of a key, or `bad` (or a failure) with the reason replied. */
KW_WARN_UNUSED kw_status vault_key_rel(struct vault_state *st, kw_scope scope,
				       const char *owner, const char *provider,
				       char **rel, kw_reply *r, kw_status bad);
/* The KV version known, asked of Vault for "auto"; the reason replied. */
KW_WARN_UNUSED kw_status vault_need_version(struct vault_state *st,
					    int64_t deadline_ms, kw_reply *r);

kw_status vault_lookup(void *state, const kw_query *q);
kw_status vault_put(void *state, const kw_store_put *p, kw_reply *r);
kw_status vault_set_active(void *state, const kw_store_key *k, bool active,
			   kw_reply *r);
kw_status vault_remove(void *state, const kw_store_key *k, kw_reply *r);
kw_status vault_list(void *state, kw_scope scope, const char *owner,
		     kw_store_list_fn *fn, void *arg, kw_reply *r);
/* The KV version of the mount, asked of Vault once for "auto". */
KW_WARN_UNUSED kw_status vault_kv_version(struct vault_state *st,
					  int64_t deadline_ms, int *version,
					  char *why, size_t whylen);
/* The KV version of the mount as Vault says now (which takes a token
 * that can read the mount). */
KW_WARN_UNUSED kw_status vault_mount_version(struct vault_state *st,
					     int64_t deadline_ms, int *version,
					     char *why, size_t whylen);

#endif /* KW_VAULT_H */
