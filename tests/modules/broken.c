/*
 * broken.c - modules that break one rule of module.h each, for the tests of
 * keyway-conformance(1) and of the host's refusals.  One source, built
 * once per rule with BROKEN_* defined (none: a module that keeps them all,
 * kw_unbroken.so):
 *
 *     BROKEN_NAME     kw_misnamed.so, whose descriptor says "wrongname",
 *                     with a description of two lines (keyway takes
 *                     both; keyway-conformance notes them)
 *     BROKEN_DETAIL   kw_leakdetail.so: a found key's detail holds the key
 *     BROKEN_CAPS     kw_capnoop.so: claims KW_CAP_STORE, offers no put()
 *     BROKEN_LEAK     kw_leaky.so: close() forgets what open() allocated
 *     BROKEN_RACE     kw_racy.so: lookup() builds the key in a static buffer
 *     BROKEN_LATE     kw_lateerror.so: keeps the host and the instance and
 *                     calls host->error() from lookup(), after open()
 *     BROKEN_NULLORG  kw_nullorg.so: lookup() takes strlen() of q->org,
 *                     which may be NULL
 *     BROKEN_EMPTY    kw_emptykey.so: answers found with an empty key
 *     BROKEN_CRASH    kw_crashy.so: lookup() of google dereferences NULL
 *     BROKEN_HANG     kw_hangs.so: lookup() of google never returns
 *     BROKEN_SECLEAK  kw_secleak.so: close() forgets guarded memory
 *                     open() took with secure_alloc()
 *     BROKEN_PARTIAL  kw_partialdetail.so: a found key's detail holds its
 *                     first 20 characters
 *     BROKEN_BADNAME  kw_badname.so: its descriptor's name holds a newline
 *
 * Settings: `value` (required), the start of every key; a lookup of
 * provider P finds "VALUE-P" for P = anthropic or openai, and nothing for
 * any other provider.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyway/module.h>

#if defined(BROKEN_NAME)
#define BR_NAME "wrongname"
#elif defined(BROKEN_DETAIL)
#define BR_NAME "leakdetail"
#elif defined(BROKEN_CAPS)
#define BR_NAME "capnoop"
#elif defined(BROKEN_LEAK)
#define BR_NAME "leaky"
#elif defined(BROKEN_RACE)
#define BR_NAME "racy"
#elif defined(BROKEN_LATE)
#define BR_NAME "lateerror"
#elif defined(BROKEN_NULLORG)
#define BR_NAME "nullorg"
#elif defined(BROKEN_EMPTY)
#define BR_NAME "emptykey"
#elif defined(BROKEN_CRASH)
#define BR_NAME "crashy"
#elif defined(BROKEN_HANG)
#define BR_NAME "hangs"
#elif defined(BROKEN_SECLEAK)
#define BR_NAME "secleak"
#elif defined(BROKEN_PARTIAL)
#define BR_NAME "partialdetail"
#elif defined(BROKEN_BADNAME)
/* Shown as it is, it would forge a line of its own in a log. */
#define BR_NAME "bad\nkeyway: forged"
#else
#define BR_NAME "unbroken"
#endif

struct br {
	const kw_host *host;
	kw_instance *inst;
	const char *value;
	char *kept;
	char *guarded;
};

static const kw_setting_spec br_settings[] = {
	{ "value", KW_SETTING_STRING, KW_SETTING_REQUIRED },
	{ NULL, 0, 0 }
};

static kw_status br_open(const kw_host *host, kw_instance *inst,
			 void **state)
{
	struct br *b = calloc(1, sizeof(*b));

	*state = NULL;
	if (b == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	b->host = host;
	b->inst = inst;
	if (host->setting_string(inst, "value", &b->value) != KW_OK) {
		host->error(inst, "value", "set value");
		free(b);
		return KW_ERR_CONFIG;
	}
	b->kept = malloc(1024);
	if (b->kept == NULL) {
		free(b);
		return KW_ERR_NOMEM;
	}
	memset(b->kept, 0, 1024);
	b->guarded = host->secure_alloc(64);
	if (b->guarded == NULL) {
		free(b->kept);
		free(b);
		return KW_ERR_NOMEM;
	}
	*state = b;
	return KW_OK;
}

static void br_close(void *state)
{
	struct br *b = state;

#ifndef BROKEN_SECLEAK
	b->host->secure_free(b->guarded, 64);
#endif
#ifndef BROKEN_LEAK
	free(b->kept);
	free(b);
#endif
}

static kw_status br_lookup(void *state, const kw_query *q)
{
	struct br *b = state;
	char key[256];
#ifdef BROKEN_RACE
	static char shared[256];
	char *buf = shared;
#else
	char *buf = key;
#endif

	(void)key;
#ifdef BROKEN_NULLORG
	if (strlen(q->org) == 0)
		return KW_ERR_NOTFOUND;
#endif
#if defined(BROKEN_CRASH)
	if (strcmp(q->provider, "google") == 0) {
		int *volatile nowhere = NULL;

		*nowhere = 0;
	}
#elif defined(BROKEN_HANG)
	if (strcmp(q->provider, "google") == 0)
		for (;;)
			pause();
#endif
#ifdef BROKEN_LATE
	b->host->error(b->inst, NULL, "called after open()");
#endif
	if (strcmp(q->provider, "anthropic") != 0 &&
	    strcmp(q->provider, "openai") != 0) {
		b->host->reply_detail(q->reply, "no key for %s", q->provider);
		return KW_ERR_NOTFOUND;
	}
	snprintf(buf, sizeof(key), "%s-%s", b->value, q->provider);
#ifdef BROKEN_RACE
	for (int i = 0; i < 20; i++)
		sched_yield();
#endif
#ifdef BROKEN_DETAIL
	b->host->reply_detail(q->reply, "found %s", buf);
#endif
#ifdef BROKEN_PARTIAL
	b->host->reply_detail(q->reply, "found a key starting %.20s", buf);
#endif
#ifdef BROKEN_EMPTY
	return b->host->reply_secret(q->reply, buf, 0);
#endif
	return b->host->reply_secret(q->reply, buf, strlen(buf));
}

#ifdef BROKEN_CAPS
#define BR_CAPS (KW_CAP_LOOKUP | KW_CAP_STORE)
#else
#define BR_CAPS KW_CAP_LOOKUP
#endif

static const struct kw_module br_module = {
	KW_MODULE_HEADER,
	.name = BR_NAME,
#ifdef BROKEN_NAME
	.description = "a test module named otherwise\nthan its file",
#else
	.description = "a test module that breaks one rule",
#endif
	.caps = BR_CAPS,
	.settings = br_settings,
	.open = br_open,
	.close = br_close,
	.lookup = br_lookup,
};

KW_MODULE_EXPORT(br_module)
