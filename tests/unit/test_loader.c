/*
 * test_loader.c - which modules keyway agrees to load, and what it says
 * when it refuses one.
 *
 * Every refusal is checked as the exact line kw_last_error() gives: the
 * configuration file and the line of `module = ...`, the backend, and the
 * reason with the path that caused it.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <keyway/keyway.h>

#include "testutil.h"

/* The line of `module = ...` in the configuration written by open_spec(). */
#define MODULE_LINE 3

/* What the fake module hands out for backend "b". */
#define FAKE_B_VALUE "sk-fake-b-0123456789abcdef"
#define SKEL_KEY "sk-ant-loader-skeleton-0001-abcdef"

/* A scratch directory with the configuration in it. */
struct fixture {
	char *dir;
	char *conf;
	char err[2048];
	kw_status st;
};

/*
 * Paths a test makes are kept here and freed by teardown(), so that a
 * failing assertion, which leaves the test at once, leaks nothing.
 */
/* $KEYWAY_MODULE_DIR as the test program found it; tests that point it
 * elsewhere have it put back by teardown(). */
static char *module_dir;

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->dir = tu_tmpdir();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->conf);
	tu_rmrf(f->dir);
	free(f);
	tu_release(0);
	if (setenv("KEYWAY_MODULE_DIR", module_dir, 1) != 0)
		return -1;
	return 0;
}

/* Write a 0755 file holding text into dir. */
static char *keep_write(const char *dir, const char *name, const char *text)
{
	return tu_keep(tu_write(dir, name, 0755, "%s", text));
}

/* mkdir dir/name with exactly `mode`, whatever the umask. */
static char *make_dir(const char *dir, const char *name, mode_t mode)
{
	char *p = tu_join(dir, name);

	assert_int_equal(mkdir(p, 0700), 0);
	assert_int_equal(chmod(p, mode), 0);
	return p;
}

/* Copy the built module `name` to dir/file with `mode`. */
static char *copy_module(const char *name, const char *dir, const char *file,
			 mode_t mode)
{
	char *src = tu_keep(tu_module(name));
	char *dst = tu_join(dir, file);
	char buf[65536];
	ssize_t n;
	int in, out;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		fail_msg("%s: %s (is KEYWAY_MODULE_DIR set?)", src,
			 strerror(errno));
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	assert_int_equal(fchmod(out, mode), 0);
	close(out);
	close(in);
	return dst;
}

/*
 * Write a configuration with one fake backend "b" whose module is `spec`
 * and open it.  The status and kw_last_error() are kept in f.
 */
static void open_spec(struct fixture *f, const char *spec)
{
	kw_ctx *ctx = NULL;
	char value[64], backend[16];

	free(f->conf);
	f->conf = tu_write(f->dir, "keyway.conf", 0644,
			   "backends: {\n"
			   "  b: {\n"
			   "    module = \"%s\";\n"
			   "    answer = \"found\";\n"
			   "  };\n"
			   "};\n"
			   "chains: {\n"
			   "  default = ( { backend = \"b\"; control = "
			   "\"required\"; } );\n"
			   "};\n",
			   spec);
	f->st = kw_open(&ctx, f->conf);
	snprintf(f->err, sizeof(f->err), "%s", kw_last_error());
	if (f->st != KW_OK) {
		assert_null(ctx);
		return;
	}
	assert_non_null(ctx);
	assert_int_equal(tu_resolve(ctx, NULL, "anthropic", NULL, NULL, value,
				    sizeof(value), backend, sizeof(backend)),
			 KW_OK);
	assert_string_equal(value, FAKE_B_VALUE);
	assert_string_equal(backend, "b");
	kw_close(ctx);
}

/* Assert that open_spec() failed with st and "CONF:3: backend "b": MSG". */
static void expect_refusal(const struct fixture *f, kw_status st,
			   const char *fmt, ...) KW_PRINTF(3, 4);

