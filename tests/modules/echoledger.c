/*
 * echoledger.c - kw_echoledger.so, a test ledger whose usage log is one row
 * that spells out the filter that reached it: time = since, user, org and
 * backend as given ("-" for none), chain "echo", provider the filter's
 * size ("unsized" for the old layout), outcome "admitted".  It admits
 * every charge and counts nothing.
 *
 * With KWTEST_ECHOLEDGER_OLD=1 in the environment when the module is
 * loaded, it is a ledger built before kw_usage_filter began with `size`:
 * its descriptor ends before usage_filter_size, and its usage() reads the
 * filter in the layout of that time.  The host must hand it that layout.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/module.h>

/* kw_usage_filter before it had a size. */
struct old_filter {
	int64_t since;
	int64_t until;
	const char *user;
	const char *org;
	const char *backend;
};

static const kw_setting_spec echo_settings[] = {
	{ NULL, 0, 0 }
};

static kw_status echo_open(const kw_host *host, kw_instance *inst,
			   void **state)
{
	(void)inst;
	*state = (void *)host;
	return KW_OK;
}

static void echo_close(void *state)
{
	(void)state;
}

static kw_status echo_charge(void *state, kw_charge *c, bool dry_run,
			     kw_reply *r)
{
	(void)state;
	(void)dry_run;
	(void)r;
	c->usage_id = 1;
	return KW_OK;
}

static kw_status echo_refund(void *state, const kw_charge *c, kw_reply *r)
{
	(void)state;
	(void)c;
	(void)r;
	return KW_OK;
}

static kw_status echo_row(int64_t since, const char *user, const char *org,
			  const char *backend, const char *size,
			  kw_usage_fn *fn, void *arg)
{
	kw_usage_row row;

	row.time = since;
	row.chain = "echo";
	row.backend = backend != NULL ? backend : "-";
	row.provider = size;
	row.user = user != NULL ? user : "-";
	row.org = org != NULL ? org : "-";
	row.outcome = "admitted";
	return fn(arg, &row);
}

static kw_status echo_usage(void *state, const kw_usage_filter *f,
			    kw_usage_fn *fn, void *arg, kw_reply *r)
{
	char size[32];

	(void)state;
	(void)r;
	snprintf(size, sizeof(size), "%zu", f->size);
	return echo_row(f->since, f->user, f->org, f->backend, size, fn, arg);
}

static kw_status echo_usage_old(void *state, const kw_usage_filter *f,
				kw_usage_fn *fn, void *arg, kw_reply *r)
{
	const struct old_filter *o = (const struct old_filter *)(const void *)f;

	(void)state;
	(void)r;
	return echo_row(o->since, o->user, o->org, o->backend, "unsized", fn,
			arg);
}

static const struct kw_module echo_module = {
	KW_MODULE_HEADER,
	.name = "echoledger",
	.description = "test ledger whose log echoes the filter",
	.caps = KW_CAP_LEDGER,
	.settings = echo_settings,
	.open = echo_open,
	.close = echo_close,
	.charge = echo_charge,
	.refund = echo_refund,
	.usage = echo_usage,
};

static const struct kw_module echo_module_old = {
	.abi = KW_MODULE_ABI,
	.size = (uint32_t)offsetof(struct kw_module, usage_filter_size),
	.name = "echoledger",
	.description = "test ledger whose log echoes the filter",
	.caps = KW_CAP_LEDGER,
	.settings = echo_settings,
	.open = echo_open,
	.close = echo_close,
	.charge = echo_charge,
	.refund = echo_refund,
	.usage = echo_usage_old,
};

KW_MODULE_VISIBLE const struct kw_module *kw_module_entry(void);
KW_MODULE_VISIBLE const struct kw_module *kw_module_entry(void)
{
	const char *v = getenv("KWTEST_ECHOLEDGER_OLD");

	return v != NULL && strcmp(v, "1") == 0 ? &echo_module_old
						 : &echo_module;
}
