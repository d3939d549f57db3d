/*
 * audit.c - the audit trail's events: one JSON object per resolve and per
 * change (jsonline.c), to a file (one line each) or to syslog
 * (audit_sink.c).
 *
 * A resolve is recorded with a fingerprint of the key it handed out:
 * HMAC-SHA256 under a key derived from the master key, so the same key
 * always has the same fingerprint, different keys differ, and nothing in
 * the trail helps to recover a key.  Every resolve pays for its line before
 * the key is handed out, so the HMAC's keyed inner and outer states are
 * computed once, at open, and copied for each line.
 */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <sodium.h>

#include "audit.h"
#include "audit_sink.h"
#include "context.h"
#include "crypto.h"
#include "error.h"
#include "jsonline.h"
#include "request.h"
#include "secmem.h"
#include "secret.h"

#define FP_LEN 16 /* bytes of the HMAC kept: 128 bits */

struct kwi_audit {
	struct kwi_audit_sink sink;
	/* HMAC state keyed with the fingerprint key (guarded); read-only
	 * once open, so threads copy it without a lock. */
	crypto_auth_hmacsha256_state *fp_state;
};

static const char fp_label[] = "keyway audit fingerprint v1";

kw_status kwi_audit_new(struct kw_ctx *ctx, const struct kwi_audit_conf *c)
{
	struct kwi_audit *a = calloc(1, sizeof(*a));

	if (a == NULL || !kwi_audit_sink_init(&a->sink, c)) {
		free(a);
		return KW_ERR_NOMEM;
	}
	ctx->audit = a;
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
	else
		rc = kwi_kdf_argon2id(m->pass, m->pass_len, salt, base);
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

	if (a == NULL)
		return KW_OK;
	if (fp_state_init(ctx, a) != KW_OK) {
		kwi_diag(d, KW_ERR_NOMEM, ctx->path, 0,
			 "keyway.audit: cannot derive the fingerprint key");
		return KW_ERR_NOMEM;
	}
	return kwi_audit_sink_open(&a->sink, ctx->checking, d);
}

void kwi_audit_free(struct kw_ctx *ctx)
{
	struct kwi_audit *a = ctx->audit;

	if (a == NULL)
		return;
	kwi_audit_sink_close(&a->sink);
	kwi_secure_free(a->fp_state, sizeof(*a->fp_state));
	free(a);
	ctx->audit = NULL;
}

const char *kwi_audit_path(const struct kw_ctx *ctx)
{
	const struct kwi_audit *a = ctx->audit;

	return a != NULL && a->sink.conf.to == KWI_AUDIT_JSONL
		       ? a->sink.conf.path
		       : NULL;
}

/* Every event's line starts with its time and what it is. */
static void event_start(struct kwi_line *l, const char *event)
{
	kwi_line_init(l);
	kwi_line_open(l, NULL);
	kwi_line_time(l);
	kwi_line_member(l, "event", event, false);
}

/* Write the finished object as one line, or send it to syslog. */
static kw_status emit(struct kwi_audit *a, struct kwi_line *l)
{
	kw_status rc;

	if (!kwi_line_end(l)) {
		rc = kwi_error(KW_ERR_NOMEM, "keyway.audit: out of memory");
		goto out;
	}
	rc = kwi_audit_sink_write(&a->sink, l->buf, l->len);
	if (rc != KW_OK && a->sink.conf.allow) {
		syslog(LOG_AUTHPRIV | LOG_ERR, "keyway: %s", kw_last_error());
		rc = KW_OK;
	}
out:
	kwi_line_release(l);
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
	struct kwi_line l;

	if (a == NULL)
		return KW_OK;
	event_start(&l, "resolve");
	kwi_line_member(&l, "chain", in->chain, false);
	kwi_line_member(&l, "provider", in->provider, false);
	kwi_line_member(&l, "user", in->user, true);
	kwi_line_member(&l, "org", in->org, true);
	kwi_line_member(&l, "result", kw_status_str(result), false);
	if (s != NULL) {
		fingerprint(a, s, fp);
		kwi_line_member(&l, "backend", s->data, false);
		kwi_line_member(&l, "fingerprint", fp, false);
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
	struct kwi_line l;

	if (a == NULL)
		return KW_OK;
	event_start(&l, op);
	kwi_line_open(&l, "actor");
	kwi_line_member(&l, "user", actor->user, true);
	kwi_line_member(&l, "org", actor->org, true);
	kwi_line_member(&l, "role", role_str(actor->role), false);
	kwi_line_close(&l);
	kwi_line_member(&l, "backend", backend, false);
	if (k != NULL) {
		kwi_line_member(&l, "scope", kw_scope_str(k->scope), false);
		kwi_line_member(&l, "owner", k->owner, true);
		kwi_line_member(&l, "provider", k->provider, false);
	}
	kwi_line_member(&l, "result", kw_status_str(result), false);
	return emit(a, &l);
}

/* The fields of kw_refusal that a caller of this size set. */
#define REFUSAL_END(m) \
	(offsetof(kw_refusal, m) + sizeof(((kw_refusal *)NULL)->m))

kw_status kw_audit_refusal(kw_ctx *ctx, const kw_refusal *r)
{
	struct kwi_audit *a;
	struct kwi_line l;
	kw_status rc;

	if (ctx == NULL || r == NULL)
		return kwi_error(KW_ERR_INVAL, "kw_audit_refusal: no context "
				 "or refusal");
	rc = kwi_ctx_usable(ctx);
	if (rc != KW_OK)
		return rc;
	if (r->size < REFUSAL_END(reason) || r->size > 4096)
		return kwi_error(KW_ERR_INVAL, "kw_audit_refusal: a refusal of "
				 "%zu bytes; initialise it with "
				 "KW_REFUSAL_INIT", r->size);
	if (r->op == NULL || r->caller == NULL || r->reason == NULL)
		return kwi_error(KW_ERR_INVAL, "kw_audit_refusal: op, caller "
				 "and reason are required");
	a = ctx->audit;
	if (a == NULL)
		return KW_OK;
	event_start(&l, "refused");
	kwi_line_member(&l, "op", r->op, false);
	kwi_line_open(&l, "caller");
	kwi_line_member(&l, "name", r->caller, false);
	if (r->uid >= 0)
		kwi_line_int(&l, "uid", (long long)r->uid);
	if (r->pid > 0)
		kwi_line_int(&l, "pid", (long long)r->pid);
	kwi_line_close(&l);
	kwi_line_member(&l, "chain", r->chain, true);
	kwi_line_member(&l, "provider", r->provider, true);
	kwi_line_member(&l, "reason", r->reason, false);
	return emit(a, &l);
}
