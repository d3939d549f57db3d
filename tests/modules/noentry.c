/*
 * noentry.c - kw_noentry.so, a test shared object that is not a module: it
 * exports one unrelated function and no kw_module_entry, which the host
 * must refuse at load.
 */
#include <keyway/module.h>

KW_MODULE_VISIBLE int kw_not_a_module(void);

KW_MODULE_VISIBLE int kw_not_a_module(void)
{
	return 42;
}
