/*
 * audit.c - the audit trail: one JSON object per resolve and per change,
 * to a file (one line each) or to syslog.
 *
 * A resolve is recorded with a fingerprint of the key it handed out:
 * HMAC-SHA256 under a key derived from the master key, so the same key
 * always has the same fingerprint, different keys differ, and nothing in
 * the trail helps to recover a key.  Lines go to the file with one write()
 * on a descriptor opened O_APPEND, so concurrent writers, threads or
 * processes, do not interleave.
 *
 * Every resolve pays for its line before the key is handed out, so the
 * line is cheap to make: the HMAC's keyed inner and outer states are
 * computed once, at open, and copied for each line; the line is written
 * straight into a buffer on the stack (the heap only for a line that does
 * not fit), with the escaping jansson's compact output has always had; and
 * each thread formats the seconds of its timestamp once per second.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"

#define FP_LEN 16 /* bytes of the HMAC kept: 128 bits */

struct kwi_audit {
	enum { AUDIT_JSONL = 1, AUDIT_SYSLOG } sink;
	bool allow;          /* on_failure = "allow" */
	int fd;
	char path[1024];
	const char *file;    /* where path is set, for messages */
	int line;
	/* HMAC state keyed with the fingerprint key (guarded); read-only
	 * once open, so threads copy it without a lock. */
	crypto_auth_hmacsha256_state *fp_state;
};

static const char fp_label[] = "keyway audit fingerprint v1";

