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

#include "fsutil.h"
#include "loader.h"


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

static kw_status missing_op(const struct kwi_module *m, const char *cap,
			    const char *ops, char *why, size_t whylen)
{
	snprintf(why, whylen, "module %s claims %s but lacks %s", m->path, cap,
		 ops);
	return KW_ERR_MODULE;
}

/* Member `field` is present when the module's descriptor is long enough to
 * hold it. */
#define DESC_HAS(d, field) \
	((d)->size >= offsetof(struct kw_module, field) + sizeof((d)->field))

/* The descriptor's ABI, and enough of it to name and configure it. */
static kw_status check_header(const struct kwi_module *m, char *why,
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
	/* Its name is in keyway's messages: as a file name would be. */
	if (strnlen(d->name, 65) > 64 || !valid_module_name(d->name)) {
		snprintf(why, whylen,
			 "module %s names itself with something that is not a "
			 "module name (1 to 64 of a-z, 0-9, '_' and '-'); set "
			 "its descriptor's .name to its file's kw_NAME.so",
			 m->path);
		return KW_ERR_MODULE;
	}
	return KW_OK;
}

/*
 * Every member of struct kw_module is a pointer or a uint32_t, none
 * larger than the structure's alignment: a length rounded down to that
 * alignment ends between two members, never inside one.
 */
_Static_assert(_Alignof(struct kw_module) >= sizeof(void *) &&
		       _Alignof(struct kw_module) >= sizeof(uint32_t),
	       "a member of struct kw_module is wider than its alignment");

/*
 * m->ops: the module's descriptor as far as its `size` goes, rounded down
 * to a whole member, and zero past it, so that an operation a shorter
 * descriptor does not hold reads as NULL.  A longer one, from a newer
 * module.h, is read only as far as this host knows it.
 */
static void copy_ops(struct kwi_module *m)
{
	size_t len = m->desc->size;

	if (len > sizeof(m->ops))
		len = sizeof(m->ops);
	len -= len % _Alignof(struct kw_module);
	memset(&m->ops, 0, sizeof(m->ops));
	memcpy(&m->ops, m->desc, len);
}

/* The operations each capability the module claims needs. */
static kw_status check_caps(const struct kwi_module *m, char *why,
			    size_t whylen)
{
	const struct kw_module *o = &m->ops;

	if ((o->caps & KW_CAP_LOOKUP) && o->lookup == NULL)
		return missing_op(m, "lookup", "lookup", why, whylen);
	if ((o->caps & KW_CAP_STORE) &&
	    (o->put == NULL || o->set_active == NULL || o->remove == NULL))
		return missing_op(m, "store", "put, set_active and remove",
				  why, whylen);
	if ((o->caps & KW_CAP_LIST) && o->list == NULL)
		return missing_op(m, "list", "list", why, whylen);
	if ((o->caps & KW_CAP_LEDGER) &&
	    (o->charge == NULL || o->refund == NULL))
		return missing_op(m, "ledger", "charge and refund", why,
				  whylen);
	return KW_OK;
}

