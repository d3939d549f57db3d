/*
 * manage.c - storing, rotating, disabling, deleting and listing keys.
 *
 * Who may do what is decided once, for every store module (actor.c).
 * Values are checked against their provider's format before a module sees
 * them.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "actor.h"
#include "audit.h"
#include "conf.h"
#include "context.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "names.h"
#include "providers.h"
#include "remote.h"

#define REF_HAS(r, f) \
	((r)->size >= offsetof(kw_key_ref, f) + sizeof((r)->f))

const char *kw_scope_str(kw_scope scope)
{
	return kw_scope_name(scope);
}

/* A backend that has `cap`. */
static kw_status store_backend(kw_ctx *ctx, const char *name, uint32_t cap,
			       struct kw_instance **out)
{
	struct kw_instance *b;

	*out = NULL;
	if (ctx == NULL || name == NULL)
		return kwi_error(KW_ERR_INVAL, "no context or no backend");
	if (kwi_ctx_usable(ctx) != KW_OK ||
	    kwi_check_name("backend name", name) != KW_OK)
		return KW_ERR_INVAL;
	if (ctx->remote != NULL)
		return kwi_remote_no_management(ctx->remote);
	b = kwi_find_backend(ctx, name);
	if (b == NULL)
		return kwi_error(KW_ERR_INVAL, "%s: no backend \"%.64s\"",
				 ctx->path, name);
	if (!(b->module->desc->caps & cap))
		return kwi_error(KW_ERR_UNSUPPORTED,
				 "backend \"%s\" (module \"%s\") does not %s "
				 "keys",
				 b->name, b->module->name,
				 cap == KW_CAP_LIST ? "list" : "store");
	*out = b;
	return KW_OK;
}

/* Check actor and reference; fill k with the key they name. */
static kw_status prepare(kw_ctx *ctx, const kw_actor *actor,
			 const kw_key_ref *ref, struct kw_instance **b,
			 kw_store_key *k)
{
	kw_status rc;

	rc = kwi_check_actor(actor);
	if (rc != KW_OK)
		return rc;
	if (ref == NULL || !REF_HAS(ref, provider))
		return kwi_error(KW_ERR_INVAL,
				 "no key reference, or one not initialised "
				 "with KW_KEY_REF_INIT");
	rc = store_backend(ctx, ref->backend, KW_CAP_STORE, b);
	if (rc != KW_OK)
		return rc;
	if (kwi_check_name("owner name", ref->owner) != KW_OK ||
	    kwi_check_name("provider name", ref->provider) != KW_OK)
		return KW_ERR_INVAL;

	k->scope = (*b)->scope;
	k->owner = ref->owner;
	k->provider = ref->provider;
	if (ref->scope != KW_SCOPE_NONE && ref->scope != (*b)->scope)
		return kwi_error(KW_ERR_INVAL,
				 "backend \"%s\" holds %s keys, not %s keys",
				 (*b)->name, kw_scope_str((*b)->scope),
				 kw_scope_str(ref->scope));
	if (ref->provider == NULL || !kwi_valid_provider(ref->provider))
		return kwi_error(KW_ERR_INVAL,
				 "invalid provider name (lower-case letters, "
				 "digits, '-', '_' and '.')");
	if (k->scope == KW_SCOPE_SYSTEM && k->owner != NULL)
		return kwi_error(KW_ERR_INVAL, "system keys have no owner");
	if (k->scope != KW_SCOPE_SYSTEM &&
	    (k->owner == NULL || !kwi_valid_identity(k->owner)))
		return kwi_error(KW_ERR_INVAL,
				 "%s keys need a valid owner (the %s's name)",
				 kw_scope_str(k->scope),
				 kw_scope_str(k->scope));
	if (!kwi_may(actor, k->scope, k->owner))
		return kwi_refuse(k->scope, k->owner);
	return KW_OK;
}

/* "org key of "acme" for anthropic" */
static void describe(const kw_store_key *k, char *buf, size_t len)
{
	if (k->scope == KW_SCOPE_SYSTEM)
		snprintf(buf, len, "system key for %s", k->provider);
	else
		snprintf(buf, len, "%s key of \"%s\" for %s",
			 kw_scope_str(k->scope), k->owner, k->provider);
}

