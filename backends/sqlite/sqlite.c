/*
 * sqlite.c - the sqlite module: its descriptor, and the dispatch of each
 * operation to the role the host opened the instance in.
 *
 * As a backend the module is a store of sealed API keys (store.c); named
 * as keyway.ledger it is the embedded quota ledger instead (ledger.c), in
 * a file of its own.  Both roles run on the same kind of pool of
 * connections (pool.c) and never call each other.  Each role's state
 * begins with a struct sq_state, whose role says which it is: only this
 * file looks at it, and hands each role its own state.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "ledger.h"
#include "pool.h"
#include "store.h"

/* Refuse an operation that belongs to the other role. */
static kw_status sq_wrong_role(const struct sq_state *st, kw_reply *r)
{
	if (st->role == KW_INSTANCE_LEDGER)
		st->host->reply_detail(r, "%s is the quota ledger, not a key "
				       "store", st->path);
	else
		st->host->reply_detail(r, "%s is a key store, not the quota "
				       "ledger", st->path);
	return KW_ERR_UNSUPPORTED;
}

/* state, when it is of `role`; else NULL, after saying so through r. */
static void *sq_as(void *state, kw_instance_role role, kw_reply *r)
{
	const struct sq_state *st = state;

	if (st->role == role)
		return state;
	(void)sq_wrong_role(st, r);
	return NULL;
}

/* Refuse a role, or a host, the module cannot serve. */
static kw_status sq_can_serve(const kw_host *host, kw_instance *inst,
			      kw_instance_role role)
{
	if (role != KW_INSTANCE_BACKEND && role != KW_INSTANCE_LEDGER) {
		host->error(inst, NULL,
			    "the sqlite module cannot serve instance role %d",
			    (int)role);
		return KW_ERR_MODULE;
	}
	if (role == KW_INSTANCE_BACKEND && !KW_HOST_HAS(host, sealed_key_id)) {
		host->error(inst, NULL,
			    "this keyway cannot seal keys; the sqlite module "
			    "needs a newer libkeyway");
		return KW_ERR_MODULE;
	}
	if (sqlite3_threadsafe() == 0) {
		host->error(inst, NULL,
			    "SQLite %s was built without thread support",
			    sqlite3_libversion());
		return KW_ERR_MODULE;
	}
	return KW_OK;
}

static kw_status sq_open(const kw_host *host, kw_instance *inst,
			 void **state)
{
	kw_instance_role role = KW_INSTANCE_BACKEND;
	struct sq_ledger *ledger = NULL;
	struct sq_store *store = NULL;
	kw_status rc;

	*state = NULL;
	if (KW_HOST_HAS(host, instance_role))
		role = host->instance_role(inst);
	rc = sq_can_serve(host, inst, role);
	if (rc != KW_OK)
		return rc;
	if (role == KW_INSTANCE_LEDGER) {
		rc = sq_ledger_open(host, inst, &ledger);
		*state = ledger;
	} else {
		rc = sq_store_open(host, inst, &store);
		*state = store;
	}
	return rc;
}

static void sq_close(void *state)
{
	const struct sq_state *st = state;

	if (st == NULL)
		return;
	if (st->role == KW_INSTANCE_LEDGER)
		sq_ledger_close(state);
	else
		sq_store_close(state);
}

static kw_status sq_check(void *state, kw_reply *r)
{
	const struct sq_state *st = state;

	if (st->role == KW_INSTANCE_LEDGER)
		return sq_ledger_check(state, r);
	return sq_store_check(state, r);
}

/* ---- the key store ---- */

static kw_status sq_lookup(void *state, const kw_query *q)
{
	struct sq_store *st = sq_as(state, KW_INSTANCE_BACKEND, q->reply);

	return st != NULL ? sq_store_lookup(st, q) : KW_ERR_UNSUPPORTED;
}

static void sq_walk_end(void *state)
{
	const struct sq_state *st = state;

	if (st->role == KW_INSTANCE_BACKEND)
		sq_store_walk_end(state);
}

static kw_status sq_put(void *state, const kw_store_put *p, kw_reply *r)
{
	struct sq_store *st = sq_as(state, KW_INSTANCE_BACKEND, r);

	return st != NULL ? sq_store_put(st, p, r) : KW_ERR_UNSUPPORTED;
}

