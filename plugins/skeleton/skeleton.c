/*
 * skeleton.c - kw_skeleton.so, the annotated minimal keyway backend.
 *
 * Copy this file to start a backend of your own.  It is small but real: it
 * serves keys from a directory that holds one file per key, the way a
 * systemd credentials directory does.  In keyway.conf:
 *
 *     creds: { module = "skeleton"; dir = "/etc/keyway/keys";
 *              scope = "user"; };
 *
 * and the key for provider PROVIDER is read from
 *
 *     scope = "system"    DIR/PROVIDER
 *     scope = "user"      DIR/user/OWNER/PROVIDER   (OWNER: the request's user)
 *     scope = "org"       DIR/org/OWNER/PROVIDER    (OWNER: the request's org)
 *
 * A key file holds the key, optionally followed by one newline, is a
 * regular file (not a symbolic link), is owned by root or by the user
 * keyway runs as, and is neither readable nor writable by group or others
 * (mode 0600 or 0400).  Anything else is refused, as OpenSSH refuses an
 * unprotected private key.
 *
 * Building out of tree.  A module does not link against libkeyway: every
 * service it needs comes from the struct kw_host table handed to open().
 * The Makefile beside this file (installed with it in keyway's
 * examples/skeleton/ documentation directory) builds it with keyway's one
 * recipe, the flags after the source file:
 *
 *     cc -o kw_skeleton.so skeleton.c \
 *         $(pkg-config --cflags --libs keyway-module)
 *
 * keyway-module.pc brings -fPIC and -shared, -fvisibility=hidden (every
 * symbol but the entry point stays private; KW_MODULE_EXPORT marks that one
 * visible) and -Wl,-z,defs (the linker rejects a call into libkeyway that
 * would only fail at load time).  keyway-conformance ./kw_skeleton.so
 * --config FILE then checks it against the rules of module.h.
 * Install the result as kw_<name>.so in keyway's module directory,
 * $(libdir)/keyway/, and name it in keyway.conf with module = "<name>".
 *
 * Renaming.  Change SKEL_NAME, the file name (kw_<name>.so must match the
 * descriptor's name), the settings table and the four operations.  Keep
 * KW_MODULE_HEADER first in the descriptor: it records the ABI and the size
 * of the descriptor you compiled, which is how the host tells an old module
 * from a new one.
 */

/* open(O_NOFOLLOW | O_CLOEXEC) and friends are POSIX.1-2008: ask for it, so
 * that the file builds with -std=c11 as well as with the GNU dialects. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keyway/module.h>

#define SKEL_NAME "skeleton"

/*
 * The largest key served, not counting its trailing newline.  API keys are
 * a few hundred bytes at most; a bigger file is a mistake (a key file that
 * is really a certificate bundle, say), not a key.
 */
#define SKEL_KEY_MAX 8192

/*
 * Everything one backend needs after open().  The host may call lookup()
 * and check() from many threads at once on the same state, so after open()
 * returns this is read-only: nothing here needs a lock.  A module that does
 * keep mutable state (a cache, a connection pool, a counter) must protect it
 * itself, with a mutex or with C11 atomics.
 */
struct skel {
	const kw_host *host; /* the host's services; valid until close() */
	const char *dir;     /* the `dir` setting: the host owns the string
				and keeps it valid until close() */
};

/*
 * Settings beyond `module`, `scope` and `quota`, which the host handles
 * itself.  The host refuses any other setting, checks types and required
 * settings, and makes a relative KW_SETTING_PATH absolute against the
 * directory of the config file, all before open() is called.
 */
static const kw_setting_spec skel_settings[] = {
	{ "dir", KW_SETTING_PATH, KW_SETTING_REQUIRED },
	{ NULL, 0, 0 }
};

/*
 * open(): set up one backend, i.e. one block of keyway.conf that names this
 * module.  A module may be opened several times with different settings, so
 * keep everything in the state, never in globals.
 *
 * Read settings here: the setting accessors work in open() only.  Check
 * everything that can be checked now, because keyway fails closed: a config
 * that loads must work, and a mistake reported here is shown to the
 * sysadmin as "keyway.conf:LINE: backend "NAME": MESSAGE", pointing at the
 * setting passed to host->error().  On failure call host->error() once and
 * return a failure status; close() is not called after a failed open(), so
 * free what was made before returning.
 *
 * open() and close() are called from one thread, never concurrently with
 * anything else on the same backend.
 */
