/*
 * loader.h - modules loaded into a context (loader.c).  Never installed.
 */
#ifndef KEYWAY_LOADER_H
#define KEYWAY_LOADER_H

#include <stddef.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

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

#endif /* KEYWAY_LOADER_H */
