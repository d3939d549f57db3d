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
	99, /* not KW_MODULE_ABI: that is the point */
	(uint32_t)sizeof(struct kw_module),
	"badabi",
	"test module built for an ABI that does not exist",
	KW_CAP_LOOKUP,
	badabi_settings,
	badabi_open,
	badabi_close,
	NULL,
	badabi_lookup
};

KW_MODULE_EXPORT(badabi_module)
