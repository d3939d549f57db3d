/*
 * testutil.c - helpers shared by the unit tests.
 */
#include "config.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *dir;

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	if (asprintf(&dir, "%s/keyway-test.XXXXXX", base) < 0)
		abort();
	if (mkdtemp(dir) == NULL) {
		perror(dir);
		abort();
	}
	return dir;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tu_rmrf(char *dir)
{
	if (dir == NULL)
		return;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

char *tu_write(const char *dir, const char *name, mode_t mode,
	       const char *fmt, ...)
{
	char *path, *text;
	va_list ap;
	int fd, n;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, (size_t)n) != n || fchmod(fd, mode) != 0) {
		perror(path);
		abort();
	}
	close(fd);
	free(text);
	return path;
}

char *tu_module(const char *name)
{
	const char *dir = getenv("KEYWAY_MODULE_DIR");
	char *path;

	if (dir == NULL)
		dir = ".";
	if (asprintf(&path, "%s/kw_%s.so", dir, name) < 0)
		abort();
	return path;
}

kw_status tu_open(kw_ctx **ctx, const char *text, char **dirp)
{
	char *dir = tu_tmpdir();
	char *path = tu_write(dir, "keyway.conf", 0644, "%s", text);
	kw_status st = kw_open(ctx, path);

	free(path);
	if (dirp != NULL)
		*dirp = dir;
	else
		tu_rmrf(dir);
	return st;
}

kw_status tu_resolve(kw_ctx *ctx, const char *chain, const char *provider,
		     const char *user, const char *org, char *value,
		     size_t vlen, char *backend, size_t blen)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s;
	kw_status st;

	req.chain = chain;
	req.provider = provider;
	req.user = user;
	req.org = org;
	st = kw_resolve(ctx, &req, &s);
	if (st == KW_OK) {
		if (value != NULL)
			snprintf(value, vlen, "%s", kw_secret_value(s));
		if (backend != NULL)
			snprintf(backend, blen, "%s", kw_secret_backend(s));
		kw_secret_free(s);
	}
	return st;
}
