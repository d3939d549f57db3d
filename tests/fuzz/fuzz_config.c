/*
 * fuzz_config.c - a fuzz target for keyway.conf as a whole, through
 * kw_check() (lib/check.c), as `keyway check` reads it: the text and its
 * @include lines (config_text.c), libconfig, every section (config*.c),
 * the controls, and the backends opened in check mode, which creates
 * nothing.
 *
 * An input is a configuration up to its first NUL byte, written to
 * keyway.conf in a private directory made once (under $TMPDIR, else
 * /dev/shm, else /tmp), and what follows the NUL,
 * written to inc.conf beside it (`@include "inc.conf"` reads it).  The
 * directory also holds what a configuration may name, each holding a
 * secret: master.key (FZ_MASTER), bad.key (FZ_MARK, not a key),
 * secrets.env (a dotenv file setting OPENAI_API_KEY to FZ_MARK) and
 * broken.env (a dotenv line with FZ_MARK that does not parse); and the
 * environment holds KWFUZZ_KEY (FZ_MASTER), KWFUZZ_BAD and
 * KWFUZZ_PASS (FZ_MARK, as a bad key and as a passphrase) and
 * OPENAI_API_KEY (FZ_MARK).
 *
 * Modules: $KEYWAY_MODULE_DIR is pointed at modules/ in the private
 * directory, which holds copies of the env, file and sqlite modules from
 * the $KEYWAY_MODULE_DIR the target was started with (the build's
 * modules/.libs), so that backends are opened and checked as they would
 * be (each kw_check() loads and unloads them, as `keyway check` does;
 * loading them once for good would save little, as a loader that names
 * each load anew leaves glibc a name to keep each time); and, for the vault and redis modules, which would reach the
 * network in their health checks, a file anyone may write, which the
 * loader refuses rather than look further.  What must hold, else abort():
 *
 *   - every problem reported is one printable line (UTF-8 passes) that
 *     holds neither FZ_MASTER nor FZ_MARK (unless the input holds it
 *     too: a configuration's own words may be quoted);
 *   - kw_check() fails exactly when it reported a problem;
 *   - everything is released (LeakSanitizer sees what is not).
 */
#include "config.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keyway/keyway.h>

#include "fuzz.h"

#define FZ_MASTER "6675a22e0c0b5f1d9b3e7c4a2f8d1e6b" \
		  "3a9c5e7f0d2b4a6c8e1f3d5b7a9c0e2f"
#define FZ_MARK "sk-fuzz-SECRET-planted-7d1c"

static bool fz_verbose;
static char fz_dir[512];
static char fz_conf[600], fz_inc[600];

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

static void put(const char *name, const void *data, size_t len, mode_t mode)
{
	char path[700];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", fz_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0 || (len > 0 && write(fd, data, len) != (ssize_t)len) ||
	    fchmod(fd, mode) != 0 || close(fd) != 0)
		die("cannot write", path);
}

static void copy_module(const char *from, const char *name)
{
	char path[1200], *buf = NULL;
	size_t len = 0, cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/kw_%s.so", from, name);
	f = fopen(path, "rb");
	if (f == NULL)
		die("cannot read a module (is $KEYWAY_MODULE_DIR the build's "
		    "modules/.libs?)", path);
	for (;;) {
		size_t got;

		if (len == cap) {
			cap = cap ? 2 * cap : 1 << 20;
			buf = realloc(buf, cap);
			if (buf == NULL)
				die("out of memory", NULL);
		}
		got = fread(buf + len, 1, cap - len, f);
		if (got == 0)
			break;
		len += got;
	}
	fclose(f);
	snprintf(path, sizeof(path), "modules/kw_%s.so", name);
	put(path, buf, len, 0700);
	free(buf);
}

