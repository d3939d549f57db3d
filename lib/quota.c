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
#include <time.h>

#include "internal.h"

#ifdef KW_TEST_SEAMS
static int64_t (*test_clock)(void);

/* Only in the library the unit tests link: the production library has no
 * way to change its clock. */
void kwi_test_set_clock(int64_t (*clock)(void))
{
	test_clock = clock;
}
#endif

int64_t kwi_now(void)
{
#ifdef KW_TEST_SEAMS
	if (test_clock != NULL)
		return test_clock();
#endif
	return (int64_t)time(NULL);
}

void kwi_window(int64_t period, int64_t now, int64_t *start, int64_t *end)
{
	struct tm tm;
	time_t t = (time_t)now;

	if (period > 0) {
		*start = now - ((now % period) + period) % period;
		*end = *start + period;
		return;
	}
	gmtime_r(&t, &tm);
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	*start = (int64_t)timegm(&tm);
	tm.tm_mon += 1;
	*end = (int64_t)timegm(&tm);
}

static void iso8601(int64_t when, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)when;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

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
	for (size_t i = 0; i < b->nquotas; i++) {
		const struct kwi_quota *q = &b->quotas[i];
		const char *who = subject(q, in);
		kw_quota_slot *s = &c->slots[i];
		char *name;

		if (who == NULL) {
			snprintf(detail, detaillen,
				 "quota %s %s: the request names no %s",
				 b->name, q->label, identity_word(q->per));
			kwi_charged_free(c);
			return KW_ERR_DENIED;
		}
		name = counter_name(b, i, in, who);
		if (name == NULL) {
			kwi_charged_free(c);
			return KW_ERR_NOMEM;
		}
		s->counter = name;
		kwi_window(q->period, now, &s->window, &s->expires);
		s->limit = q->limit;
		c->nslots++;
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
	if (rc == KW_OK) {
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
	if (rc == KW_ERR_DENIED && ch.full < b->nquotas) {
		char reset[32];

		iso8601(c->slots[ch.full].expires, reset, sizeof(reset));
		used_up(b, &b->quotas[ch.full], in, ch.count, reset, detail,
			detaillen);
		kwi_charged_free(c);
		return KW_ERR_DENIED;
	}
	kwi_charged_free(c);
	/* The ledger could not be asked: fail closed unless told not to. */
	if (ctx->ledger_allow && rc == KW_ERR_UNAVAIL) {
		snprintf(detail, detaillen,
			 "ledger unavailable, admitted uncounted "
			 "(on_unavailable = allow): %s",
			 r.detail[0] != '\0' ? r.detail : kw_status_str(rc));
		return KW_OK;
	}
	if (rc != KW_ERR_UNAVAIL)
		snprintf(detail, detaillen, "ledger failed, denied: %s",
			 r.detail[0] != '\0' ? r.detail : kw_status_str(rc));
	else
		snprintf(detail, detaillen,
			 "ledger unavailable, denied (on_unavailable = deny): "
			 "%s",
			 r.detail[0] != '\0' ? r.detail : kw_status_str(rc));
	return KW_ERR_DENIED;
}

kw_status kwi_quota_refund(struct kwi_charged *c)
{
	struct kw_instance *ledger = c->ledger;
	struct kw_reply r;
	kw_charge ch;
	kw_status rc;

	memset(&ch, 0, sizeof(ch));
	ch.slots = c->slots;
	ch.nslots = c->nslots;
	ch.usage_id = c->usage_id;
	kwi_reply_init(&r, ledger->name);
	rc = ledger->module->ops.refund(ledger->state, &ch, &r);
	if (rc != KW_OK)
		return kwi_error(rc, "keyway.ledger: refund failed: %s",
				 r.detail[0] != '\0' ? r.detail
						     : kw_status_str(rc));
	return KW_OK;
}
