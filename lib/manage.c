/*
 * manage.c - storing, rotating, disabling, deleting and listing keys.
 *
 * Who may do what is decided here, once, for every store module: org keys
 * by that org's owners and admins, user keys by that user, system keys by a
 * system administrator, everything by a system administrator.  Values are
 * checked against their provider's format before a module sees them.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *kw_scope_str(kw_scope scope)
{
	switch (scope) {
	case KW_SCOPE_USER:
		return "user";
	case KW_SCOPE_ORG:
		return "org";
	case KW_SCOPE_SYSTEM:
		return "system";
	case KW_SCOPE_NONE:
		break;
	}
	return "none";
}

/* ---- provider formats ---- */

static const struct kwi_provider builtin_providers[] = {
	{ (char *)"anthropic", (char *)"sk-ant-", 20, 4096 },
	{ (char *)"openai", (char *)"sk-", 20, 4096 },
	{ (char *)"google", (char *)"AIza", 30, 4096 },
};

const struct kwi_provider *kwi_builtin_provider(const char *name)
{
	for (size_t i = 0;
	     i < sizeof(builtin_providers) / sizeof(builtin_providers[0]); i++)
		if (strcmp(builtin_providers[i].name, name) == 0)
			return &builtin_providers[i];
	return NULL;
}

static const struct kwi_provider *find_provider(const struct kw_ctx *ctx,
						const char *name)
{
	for (size_t i = 0; i < ctx->nproviders; i++)
		if (strcmp(ctx->providers[i].name, name) == 0)
			return &ctx->providers[i];
	return kwi_builtin_provider(name);
}

kw_status kwi_provider_check(const struct kw_ctx *ctx, const char *provider,
			     const char *value, size_t len, char *why,
			     size_t whylen)
{
	static const struct kwi_provider any = { NULL, (char *)"", 8, 4096 };
	const struct kwi_provider *p = find_provider(ctx, provider);

	if (p == NULL)
		p = &any;
	/* Printable ASCII without blanks: what every API key is made of, and
	 * what survives a trip through an environment variable or a header. */
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)value[i] < 0x21 ||
		    (unsigned char)value[i] > 0x7e) {
			snprintf(why, whylen,
				 "the %s key holds a blank or a character that "
				 "is not printable ASCII (at byte %zu)",
				 provider, i + 1);
			return KW_ERR_INVAL;
		}
	}
	if (len < p->min_len || len > p->max_len) {
		snprintf(why, whylen,
			 "%s keys are %zu to %zu characters long, not %zu",
			 provider, p->min_len, p->max_len, len);
		return KW_ERR_INVAL;
	}
	if (len < strlen(p->prefix) ||
	    memcmp(value, p->prefix, strlen(p->prefix)) != 0) {
		snprintf(why, whylen, "%s keys start with \"%s\"", provider,
			 p->prefix);
		return KW_ERR_INVAL;
	}
	return KW_OK;
}

/* ---- who may ---- */

#define ACTOR_HAS(a, f) \
	((a)->size >= offsetof(kw_actor, f) + sizeof((a)->f))
#define REF_HAS(r, f) \
	((r)->size >= offsetof(kw_key_ref, f) + sizeof((r)->f))

static bool same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static bool may(const kw_actor *a, kw_scope scope, const char *owner)
{
	if (a->role == KW_ROLE_SYSADMIN)
		return true;
	switch (scope) {
	case KW_SCOPE_ORG:
		return same(a->org, owner) &&
		       (a->role == KW_ROLE_OWNER || a->role == KW_ROLE_ADMIN);
	case KW_SCOPE_USER:
		return same(a->user, owner);
	default:
		return false;
	}
}

static kw_status refuse(kw_scope scope, const char *owner)
{
	switch (scope) {
	case KW_SCOPE_ORG:
		return kwi_error(KW_ERR_PERM,
				 "only an owner or admin of org \"%s\" may "
				 "manage its keys",
				 owner);
	case KW_SCOPE_USER:
		return kwi_error(KW_ERR_PERM,
				 "only user \"%s\" may manage that user's keys",
				 owner);
	default:
		return kwi_error(KW_ERR_PERM,
				 "only a system administrator may manage system "
				 "keys");
	}
}

static kw_status check_actor(const kw_actor *a)
{
	if (a == NULL || !ACTOR_HAS(a, role))
		return kwi_error(KW_ERR_INVAL,
				 "no actor, or one not initialised with "
				 "KW_ACTOR_INIT");
	if (a->role < KW_ROLE_NONE || a->role > KW_ROLE_SYSADMIN)
		return kwi_error(KW_ERR_INVAL, "unknown actor role %d",
				 (int)a->role);
	if (kwi_check_name("actor user name", a->user) != KW_OK ||
	    kwi_check_name("actor org name", a->org) != KW_OK)
		return KW_ERR_INVAL;
	if ((a->user != NULL && !kwi_valid_identity(a->user)) ||
	    (a->org != NULL && !kwi_valid_identity(a->org)))
		return kwi_error(KW_ERR_INVAL, "invalid actor user or org name");
	return KW_OK;
}

