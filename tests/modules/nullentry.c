/*
 * nullentry.c - kw_nullentry.so, a test module whose kw_module_entry()
 * returns NULL instead of a descriptor, which the host must refuse at load.
 */
#include <stddef.h>

#include <keyway/module.h>

KW_MODULE_VISIBLE const struct kw_module *kw_module_entry(void);

KW_MODULE_VISIBLE const struct kw_module *kw_module_entry(void)
{
	return NULL;
}
