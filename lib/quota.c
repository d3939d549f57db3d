/*
 * quota.c - charging quotas in the ledger when a backend hands out a key,
 * and refunding them when the application never used it.
 *
 * Windows are fixed and aligned to UTC: a "day" quota counts from 00:00:00Z
 * to the next midnight, a "month" quota from the first of the month, an
 * N-second quota from the multiples of N since the epoch.  A counter is
 * named after the backend, the quota's position in its list and whom it
 * counts, so that editing one quota's limit keeps its count.
 *
 * The host names the counters, so a ledger needs to know nothing of what
 * a quota counts by: a quota per provider only has more of them
 * ("server_env/0/user+provider:alice/anthropic").  A user or org name
 * holds no '/' and a provider name neither '/' nor ':', so two requests
 * share a counter only when they share everything the quota counts by.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "clock.h"
#include "conf.h"
#include "context.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "quota.h"
#include "request.h"

void kwi_charged_free(struct kwi_charged *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nslots; i++)
		free((char *)c->slots[i].counter);
	free(c);
}

static const struct {
	const char *word;
	enum kwi_per per;
} pers[] = {
	{ "user", KWI_PER_USER },
	{ "org", KWI_PER_ORG },
	{ "global", KWI_PER_GLOBAL },
	{ "provider", KWI_PER_PROVIDER },
	{ "user+provider", KWI_PER_USER_PROVIDER },
	{ "org+provider", KWI_PER_ORG_PROVIDER },
};

const char *kwi_per_str(enum kwi_per per)
{
	for (size_t i = 0; i < sizeof(pers) / sizeof(pers[0]); i++)
		if (pers[i].per == per)
			return pers[i].word;
	return "?";
}

bool kwi_per_parse(const char *word, enum kwi_per *per)
{
	for (size_t i = 0; i < sizeof(pers) / sizeof(pers[0]); i++) {
		if (strcmp(pers[i].word, word) == 0) {
			*per = pers[i].per;
			return true;
		}
	}
	return false;
}

/* The identity quota q counts by, apart from the provider: "user", "org",
 * or NULL for one that counts everyone. */
static const char *identity_word(enum kwi_per per)
{
	switch (per) {
	case KWI_PER_USER:
	case KWI_PER_USER_PROVIDER:
		return "user";
	case KWI_PER_ORG:
	case KWI_PER_ORG_PROVIDER:
		return "org";
	case KWI_PER_GLOBAL:
	case KWI_PER_PROVIDER:
		break;
	}
	return NULL;
}

static bool by_provider(enum kwi_per per)
{
	return per == KWI_PER_PROVIDER || per == KWI_PER_USER_PROVIDER ||
	       per == KWI_PER_ORG_PROVIDER;
}

/* Whom quota q counts for this request, apart from the provider: "*" for
 * everyone, NULL when the request does not say. */
static const char *subject(const struct kwi_quota *q,
			   const struct kwi_query_in *in)
{
	switch (q->per) {
	case KWI_PER_USER:
	case KWI_PER_USER_PROVIDER:
		return in->user;
	case KWI_PER_ORG:
	case KWI_PER_ORG_PROVIDER:
		return in->org;
	case KWI_PER_GLOBAL:
	case KWI_PER_PROVIDER:
		return "*";
	}
	return NULL;
}

/* The counter of quota number i of backend b for this request; NULL when
 * out of memory. */
static char *counter_name(const struct kw_instance *b, size_t i,
			  const struct kwi_query_in *in, const char *who)
{
	const struct kwi_quota *q = &b->quotas[i];
	const char *per = kwi_per_str(q->per);
	char *name;
	int n;

	if (q->per == KWI_PER_PROVIDER)
		n = asprintf(&name, "%s/%zu/%s:%s", b->name, i, per,
			     in->provider);
	else if (by_provider(q->per))
		n = asprintf(&name, "%s/%zu/%s:%s/%s", b->name, i, per, who,
			     in->provider);
	else
		n = asprintf(&name, "%s/%zu/%s:%s", b->name, i, per, who);
	return n < 0 ? NULL : name;
}

/* "used up for user alice and provider anthropic (2 of 2)": whose count
 * quota q found full, for its denial. */
static void used_up(const struct kw_instance *b, const struct kwi_quota *q,
		    const struct kwi_query_in *in, uint64_t count,
		    const char *reset, char *detail, size_t detaillen)
{
	const char *id = identity_word(q->per);
	const char *who = subject(q, in);

	if (id != NULL && by_provider(q->per))
		snprintf(detail, detaillen,
			 "quota %s %s used up for %s %s and provider %s "
			 "(%llu of %llu); resets %s",
			 b->name, q->label, id, who, in->provider,
			 (unsigned long long)count,
			 (unsigned long long)q->limit, reset);
	else if (id != NULL)
		snprintf(detail, detaillen,
			 "quota %s %s used up for %s %s (%llu of %llu); "
			 "resets %s",
			 b->name, q->label, id, who, (unsigned long long)count,
			 (unsigned long long)q->limit, reset);
	else if (by_provider(q->per))
		snprintf(detail, detaillen,
			 "quota %s %s used up for provider %s (%llu of "
			 "%llu); resets %s",
			 b->name, q->label, in->provider,
			 (unsigned long long)count,
			 (unsigned long long)q->limit, reset);
	else
		snprintf(detail, detaillen,
			 "quota %s %s used up (%llu of %llu); resets %s",
			 b->name, q->label, (unsigned long long)count,
			 (unsigned long long)q->limit, reset);
}