kw_status kwi_audit_parse(struct kw_ctx *ctx, const config_setting_t *g,
			  const char *file, struct kwi_diag *d)
{
	const char *sink = NULL, *path = NULL, *on_failure = NULL;
	struct kwi_audit *a;
	int n, line = (int)config_setting_source_line(g), line_of_path = line;

	if (!config_setting_is_group(g)) {
		kwi_diag(d, KW_ERR_CONFIG, file, line,
			 "keyway.audit must be a group { sink = ...; }");
		return KW_ERR_CONFIG;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const char **slot = strcmp(name, "sink") == 0 ? &sink
				    : strcmp(name, "path") == 0 ? &path
				    : strcmp(name, "on_failure") == 0
					    ? &on_failure
					    : NULL;

		if (slot == NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file,
				 (int)config_setting_source_line(s),
				 "keyway.audit: unknown setting \"%s\" "
				 "(expected sink, path or on_failure)",
				 name);
			return KW_ERR_CONFIG;
		}
		if (config_setting_type(s) != CONFIG_TYPE_STRING ||
		    config_setting_get_string(s)[0] == '\0') {
			kwi_diag(d, KW_ERR_CONFIG, file,
				 (int)config_setting_source_line(s),
				 "keyway.audit: %s must be a non-empty string",
				 name);
			return KW_ERR_CONFIG;
		}
		*slot = config_setting_get_string(s);
		if (slot == &path)
			line_of_path = (int)config_setting_source_line(s);
	}

	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return KW_ERR_NOMEM;
	a->fd = -1;
	a->file = file;
	a->line = line_of_path;
	ctx->audit = a;
	if (sink != NULL && strcmp(sink, "syslog") == 0) {
		a->sink = AUDIT_SYSLOG;
		if (path != NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file, line,
				 "keyway.audit: sink \"syslog\" takes no path");
			return KW_ERR_CONFIG;
		}
	} else if (sink != NULL && strcmp(sink, "jsonl") == 0) {
		a->sink = AUDIT_JSONL;
		if (path == NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file, line,
				 "keyway.audit: sink \"jsonl\" needs a path");
			return KW_ERR_CONFIG;
		}
		if (path[0] == '/')
			snprintf(a->path, sizeof(a->path), "%s", path);
		else
			snprintf(a->path, sizeof(a->path), "%s/%s", ctx->dir,
				 path);
	} else {
		kwi_diag(d, KW_ERR_CONFIG, file, line,
			 "keyway.audit: sink must be \"jsonl\" or \"syslog\"");
		return KW_ERR_CONFIG;
	}
	if (on_failure != NULL && strcmp(on_failure, "allow") == 0) {
		a->allow = true;
	} else if (on_failure != NULL && strcmp(on_failure, "deny") != 0) {
		kwi_diag(d, KW_ERR_CONFIG, file, line,
			 "keyway.audit: on_failure must be \"deny\" or "
			 "\"allow\"");
		return KW_ERR_CONFIG;
	}
	if (ctx->nmasters == 0) {
		kwi_diag(d, KW_ERR_CONFIG, file, line,
			 "keyway.audit: key fingerprints are keyed with the "
			 "master key: set keyway.master_key");
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* The fingerprint key: from the master key, or for a passphrase from the
 * passphrase stretched once over a fixed salt. */
static kw_status fp_key(struct kw_ctx *ctx, unsigned char *out)
{
	static const unsigned char salt[KW_SALT_SIZE] = "keyway-audit-fp";
	const struct kwi_master *m = &ctx->masters[0];
	unsigned char base[32];
	kw_status rc = KW_OK;

	if (m->source != KWI_KEY_PASSPHRASE)
		memcpy(base, m->key, sizeof(base));
	else if (crypto_pwhash(base, sizeof(base), m->pass, m->pass_len, salt,
			       2, 19u * 1024 * 1024,
			       crypto_pwhash_ALG_ARGON2ID13) != 0)
		rc = KW_ERR_NOMEM;
	if (rc == KW_OK)
		crypto_auth_hmacsha256(out, (const unsigned char *)fp_label,
				       sizeof(fp_label) - 1, base);
	sodium_memzero(base, sizeof(base));
	return rc;
}

/* Key the HMAC state once: a fingerprint then costs the blocks of the
 * value and one outer block, not the two blocks of the padded key too. */
static kw_status fp_state_init(struct kw_ctx *ctx, struct kwi_audit *a)
{
	unsigned char key[crypto_auth_hmacsha256_KEYBYTES];
	kw_status rc;

	a->fp_state = kwi_secure_alloc(sizeof(*a->fp_state));
	if (a->fp_state == NULL)
		return KW_ERR_NOMEM;
	rc = fp_key(ctx, key);
	if (rc == KW_OK &&
	    crypto_auth_hmacsha256_init(a->fp_state, key, sizeof(key)) != 0)
		rc = KW_ERR_NOMEM;
	sodium_memzero(key, sizeof(key));
	return rc;
}

kw_status kwi_audit_open(struct kw_ctx *ctx, struct kwi_diag *d)
{
	struct kwi_audit *a = ctx->audit;
	char why[256];
	struct stat st;

	if (a == NULL)
		return KW_OK;
	if (fp_state_init(ctx, a) != KW_OK) {
		kwi_diag(d, KW_ERR_NOMEM, ctx->path, 0,
			 "keyway.audit: cannot derive the fingerprint key");
		return KW_ERR_NOMEM;
	}
	if (a->sink == AUDIT_SYSLOG)
		return KW_OK;
	/* kw_check() creates nothing: a missing file is its problem. */
	a->fd = open(a->path,
		     O_WRONLY | O_APPEND | (ctx->checking ? 0 : O_CREAT) |
			     O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
		     0600);
	if (a->fd < 0 && errno == ENOENT && ctx->checking) {
		kwi_diag(d, KW_ERR_CONFIG, a->file, a->line,
			 "keyway.audit: %s does not exist: create it with "
			 "keyway init",
			 a->path);
		return KW_ERR_CONFIG;
	}
	if (a->fd < 0) {
		kwi_diag(d, KW_ERR_IO, ctx->path, 0,
			 "keyway.audit: cannot open %s: %s", a->path,
			 strerror(errno));
		return KW_ERR_IO;
	}
	if (fstat(a->fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    !kwi_stat_trusted(&st, false, why, sizeof(why))) {
		kwi_diag(d, KW_ERR_PERM, ctx->path, 0,
			 "keyway.audit: refusing %s: %s", a->path,
			 S_ISREG(st.st_mode) ? why : "not a regular file");
		return KW_ERR_PERM;
	}
	return KW_OK;
}

void kwi_audit_free(struct kw_ctx *ctx)
{
	struct kwi_audit *a = ctx->audit;

	if (a == NULL)
		return;
	if (a->fd >= 0)
		close(a->fd);
	kwi_secure_free(a->fp_state, sizeof(*a->fp_state));
	free(a);
	ctx->audit = NULL;
}

const char *kwi_audit_path(const struct kw_ctx *ctx)
{
	const struct kwi_audit *a = ctx->audit;

	return a != NULL && a->sink == AUDIT_JSONL ? a->path : NULL;
}

/* ---- one line of JSON ---- */

/* Room for any line of ordinary names; longer ones move to the heap. */
#define LINE_STACK 1024

struct line {
	char *buf;      /* stack, or heap once it outgrew it */
	size_t len;
	size_t cap;
	bool comma;     /* the next member needs a ',' before it */
	bool nomem;
	char stack[LINE_STACK];
};

static void line_init(struct line *l)
{
	l->buf = l->stack;
	l->len = 0;
	l->cap = sizeof(l->stack);
	l->comma = false;
	l->nomem = false;
}

static void line_release(struct line *l)
{
	if (l->buf != l->stack)
		free(l->buf);
}

static bool line_grow(struct line *l, size_t more)
{
	size_t cap = l->cap;
	char *p;

	if (l->nomem)
		return false;
	while (cap - l->len < more) {
		if (cap > SIZE_MAX / 2) {
			l->nomem = true;
			return false;
		}
		cap *= 2;
	}
	if (l->buf == l->stack) {
		p = malloc(cap);
		if (p != NULL)
			memcpy(p, l->buf, l->len);
	} else {
		p = realloc(l->buf, cap);
	}
	if (p == NULL) {
		l->nomem = true;
		return false;
	}
	l->buf = p;
	l->cap = cap;
	return true;
}

/* Inline: a line is made of a few dozen short pieces. */
static inline void put(struct line *l, const void *s, size_t n)
{
	if (l->cap - l->len < n && !line_grow(l, n))
		return;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static inline void put_c(struct line *l, char c)
{
	if (l->cap == l->len && !line_grow(l, 1))
		return;
	l->buf[l->len++] = c;
}

/*
 * Length of the UTF-8 sequence at p (p[0] >= 0x80), or 0 when it is not
 * one: no overlong forms, no surrogates, nothing past U+10FFFF, the same
 * strings jansson's json_string() takes.  p is NUL-terminated, and a NUL
 * ends the check before it reads past it.
 */
static size_t utf8_seq(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/*
 * s as a JSON string, escaped as jansson writes it: '"' and '\\' escaped,
 * control characters as \b \f \n \r \t or \u00XX (upper-case), anything
 * else, '/' and DEL and UTF-8 included, as it is.  False when s is not
 * UTF-8.
 */
static bool put_string(struct line *l, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *run = p;

	put_c(l, '"');
	while (*p != '\0') {
		char esc[6] = { '\\', 'u', '0', '0' };
		size_t n = 2;

		if (*p >= 0x80) {
			n = utf8_seq(p);
			if (n == 0)
				return false;
			p += n;
			continue;
		}
		if (*p >= 0x20 && *p != '"' && *p != '\\') {
			p++;
			continue;
		}
		put(l, run, (size_t)(p - run));
		switch (*p) {
		case '"':
		case '\\':
			esc[1] = (char)*p;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 0xf];
			n = 6;
			break;
		}
		put(l, esc, n);
		run = ++p;
	}
	put(l, run, (size_t)(p - run));
	put_c(l, '"');
	return true;
}

static void put_name(struct line *l, const char *name)
{
	if (l->comma)
		put_c(l, ',');
	l->comma = true;
	put_c(l, '"');
	put(l, name, strlen(name));
	put(l, "\":", 2);
}

/*
 * "name":"value", or "name":null for a NULL value when null_ok.  A member
 * that cannot be a JSON string (NULL where null is not allowed, or not
 * UTF-8) is left out, as it always was when jansson built the line.
 */
static void member(struct line *l, const char *name, const char *value,
		   bool null_ok)
{
	size_t mark = l->len;
	bool comma = l->comma;

	if (value == NULL && !null_ok)
		return;
	put_name(l, name);
	if (value == NULL) {
		put(l, "null", 4);
	} else if (!put_string(l, value)) {
		l->len = mark;
		l->comma = comma;
	}
}

static void object_open(struct line *l, const char *name)
{
	if (name != NULL)
		put_name(l, name);
	put_c(l, '{');
	l->comma = false;
}

static void object_close(struct line *l)
{
	put_c(l, '}');
	l->comma = true;
}

/*
 * "time":"2024-05-01T10:00:00.123Z".  gmtime_r() and strftime() run once
 * a second in each thread (glibc's gmtime_r takes a process-wide lock);
 * the milliseconds are written by hand.
 */
static void member_time(struct line *l)
{
	static _Thread_local struct {
		time_t sec;
		bool set;
		size_t len;
		char text[40];
	} cache;
	struct timespec ts;
	struct tm tm;
	long ms;
	char frac[5];

	clock_gettime(CLOCK_REALTIME, &ts);
	if (!cache.set || cache.sec != ts.tv_sec) {
		if (gmtime_r(&ts.tv_sec, &tm) == NULL)
			memset(&tm, 0, sizeof(tm));
		cache.len = strftime(cache.text, sizeof(cache.text),
				     "%Y-%m-%dT%H:%M:%S", &tm);
		cache.sec = ts.tv_sec;
		cache.set = true;
	}
	ms = ts.tv_nsec / 1000000;
	frac[0] = '.';
	frac[1] = (char)('0' + ms / 100);
	frac[2] = (char)('0' + ms / 10 % 10);
	frac[3] = (char)('0' + ms % 10);
	frac[4] = 'Z';
	put_name(l, "time");
	put_c(l, '"');
	put(l, cache.text, cache.len);
	put(l, frac, sizeof(frac));
	put_c(l, '"');
}

/* Write the finished object as one line: one write(), so that lines from
 * threads and processes sharing the file never interleave. */
static kw_status emit(struct kwi_audit *a, struct line *l)
{
	kw_status rc = KW_OK;

	object_close(l);
	put(l, "\n", 2); /* and the NUL syslog() needs */
	if (l->nomem) {
		rc = kwi_error(KW_ERR_NOMEM, "keyway.audit: out of memory");
		goto out;
	}
	if (a->sink == AUDIT_SYSLOG) {
		l->buf[l->len - 2] = '\0';
		syslog(LOG_AUTHPRIV | LOG_INFO, "%s", l->buf);
		goto out;
	}
	errno = 0;
	if (write(a->fd, l->buf, l->len - 1) != (ssize_t)(l->len - 1))
		rc = kwi_error(KW_ERR_IO, "keyway.audit: cannot write %s: %s",
			       a->path, errno != 0 ? strerror(errno)
						   : "short write");
	if (rc != KW_OK && a->allow) {
		syslog(LOG_AUTHPRIV | LOG_ERR, "keyway: %s", kw_last_error());
		rc = KW_OK;
	}
out:
	line_release(l);
	return rc;
}

/* The first FP_LEN bytes of the HMAC of the key, in hex. */
static void fingerprint(const struct kwi_audit *a, const kw_secret *s,
			char out[2 * FP_LEN + 1])
{
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];

	memcpy(&st, a->fp_state, sizeof(st));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)s->value,
				      s->len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(out, 2 * FP_LEN + 1, mac, FP_LEN);
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(mac, sizeof(mac));
}

kw_status kwi_audit_resolve(struct kw_ctx *ctx, const struct kwi_query_in *in,
			    kw_status result, const kw_secret *s)
{
	struct kwi_audit *a = ctx->audit;
	char fp[2 * FP_LEN + 1];
	struct line l;

	if (a == NULL)
		return KW_OK;
	line_init(&l);
	object_open(&l, NULL);
	member_time(&l);
	member(&l, "event", "resolve", false);
	member(&l, "chain", in->chain, false);
	member(&l, "provider", in->provider, false);
	member(&l, "user", in->user, true);
	member(&l, "org", in->org, true);
	member(&l, "result", kw_status_str(result), false);
	if (s != NULL) {
		fingerprint(a, s, fp);
		member(&l, "backend", s->data, false);
		member(&l, "fingerprint", fp, false);
	}
	return emit(a, &l);
}

static const char *role_str(kw_role r)
{
	static const char *const names[] = { "none",  "viewer", "member",
					     "admin", "owner",  "sysadmin" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r]
							       : "?";
}

kw_status kwi_audit_change(struct kw_ctx *ctx, const kw_actor *actor,
			   const char *op, const char *backend,
			   const kw_store_key *k, kw_status result)
{
	struct kwi_audit *a = ctx->audit;
	struct line l;

	if (a == NULL)
		return KW_OK;
	line_init(&l);
	object_open(&l, NULL);
	member_time(&l);
	member(&l, "event", op, false);
	object_open(&l, "actor");
	member(&l, "user", actor->user, true);
	member(&l, "org", actor->org, true);
	member(&l, "role", role_str(actor->role), false);
	object_close(&l);
	member(&l, "backend", backend, false);
	if (k != NULL) {
		member(&l, "scope", kw_scope_str(k->scope), false);
		member(&l, "owner", k->owner, true);
		member(&l, "provider", k->provider, false);
	}
	member(&l, "result", kw_status_str(result), false);
	return emit(a, &l);
}