static void expect_refusal(const struct fixture *f, kw_status st,
			   const char *fmt, ...)
{
	char msg[1024], want[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(want, sizeof(want), "%s:%d: backend \"b\": %s", f->conf,
		 MODULE_LINE, msg);
	assert_string_equal(f->err, want);
	assert_int_equal(f->st, st);
}

/* ---- absolute paths and permissions ---- */

static void test_abs_path_loads(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0700);
	char *so = copy_module("fake", mods, "kw_fake.so", 0755);

	open_spec(f, so);
	assert_int_equal(f->st, KW_OK);

	/* Read-only for everyone is as good. */
	assert_int_equal(chmod(so, 0444), 0);
	open_spec(f, so);
	assert_int_equal(f->st, KW_OK);

	/* Any file name will do when the path is given. */
	so = copy_module("fake", mods, "anything.so", 0700);
	open_spec(f, so);
	assert_int_equal(f->st, KW_OK);

	/* Empty components are harmless. */
	assert_true(asprintf(&so, "%s//mods///anything.so", f->dir) > 0);
	tu_keep(so);
	open_spec(f, so);
	assert_int_equal(f->st, KW_OK);
}

static void test_file_group_writable(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0700);
	char *so = copy_module("fake", mods, "kw_fake.so", 0775);

	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by group", so, so);

	assert_int_equal(chmod(so, 0620), 0);
	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by group", so, so);
}

static void test_file_other_writable(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0700);
	char *so = copy_module("fake", mods, "kw_fake.so", 0757);

	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by others", so, so);

	/* Writable by both: others is the worse, and is named. */
	assert_int_equal(chmod(so, 0777), 0);
	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by others", so, so);
}

static void test_dir_group_writable(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0770);
	char *so = copy_module("fake", mods, "kw_fake.so", 0755);

	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by group", so,
		       mods);

	/* Deeper down: the directory above the module's. */
	assert_int_equal(chmod(f->dir, 0770), 0);
	mods = make_dir(f->dir, "sub", 0755);
	so = copy_module("fake", mods, "kw_fake.so", 0755);
	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by group", so,
		       f->dir);
	assert_int_equal(chmod(f->dir, 0700), 0);
}

static void test_dir_other_writable(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0777);
	char *so = copy_module("fake", mods, "kw_fake.so", 0755);

	/* World-writable without the sticky bit: anyone may replace it. */
	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by others", so,
		       mods);
}

static void test_sticky_root_dir(void **state)
{
	struct fixture *f = *state;
	char *mods, *so;

	if (geteuid() != 0)
		skip(); /* the directory must belong to root */
	mods = make_dir(f->dir, "sticky", 01777);
	so = copy_module("fake", mods, "kw_fake.so", 0755);
	open_spec(f, so);
	assert_int_equal(f->st, KW_OK);

	/* The sticky bit protects the directory, not the file in it. */
	assert_int_equal(chmod(so, 0757), 0);
	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by others", so, so);
}

static void test_owned_by_other_uid(void **state)
{
	struct fixture *f = *state;
	char *mods, *so, *other, *so2;

	if (geteuid() != 0)
		skip(); /* only root can give a file away */
	mods = make_dir(f->dir, "mods", 0755);
	so = copy_module("fake", mods, "kw_fake.so", 0755);
	assert_int_equal(chown(so, 65534, 65534), 0);
	open_spec(f, so);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is owned by uid 65534, not by "
		       "root",
		       so, so);

	/* A directory on the way that belongs to someone else. */
	other = make_dir(f->dir, "other", 0755);
	so2 = copy_module("fake", other, "kw_fake.so", 0755);
	assert_int_equal(chown(other, 65534, 65534), 0);
	open_spec(f, so2);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is owned by uid 65534, not by "
		       "root",
		       so2, other);
}