/* The slots of every quota of b for this request, into c; KW_ERR_DENIED
 * with the reason in detail when the request does not say whom one
 * counts. */
static kw_status fill_slots(const struct kw_instance *b,
			    const struct kwi_query_in *in, int64_t now,
			    struct kwi_charged *c, char *detail,
			    size_t detaillen)
{
	for (size_t i = 0; i < b->nquotas; i++) {
		const struct kwi_quota *q = &b->quotas[i];
		const char *who = subject(q, in);
		kw_quota_slot *s = &c->slots[i];
		char *name;

		if (who == NULL) {
			snprintf(detail, detaillen,
				 "quota %s %s: the request names no %s",
				 b->name, q->label, identity_word(q->per));
			return KW_ERR_DENIED;
		}
		name = counter_name(b, i, in, who);
		if (name == NULL)
			return KW_ERR_NOMEM;
		s->counter = name;
		kwi_window(q->period, now, &s->window, &s->expires);
		s->limit = q->limit;
		c->nslots++;
	}
	return KW_OK;
}

/* The ledger did not admit the request (rc, r: what it said; ch: the
 * charge it was asked for): why, into detail, and the verdict. */
static kw_status not_admitted(const struct kw_ctx *ctx,
			      const struct kw_instance *b,
			      const struct kwi_query_in *in,
			      const struct kwi_charged *c,
			      const kw_charge *ch, kw_status rc,
			      const struct kw_reply *r, char *detail,
			      size_t detaillen)
{
	const char *said = r->detail[0] != '\0' ? r->detail
						 : kw_status_str(rc);

	if (rc == KW_ERR_DENIED && ch->full < b->nquotas) {
		char reset[32];

		kwi_iso8601(c->slots[ch->full].expires, reset, sizeof(reset));
		used_up(b, &b->quotas[ch->full], in, ch->count, reset, detail,
			detaillen);
		return KW_ERR_DENIED;
	}
	/* The ledger could not be asked: fail closed unless told not to. */
	if (ctx->ledger_allow && rc == KW_ERR_UNAVAIL) {
		snprintf(detail, detaillen,
			 "ledger unavailable, admitted uncounted "
			 "(on_unavailable = allow): %s",
			 said);
		return KW_OK;
	}
	if (rc != KW_ERR_UNAVAIL)
		snprintf(detail, detaillen, "ledger failed, denied: %s", said);
	else
		snprintf(detail, detaillen,
			 "ledger unavailable, denied (on_unavailable = deny): "
			 "%s",
			 said);
	return KW_ERR_DENIED;
}

kw_status kwi_quota_charge(struct kw_ctx *ctx, const struct kw_instance *b,
			   const struct kwi_query_in *in, bool dry_run,
			   struct kwi_charged **out, char *detail,
			   size_t detaillen)
{
	struct kw_instance *ledger = ctx->ledger;
	struct kwi_charged *c;
	kw_usage_row row;
	kw_charge ch;
	struct kw_reply r;
	int64_t now = kwi_now();
	kw_status rc;

	*out = NULL;
	c = calloc(1, sizeof(*c) + b->nquotas * sizeof(c->slots[0]));
	if (c == NULL)
		return KW_ERR_NOMEM;
	c->ledger = ledger;
	rc = fill_slots(b, in, now, c, detail, detaillen);
	if (rc != KW_OK) {
		kwi_charged_free(c);
		return rc;
	}

	row.time = now;
	row.chain = in->chain;
	row.backend = b->name;
	row.provider = in->provider;
	row.user = in->user;
	row.org = in->org;
	row.outcome = "admitted";
	memset(&ch, 0, sizeof(ch));
	ch.slots = c->slots;
	ch.nslots = c->nslots;
	ch.usage = &row;

	kwi_reply_init(&r, ledger->name);
	rc = ledger->module->ops.charge(ledger->state, &ch, dry_run, &r);
	if (rc != KW_OK) {
		rc = not_admitted(ctx, b, in, c, &ch, rc, &r, detail,
				  detaillen);
		kwi_charged_free(c);
		return rc;
	}
	c->usage_id = ch.usage_id;
	if (dry_run) {
		snprintf(detail, detaillen,
			 "within quota (explain charges nothing)");
		kwi_charged_free(c);
		c = NULL;
	}
	*out = c;
	return KW_OK;
}

kw_status kwi_quota_refund(struct kwi_charged **cp)
{
	struct kwi_charged *c = *cp;
	struct kw_instance *ledger;
	struct kw_reply r;
	kw_charge ch;
	kw_status rc;

	if (c == NULL)
		return KW_OK;
	*cp = NULL;
	ledger = c->ledger;
	memset(&ch, 0, sizeof(ch));
	ch.slots = c->slots;
	ch.nslots = c->nslots;
	ch.usage_id = c->usage_id;
	kwi_reply_init(&r, ledger->name);
	rc = ledger->module->ops.refund(ledger->state, &ch, &r);
	kwi_charged_free(c);
	if (rc != KW_OK)
		return kwi_error(rc, "keyway.ledger: refund failed: %s",
				 r.detail[0] != '\0' ? r.detail
						     : kw_status_str(rc));
	return KW_OK;
}