static kw_status skel_open(const kw_host *host, kw_instance *inst,
			   void **state)
{
	struct skel *s = NULL;
	const char *dir = NULL;
	struct stat st;
	kw_status rc;

	*state = NULL;

	rc = host->setting_string(inst, "dir", &dir);
	if (rc != KW_OK) {
		/* The host enforces KW_SETTING_REQUIRED; be defensive. */
		host->error(inst, NULL, "missing setting \"dir\"");
		rc = KW_ERR_CONFIG;
		goto out;
	}

	/*
	 * Only the directory is checked here.  Keys are read at lookup time,
	 * so that adding or rotating a key file needs no restart.
	 */
	if (stat(dir, &st) != 0) {
		int e = errno;

		host->error(inst, "dir", "%s: %s", dir, strerror(e));
		rc = (e == ENOENT || e == ENOTDIR) ? KW_ERR_CONFIG : KW_ERR_IO;
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		host->error(inst, "dir", "%s: %s", dir, strerror(ENOTDIR));
		rc = KW_ERR_CONFIG;
		goto out;
	}

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		host->error(inst, NULL, "out of memory");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	s->host = host;
	s->dir = dir;

	*state = s;
	s = NULL;
	rc = KW_OK;
out:
	free(s);
	return rc;
}

/* close(): release what open() made.  Called once, after a successful
 * open(), when no lookup() or check() can still be running. */
static void skel_close(void *state)
{
	free(state);
}

/*
 * The core validates provider and owner names before any module sees them.
 * Checking again costs nothing and keeps a name from ever walking out of
 * `dir`, should a future host or a buggy caller let one through.
 */
static bool skel_name_ok(const char *name)
{
	return name != NULL && name[0] != '\0' && strcmp(name, ".") != 0 &&
	       strcmp(name, "..") != 0 && strchr(name, '/') == NULL;
}

/*
 * The key file's path for q into path (size bytes), following the layout at
 * the top of this file.  A name that could leave `dir`, or a path too long,
 * is KW_ERR_NOTFOUND: there is no such key here.
 */
static kw_status skel_key_path(const struct skel *s, const kw_query *q,
			       char *path, size_t size)
{
	const kw_host *host = s->host;
	int n;

	if (!skel_name_ok(q->provider)) {
		host->reply_detail(q->reply, "refusing provider name \"%s\"",
				   q->provider);
		return KW_ERR_NOTFOUND;
	}

	switch (q->scope) {
	case KW_SCOPE_USER:
	case KW_SCOPE_ORG: {
		/* kw_scope_name() spells a scope as keyway.conf does. */
		const char *word = kw_scope_name(q->scope);

		/* The host answers for requests that lack the identity the
		 * scope needs, but a module must not trust that blindly. */
		if (q->owner == NULL) {
			host->reply_detail(q->reply, "no %s in the request",
					   word);
			return KW_ERR_NOTFOUND;
		}
		if (!skel_name_ok(q->owner)) {
			host->reply_detail(q->reply,
					   "refusing %s name \"%s\"", word,
					   q->owner);
			return KW_ERR_NOTFOUND;
		}
		n = snprintf(path, size, "%s/%s/%s/%s", s->dir, word,
			     q->owner, q->provider);
		break;
	}
	default:
		/* System scope; an unscoped query reads the shared key too. */
		n = snprintf(path, size, "%s/%s", s->dir, q->provider);
		break;
	}
	if (n < 0 || (size_t)n >= size) {
		host->reply_detail(q->reply, "path of the key file for \"%s\" "
				   "is too long", q->provider);
		return KW_ERR_NOTFOUND;
	}
	return KW_OK;
}

/*
 * Is the opened key file, open on fd with fstat() *st, one keyway may
 * serve?  The rules are those at the top of this file; every refusal says
 * what is wrong and how to fix it.  A refused file is KW_ERR_BACKEND: a
 * setup mistake, not an outage, so it stops the chain.
 *
 * host->check_private() holds the rules as keyway applies them to every
 * private file; a host older than it (KW_HOST_HAS says so) gets the same
 * rules checked here.
 */
static kw_status skel_key_file_ok(const kw_host *host, kw_reply *r,
				  const char *path, int fd,
				  const struct stat *st)
{
	if (KW_HOST_HAS(host, check_private)) {
		char why[PATH_MAX + 128];
		kw_status rc = host->check_private(fd, path, why, sizeof(why));

		if (rc != KW_OK) {
			host->reply_detail(r, "%s", why);
			return rc == KW_ERR_PERM ? KW_ERR_BACKEND
						 : KW_ERR_UNAVAIL;
		}
	} else if (!S_ISREG(st->st_mode)) {
		host->reply_detail(r, "%s is not a regular file", path);
		return KW_ERR_BACKEND;
	} else if (st->st_uid != 0 && st->st_uid != geteuid()) {
		host->reply_detail(r, "%s is owned by uid %lu, not by "
				   "root or uid %lu; chown it", path,
				   (unsigned long)st->st_uid,
				   (unsigned long)geteuid());
		return KW_ERR_BACKEND;
	} else if (st->st_mode & (S_IRWXG | S_IRWXO)) {
		host->reply_detail(r, "%s is accessible by group or others "
				   "(mode %04o); chmod 600 it", path,
				   (unsigned)(st->st_mode & 07777));
		return KW_ERR_BACKEND;
	}
	if (st->st_size > SKEL_KEY_MAX + 1) {
		host->reply_detail(r, "%s is larger than %d bytes",
				   path, SKEL_KEY_MAX);
		return KW_ERR_BACKEND;
	}
	return KW_OK;
}

