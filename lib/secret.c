/*
 * secret.c - the secrets libkeyway hands out: what the application reads
 * of them, its report of whether it used one (a refund when it did not),
 * and their end, which counts a use.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <keyway/keyway.h>

#include "clock.h"
#include "context.h"
#include "error.h"
#include "quota.h"
#include "remote.h"
#include "secmem.h"
#include "secret.h"
#include "usecount.h"

const char *kw_secret_value(const kw_secret *s)
{
	return s != NULL ? s->value : NULL;
}

size_t kw_secret_len(const kw_secret *s)
{
	return s != NULL ? s->len : 0;
}

const char *kw_secret_backend(const kw_secret *s)
{
	return s != NULL ? s->data : NULL;
}

kw_status kw_secret_report(kw_secret *s, kw_outcome outcome)
{
	if (s == NULL)
		return kwi_error(KW_ERR_INVAL, "kw_secret_report: no secret");
	if (outcome != KW_USED && outcome != KW_UNUSED)
		return kwi_error(KW_ERR_INVAL,
				 "kw_secret_report: unknown outcome %d",
				 (int)outcome);
	if (s->forks != kwi_forks())
		return kwi_error(KW_ERR_INVAL,
				 "kw_secret_report: this secret was resolved "
				 "before fork(); the process that resolved it "
				 "reports it");
	if (s->reported)
		return kwi_error(KW_ERR_INVAL,
				 "kw_secret_report: this secret was already "
				 "reported");
	if (s->life == NULL || atomic_load(&s->life->closed))
		return kwi_error(KW_ERR_INVAL,
				 "kw_secret_report: the context that resolved "
				 "this secret was closed; report before "
				 "kw_close(), after it only kw_secret_free()");
	s->reported = true;
	s->outcome = outcome;
	if (s->remote != NULL)
		return kwi_remote_report(s, outcome);
	if (outcome == KW_UNUSED)
		return kwi_quota_refund(&s->charged);
	return KW_OK;
}

void kwi_secret_destroy(struct kw_secret *s)
{
	if (s == NULL)
		return;
	if (s->remote != NULL)
		kwi_remote_secret_end(s);
	if (s->usage != NULL) {
		if (s->outcome == KW_USED)
			kwi_usecount_note(s->usage, s->store, s->scope, s->owner,
					  s->provider, kwi_now());
		kwi_usecount_release(s->usage);
	}
	kwi_charged_free(s->charged);
	kwi_life_put(s->life);
	kwi_secure_free(s, s->size);
}

void kw_secret_free(kw_secret *s)
{
	kwi_secret_destroy(s);
}

/* The shortest secrets kw_mask() shows both ends of, and the end of. */
#define MASK_BOTH_MIN 24
#define MASK_TAIL_MIN 12

char *kw_mask(const char *secret, size_t len, char *buf, size_t size)
{
	if (size == 0)
		return buf;
	/* A mask shows at most a third of a key: the first and last four
	 * of a long key, the last four of a short one, none of a shorter
	 * one. */
	if (secret != NULL && len >= MASK_BOTH_MIN)
		snprintf(buf, size, "%.4s****%.4s", secret, secret + len - 4);
	else if (secret != NULL && len >= MASK_TAIL_MIN)
		snprintf(buf, size, "****%.4s", secret + len - 4);
	else
		snprintf(buf, size, "****");
	return buf;
}