static void test_not_a_file(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0755);
	char *so = make_dir(mods, "kw_dir.so", 0755);

	open_spec(f, so);
	expect_refusal(f, KW_ERR_MODULE, "cannot load module %s: not a file",
		       so);
}

static void test_abs_path_missing(void **state)
{
	struct fixture *f = *state;
	char *so = tu_join(f->dir, "kw_absent.so");

	open_spec(f, so);
	expect_refusal(f, KW_ERR_MODULE,
		       "cannot load module %s: No such file or directory", so);
}

/* ---- symbolic links ---- */

static void test_symlink_into_unsafe_dir(void **state)
{
	struct fixture *f = *state;
	char *safe = make_dir(f->dir, "safe", 0755);
	char *unsafe = make_dir(f->dir, "unsafe", 0775);
	char *target = copy_module("fake", unsafe, "kw_fake.so", 0755);
	char *link = tu_join(safe, "kw_link.so");

	assert_int_equal(symlink(target, link), 0);
	open_spec(f, link);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by group", link,
		       unsafe);

	/* The same through a relative link. */
	link = tu_join(safe, "kw_rel.so");
	assert_int_equal(symlink("../unsafe/kw_fake.so", link), 0);
	open_spec(f, link);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s/../unsafe is writable by group",
		       link, safe);
}

static void test_symlink_to_unsafe_file(void **state)
{
	struct fixture *f = *state;
	char *safe = make_dir(f->dir, "safe", 0755);
	char *target = copy_module("fake", safe, "kw_real.so", 0757);
	char *link = tu_join(safe, "kw_link.so");

	assert_int_equal(symlink("kw_real.so", link), 0);
	open_spec(f, link);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by others", link,
		       target);
}

static void test_symlink_safe_to_safe(void **state)
{
	struct fixture *f = *state;
	char *a = make_dir(f->dir, "a", 0755);
	char *b = make_dir(f->dir, "b", 0700);
	char *target = copy_module("fake", b, "kw_fake.so", 0755);
	char *link = tu_join(a, "kw_abs.so");

	assert_int_equal(symlink(target, link), 0);
	open_spec(f, link);
	assert_int_equal(f->st, KW_OK);

	/* Relative, and a chain of two links. */
	link = tu_join(a, "kw_rel.so");
	assert_int_equal(symlink("../b/kw_fake.so", link), 0);
	open_spec(f, link);
	assert_int_equal(f->st, KW_OK);
	link = tu_join(a, "kw_twice.so");
	assert_int_equal(symlink("kw_rel.so", link), 0);
	open_spec(f, link);
	assert_int_equal(f->st, KW_OK);
}

static void test_symlinked_directory(void **state)
{
	struct fixture *f = *state;
	char *good = make_dir(f->dir, "good", 0755);
	char *bad = make_dir(f->dir, "bad", 0770);
	char *goodlink = tu_join(f->dir, "goodlink");
	char *badlink = tu_join(f->dir, "badlink");
	char *spec;

	copy_module("fake", good, "kw_fake.so", 0755);
	copy_module("fake", bad, "kw_fake.so", 0755);
	assert_int_equal(symlink("good", goodlink), 0);
	assert_int_equal(symlink(bad, badlink), 0);

	spec = tu_join(goodlink, "kw_fake.so");
	open_spec(f, spec);
	assert_int_equal(f->st, KW_OK);

	spec = tu_join(badlink, "kw_fake.so");
	open_spec(f, spec);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by group", spec,
		       bad);
}

/* A link its owner can swap for another between the check and the load,
 * even in a sticky directory: refused, naming the link. */