/*
 * Open the key file at path into *fd and check it, *st getting its
 * fstat().  The caller closes *fd, which is -1 when nothing was opened.
 *
 * host->open_private() does these checks for files read in open(), but it
 * reports through host->error(), which only open() may use, and its
 * refusals are KW_ERR_PERM where a lookup must choose what its answer does
 * to the chain (the table above skel_lookup()).  At lookup time check
 * the open descriptor instead (skel_key_file_ok(), through
 * host->check_private()), so that the file checked is the file read.
 * O_NONBLOCK keeps a FIFO planted in the directory from hanging the caller;
 * it does nothing to a regular file.
 */
static kw_status skel_open_key(const kw_host *host, kw_reply *r,
			       const char *path, int *fd, struct stat *st)
{
	*fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (*fd < 0) {
		int e = errno;

		if (e == ENOENT) {
			host->reply_detail(r, "no file %s", path);
			return KW_ERR_NOTFOUND;
		}
		if (e == ELOOP) {
			/* A link is a setup mistake, not an outage: it must
			 * stop the chain like any other unsafe key file. */
			host->reply_detail(r, "%s is a symbolic link; "
					   "replace it with the key file",
					   path);
			return KW_ERR_BACKEND;
		}
		host->reply_detail(r, "%s: %s", path, strerror(e));
		return KW_ERR_UNAVAIL;
	}
	if (fstat(*fd, st) != 0) {
		host->reply_detail(r, "%s: %s", path, strerror(errno));
		return KW_ERR_UNAVAIL;
	}
	return skel_key_file_ok(host, r, path, *fd, st);
}

/*
 * Read the whole of the key file open on fd, st_size bytes long, into
 * buf (cap bytes, at least st_size + 1); *len gets the bytes read.
 */
static kw_status skel_read_key(const kw_host *host, kw_reply *r,
			       const char *path, int fd, off_t st_size,
			       char *buf, size_t cap, size_t *len)
{
	*len = 0;
	while (*len < cap) {
		ssize_t got = read(fd, buf + *len, cap - *len);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			host->reply_detail(r, "%s: %s", path,
					   strerror(errno));
			return KW_ERR_UNAVAIL;
		}
		if (got == 0)
			break;
		*len += (size_t)got;
	}
	if (*len != (size_t)st_size) {
		/* Rewritten in place while we read it; the next try will
		 * most likely see the whole file. */
		host->reply_detail(r, "%s changed while it was read", path);
		return KW_ERR_UNAVAIL;
	}
	return KW_OK;
}

/*
 * The key in the len bytes of buf, without the trailing newline: *len is
 * cut to it.  An empty key, or one with a NUL byte, is bad data.
 */
static kw_status skel_trim_key(const kw_host *host, kw_reply *r,
			       const char *path, const char *buf, size_t *len)
{
	if (*len > 0 && buf[*len - 1] == '\n')
		(*len)--;
	if (*len == 0) {
		host->reply_detail(r, "%s holds no key", path);
		return KW_ERR_BACKEND;
	}
	/* The application gets a C string: an embedded NUL would cut the
	 * key short without anyone noticing. */
	if (memchr(buf, '\0', *len) != NULL) {
		host->reply_detail(r, "%s holds a NUL byte", path);
		return KW_ERR_BACKEND;
	}
	return KW_OK;
}

