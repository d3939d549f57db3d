/*
 * chain.c - the walk down a chain: each entry's backend asked in turn, its
 * answer charged to the quotas and acted on as the entry's control says
 * (control.c compiles it), until one is done or dies or the chain runs
 * out.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "chain.h"
#include "conf.h"
#include "context.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "quota.h"
#include "request.h"
#include "secret.h"
#include "usecount.h"

/*
 * When the chain runs out, the verdict is the most telling answer seen: a
 * denial (there is a key, but not for you now), then an error (something is
 * broken and should be fixed), then unavailability (try again later), then
 * notfound.
 */
static int rank(enum kwi_answer a)
{
	switch (a) {
	case KWI_DENIED:
		return 4;
	case KWI_ERROR:
		return 3;
	case KWI_UNAVAIL:
		return 2;
	case KWI_NOTFOUND:
		return 1;
	default:
		return 0;
	}
}

/* A found key from a backend with quotas costs a charge: if the ledger
 * refuses, the backend's answer is denied. */
static kw_status charge(const struct kw_instance *b,
			const struct kwi_query_in *in, bool dry_run,
			struct kw_reply *r)
{
	char why[sizeof(r->detail)];
	kw_status st;
	size_t n;

	why[0] = '\0';
	st = kwi_quota_charge(b->ctx, b, in, dry_run, &r->charged, why,
			      sizeof(why));
	if (st != KW_OK) {
		kwi_reply_clear(r);
		memcpy(r->detail, why, sizeof(r->detail));
		return st;
	}
	n = strlen(r->detail);
	if (why[0] != '\0' && n + 3 < sizeof(r->detail))
		snprintf(r->detail + n, sizeof(r->detail) - n, "%s%s",
			 n > 0 ? "; " : "", why);
	return KW_OK;
}

/* The owner of the key that b is asked for: the request's user or org
 * for a backend of user or org keys.  False, with r->detail saying why,
 * when the request names none. */
static bool owner_for(const struct kw_instance *b,
		      const struct kwi_query_in *in, const char **owner,
		      struct kw_reply *r)
{
	bool scoped = b->scope == KW_SCOPE_USER || b->scope == KW_SCOPE_ORG;

	*owner = b->scope == KW_SCOPE_USER  ? in->user
		 : b->scope == KW_SCOPE_ORG ? in->org
					    : NULL;
	if (!scoped || *owner != NULL)
		return true;
	snprintf(r->detail, sizeof(r->detail), "the request names no %s",
		 kw_scope_str(b->scope));
	return false;
}

/* What a module answered, as the chain can act on it: a status it does
 * not know, or a found key that is none, is the backend's error. */
static kw_status check_answer(const struct kw_instance *b, kw_status st,
			      struct kw_reply *r)
{
	if (!kwi_status_known(st)) {
		/* A module built against a newer ABI, or a bug: either way
		 * it is not an answer the chain can act on. */
		char said[sizeof(r->detail)];

		memcpy(said, r->detail, sizeof(said));
		snprintf(r->detail, sizeof(r->detail),
			 "module \"%s\" answered unknown status %d%s%s",
			 b->module->name, (int)st, said[0] != '\0' ? ": " : "",
			 said);
		return KW_ERR_BACKEND;
	}
	if (st == KW_OK && r->secret == NULL) {
		snprintf(r->detail, sizeof(r->detail),
			 "module \"%s\" answered found without a key",
			 b->module->name);
		return KW_ERR_BACKEND;
	}
	if (st == KW_OK && r->secret->len == 0) {
		snprintf(r->detail, sizeof(r->detail),
			 "module \"%s\" answered found with an empty key",
			 b->module->name);
		return KW_ERR_BACKEND;
	}
	if (st == KW_OK &&
	    memchr(r->secret->value, '\0', r->secret->len) != NULL) {
		/* Callers take the value as a C string: they would use a
		 * different key than the one counted and charged. */
		snprintf(r->detail, sizeof(r->detail),
			 "module \"%s\" answered found with a key that holds "
			 "a NUL byte",
			 b->module->name);
		return KW_ERR_BACKEND;
	}
	return st;
}

/* Ask one backend. */
static kw_status ask(const struct kwi_entry *e, const struct kwi_query_in *in,
		     bool dry_run, struct kw_reply *r)
{
	const struct kw_instance *b = e->backend;
	kw_query q;
	kw_status st;

	q.size = sizeof(q);
	q.scope = b->scope;
	q.provider = in->provider;
	q.user = in->user;
	q.org = in->org;
	q.chain = in->chain;
	q.reply = r;
	q.flags = (b->module->ops.walk_end != NULL ? KW_QUERY_WALK : 0) |
		  (dry_run ? KW_QUERY_EXPLAIN : 0);
	r->provider = in->provider;
	if (!owner_for(b, in, &q.owner, r))
		return KW_ERR_NOTFOUND;
	r->owner = q.owner;

	st = check_answer(b, b->module->ops.lookup(b->state, &q), r);
	if (st != KW_OK) {
		kwi_reply_clear(r);
		return st;
	}
	r->secret->value[r->secret->len] = '\0';
	if (b->nquotas > 0)
		st = charge(b, in, dry_run, r);
	return st;
}