static void test_symlink_foreign_owner(void **state)
{
	struct fixture *f = *state;
	char *safe = make_dir(f->dir, "safe", 0755);
	char *sticky = make_dir(f->dir, "sticky", 01777);
	char *link = tu_join(sticky, "kw_fake.so");

	if (geteuid() != 0)
		skip();
	copy_module("fake", safe, "kw_fake.so", 0755);
	assert_int_equal(symlink("../safe/kw_fake.so", link), 0);
	open_spec(f, link);
	assert_int_equal(f->st, KW_OK);

	assert_int_equal(lchown(link, 65534, 65534), 0);
	open_spec(f, link);
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is a symbolic link owned by "
		       "uid 65534, not by root",
		       link, link);

	/* The same for a link to a directory on the way. */
	link = tu_join(sticky, "dirlink");
	assert_int_equal(symlink(safe, link), 0);
	assert_int_equal(lchown(link, 65534, 65534), 0);
	open_spec(f, tu_join(link, "kw_fake.so"));
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s/kw_fake.so: %s is a symbolic link "
		       "owned by uid 65534, not by root",
		       link, link);
}

static int count_by_fd(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	if (info->dlpi_name != NULL &&
	    strncmp(info->dlpi_name, "/proc/self/fd/", 14) == 0)
		++*(int *)arg;
	return 0;
}

/* The module is loaded through the descriptor it was checked on, not
 * opened again by its name. */
static void test_loaded_through_descriptor(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0755);
	int before = 0, after = 0;
	kw_ctx *ctx = NULL;

	copy_module("fake", mods, "kw_mine.so", 0755);
	assert_int_equal(setenv("KEYWAY_MODULE_DIR", mods, 1), 0);
	f->conf = tu_write(f->dir, "keyway.conf", 0644,
			   "backends: { b: { module = \"mine\"; answer = "
			   "\"found\"; }; };\n"
			   "chains: { default = ( { backend = \"b\"; "
			   "control = \"required\"; } ); };\n");
	dl_iterate_phdr(count_by_fd, &before);
	assert_int_equal(kw_open(&ctx, f->conf), KW_OK);
	dl_iterate_phdr(count_by_fd, &after);
	kw_close(ctx);
	assert_int_equal(after, before + 1);
}

/* KEYWAY_MODULE_DIR is a list of directories searched before the built-in
 * one: the first that has the file serves it, and one that has it but
 * cannot be trusted refuses it rather than passing it on. */
static void test_module_dir_search_path(void **state)
{
	struct fixture *f = *state;
	char *one = make_dir(f->dir, "one", 0755);
	char *two = make_dir(f->dir, "two", 0755);
	char *none = tu_join(f->dir, "none");
	char *path, *later, *bad = tu_join(one, "kw_fake2.so");

	copy_module("fake", two, "kw_fake2.so", 0755);
	later = copy_module("fake", one, "kw_later.so", 0775);
	assert_true(asprintf(&path, "%s:%s::%s", none, one, two) > 0);
	tu_keep(path);
	assert_int_equal(setenv("KEYWAY_MODULE_DIR", path, 1), 0);
	open_spec(f, "fake2");
	assert_int_equal(f->st, KW_OK);

	assert_int_equal(rename(later, bad), 0);
	open_spec(f, "fake2");
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by group", bad,
		       bad);

	/* Not found anywhere: every place looked in, the built-in
	 * directory last. */
	open_spec(f, "nosuch");
	expect_refusal(f, KW_ERR_MODULE,
		       "cannot load module \"nosuch\": no kw_nosuch.so in "
		       "%s, %s, %s or %s",
		       none, one, two, KW_MODULEDIR);
}

static void test_symlink_dangling(void **state)
{
	struct fixture *f = *state;
	char *link = tu_join(f->dir, "kw_dangling.so");

	assert_int_equal(symlink("kw_nowhere.so", link), 0);
	open_spec(f, link);
	expect_refusal(f, KW_ERR_MODULE,
		       "cannot load module %s: No such file or directory",
		       link);
}