static kw_status sq_set_active(void *state, const kw_store_key *k,
			       bool active, kw_reply *r)
{
	struct sq_store *st = sq_as(state, KW_INSTANCE_BACKEND, r);

	return st != NULL ? sq_store_set_active(st, k, active, r)
			  : KW_ERR_UNSUPPORTED;
}

static kw_status sq_remove(void *state, const kw_store_key *k, kw_reply *r)
{
	struct sq_store *st = sq_as(state, KW_INSTANCE_BACKEND, r);

	return st != NULL ? sq_store_remove(st, k, r) : KW_ERR_UNSUPPORTED;
}

static kw_status sq_list(void *state, kw_scope scope, const char *owner,
			 kw_store_list_fn *fn, void *arg, kw_reply *r)
{
	struct sq_store *st = sq_as(state, KW_INSTANCE_BACKEND, r);

	return st != NULL ? sq_store_list(st, scope, owner, fn, arg, r)
			  : KW_ERR_UNSUPPORTED;
}

static kw_status sq_rekey(void *state, uint64_t *count, kw_reply *r)
{
	struct sq_store *st = sq_as(state, KW_INSTANCE_BACKEND, r);

	if (st != NULL)
		return sq_store_rekey(st, count, r);
	if (count != NULL)
		*count = 0;
	return KW_ERR_UNSUPPORTED;
}

static kw_status sq_used_batch(void *state, const kw_store_use *u, size_t n,
			       kw_reply *r)
{
	struct sq_store *st = sq_as(state, KW_INSTANCE_BACKEND, r);

	return st != NULL ? sq_store_used_batch(st, u, n, r)
			  : KW_ERR_UNSUPPORTED;
}

static kw_status sq_used(void *state, const kw_store_key *k, uint64_t count,
			 int64_t when, kw_reply *r)
{
	const kw_store_use u = { *k, count, when };

	return sq_used_batch(state, &u, 1, r);
}

/* ---- the ledger ---- */

static kw_status sq_charge(void *state, kw_charge *c, bool dry_run,
			   kw_reply *r)
{
	struct sq_ledger *st;

	/* Cleared whatever the answer, the other role's refusal too. */
	c->full = 0;
	c->count = 0;
	c->usage_id = 0;
	st = sq_as(state, KW_INSTANCE_LEDGER, r);
	return st != NULL ? sq_ledger_charge(st, c, dry_run, r)
			  : KW_ERR_UNSUPPORTED;
}

static kw_status sq_refund(void *state, const kw_charge *c, kw_reply *r)
{
	struct sq_ledger *st = sq_as(state, KW_INSTANCE_LEDGER, r);

	return st != NULL ? sq_ledger_refund(st, c, r) : KW_ERR_UNSUPPORTED;
}

static kw_status sq_usage(void *state, const kw_usage_filter *f,
			  kw_usage_fn *fn, void *arg, kw_reply *r)
{
	struct sq_ledger *st = sq_as(state, KW_INSTANCE_LEDGER, r);

	return st != NULL ? sq_ledger_usage(st, f, fn, arg, r)
			  : KW_ERR_UNSUPPORTED;
}

static const kw_setting_spec sq_settings[] = {
	{ "path", KW_SETTING_PATH, KW_SETTING_REQUIRED },
	{ "busy_timeout_ms", KW_SETTING_INT, 0 },
	{ NULL, 0, 0 }
};

static const struct kw_module sq_module = {
	KW_MODULE_HEADER,
	.name = "sqlite",
	.description = "sealed API keys in a SQLite database; or, as "
		       "keyway.ledger, the quota ledger",
	.caps = KW_CAP_LOOKUP | KW_CAP_STORE | KW_CAP_LIST | KW_CAP_SCOPED |
		KW_CAP_LEDGER,
	.settings = sq_settings,
	.open = sq_open,
	.close = sq_close,
	.check = sq_check,
	.lookup = sq_lookup,
	.put = sq_put,
	.set_active = sq_set_active,
	.remove = sq_remove,
	.list = sq_list,
	.rekey = sq_rekey,
	.used = sq_used,
	.charge = sq_charge,
	.refund = sq_refund,
	.usage = sq_usage,
	.walk_end = sq_walk_end,
	.used_batch = sq_used_batch,
};

KW_MODULE_EXPORT(sq_module)