static kw_status check_descriptor(struct kwi_module *m, char *why,
				  size_t whylen)
{
	kw_status rc = check_header(m, why, whylen);

	if (rc != KW_OK)
		return rc;
	copy_ops(m);
	return check_caps(m, why, whylen);
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

/*
 * The file spec names, trusted: *path (the caller frees it) on KW_OK, and
 * why it cannot be loaded otherwise.
 */
static kw_status locate_module(const char *spec, char **path, char *why,
			       size_t whylen)
{
	kw_status rc;

	*path = NULL;
	if (spec[0] == '/') {
		*path = strdup(spec);
		if (*path == NULL)
			return KW_ERR_NOMEM;
		rc = kwi_path_trusted(*path, why, whylen);
	} else if (!valid_module_name(spec)) {
		snprintf(why, whylen,
			 "invalid module name \"%s\" (a name like \"sqlite\" "
			 "or an absolute path)",
			 spec);
		return KW_ERR_CONFIG;
	} else {
		rc = find_module(spec, path, why, whylen);
		if (rc == KW_ERR_NOMEM)
			return rc;
		if (rc == KW_ERR_NOTFOUND)
			return KW_ERR_MODULE;
	}
	if (rc == KW_ERR_PERM) {
		char reason[512];

		snprintf(reason, sizeof(reason), "%s", why);
		snprintf(why, whylen, "refusing module %s: %s", *path, reason);
	} else if (rc == KW_ERR_NOTFOUND) {
		snprintf(why, whylen, "cannot load module %s: %s", *path,
			 strerror(ENOENT));
	}
	if (rc == KW_OK || rc == KW_ERR_PERM || rc == KW_ERR_NOMEM)
		return rc;
	return KW_ERR_MODULE;
}

static struct kwi_module *loaded_module(struct kwi_module *list,
					const char *path)
{
	for (struct kwi_module *it = list; it != NULL; it = it->next)
		if (strcmp(it->path, path) == 0)
			return it;
	return NULL;
}

/* dlopen() the file m->path names, open and checked on fd. */
static kw_status open_object(struct kwi_module *m, int fd, char *why,
			     size_t whylen)
{
	struct stat byname, opened;
	char byfd[192];
	const char *e;
	size_t n;

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
		return KW_ERR_MODULE;
	}
	m->handle = dlopen(byfd, RTLD_NOW | RTLD_LOCAL);
	if (m->handle != NULL)
		return KW_OK;
	e = dlerror();
	n = strlen(byfd);
	/* dlopen names the file as it was given: put its real name back. */
	if (e == NULL)
		snprintf(why, whylen, "cannot load module %s: dlopen "
			 "failed", m->path);
	else if (strncmp(e, byfd, n) == 0)
		snprintf(why, whylen, "cannot load module %s: %s%s",
			 m->path, m->path, e + n);
	else
		snprintf(why, whylen, "cannot load module %s: %s",
			 m->path, e);
	return KW_ERR_MODULE;
}

/* Ask the loaded object for its descriptor, check it and take its name. */
static kw_status read_descriptor(struct kwi_module *m, char *why,
				 size_t whylen)
{
	kw_module_entry_fn *entry;
	kw_status rc;

	*(void **)&entry = dlsym(m->handle, KW_MODULE_ENTRY_SYMBOL);
	if (entry == NULL) {
		snprintf(why, whylen,
			 "module %s has no %s entry point (not a keyway "
			 "module?)",
			 m->path, KW_MODULE_ENTRY_SYMBOL);
		return KW_ERR_MODULE;
	}
	m->desc = entry();
	if (m->desc == NULL) {
		snprintf(why, whylen, "module %s returned no descriptor",
			 m->path);
		return KW_ERR_MODULE;
	}
	rc = check_descriptor(m, why, whylen);
	if (rc != KW_OK)
		return rc;
	m->name = strdup(m->desc->name);
	return m->name != NULL ? KW_OK : KW_ERR_NOMEM;
}

static void module_free(struct kwi_module *m)
{
	if (m->handle != NULL)
		dlclose(m->handle);
	free(m->name);
	free(m->path);
	free(m);
}

kw_status kwi_module_load(struct kwi_module **list, const char *spec,
			  struct kwi_module **out, char *why, size_t whylen)
{
	struct kwi_module *m = NULL;
	char *path = NULL;
	kw_status rc;
	int fd = -1;

	*out = NULL;
	rc = locate_module(spec, &path, why, whylen);
	if (rc != KW_OK)
		goto out;
	*out = loaded_module(*list, path);
	if (*out != NULL)
		goto out;

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
	rc = open_object(m, fd, why, whylen);
	if (rc != KW_OK)
		goto out;
	rc = read_descriptor(m, why, whylen);
	if (rc != KW_OK)
		goto out;

	m->next = *list;
	*list = m;
	*out = m;
	m = NULL;
out:
	if (fd >= 0)
		close(fd);
	if (m != NULL)
		module_free(m);
	free(path);
	return rc;
}

void kwi_module_unload_all(struct kwi_module *list)
{
	while (list != NULL) {
		struct kwi_module *next = list->next;

		module_free(list);
		list = next;
	}
}