/*
 * lookup(): find the key for q->provider (and q->owner, for a scoped
 * backend) and hand it to the host.
 *
 * What the status means to the chain (keyway.conf(5), "chain semantics"):
 *
 *   KW_OK            found: call host->reply_secret() or fill the buffer
 *                    from host->reply_buffer() first.  The chain is done.
 *   KW_ERR_NOTFOUND  authoritative "I have no such key": most controls go
 *                    on to the next entry.
 *   KW_ERR_DENIED    "I have it but may not hand it out" (disabled key,
 *                    policy).  Quotas are the host's job, not the module's.
 *   KW_ERR_UNAVAIL   "I could not be asked": a server down, a timeout, a
 *                    lock.  `sufficient` goes on; `required` stops there.
 *   anything else    "something is wrong": bad data, unsafe permissions,
 *                    failed decryption.  Most controls stop the chain, so
 *                    that a broken store never silently falls through to a
 *                    more expensive fallback key.
 *
 * Pick the status with that table in mind: answering NOTFOUND when the
 * store is merely unreachable would let a request slip past a `required`
 * entry.  Whatever the status, say why with host->reply_detail(): it shows
 * in `keyway explain` and in error messages.
 *
 * Threads: lookup() runs concurrently on the same state from any number of
 * threads.  This one touches only its locals and read-only state.  strerror()
 * returns constant strings for the errors it can see here (glibc 2.32 and
 * later, musl), so it is safe too.
 *
 * Secrets: never put one in a detail, a log line or an error; keep it in
 * host->secure_alloc() memory (locked, kept out of core dumps) and free that
 * with host->secure_free(), which wipes it, on every path out.  Names,
 * paths and statuses are not secret and belong in details.
 *
 * The kw_query fields used here exist in every version of the ABI.  A field
 * added later is there only when q->size covers it: check before reading.
 */
static kw_status skel_lookup(void *state, const kw_query *q)
{
	const struct skel *s = state;
	const kw_host *host = s->host;
	char path[PATH_MAX];
	struct stat st;
	char *buf = NULL;
	size_t cap = 0;
	size_t len = 0;
	int fd = -1;
	kw_status rc;

	rc = skel_key_path(s, q, path, sizeof(path));
	if (rc != KW_OK)
		goto out;
	rc = skel_open_key(host, q->reply, path, &fd, &st);
	if (rc != KW_OK)
		goto out;

	/*
	 * The trailing newline must not be part of the key, and the host's
	 * reply_buffer() cannot be shrunk once asked for: read into guarded
	 * memory of our own, then let reply_secret() copy the exact bytes.
	 * One byte of slack shows whether the file grew after fstat().
	 * A module that knows the exact length up front (a decrypted value,
	 * say) can skip the copy and fill host->reply_buffer() directly.
	 */
	cap = (size_t)st.st_size + 1;
	buf = host->secure_alloc(cap);
	if (buf == NULL) {
		host->reply_detail(q->reply, "out of memory");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	rc = skel_read_key(host, q->reply, path, fd, st.st_size, buf, cap,
			   &len);
	if (rc != KW_OK)
		goto out;
	rc = skel_trim_key(host, q->reply, path, buf, &len);
	if (rc != KW_OK)
		goto out;

	rc = host->reply_secret(q->reply, buf, len);
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "could not hand over the key "
				   "read from %s", path);
		goto out;
	}
	host->reply_detail(q->reply, "read %s", path);
out:
	/* secure_free() wipes before it frees, whatever the path out. */
	if (buf != NULL)
		host->secure_free(buf, cap);
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * check(): the health check behind `keyway check`.  Say what was checked
 * with host->reply_detail(), and return KW_OK or the status lookup() would
 * meet.  It may run concurrently with lookup().  A module cannot tell its
 * scope before the first query, so only `dir` itself is checked: it must be
 * readable, and not writable by group or others, who could otherwise plant
 * or replace key files.
 */
static kw_status skel_check(void *state, kw_reply *r)
{
	const struct skel *s = state;
	const kw_host *host = s->host;
	struct stat st;
	int fd;
	kw_status rc;

	fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		host->reply_detail(r, "%s: %s", s->dir, strerror(errno));
		rc = KW_ERR_UNAVAIL;
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		host->reply_detail(r, "%s: %s", s->dir, strerror(errno));
		rc = KW_ERR_UNAVAIL;
		goto out;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		host->reply_detail(r, "%s is writable by group or others; "
				   "chmod go-w it", s->dir);
		rc = KW_ERR_PERM;
		goto out;
	}
	host->reply_detail(r, "%s is readable and not writable by group or "
			   "others", s->dir);
	rc = KW_OK;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * The descriptor: KW_MODULE_HEADER (ABI and size) first, then the rest by
 * name, so that an operation the module does not offer, and any field a
 * later keyway adds, is NULL.  The name must match kw_<name>.so.
 * KW_CAP_SCOPED tells the host to accept `scope` for this module and to
 * fill q->scope and q->owner.
 */
static const struct kw_module skel_module = {
	KW_MODULE_HEADER,
	.name = SKEL_NAME,
	.description = "keys read from one file per key in a directory",
	.caps = KW_CAP_LOOKUP | KW_CAP_SCOPED,
	.settings = skel_settings,
	.open = skel_open,
	.close = skel_close,
	.check = skel_check,
	.lookup = skel_lookup,
};

/* The one exported symbol: kw_module_entry(), returning the descriptor. */
KW_MODULE_EXPORT(skel_module)
