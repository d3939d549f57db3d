/*
 * loader.c - finding, checking and loading modules.
 *
 * `module = "env"` means kw_env.so in the module directory; an absolute
 * path names the file itself.  Either way the file and every directory on
 * the way to it (and through any symbolic link) must be trusted, as
 * fsutil.c defines it, before a byte of it runs.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

const char *kwi_module_dir(void)
{
	const char *dir = secure_getenv("KEYWAY_MODULE_DIR");

	return dir != NULL && dir[0] != '\0' ? dir : KW_MODULEDIR;
}

static bool valid_module_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '-'))
			return false;
	return true;
}

/* Operation `op` is present when the module's descriptor is long enough to
 * hold it. */
#define DESC_HAS(d, op) \
	((d)->size >= offsetof(struct kw_module, op) + sizeof((d)->op))

static kw_status missing_op(const struct kwi_module *m, const char *cap,
			    const char *ops, char *why, size_t whylen)
{
	snprintf(why, whylen, "module %s claims %s but lacks %s", m->path, cap,
		 ops);
	return KW_ERR_MODULE;
}

static kw_status check_descriptor(struct kwi_module *m, char *why,
				  size_t whylen)
{
	const struct kw_module *d = m->desc;

	if (d->abi != KW_MODULE_ABI) {
		snprintf(why, whylen,
			 "module %s wants module ABI %u; this keyway serves "
			 "ABI %u",
			 m->path, (unsigned)d->abi, (unsigned)KW_MODULE_ABI);
		return KW_ERR_MODULE;
	}
	if (!DESC_HAS(d, settings) || d->name == NULL) {
		snprintf(why, whylen,
			 "module %s has a truncated descriptor (%u bytes)",
			 m->path, (unsigned)d->size);
		return KW_ERR_MODULE;
	}
	if (DESC_HAS(d, open))
		m->op_open = d->open;
	if (DESC_HAS(d, close))
		m->op_close = d->close;
	if (DESC_HAS(d, check))
		m->op_check = d->check;
	if (DESC_HAS(d, lookup))
		m->op_lookup = d->lookup;
	if (DESC_HAS(d, put))
		m->op_put = d->put;
	if (DESC_HAS(d, set_active))
		m->op_set_active = d->set_active;
	if (DESC_HAS(d, remove))
		m->op_remove = d->remove;
	if (DESC_HAS(d, list))
		m->op_list = d->list;
	if (DESC_HAS(d, rekey))
		m->op_rekey = d->rekey;
	if (DESC_HAS(d, used))
		m->op_used = d->used;
	if (DESC_HAS(d, charge))
		m->op_charge = d->charge;
	if (DESC_HAS(d, refund))
		m->op_refund = d->refund;
	if (DESC_HAS(d, usage))
		m->op_usage = d->usage;
	if (DESC_HAS(d, walk_end))
		m->op_walk_end = d->walk_end;
	if (DESC_HAS(d, used_batch))
		m->op_used_batch = d->used_batch;
	if (DESC_HAS(d, reads_env))
		m->op_reads_env = d->reads_env;

	if ((d->caps & KW_CAP_LOOKUP) && m->op_lookup == NULL)
		return missing_op(m, "lookup", "lookup", why, whylen);
	if ((d->caps & KW_CAP_STORE) &&
	    (m->op_put == NULL || m->op_set_active == NULL ||
	     m->op_remove == NULL))
		return missing_op(m, "store", "put, set_active and remove",
				  why, whylen);
	if ((d->caps & KW_CAP_LIST) && m->op_list == NULL)
		return missing_op(m, "list", "list", why, whylen);
	if ((d->caps & KW_CAP_LEDGER) &&
	    (m->op_charge == NULL || m->op_refund == NULL))
		return missing_op(m, "ledger", "charge and refund", why,
				  whylen);
	return KW_OK;
}

kw_status kwi_module_load(struct kwi_module **list, const char *spec,
			  struct kwi_module **out, char *why, size_t whylen)
{
	struct kwi_module *m = NULL;
	kw_module_entry_fn *entry;
	char *path = NULL;
	kw_status rc;
	struct stat st;

	*out = NULL;
	if (spec[0] == '/') {
		path = strdup(spec);
	} else if (!valid_module_name(spec)) {
		snprintf(why, whylen,
			 "invalid module name \"%s\" (a name like \"sqlite\" "
			 "or an absolute path)",
			 spec);
		return KW_ERR_CONFIG;
	} else if (asprintf(&path, "%s/kw_%s.so", kwi_module_dir(), spec) <
		   0) {
		path = NULL;
	}
	if (path == NULL)
		return KW_ERR_NOMEM;

	for (struct kwi_module *it = *list; it != NULL; it = it->next) {
		if (strcmp(it->path, path) == 0) {
			free(path);
			*out = it;
			return KW_OK;
		}
	}

	rc = kwi_path_trusted(path, why, whylen);
	if (rc != KW_OK) {
		if (rc == KW_ERR_PERM) {
			char reason[512];

			snprintf(reason, sizeof(reason), "%s", why);
			snprintf(why, whylen, "refusing module %s: %s", path,
				 reason);
		} else if (rc == KW_ERR_NOTFOUND) {
			snprintf(why, whylen, "cannot load module %s: %s", path,
				 strerror(ENOENT));
		}
		rc = rc == KW_ERR_PERM || rc == KW_ERR_NOMEM ? rc
							     : KW_ERR_MODULE;
		goto out;
	}
	/* Every component is trusted; the last must be a plain file. */
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "cannot load module %s: not a file",
			 path);
		rc = KW_ERR_MODULE;
		goto out;
	}

	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		rc = KW_ERR_NOMEM;
		goto out;
	}
	m->path = path;
	path = NULL;
	m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
	if (m->handle == NULL) {
		const char *e = dlerror();

		snprintf(why, whylen, "cannot load module %s: %s", m->path,
			 e != NULL ? e : "dlopen failed");
		rc = KW_ERR_MODULE;
		goto out;
	}
	*(void **)&entry = dlsym(m->handle, KW_MODULE_ENTRY_SYMBOL);
	if (entry == NULL) {
		snprintf(why, whylen,
			 "module %s has no %s entry point (not a keyway "
			 "module?)",
			 m->path, KW_MODULE_ENTRY_SYMBOL);
		rc = KW_ERR_MODULE;
		goto out;
	}
	m->desc = entry();
	if (m->desc == NULL) {
		snprintf(why, whylen, "module %s returned no descriptor",
			 m->path);
		rc = KW_ERR_MODULE;
		goto out;
	}
	rc = check_descriptor(m, why, whylen);
	if (rc != KW_OK)
		goto out;
	m->name = strdup(m->desc->name);
	if (m->name == NULL) {
		rc = KW_ERR_NOMEM;
		goto out;
	}

	m->next = *list;
	*list = m;
	*out = m;
	m = NULL;
	rc = KW_OK;
out:
	if (m != NULL) {
		if (m->handle != NULL)
			dlclose(m->handle);
		free(m->name);
		free(m->path);
		free(m);
	}
	free(path);
	return rc;
}

void kwi_module_unload_all(struct kwi_module *list)
{
	while (list != NULL) {
		struct kwi_module *next = list->next;

		dlclose(list->handle);
		free(list->name);
		free(list->path);
		free(list);
		list = next;
	}
}