/* The secret the chain hands out carries what it takes to refund its
 * charge and to count its use. */
static void keep(struct kw_instance *b, struct kw_reply *r)
{
	struct kw_secret *s = r->secret;

	s->charged = r->charged;
	r->charged = NULL;
	if (b->module->ops.used != NULL && b->ctx->usage != NULL) {
		s->usage = kwi_usecount_ref(b->ctx);
		s->store = b;
		s->scope = b->scope;
	}
}

/* The entry whose backend answered r is done: its key is handed out, or
 * on a trace, named. */
static kw_status done(const struct kwi_entry *e, kw_trace *t, kw_status st,
		      struct kw_reply *r, kw_secret **out)
{
	if (t != NULL) {
		kwi_trace_found(t, e->backend->name, st, r->detail);
		kwi_reply_clear(r);
	} else {
		keep(e->backend, r);
		*out = r->secret;
	}
	return KW_OK;
}

/* The chain's verdict is what backend answered: on the trace, or as the
 * error kw_last_error() tells. */
static kw_status verdict(const struct kwi_chain *c,
			 const struct kwi_query_in *in, kw_trace *t,
			 const char *backend, kw_status st, const char *detail)
{
	if (t != NULL)
		kwi_trace_say(t, backend, st, detail);
	else
		kwi_error(st, "chain \"%s\", provider \"%s\": %s answered "
			      "%s%s%s",
			  c->name, in->provider, backend, kw_status_str(st),
			  detail[0] != '\0' ? ": " : "", detail);
	return st;
}

/* The most telling answer the walk has gone on past (see rank()). */
struct worst {
	const struct kwi_entry *e;   /* NULL: none yet */
	kw_status st;
	char detail[256];
};

static void note_answer(struct worst *w, const struct kwi_entry *e,
			enum kwi_answer a, kw_status st, const char *detail)
{
	if (rank(a) > rank(kwi_answer_of(w->st)) ||
	    (w->e == NULL && a != KWI_FOUND)) {
		w->st = a == KWI_FOUND ? KW_ERR_NOTFOUND : st;
		w->e = e;
		memcpy(w->detail, detail, sizeof(w->detail));
	}
}

/* The chain ran out. */
static kw_status ran_out(const struct kwi_chain *c,
			 const struct kwi_query_in *in, kw_trace *t,
			 const struct worst *w)
{
	if (w->st != KW_ERR_NOTFOUND && w->e != NULL)
		return verdict(c, in, t, w->e->backend->name, w->st,
			       w->detail);
	if (t != NULL)
		kwi_trace_none(t, in->provider);
	else
		kwi_error(KW_ERR_NOTFOUND,
			  "chain \"%s\": no backend has a key for provider "
			  "\"%s\"",
			  c->name, in->provider);
	return KW_ERR_NOTFOUND;
}

static kw_status walk(const struct kwi_chain *c,
		      const struct kwi_query_in *in, kw_trace *t,
		      kw_secret **out)
{
	struct worst w = { NULL, KW_ERR_NOTFOUND, "" };
	struct kw_reply r;
	size_t i = 0;

	*out = NULL;
	while (i < c->n) {
		const struct kwi_entry *e = &c->entries[i];
		enum kwi_answer a;
		kw_action act;
		kw_status st;

		kwi_reply_init(&r, e->backend->name);
		st = ask(e, in, t != NULL, &r);
		a = kwi_answer_of(st);
		act = (kw_action)e->action[a];
		/* Charged for a key the chain does not hand out. */
		if (act != KW_ACTION_DONE)
			(void)kwi_quota_refund(&r.charged);
		if (t != NULL)
			kwi_trace_step(t, i, e, st, act, &r);
		if (act == KW_ACTION_DONE)
			return done(e, t, st, &r, out);
		kwi_reply_clear(&r);
		if (act == KW_ACTION_DIE)
			return verdict(c, in, t, e->backend->name, st,
				       r.detail);
		note_answer(&w, e, a, st, r.detail);
		i += 1 + (act == KW_ACTION_SKIP ? e->skip[a] : 0);
	}
	return ran_out(c, in, t, &w);
}

kw_status kwi_walk(const struct kwi_chain *c, const struct kwi_query_in *in,
		   kw_trace *t, kw_secret **out)
{
	kw_status st = walk(c, in, t, out);

	/* Modules release what they kept for the walk's lookups. */
	for (size_t i = 0; i < c->n; i++) {
		const struct kw_instance *b = c->entries[i].backend;

		if (b->module->ops.walk_end != NULL)
			b->module->ops.walk_end(b->state);
	}
	if (t != NULL)
		kwi_trace_end(t, st);
	return st;
}
