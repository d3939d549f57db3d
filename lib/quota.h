/*
 * quota.h - quotas: what a backend's keys may be handed out, counted in
 * the ledger.  Never installed.
 */
#ifndef KEYWAY_QUOTA_H
#define KEYWAY_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

struct kw_ctx;
struct kw_instance;
struct kwi_query_in;

/* A quota of a backend: `limit` requests per window, counted per user,
 * per org or for everyone, across providers or for each provider. */
enum kwi_per {
	KWI_PER_USER = 1,
	KWI_PER_ORG,
	KWI_PER_GLOBAL,
	KWI_PER_PROVIDER,       /* everyone, one count per provider */
	KWI_PER_USER_PROVIDER,  /* one count per user and provider */
	KWI_PER_ORG_PROVIDER    /* one count per org and provider */
};

struct kwi_quota {
	uint64_t limit;
	int64_t period;             /* seconds; 0 for a calendar month */
	enum kwi_per per;
	char label[64];             /* "10/day per user+provider" */
};

/* What a resolve charged, kept with its secret for a refund. */
struct kwi_charged {
	struct kw_instance *ledger;
	int64_t usage_id;
	size_t nslots;
	kw_quota_slot slots[];    /* counter strings are malloc'd */
};

/*
 * Charge every quota of backend b for this request in the ledger.  KW_OK
 * (*out: what to refund, NULL on a dry run), KW_ERR_DENIED with the reason
 * in detail, or another failure.
 */
kw_status kwi_quota_charge(struct kw_ctx *ctx, const struct kw_instance *b,
			   const struct kwi_query_in *in, bool dry_run,
			   struct kwi_charged **out, char *detail,
			   size_t detaillen);
/*
 * Give back the charge *c (NULL: nothing to give back), free it and set *c
 * to NULL.  KW_OK, or the ledger's failure with kw_last_error() saying
 * why.
 */
kw_status kwi_quota_refund(struct kwi_charged **c);
/* The word of keyway.conf for per ("user+provider"), and back; false for a
 * word that is not one. */
const char *kwi_per_str(enum kwi_per per);
bool kwi_per_parse(const char *word, enum kwi_per *per);
/* NULL is a no-op. */
void kwi_charged_free(struct kwi_charged *c);

#endif /* KEYWAY_QUOTA_H */