/*
 * Record a change in the audit trail.  The change has been made; if it
 * cannot be recorded, say so (unless on_failure = "allow").
 */
static kw_status audited(kw_ctx *ctx, const kw_actor *actor, const char *op,
			 const struct kw_instance *b, const kw_store_key *k,
			 kw_status rc)
{
	char why[1024];

	if (ctx->audit == NULL)
		return rc;
	snprintf(why, sizeof(why), "%s", kw_last_error());
	if (kwi_audit_change(ctx, actor, op, b->name, k, rc) != KW_OK &&
	    rc == KW_OK)
		return kwi_error(KW_ERR_IO, "%s was done but not audited: %s",
				 op, kw_last_error());
	if (rc != KW_OK)
		kwi_error(rc, "%s", why);
	return rc;
}

static kw_status failed(const struct kw_instance *b, kw_status st,
			const kw_store_key *k, const struct kw_reply *r)
{
	char what[384];

	if (r->detail[0] != '\0')
		return kwi_error(st, "backend \"%s\": %s", b->name, r->detail);
	describe(k, what, sizeof(what));
	return kwi_error(st, "backend \"%s\": %s: %s", b->name, what,
			 kw_status_str(st));
}

kw_status kw_key_put(kw_ctx *ctx, const kw_actor *actor, const kw_key_ref *ref,
		     const char *value, size_t len, const char *name,
		     kw_put_mode mode)
{
	struct kw_instance *b;
	struct kw_reply r;
	kw_store_put p;
	char why[256];
	kw_status rc;

	rc = prepare(ctx, actor, ref, &b, &p.key);
	if (rc != KW_OK)
		return rc;
	if (mode != KW_PUT_CREATE && mode != KW_PUT_ROTATE)
		return kwi_error(KW_ERR_INVAL, "unknown put mode %d", (int)mode);
	if (value == NULL || len == 0)
		return kwi_error(KW_ERR_INVAL, "empty key");
	if (kwi_check_name("key name", name) != KW_OK)
		return KW_ERR_INVAL;
	if (name != NULL && (strlen(name) > 128 || strpbrk(name, "\n\r")))
		return kwi_error(KW_ERR_INVAL,
				 "key name: at most 128 characters on one line");
	rc = kwi_provider_check(ctx, p.key.provider, value, len, why,
				sizeof(why));
	if (rc != KW_OK)
		return kwi_error(rc, "%s", why);

	p.value = value;
	p.len = len;
	p.name = name;
	p.mode = mode;
	kwi_reply_init(&r, b->name);
	rc = b->module->ops.put(b->state, &p, &r);
	return audited(ctx, actor, mode == KW_PUT_ROTATE ? "rotate" : "put", b,
		       &p.key, rc == KW_OK ? KW_OK : failed(b, rc, &p.key, &r));
}

/* Enable (active 1), disable (0) or delete (-1) the key ref names. */
static kw_status change_key(kw_ctx *ctx, const kw_actor *actor,
			    const kw_key_ref *ref, const char *op, int active)
{
	struct kw_instance *b;
	struct kw_reply r;
	kw_store_key k;
	kw_status rc;

	rc = prepare(ctx, actor, ref, &b, &k);
	if (rc != KW_OK)
		return rc;
	kwi_reply_init(&r, b->name);
	if (active < 0)
		rc = b->module->ops.remove(b->state, &k, &r);
	else
		rc = b->module->ops.set_active(b->state, &k, active != 0, &r);
	return audited(ctx, actor, op, b, &k,
		       rc == KW_OK ? KW_OK : failed(b, rc, &k, &r));
}

kw_status kw_key_set_active(kw_ctx *ctx, const kw_actor *actor,
			    const kw_key_ref *ref, int active)
{
	return change_key(ctx, actor, ref, active ? "enable" : "disable",
			  active != 0);
}

kw_status kw_key_delete(kw_ctx *ctx, const kw_actor *actor,
			const kw_key_ref *ref)
{
	return change_key(ctx, actor, ref, "delete", -1);
}

struct list_walk {
	const kw_actor *actor;
	const struct kw_instance *backend;
	kw_key_list_fn *fn;
	void *arg;
};

