/*
 * badabi.c - kw_badabi.so, a test module whose descriptor is well formed
 * but built for ABI 99, which the host must refuse at load with a message
 * naming both versions.
 */
#include <stddef.h>

#include <keyway/module.h>

static const kw_setting_spec badabi_settings[] = {
	{ NULL, 0, 0 }
};

static kw_status badabi_open(const kw_host *host, kw_instance *inst,
			     void **state)
{
	(void)host;
	(void)inst;
	*state = NULL;
	return KW_OK;
}

static void badabi_close(void *state)
{
	(void)state;
}

static kw_status badabi_lookup(void *state, const kw_query *q)
{
	(void)state;
	(void)q;
	return KW_ERR_NOTFOUND;
}

static const struct kw_module badabi_module = {
	.abi = 99, /* not KW_MODULE_ABI: that is the point */
	.size = (uint32_t)sizeof(struct kw_module),
	.name = "badabi",
	.description = "test module built for an ABI that does not exist",
	.caps = KW_CAP_LOOKUP,
	.settings = badabi_settings,
	.open = badabi_open,
	.close = badabi_close,
	.lookup = badabi_lookup,
};

KW_MODULE_EXPORT(badabi_module)
