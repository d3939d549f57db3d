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

#include <jansson.h>
#include <sodium.h>

#include "internal.h"

#define FP_LEN 16 /* bytes of the HMAC kept: 128 bits */

struct kwi_audit {
	enum { AUDIT_JSONL = 1, AUDIT_SYSLOG } sink;
	bool allow;          /* on_failure = "allow" */
	int fd;
	char path[1024];
	unsigned char *fp_key; /* guarded, crypto_auth_hmacsha256_KEYBYTES */
};

static const char fp_label[] = "keyway audit fingerprint v1";

kw_status kwi_audit_parse(struct kw_ctx *ctx, const config_setting_t *g,
			  const char *file, struct kwi_diag *d)
{
	const char *sink = NULL, *path = NULL, *on_failure = NULL;
	struct kwi_audit *a;
	int n, line = (int)config_setting_source_line(g);

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
	}

	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return KW_ERR_NOMEM;
	a->fd = -1;
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

kw_status kwi_audit_open(struct kw_ctx *ctx, struct kwi_diag *d)
{
	struct kwi_audit *a = ctx->audit;
	char why[256];
	struct stat st;

	if (a == NULL)
		return KW_OK;
	a->fp_key = kwi_secure_alloc(crypto_auth_hmacsha256_KEYBYTES);
	if (a->fp_key == NULL || fp_key(ctx, a->fp_key) != KW_OK) {
		kwi_diag(d, KW_ERR_NOMEM, ctx->path, 0,
			 "keyway.audit: cannot derive the fingerprint key");
		return KW_ERR_NOMEM;
	}
	if (a->sink == AUDIT_SYSLOG)
		return KW_OK;
	a->fd = open(a->path,
		     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
			     O_NOCTTY,
		     0600);
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
	kwi_secure_free(a->fp_key, crypto_auth_hmacsha256_KEYBYTES);
	free(a);
	ctx->audit = NULL;
}

static json_t *str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static void timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + strlen(buf), len - strlen(buf), ".%03ldZ",
		 ts.tv_nsec / 1000000);
}

/* Write one event; the object is consumed. */
static kw_status emit(struct kwi_audit *a, json_t *ev)
{
	char *line = NULL;
	kw_status rc = KW_OK;
	size_t len;

	if (ev != NULL)
		line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(ev);
	if (line == NULL)
		return kwi_error(KW_ERR_NOMEM, "keyway.audit: out of memory");
	if (a->sink == AUDIT_SYSLOG) {
		syslog(LOG_AUTHPRIV | LOG_INFO, "%s", line);
		free(line);
		return KW_OK;
	}
	len = strlen(line);
	line[len] = '\n';
	if (write(a->fd, line, len + 1) != (ssize_t)(len + 1))
		rc = kwi_error(KW_ERR_IO, "keyway.audit: cannot write %s: %s",
			       a->path, errno != 0 ? strerror(errno)
						   : "short write");
	free(line);
	if (rc != KW_OK && a->allow) {
		syslog(LOG_AUTHPRIV | LOG_ERR, "keyway: %s", kw_last_error());
		rc = KW_OK;
	}
	return rc;
}

kw_status kwi_audit_resolve(struct kw_ctx *ctx, const struct kwi_query_in *in,
			    kw_status result, const kw_secret *s)
{
	struct kwi_audit *a = ctx->audit;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char ts[40], fp[2 * FP_LEN + 1];
	json_t *ev;

	if (a == NULL)
		return KW_OK;
	timestamp(ts, sizeof(ts));
	ev = json_object();
	json_object_set_new(ev, "time", json_string(ts));
	json_object_set_new(ev, "event", json_string("resolve"));
	json_object_set_new(ev, "chain", json_string(in->chain));
	json_object_set_new(ev, "provider", json_string(in->provider));
	json_object_set_new(ev, "user", str_or_null(in->user));
	json_object_set_new(ev, "org", str_or_null(in->org));
	json_object_set_new(ev, "result", json_string(kw_status_str(result)));
	if (s != NULL) {
		crypto_auth_hmacsha256(mac, (const unsigned char *)s->value,
				       s->len, a->fp_key);
		sodium_bin2hex(fp, sizeof(fp), mac, FP_LEN);
		sodium_memzero(mac, sizeof(mac));
		json_object_set_new(ev, "backend", json_string(s->data));
		json_object_set_new(ev, "fingerprint", json_string(fp));
	}
	return emit(a, ev);
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
	json_t *ev, *who;
	char ts[40];

	if (a == NULL)
		return KW_OK;
	timestamp(ts, sizeof(ts));
	ev = json_object();
	who = json_object();
	json_object_set_new(who, "user", str_or_null(actor->user));
	json_object_set_new(who, "org", str_or_null(actor->org));
	json_object_set_new(who, "role", json_string(role_str(actor->role)));
	json_object_set_new(ev, "time", json_string(ts));
	json_object_set_new(ev, "event", json_string(op));
	json_object_set_new(ev, "actor", who);
	json_object_set_new(ev, "backend", json_string(backend));
	if (k != NULL) {
		json_object_set_new(ev, "scope",
				    json_string(kw_scope_str(k->scope)));
		json_object_set_new(ev, "owner", str_or_null(k->owner));
		json_object_set_new(ev, "provider", json_string(k->provider));
	}
	json_object_set_new(ev, "result", json_string(kw_status_str(result)));
	return emit(a, ev);
}