static kw_status list_one(void *arg, const kw_store_record *rec)
{
	const struct list_walk *w = arg;
	kw_key_info info;
	size_t bad;

	/* What the actor may not manage, it does not see. */
	if (!kwi_may(w->actor, rec->scope, rec->owner))
		return KW_OK;
	/* A store that others write too (Vault) may hold names keyway would
	 * never take: they reach no listing, and so no terminal. */
	if ((rec->owner != NULL && !kwi_valid_identity(rec->owner)) ||
	    rec->provider == NULL || !kwi_valid_provider(rec->provider) ||
	    (rec->name != NULL && kwi_unshowable(rec->name, &bad, NULL))) {
		kwi_host.log(w->backend, KW_LOG_WARNING,
			     "a key whose owner, provider or name is not a "
			     "name keyway takes is left out of the listing");
		return KW_OK;
	}
	memset(&info, 0, sizeof(info));
	info.backend = w->backend->name;
	info.scope = rec->scope;
	info.owner = rec->owner;
	info.provider = rec->provider;
	info.name = rec->name != NULL ? rec->name : "";
	info.active = rec->active;
	info.masked = rec->masked;
	info.usage_count = rec->usage_count;
	info.last_used = rec->last_used;
	info.created = rec->created;
	info.rotated = rec->rotated;
	info.key_id = rec->key_id;
	return w->fn(w->arg, &info);
}

kw_status kw_key_list(kw_ctx *ctx, const kw_actor *actor, const char *backend,
		      const char *owner, kw_key_list_fn *fn, void *arg)
{
	struct list_walk w = { actor, NULL, fn, arg };
	struct kw_instance *b;
	kw_status rc;

	rc = kwi_check_caller(ctx, actor, fn != NULL);
	if (rc != KW_OK)
		return rc;
	if (kwi_check_name("owner name", owner) != KW_OK)
		return KW_ERR_INVAL;
	if (owner != NULL && !kwi_valid_identity(owner))
		return kwi_error(KW_ERR_INVAL, "invalid owner name");
	if (backend != NULL) {
		rc = store_backend(ctx, backend, KW_CAP_LIST, &b);
		if (rc != KW_OK)
			return rc;
	}
	for (size_t i = 0; i < ctx->nbackends; i++) {
		struct kw_reply r;
		kw_store_key k = { KW_SCOPE_NONE, owner, "*" };

		b = &ctx->backends[i];
		if ((backend != NULL && strcmp(b->name, backend) != 0) ||
		    !(b->module->desc->caps & KW_CAP_LIST))
			continue;
		w.backend = b;
		k.scope = b->scope;
		kwi_reply_init(&r, b->name);
		rc = b->module->ops.list(b->state, b->scope, owner, list_one,
					 &w, &r);
		if (rc != KW_OK)
			return r.detail[0] != '\0' ? failed(b, rc, &k, &r)
						   : kwi_error(rc,
							       "listing "
							       "stopped: %s",
							       kw_status_str(
								       rc));
	}
	return KW_OK;
}

kw_status kw_rekey(kw_ctx *ctx, const kw_actor *actor, const char *backend,
		   uint64_t *count)
{
	struct kw_instance *b;
	struct kw_reply r;
	uint64_t n = 0;
	kw_status rc;

	if (count != NULL)
		*count = 0;
	rc = kwi_check_actor(actor);
	if (rc != KW_OK)
		return rc;
	rc = store_backend(ctx, backend, KW_CAP_STORE, &b);
	if (rc != KW_OK)
		return rc;
	if (b->module->ops.rekey == NULL)
		return kwi_error(KW_ERR_UNSUPPORTED,
				 "backend \"%s\" (module \"%s\") cannot re-seal "
				 "its keys",
				 b->name, b->module->name);
	if (actor->role != KW_ROLE_SYSADMIN)
		return kwi_error(KW_ERR_PERM,
				 "only a system administrator may re-seal a "
				 "store");
	kwi_reply_init(&r, b->name);
	rc = b->module->ops.rekey(b->state, &n, &r);
	if (rc != KW_OK)
		rc = kwi_error(rc, "backend \"%s\": %s", b->name,
			       r.detail[0] != '\0' ? r.detail
						   : kw_status_str(rc));
	rc = audited(ctx, actor, "rekey", b, NULL, rc);
	if (rc != KW_OK)
		return rc;
	if (count != NULL)
		*count = n;
	return KW_OK;
}
