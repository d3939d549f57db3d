/*
 * module_probe.c - every public type of <keyway/module.h> and
 * <keyway/types.h> in an exported function, so that abidw(1) can record
 * the module ABI's layouts (module.h is not a library: there is no shared
 * object of its own to dump).  Built by tests/cli/abi.sh with debug info,
 * its soname carrying KW_MODULE_ABI; abi/module.abi is the baseline.
 * A type added to either header gets a function here.
 */
#include <keyway/module.h>

#define PROBE __attribute__((visibility("default"), used))

PROBE void kw_probe_host(const kw_host *h) { (void)h; }
PROBE void kw_probe_module(const struct kw_module *m) { (void)m; }
PROBE void kw_probe_query(const kw_query *q) { (void)q; }
PROBE void kw_probe_setting_spec(const kw_setting_spec *s,
				 kw_setting_type t) { (void)s; (void)t; }
PROBE void kw_probe_seal_aad(const kw_seal_aad *a) { (void)a; }
PROBE void kw_probe_store_key(const kw_store_key *k) { (void)k; }
PROBE void kw_probe_store_put(const kw_store_put *p) { (void)p; }
PROBE void kw_probe_store_use(const kw_store_use *u) { (void)u; }
PROBE void kw_probe_store_record(const kw_store_record *r,
				 kw_store_list_fn *fn) { (void)r; (void)fn; }
PROBE void kw_probe_quota_slot(const kw_quota_slot *s) { (void)s; }
PROBE void kw_probe_charge(const kw_charge *c) { (void)c; }
PROBE void kw_probe_enums(kw_status st, kw_scope sc, kw_put_mode pm,
			  kw_instance_role ro) { (void)st; (void)sc; (void)pm;
						  (void)ro; }
PROBE void kw_probe_usage(const kw_usage_row *r, const kw_usage_filter *f,
			  kw_usage_fn *fn) { (void)r; (void)f; (void)fn; }
PROBE void kw_probe_entry(kw_module_entry_fn *fn) { (void)fn; }