static struct kw_instance *find_backend(kw_ctx *ctx, const char *name)
{
	for (size_t i = 0; i < ctx->nbackends; i++)
		if (strcmp(ctx->backends[i].name, name) == 0)
			return &ctx->backends[i];
	return NULL;
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
	b = find_backend(ctx, name);
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

	rc = check_actor(actor);
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
	if (!may(actor, k->scope, k->owner))
		return refuse(k->scope, k->owner);
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

kw_status kw_key_set_active(kw_ctx *ctx, const kw_actor *actor,
			    const kw_key_ref *ref, int active)
{
	struct kw_instance *b;
	struct kw_reply r;
	kw_store_key k;
	kw_status rc;

	rc = prepare(ctx, actor, ref, &b, &k);
	if (rc != KW_OK)
		return rc;
	kwi_reply_init(&r, b->name);
	rc = b->module->ops.set_active(b->state, &k, active != 0, &r);
	return audited(ctx, actor, active ? "enable" : "disable", b, &k,
		       rc == KW_OK ? KW_OK : failed(b, rc, &k, &r));
}

kw_status kw_key_delete(kw_ctx *ctx, const kw_actor *actor,
			const kw_key_ref *ref)
{
	struct kw_instance *b;
	struct kw_reply r;
	kw_store_key k;
	kw_status rc;

	rc = prepare(ctx, actor, ref, &b, &k);
	if (rc != KW_OK)
		return rc;
	kwi_reply_init(&r, b->name);
	rc = b->module->ops.remove(b->state, &k, &r);
	return audited(ctx, actor, "delete", b, &k,
		       rc == KW_OK ? KW_OK : failed(b, rc, &k, &r));
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

	/* What the actor may not manage, it does not see. */
	if (!may(w->actor, rec->scope, rec->owner))
		return KW_OK;
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

	rc = check_actor(actor);
	if (rc != KW_OK)
		return rc;
	if (ctx == NULL || fn == NULL)
		return kwi_error(KW_ERR_INVAL, "no context or no callback");
	if (kwi_ctx_usable(ctx) != KW_OK ||
	    kwi_check_name("owner name", owner) != KW_OK)
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
	rc = check_actor(actor);
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

/* ---- the usage log ---- */

#define FILTER_END(m) \
	(offsetof(kw_usage_filter, m) + sizeof(((kw_usage_filter *)NULL)->m))
/* No filter is this large.  A caller built before kw_usage_filter began
 * with its size passes `since` there: 0, or a time far above this. */
#define FILTER_MAX 4096

/* kw_usage_filter as it was before it began with `size`, as a ledger
 * module built then reads it. */
struct unsized_filter {
	int64_t since;
	int64_t until;
	const char *user;
	const char *org;
	const char *backend;
};

/*
 * Take the caller's filter into *f.  This is the first kw_usage_filter
 * with a size, so no smaller one exists.  A larger one, from a later
 * keyway.h, is taken when everything past this library's fields is zero:
 * it then asks for no condition unknown here.  Anything else is no
 * kw_usage_filter, and is refused before anything past its size is read.
 */
static kw_status take_filter(const kw_usage_filter *in, kw_usage_filter *f)
{
	const kw_usage_filter all = KW_USAGE_FILTER_INIT;
	const unsigned char *rest = (const unsigned char *)in;

	*f = all;
	if (in == NULL)
		return KW_OK;
	if (in->size < sizeof(*f) || in->size > FILTER_MAX)
		return kwi_error(KW_ERR_INVAL,
				 "usage filter: size %zu is not that of a "
				 "kw_usage_filter; initialise it with "
				 "KW_USAGE_FILTER_INIT",
				 in->size);
	for (size_t i = sizeof(*f); i < in->size; i++)
		if (rest[i] != 0)
			return kwi_error(KW_ERR_INVAL,
					 "usage filter: it sets a condition "
					 "this library does not know (a filter "
					 "of %zu bytes, from a newer keyway.h; "
					 "this one knows %zu)",
					 in->size, sizeof(*f));
	memcpy(f, in, sizeof(*f));
	f->size = sizeof(*f);
	return KW_OK;
}

/* Does the row match filter f?  Applied to every row a ledger returns, so
 * that a ledger need not know every condition. */
static bool filter_matches(const kw_usage_filter *f, const kw_usage_row *row)
{
	return row->time >= f->since &&
	       (f->until == 0 || row->time < f->until) &&
	       (f->user == NULL || same(f->user, row->user)) &&
	       (f->org == NULL || same(f->org, row->org)) &&
	       (f->backend == NULL || same(f->backend, row->backend));
}

struct usage_walk {
	const kw_actor *actor;
	const kw_usage_filter *filter;
	kw_usage_fn *fn;
	void *arg;
};

static kw_status usage_one(void *arg, const kw_usage_row *row)
{
	const struct usage_walk *w = arg;
	const kw_actor *a = w->actor;

	if (a->role != KW_ROLE_SYSADMIN &&
	    !(same(a->org, row->org) &&
	      (a->role == KW_ROLE_OWNER || a->role == KW_ROLE_ADMIN)) &&
	    !same(a->user, row->user))
		return KW_OK;
	if (!filter_matches(w->filter, row))
		return KW_OK;
	return w->fn(w->arg, row);
}

kw_status kw_usage(kw_ctx *ctx, const kw_actor *actor,
		   const kw_usage_filter *filter, kw_usage_fn *fn, void *arg)
{
	kw_usage_filter f, given;
	struct usage_walk w = { actor, &f, fn, arg };
	struct unsized_filter old;
	const struct kw_module *d;
	const void *pass = &given;
	struct kw_instance *ledger;
	struct kw_reply r;
	kw_status rc;

	rc = check_actor(actor);
	if (rc != KW_OK)
		return rc;
	if (ctx == NULL || fn == NULL)
		return kwi_error(KW_ERR_INVAL, "no context or no callback");
	if (kwi_ctx_usable(ctx) != KW_OK)
		return KW_ERR_INVAL;
	rc = take_filter(filter, &f);
	if (rc != KW_OK)
		return rc;
	if (kwi_check_name("user name", f.user) != KW_OK ||
	    kwi_check_name("org name", f.org) != KW_OK ||
	    kwi_check_name("backend name", f.backend) != KW_OK)
		return KW_ERR_INVAL;
	ledger = ctx->ledger;
	if (ledger == NULL || ledger->module->ops.usage == NULL)
		return kwi_error(KW_ERR_UNSUPPORTED,
				 "%s: no usage log (set keyway.ledger)",
				 ctx->path);
	/* The filter in the layout the ledger was built with. */
	d = ledger->module->desc;
	given = f;
	if (d->size < offsetof(struct kw_module, usage_filter_size) +
			      sizeof(d->usage_filter_size)) {
		old.since = f.since;
		old.until = f.until;
		old.user = f.user;
		old.org = f.org;
		old.backend = f.backend;
		pass = &old;
	} else if (d->usage_filter_size == 0) {
		given.size = FILTER_END(backend);
	} else if (d->usage_filter_size < given.size) {
		given.size = d->usage_filter_size;
	}
	kwi_reply_init(&r, ledger->name);
	rc = ledger->module->ops.usage(ledger->state, pass, usage_one, &w, &r);
	if (rc != KW_OK && r.detail[0] != '\0')
		return kwi_error(rc, "keyway.ledger: %s", r.detail);
	return rc;
}

const char *const *kw_sensitive_env(const kw_ctx *ctx)
{
	return ctx != NULL ? (const char *const *)ctx->sensitive_env : NULL;
}

static bool same_name(const char *s, const char *name, size_t len)
{
	return s != NULL && strlen(s) == len && memcmp(s, name, len) == 0;
}

int kw_reads_env(const kw_ctx *ctx, const char *name)
{
	/* Read for a master key whatever keyway.master_key says. */
	static const char *const masters[] = { "KEYWAY_MASTER_KEY",
					       "API_KEY_ENCRYPTION_KEY",
					       "KEYWAY_PASSPHRASE" };
	const struct kw_instance *b;
	size_t len, i;

	if (ctx == NULL || name == NULL)
		return 0;
	len = strcspn(name, "=");
	for (i = 0; i < sizeof(masters) / sizeof(masters[0]); i++)
		if (same_name(masters[i], name, len))
			return 1;
	for (i = 0; ctx->sensitive_env != NULL &&
		    ctx->sensitive_env[i] != NULL; i++)
		if (same_name(ctx->sensitive_env[i], name, len))
			return 1;
	for (i = 0; i < ctx->nbackends; i++) {
		b = &ctx->backends[i];
		if (b->opened && b->module->ops.reads_env != NULL &&
		    b->module->ops.reads_env(b->state, name, len))
			return 1;
	}
	return 0;
}

kw_status kw_backend_scope(const kw_ctx *ctx, const char *backend,
			   kw_scope *scope)
{
	if (scope != NULL)
		*scope = KW_SCOPE_NONE;
	if (ctx == NULL || backend == NULL || scope == NULL)
		return kwi_error(KW_ERR_INVAL,
				 "no context, backend or scope");
	/* Not echoed below unless it is a name that can be shown. */
	if (kwi_check_name("backend name", backend) != KW_OK)
		return KW_ERR_INVAL;
	for (size_t i = 0; i < ctx->nbackends; i++) {
		if (strcmp(ctx->backends[i].name, backend) == 0) {
			*scope = ctx->backends[i].scope;
			return KW_OK;
		}
	}
	return kwi_error(KW_ERR_INVAL, "%s: no backend \"%.64s\"", ctx->path,
			 backend);
}