static void clean(void)
{
	static const char *const files[] = {
		"keyway.conf", "inc.conf", "master.key", "bad.key",
		"secrets.env", "broken.env", "modules/kw_env.so",
		"modules/kw_file.so", "modules/kw_sqlite.so",
		"modules/kw_vault.so", "modules/kw_redis.so", "modules", NULL
	};
	char path[700];

	for (size_t i = 0; files[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", fz_dir, files[i]);
		if (unlink(path) != 0)
			rmdir(path);
	}
	rmdir(fz_dir);
}

static void setup(void)
{
	static const char dotenv[] = "OPENAI_API_KEY=" FZ_MARK "\n";
	static const char broken[] = "# a key pasted without its name\n"
				     "OPENAI_API_KEY " FZ_MARK "\n";
	const char *tmp = getenv("TMPDIR"), *mods = getenv("KEYWAY_MODULE_DIR");
	char path[700];

	fz_verbose = getenv("KWFUZZ_VERBOSE") != NULL;
	if (mods == NULL || *mods == '\0' || strchr(mods, ':') != NULL)
		die("$KEYWAY_MODULE_DIR must name the build's modules/.libs",
		    mods);
	/* Each run writes two files: in memory (/dev/shm) it runs twice
	 * as fast as on a disk. */
	if (tmp == NULL || *tmp == '\0')
		tmp = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fz_dir, sizeof(fz_dir), "%s/kwfuzz-config.XXXXXX", tmp);
	if (mkdtemp(fz_dir) == NULL)
		die("cannot make a directory under $TMPDIR", fz_dir);
	atexit(clean);
	snprintf(fz_conf, sizeof(fz_conf), "%s/keyway.conf", fz_dir);
	snprintf(fz_inc, sizeof(fz_inc), "%s/inc.conf", fz_dir);
	put("master.key", FZ_MASTER "\n", strlen(FZ_MASTER "\n"), 0600);
	put("bad.key", FZ_MARK "\n", strlen(FZ_MARK "\n"), 0600);
	put("secrets.env", dotenv, strlen(dotenv), 0600);
	put("broken.env", broken, strlen(broken), 0600);
	snprintf(path, sizeof(path), "%s/modules", fz_dir);
	if (mkdir(path, 0700) != 0)
		die("cannot make", path);
	copy_module(mods, "env");
	copy_module(mods, "file");
	copy_module(mods, "sqlite");
	put("modules/kw_vault.so", "", 0, 0666);
	put("modules/kw_redis.so", "", 0, 0666);
	setenv("KEYWAY_MODULE_DIR", path, 1);
	setenv("KWFUZZ_KEY", FZ_MASTER, 1);
	setenv("KWFUZZ_BAD", FZ_MARK, 1);
	setenv("KWFUZZ_PASS", FZ_MARK, 1);
	setenv("OPENAI_API_KEY", FZ_MARK, 1);
	unsetenv("KEYWAY_CONFIG");
	unsetenv("KEYWAY_PASSPHRASE");
}

struct seen {
	unsigned lines;
	bool text_has_mark, text_has_master;
};

static void report(void *arg, const char *line)
{
	struct seen *s = arg;

	s->lines++;
	if (fz_verbose)
		fprintf(stderr, "#   %s\n", line);
	if (line == NULL || line[0] == '\0')
		die("an empty problem", NULL);
	for (const char *p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			die("a problem that is not one printable line", line);
	/* The configuration's own words may be quoted (a setting's name,
	 * a token libconfig stopped at): a secret counts when it came from
	 * where secrets are. */
	if ((strstr(line, FZ_MARK) != NULL && !s->text_has_mark) ||
	    (strstr(line, FZ_MASTER) != NULL && !s->text_has_master))
		die("a problem holds a secret", line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct seen s = { 0 };
	const uint8_t *nul;
	size_t main_len;
	kw_status rc;

	if (!ready) {
		setup();
		ready = true;
	}
	s.text_has_mark = memmem(data, size, FZ_MARK, strlen(FZ_MARK)) != NULL;
	s.text_has_master =
		memmem(data, size, FZ_MASTER, strlen(FZ_MASTER)) != NULL;
	nul = memchr(data, '\0', size);
	main_len = nul != NULL ? (size_t)(nul - data) : size;
	put("keyway.conf", data, main_len, 0600);
	if (nul != NULL)
		put("inc.conf", nul + 1, size - main_len - 1, 0600);
	else
		unlink(fz_inc);
	if (fz_verbose)
		fprintf(stderr, "# %zu + %zu bytes\n", main_len,
			nul != NULL ? size - main_len - 1 : 0);
	rc = kw_check(fz_conf, report, &s);
	if (fz_verbose)
		fprintf(stderr, "#   %s\n", kw_status_str(rc));
	if ((rc == KW_OK) != (s.lines == 0))
		die(rc == KW_OK ? "kw_check() passes what it reported"
				: "kw_check() fails without a problem reported",
		    kw_status_str(rc));
	return 0;
}