static void test_symlink_loop(void **state)
{
	struct fixture *f = *state;
	char *a = tu_join(f->dir, "kw_a.so");
	char *b = tu_join(f->dir, "kw_b.so");
	char *self = tu_join(f->dir, "kw_self.so");

	assert_int_equal(symlink(b, a), 0);
	assert_int_equal(symlink(a, b), 0);
	open_spec(f, a);
	expect_refusal(f, KW_ERR_MODULE, "%s: too many symbolic links", a);

	assert_int_equal(symlink("kw_self.so", self), 0);
	open_spec(f, self);
	expect_refusal(f, KW_ERR_MODULE, "%s: too many symbolic links", self);
}

/* ---- modules that are not what they claim ---- */

static void test_bad_abi(void **state)
{
	struct fixture *f = *state;
	char *so = tu_keep(tu_module("badabi"));

	open_spec(f, "badabi");
	expect_refusal(f, KW_ERR_MODULE,
		       "module %s wants module ABI 99; this keyway serves ABI "
		       "1",
		       so);
}

static void test_no_entry(void **state)
{
	struct fixture *f = *state;
	char *so = tu_keep(tu_module("noentry"));

	open_spec(f, "noentry");
	expect_refusal(f, KW_ERR_MODULE,
		       "module %s has no kw_module_entry entry point (not a "
		       "keyway module?)",
		       so);
}

static void test_null_entry(void **state)
{
	struct fixture *f = *state;
	char *so = tu_keep(tu_module("nullentry"));

	open_spec(f, "nullentry");
	expect_refusal(f, KW_ERR_MODULE, "module %s returned no descriptor",
		       so);
}

static void test_name_not_found(void **state)
{
	struct fixture *f = *state;

	open_spec(f, "nosuch");
	expect_refusal(f, KW_ERR_MODULE,
		       "cannot load module \"nosuch\": no kw_nosuch.so in %s "
		       "or %s",
		       module_dir, KW_MODULEDIR);
}

static void test_invalid_name(void **state)
{
	static const char *const names[] = {
		"", "Fake", "../fake", "mods/kw_fake.so", "fake.so", "fa ke",
		"kw_fake!",
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		open_spec(f, names[i]);
		expect_refusal(f, KW_ERR_CONFIG,
			       "invalid module name \"%s\" (a name like "
			       "\"sqlite\" or an absolute path)",
			       names[i]);
	}
}

static void test_name_uses_module_dir(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0755);
	char *so = copy_module("fake", mods, "kw_other.so", 0755);

	assert_int_equal(setenv("KEYWAY_MODULE_DIR", mods, 1), 0);
	open_spec(f, "other");
	assert_int_equal(f->st, KW_OK);

	/* The module directory is checked like any other. */
	assert_int_equal(chmod(mods, 0775), 0);
	open_spec(f, "other");
	expect_refusal(f, KW_ERR_PERM,
		       "refusing module %s: %s is writable by group", so,
		       mods);
}

static void test_not_shared_object(void **state)
{
	struct fixture *f = *state;
	char *mods = make_dir(f->dir, "mods", 0755);
	char *junk = keep_write(mods, "kw_junk.so",
				"this is a text file, not a shared object; "
				"it is long enough to hold an ELF header\n"
				"and then some more text to be sure of it\n");
	char dlerr[1024];
	void *h;

	/* What dlopen says about this file is what the message must
	 * carry. */
	h = dlopen(junk, RTLD_NOW | RTLD_LOCAL);
	assert_null(h);
	snprintf(dlerr, sizeof(dlerr), "%s", dlerror());
	assert_non_null(strstr(dlerr, junk));

	assert_int_equal(setenv("KEYWAY_MODULE_DIR", mods, 1), 0);
	open_spec(f, "junk");
	expect_refusal(f, KW_ERR_MODULE, "cannot load module %s: %s", junk,
		       dlerr);

	/* Short files too. */
	junk = keep_write(mods, "kw_tiny.so", "x\n");
	h = dlopen(junk, RTLD_NOW | RTLD_LOCAL);
	assert_null(h);
	snprintf(dlerr, sizeof(dlerr), "%s", dlerror());
	open_spec(f, junk);
	expect_refusal(f, KW_ERR_MODULE, "cannot load module %s: %s", junk,
		       dlerr);
}

