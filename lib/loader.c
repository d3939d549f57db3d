/*
 * loader.c - finding, checking and loading modules.
 *
 * `module = "env"` means kw_env.so in the first directory of the module
 * search path that has it; an absolute path names the file itself.  Either
 * way the file and every directory on the way to it (and through any
 * symbolic link) must be trusted, as fsutil.c defines it, before a byte of
 * it runs; and the file is opened once, checked on its descriptor, and
 * loaded through that descriptor.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

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

/*
 * The module called `name`: kw_NAME.so in the first directory of
 * $KEYWAY_MODULE_DIR (a colon-separated list), then the built-in module
 * directory, that has it.  A file that is there but not trusted is
 * refused, not passed over for the next directory.  *path is the file
 * found (the caller frees it).
 */
static kw_status find_module(const char *name, char **path, char *why,
			     size_t whylen)
{
	const char *env = secure_getenv("KEYWAY_MODULE_DIR");
	char *dirs = NULL, *save = NULL;
	const char **tried = NULL;
	size_t ntried = 0, max = 2;
	kw_status rc;

	*path = NULL;
	if (asprintf(&dirs, "%s:%s", env != NULL ? env : "", KW_MODULEDIR) <
	    0)
		return KW_ERR_NOMEM;
	for (const char *c = dirs; *c != '\0'; c++)
		max += *c == ':';
	tried = calloc(max, sizeof(*tried));
	if (tried == NULL) {
		rc = KW_ERR_NOMEM;
		goto out;
	}
	for (char *dir = strtok_r(dirs, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		free(*path);
		if (asprintf(path, "%s/kw_%s.so", dir, name) < 0) {
			*path = NULL;
			rc = KW_ERR_NOMEM;
			goto out;
		}
		rc = kwi_path_trusted(*path, why, whylen);
		if (rc != KW_ERR_NOTFOUND)
			goto out;
		tried[ntried++] = dir;
	}
	/* One place looked in: the file's own name says it all. */
	if (ntried == 1) {
		snprintf(why, whylen, "cannot load module %s: %s", *path,
			 strerror(ENOENT));
	} else {
		size_t used = (size_t)snprintf(why, whylen,
					       "cannot load module \"%s\": no "
					       "kw_%s.so in ",
					       name, name);

		for (size_t i = 0; i < ntried && used < whylen; i++)
			used += (size_t)snprintf(why + used, whylen - used,
						 "%s%s", tried[i],
						 i + 2 < ntried   ? ", "
						 : i + 1 < ntried ? " or "
								  : "");
	}
	rc = KW_ERR_NOTFOUND;
out:
	free(tried);
	free(dirs);
	return rc;
}

/*
 * Open the file the walk checked and check what was opened, so that a
 * file swapped in after the walk is refused rather than run.
 */
static kw_status open_checked(const char *path, int *fd, char *why,
			      size_t whylen)
{
	char reason[256];
	struct stat st;
	int f;

	*fd = -1;
	/* O_NONBLOCK: a FIFO must be refused, not waited on. */
	f = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (f < 0) {
		snprintf(why, whylen, "cannot load module %s: %s", path,
			 strerror(errno));
		return KW_ERR_MODULE;
	}
	if (fstat(f, &st) != 0) {
		snprintf(why, whylen, "cannot load module %s: %s", path,
			 strerror(errno));
		close(f);
		return KW_ERR_MODULE;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "cannot load module %s: not a file",
			 path);
		close(f);
		return KW_ERR_MODULE;
	}
	if (!kwi_stat_trusted(&st, false, reason, sizeof(reason))) {
		snprintf(why, whylen, "refusing module %s: it is %s", path,
			 reason);
		close(f);
		return KW_ERR_PERM;
	}
	*fd = f;
	return KW_OK;
}

/*
 * The name to dlopen() the file open on fd by.  glibc finds an object
 * already loaded by the name it was loaded by before looking at the file,
 * and descriptor numbers are reused: so each load takes a name no earlier
 * load had, "/proc/self/fd" followed by a count in "/" and "./" steps
 * (which the kernel skips) before the number.
 */
static void fd_name(int fd, char *buf, size_t len)
{
	static unsigned long loads;
	unsigned long n = __atomic_add_fetch(&loads, 1, __ATOMIC_RELAXED);
	size_t used = (size_t)snprintf(buf, len, "/proc/self/fd");

	for (; n != 0 && used + 3 < len; n >>= 1)
		used += (size_t)snprintf(buf + used, len - used, "%s",
					 (n & 1) ? "/." : "/");
	snprintf(buf + used, len - used, "/%d", fd);
}

kw_status kwi_module_load(struct kwi_module **list, const char *spec,
			  struct kwi_module **out, char *why, size_t whylen)
{
	struct kwi_module *m = NULL;
	kw_module_entry_fn *entry;
	char *path = NULL, byfd[192];
	struct stat byname, opened;
	kw_status rc;
	int fd = -1;

	*out = NULL;
	if (spec[0] == '/') {
		path = strdup(spec);
		if (path == NULL)
			return KW_ERR_NOMEM;
		rc = kwi_path_trusted(path, why, whylen);
	} else if (!valid_module_name(spec)) {
		snprintf(why, whylen,
			 "invalid module name \"%s\" (a name like \"sqlite\" "
			 "or an absolute path)",
			 spec);
		return KW_ERR_CONFIG;
	} else {
		rc = find_module(spec, &path, why, whylen);
		if (rc == KW_ERR_NOMEM)
			goto out;
		if (rc == KW_ERR_NOTFOUND) {
			rc = KW_ERR_MODULE;
			goto out;
		}
	}
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

	for (struct kwi_module *it = *list; it != NULL; it = it->next) {
		if (strcmp(it->path, path) == 0) {
			*out = it;
			rc = KW_OK;
			goto out;
		}
	}

	rc = open_checked(path, &fd, why, whylen);
	if (rc != KW_OK)
		goto out;
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		rc = KW_ERR_NOMEM;
		goto out;
	}
	m->path = path;
	path = NULL;
	/* What is loaded is the file checked, not whatever has its name by
	 * now. */
	fd_name(fd, byfd, sizeof(byfd));
	/* Without /proc (a chroot, a small container) dlopen() would only
	 * say the name does not exist. */
	if (stat(byfd, &byname) != 0 || fstat(fd, &opened) != 0 ||
	    byname.st_dev != opened.st_dev || byname.st_ino != opened.st_ino) {
		snprintf(why, whylen,
			 "cannot load module %s: /proc/self/fd is not "
			 "available; keyway loads modules through it (mount "
			 "/proc)",
			 m->path);
		rc = KW_ERR_MODULE;
		goto out;
	}
	m->handle = dlopen(byfd, RTLD_NOW | RTLD_LOCAL);
	if (m->handle == NULL) {
		const char *e = dlerror();
		size_t n = strlen(byfd);

		/* dlopen names the file as it was given: put its real name
		 * back. */
		if (e == NULL)
			snprintf(why, whylen, "cannot load module %s: dlopen "
				 "failed", m->path);
		else if (strncmp(e, byfd, n) == 0)
			snprintf(why, whylen, "cannot load module %s: %s%s",
				 m->path, m->path, e + n);
		else
			snprintf(why, whylen, "cannot load module %s: %s",
				 m->path, e);
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
	if (fd >= 0)
		close(fd);
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
