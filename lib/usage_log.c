/*
 * usage_log.c - the usage log a ledger keeps (kw_usage()): the caller's
 * filter taken in whatever size it was built with, passed on in the layout
 * the ledger module was built with, and every row it returns filtered
 * again by what the actor may see.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "actor.h"
#include "conf.h"
#include "context.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "names.h"

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
	       (f->user == NULL || kwi_same(f->user, row->user)) &&
	       (f->org == NULL || kwi_same(f->org, row->org)) &&
	       (f->backend == NULL || kwi_same(f->backend, row->backend));
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

	/* A row of an org's or a user's use is theirs to see. */
	if (!kwi_may(a, KW_SCOPE_ORG, row->org) &&
	    !kwi_may(a, KW_SCOPE_USER, row->user))
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

	rc = kwi_check_caller(ctx, actor, fn != NULL);
	if (rc != KW_OK)
		return rc;
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
