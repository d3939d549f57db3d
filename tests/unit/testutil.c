/*
 * testutil.c - helpers shared by the unit tests.
 */
#include "config.h"

#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#ifdef KW_COVERAGE
#include <stdio_ext.h>
#endif

void tu_exit(int status)
{
#ifdef KW_COVERAGE
	/*
	 * Not __gcov_dump() and _exit(): that writes the counters of the
	 * program alone.  libkeyway.so and each module keep theirs to
	 * themselves (their version scripts keep libgcov's list of them
	 * local), and write them from their destructors, which exit()
	 * runs.  What stdio holds, some of it the parent's, is dropped
	 * first, as _exit() would drop it.
	 */
	__fpurge(stdout);
	__fpurge(stderr);
	exit(status);
#endif
	_exit(status);
}

static void *kept[1024];
static size_t nkept;

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

void *tu_keep(void *p)
{
	assert_non_null(p);
	assert_true(nkept < sizeof(kept) / sizeof(kept[0]));
	kept[nkept++] = p;
	return p;
}

size_t tu_kept(void)
{
	return nkept;
}

void tu_release(size_t mark)
{
	while (nkept > mark)
		free(kept[--nkept]);
}

char *tu_fmt(const char *f, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, f);
	n = vasprintf(&s, f, ap);
	va_end(ap);
	assert_true(n >= 0);
	return tu_keep(s);
}

char *tu_join(const char *dir, const char *name)
{
	return tu_fmt("%s/%s", dir, name);
}

char *tu_slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	if (len != NULL)
		*len = 0;
	if (fp == NULL)
		return NULL;
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n >= 0);
	rewind(fp);
	buf = tu_keep(malloc((size_t)n + 1));
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

void tu_unsetenv(const char *const *names)
{
	for (; *names != NULL; names++)
		unsetenv(*names);
}

void tu_assert_no_secret(const char *text)
{
	if (text != NULL && strstr(text, TU_MARK) != NULL)
		fail_msg("a key leaked into \"%s\"", text);
}

const kw_actor *tu_sysadmin(void)
{
	static const kw_actor a = { sizeof(kw_actor), "root", NULL,
				    KW_ROLE_SYSADMIN };

	return &a;
}

void tu_expect_timestamp(const char *s)
{
	struct tm tm = { 0 };
	const char *end;
	int64_t t;

	assert_non_null(s);
	assert_int_equal(strlen(s), 24);
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	assert_non_null(end);
	assert_true(end[0] == '.' && end[1] >= '0' && end[1] <= '9' &&
		    end[2] >= '0' && end[2] <= '9' && end[3] >= '0' &&
		    end[3] <= '9' && end[4] == 'Z');
	t = (int64_t)timegm(&tm);
	assert_true(t > (int64_t)time(NULL) - 300 &&
		    t < (int64_t)time(NULL) + 300);
}

char *tu_self(void)
{
	char *path = tu_keep(calloc(1, 4096));
	ssize_t n;

	assert_non_null(path);
	n = readlink("/proc/self/exe", path, 4095);
	assert_true(n > 0 && n < 4095);
	return path;
}