/* ---- kw_check ---- */

struct lines {
	char *line[16];
	size_t n;
};

static void collect(void *arg, const char *line)
{
	struct lines *l = arg;

	assert_true(l->n < sizeof(l->line) / sizeof(l->line[0]));
	l->line[l->n++] = tu_keep(strdup(line));
}

static void test_check_reports_every_module(void **state)
{
	struct fixture *f = *state;
	char *badabi = tu_keep(tu_module("badabi"));
	char *noentry = tu_keep(tu_module("noentry"));
	char *nullentry = tu_keep(tu_module("nullentry"));
	char want[3][2048];
	struct lines l = { { NULL }, 0 };

	f->conf = tu_write(f->dir, "keyway.conf", 0644,
			   "backends: {\n"
			   "  one: { module = \"badabi\"; };\n"
			   "  two: { module = \"fake\"; "
			   "answer = \"found\"; };\n"
			   "  three: { module = \"noentry\"; };\n"
			   "  four: { module = \"nullentry\"; };\n"
			   "};\n"
			   "chains: {\n"
			   "  default = ( { backend = \"one\"; control = "
			   "\"sufficient\"; },\n"
			   "              { backend = \"two\"; control = "
			   "\"sufficient\"; } );\n"
			   "};\n");
	snprintf(want[0], sizeof(want[0]),
		 "%s:2: backend \"one\": module %s wants module ABI 99; this "
		 "keyway serves ABI 1",
		 f->conf, badabi);
	snprintf(want[1], sizeof(want[1]),
		 "%s:4: backend \"three\": module %s has no kw_module_entry "
		 "entry point (not a keyway module?)",
		 f->conf, noentry);
	snprintf(want[2], sizeof(want[2]),
		 "%s:5: backend \"four\": module %s returned no descriptor",
		 f->conf, nullentry);

	assert_int_equal(kw_check(f->conf, collect, &l), KW_ERR_MODULE);
	assert_int_equal(l.n, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(l.line[i], want[i]);
	/* kw_last_error() holds the first. */
	assert_string_equal(kw_last_error(), want[0]);

	/* kw_open stops at the same first problem. */
	{
		kw_ctx *ctx = NULL;

		assert_int_equal(kw_open(&ctx, f->conf), KW_ERR_MODULE);
		assert_null(ctx);
		assert_string_equal(kw_last_error(), want[0]);
	}

}

static void test_check_clean(void **state)
{
	struct fixture *f = *state;
	struct lines l = { { NULL }, 0 };
	char *mods = make_dir(f->dir, "mods", 0700);
	char *so = copy_module("fake", mods, "kw_fake.so", 0755);

	f->conf = tu_write(f->dir, "keyway.conf", 0644,
			   "backends: {\n"
			   "  a: { module = \"fake\"; answer = \"found\"; };\n"
			   "  b: { module = \"%s\"; answer = \"found\"; };\n"
			   "  c: { module = \"%s\"; answer = \"notfound\"; };\n"
			   "};\n"
			   "chains: { default = ( { backend = \"a\"; "
			   "control = \"required\"; } ); };\n",
			   so, so);
	assert_int_equal(kw_check(f->conf, collect, &l), KW_OK);
	assert_int_equal(l.n, 0);
}

/*
 * host->check_private(), through the one shipped module that checks a
 * file it opens at lookup time (kw_skeleton.so): the key file as it is
 * when resolved, refused with one line that names it and the fix.
 */
static void want_key_refused(kw_ctx *ctx, const char *fmt, ...)
	KW_PRINTF(2, 3);

static void want_key_refused(kw_ctx *ctx, const char *fmt, ...)
{
	char detail[1024], want[2048], value[64], backend[16];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	snprintf(want, sizeof(want),
		 "chain \"default\", provider \"anthropic\": k answered backend "
		 "error: %s",
		 detail);
	assert_int_equal(tu_resolve(ctx, NULL, "anthropic", NULL, NULL, value,
				    sizeof(value), backend, sizeof(backend)),
			 KW_ERR_BACKEND);
	assert_string_equal(kw_last_error(), want);
}

static void test_key_file_checked_on_its_descriptor(void **state)
{
	struct fixture *f = *state;
	char *keys = make_dir(f->dir, "keys", 0700);
	char *key = tu_keep(tu_write(keys, "anthropic", 0600, "%s\n",
				     SKEL_KEY));
	char value[64], backend[16];
	kw_ctx *ctx = NULL;

	f->conf = tu_write(f->dir, "keyway.conf", 0644,
			   "backends: { k: { module = \"skeleton\"; "
			   "dir = \"%s\"; scope = \"system\"; }; };\n"
			   "chains: { default = ( { backend = \"k\"; "
			   "control = \"required\"; } ); };\n",
			   keys);
	assert_int_equal(kw_open(&ctx, f->conf), KW_OK);
	assert_int_equal(tu_resolve(ctx, NULL, "anthropic", NULL, NULL, value,
				    sizeof(value), backend, sizeof(backend)),
			 KW_OK);
	assert_string_equal(value, SKEL_KEY);

	assert_int_equal(chmod(key, 0640), 0);
	want_key_refused(ctx, "%s is accessible by group or others (mode "
			 "0640); it holds secrets: chmod 600 it", key);
	/* Any bit for others counts, execute too. */
	assert_int_equal(chmod(key, 0601), 0);
	want_key_refused(ctx, "%s is accessible by group or others (mode "
			 "0601); it holds secrets: chmod 600 it", key);
	assert_int_equal(chmod(key, 0400), 0);
	assert_int_equal(tu_resolve(ctx, NULL, "anthropic", NULL, NULL, value,
				    sizeof(value), backend, sizeof(backend)),
			 KW_OK);

	if (geteuid() == 0) {
		assert_int_equal(chown(key, 65534, (gid_t)-1), 0);
		want_key_refused(ctx, "%s is owned by uid 65534; it must "
				 "belong to root", key);
	}

	/* A FIFO opens without a writer (O_NONBLOCK) and is refused. */
	assert_int_equal(unlink(key), 0);
	assert_int_equal(mkfifo(key, 0600), 0);
	want_key_refused(ctx, "%s is not a regular file", key);

	kw_close(ctx);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_abs_path_loads),
		T(test_file_group_writable),
		T(test_file_other_writable),
		T(test_dir_group_writable),
		T(test_dir_other_writable),
		T(test_sticky_root_dir),
		T(test_owned_by_other_uid),
		T(test_not_a_file),
		T(test_abs_path_missing),
		T(test_symlink_into_unsafe_dir),
		T(test_symlink_to_unsafe_file),
		T(test_symlink_safe_to_safe),
		T(test_symlinked_directory),
		T(test_symlink_foreign_owner),
		T(test_loaded_through_descriptor),
		T(test_module_dir_search_path),
		T(test_symlink_dangling),
		T(test_symlink_loop),
		T(test_bad_abi),
		T(test_no_entry),
		T(test_null_entry),
		T(test_name_not_found),
		T(test_invalid_name),
		T(test_name_uses_module_dir),
		T(test_not_shared_object),
		T(test_check_reports_every_module),
		T(test_check_clean),
		T(test_key_file_checked_on_its_descriptor),
	};
	int failed;

	module_dir = getenv("KEYWAY_MODULE_DIR");
	if (module_dir == NULL || module_dir[0] == '\0') {
		fprintf(stderr, "KEYWAY_MODULE_DIR must name the built "
				"modules\n");
		return 1;
	}
	module_dir = strdup(module_dir);
	if (module_dir == NULL)
		return 1;
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	free(module_dir);
	return failed;
}
