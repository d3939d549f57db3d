/*
 * internal.h - declarations shared by the files of libkeyway.  Never
 * installed.  Library-internal symbols shared across files carry the kwi_
 * prefix; everything else is static.
 */
#ifndef KEYWAY_INTERNAL_H
#define KEYWAY_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/stat.h>
#include <sys/types.h>

#include <libconfig.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "audit.h"
#include "config_audit.h"
#include "config_master.h"
#include "crypto.h"
#include "error.h"
#include "fsutil.h"
#include "secmem.h"
#include "usecount.h"

#define KWI_UNUSED_RESULT __attribute__((warn_unused_result))

struct kw_ctx;
struct kwi_query_in;

/* ---- modules (loader.c) ---- */

struct kwi_module {
	struct kwi_module *next;
	char *name;                    /* "env" */
	char *path;                    /* file it was loaded from */
	void *handle;                  /* dlopen() handle */
	const struct kw_module *desc;  /* descriptor */
	/*
	 * The descriptor again, copied as far as the module's `size` says
	 * and zero beyond: an operation that a shorter descriptor, from a
	 * module built against an older module.h, does not hold is NULL.
	 * Call operations through it (m->ops.lookup); desc keeps the
	 * module's own `size` for fields whose absence means something
	 * else than zero (usage_filter_size).
	 */
	struct kw_module ops;
};

/*
 * Load module `spec` (a name, looked up in each directory of
 * $KEYWAY_MODULE_DIR and then the built-in one; or an absolute path)
 * unless it is already in *list, and check its descriptor.  *out is set
 * to the module, which *list owns (NULL on failure).  Returns KW_OK;
 * KW_ERR_CONFIG for a name that is not one, KW_ERR_PERM for a file or
 * directory that is not trusted, KW_ERR_NOMEM, or KW_ERR_MODULE, with
 * the reason written into why (whylen bytes).
 */
kw_status kwi_module_load(struct kwi_module **list, const char *spec,
			  struct kwi_module **out, char *why, size_t whylen);
/* Unload and free every module of list.  NULL is a no-op. */
void kwi_module_unload_all(struct kwi_module *list);

/* ---- providers and names ---- */

/* ---- providers (providers.c) ---- */

#include "providers.h"

/* ---- names (names.c) ---- */

#include "names.h"

/* ---- configuration (config*.c) and the context (context.c) ---- */

#include "conf.h"
#include "context.h"


#include "request.h"
#include "chain.h"

/* ---- the host side of the module ABI (host.c) ---- */

#include "host.h"

/* ---- quotas (quota.c) and the clock (clock.c) ---- */

#include "quota.h"
#include "clock.h"


/* ---- secrets handed out (secret.c) ---- */

#include "secret.h"


#endif /* KEYWAY_INTERNAL_H */
