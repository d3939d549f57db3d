/*
 * torture.c - allocation torture of libkeyway's calls, as curl's torture
 * tests do: each call is run once to count the allocations keyway's own
 * code makes in it (kwt.h), then again for every N with the Nth of them
 * failed.  Every run must end in a clean error status (KW_ERR_NOMEM, or
 * another error with a one-line message), or in success with the right
 * answer; must leave no allocation behind once the context is closed; and
 * a key stored or re-sealed must afterwards be found whole in its old
 * state or its new one, with no file left beside the store.
 *
 * Usage: torture [SCENARIO-SUBSTRING...]; TAP on stdout, one test per
 * scenario, "ok 3 - kw_resolve sqlite: 57 torture points (...)".  The
 * vault and redis scenarios need tests/torture/torture.sh, which starts
 * the services and says where they are in KWT_VAULT_ADDR, KWT_VAULT_CA,
 * KWT_VAULT_TOKEN_FILE and KWT_REDIS_PORT, KWT_REDIS_PASS_FILE; without
 * them those are skipped.  KWT_MAX_POINTS=N stops each sweep after N
 * points; KWT_STRIDE=K sweeps every Kth point of the sampled scenarios
 * (1, but 7 under LeakSanitizer); KWT_VERBOSE=1 prints what each run
 * returned.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include <keyway/keyway.h>

#include "kwt.h"

/* LeakSanitizer's, when the program is built with it. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

#define MASTER_A "000102030405060708090a0b0c0d0e0f" \
		 "101112131415161718191a1b1c1d1e1f"
#define MASTER_B "f0e1d2c3b4a5968778695a4b3c2d1e0f" \
		 "0123456789abcdeffedcba9876543210"

#define K_ACME "sk-ant-SECRET-torture-acme-0001"
#define K_ACME_NEW "sk-ant-SECRET-torture-acme-0002"
#define K_GLOBEX "sk-ant-SECRET-torture-globex-003"
#define K_ALICE "sk-ant-SECRET-torture-alice-0004"
#define K_ENV "sk-ant-SECRET-torture-env-000005"

#define ENTRY(b, c) "{ backend = \"" b "\"; control = \"" c "\"; }"

/* A store module's configuration: org and user keys on one file, the
 * environment behind them. */
#define STORE_CONF(master, module, file, extra) \
	"keyway: {\n" master "};\n" \
	"backends: {\n" \
	"  org_keys: { module = \"" module "\"; path = \"" file "\"; " \
	"scope = \"org\"; " extra " };\n" \
	"  user_keys: { module = \"" module "\"; path = \"" file "\"; " \
	"scope = \"user\"; " extra " };\n" \
	"  server_env: { module = \"env\"; };\n" \
	"};\n" \
	"chains: {\n" \
	"  default = ( " ENTRY("org_keys", "sufficient") ",\n" \
	"    " ENTRY("user_keys", "sufficient") ",\n" \
	"    " ENTRY("server_env", "required") " );\n" \
	"};\n"
#define MASTER_ONLY_A "  master_key = { source = \"env\"; };\n"
#define MASTER_B_OLD_A \
	"  master_key = { source = \"env\"; var = \"KWTEST_MASTER_B\"; };\n" \
	"  old_master_keys = ( { source = \"env\"; } );\n"

struct scenario;
typedef kw_status op_fn(const struct scenario *s, unsigned long n);

struct scenario {
	const char *name;
	const char *module;   /* for the skip message */
	const char *need;     /* the environment variable it needs, or NULL */
	const char *conf;     /* keyway.conf's text */
	const char *conf_after; /* what the check after a change opens */
	bool store;           /* a store to seed, keep and put back */
	bool vault;           /* the store is Vault: put back by a put */
	bool whole_file;      /* a rekey moves every key of the file */
	op_fn *op;
	kw_status (*check)(const struct scenario *s, kw_status st);
	bool libs;            /* fail SQLite's and jansson's allocations too */
	bool sampled;         /* every KWT_STRIDE-th point only */
};

/* ---- what the run holds ---- */

static char *dir;        /* the scenario's directory */
static char *conf_path;  /* dir/keyway.conf */
static char last_error[1024];
static unsigned long counted; /* allocations counted by the last run */
static bool lsan_off;    /* LeakSanitizer reported once already */

/* The files of the store as seeded, put back before each run. */
struct saved {
	char *name;
	char *bytes;
	size_t len;
};
static struct saved saved[8];
static size_t nsaved;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
						     noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(99);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		die("out of memory");
	va_end(ap);
	return s;
}

static void write_file(const char *path, const char *bytes, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, bytes, len) != (ssize_t)len || close(fd) != 0)
		die("cannot write %s: %s", path, strerror(errno));
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		die("cannot read %s", path);
	b = malloc((size_t)n + 1);
	if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n)
		die("cannot read %s", path);
	b[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return b;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Whether name is a file the scenario keeps in dir whatever happens. */
static bool kept_file(const char *name)
{
	static const char *const names[] = { ".", "..", "keyway.conf",
					     "token", "redis.pass",
					     "master.key", NULL };

	for (size_t i = 0; names[i] != NULL; i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

/* Keep the store's files as they are now. */
static void save_store(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	nsaved = 0;
	while ((e = readdir(d)) != NULL) {
		char *p;

		if (kept_file(e->d_name))
			continue;
		if (nsaved == sizeof(saved) / sizeof(saved[0]))
			die("too many files in %s", dir);
		p = fmt("%s/%s", dir, e->d_name);
		saved[nsaved].name = strdup(e->d_name);
		saved[nsaved].bytes = read_file(p, &saved[nsaved].len);
		if (saved[nsaved].bytes == NULL)
			die("cannot read %s", p);
		nsaved++;
		free(p);
	}
	closedir(d);
}

static bool was_saved(const char *name)
{
	for (size_t i = 0; i < nsaved; i++)
		if (strcmp(saved[i].name, name) == 0)
			return true;
	return false;
}

/*
 * Files beside the store that a change may leave, as it does when it
 * succeeds: the lock file of the file module, SQLite's journal files
 * while a connection is open.  Anything else new is a leftover.
 */
static bool allowed_new(const char *name)
{
	size_t n = strlen(name);

	return (n > 5 && strcmp(name + n - 5, ".lock") == 0) ||
	       (n > 4 && strcmp(name + n - 4, "-wal") == 0) ||
	       (n > 4 && strcmp(name + n - 4, "-shm") == 0);
}

/* A file in dir that was not there before a change; NULL if none. */
static char *leftover(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *found = NULL;

	while ((e = readdir(d)) != NULL && found == NULL)
		if (!kept_file(e->d_name) && !was_saved(e->d_name) &&
		    !allowed_new(e->d_name))
			found = strdup(e->d_name);
	closedir(d);
	return found;
}

/* Put the store back as it was saved. */
static void restore_store(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	while ((e = readdir(d)) != NULL) {
		if (kept_file(e->d_name) || was_saved(e->d_name))
			continue;
		char *p = fmt("%s/%s", dir, e->d_name);

		unlink(p);
		free(p);
	}
	closedir(d);
	for (size_t i = 0; i < nsaved; i++) {
		char *p = fmt("%s/%s", dir, saved[i].name);

		write_file(p, saved[i].bytes, saved[i].len);
		free(p);
	}
}

static void free_saved(void)
{
	for (size_t i = 0; i < nsaved; i++) {
		free(saved[i].name);
		free(saved[i].bytes);
	}
	nsaved = 0;
}

/* ---- the libraries' own allocations ---- */

/*
 * A scenario marked `libs` fails SQLite's and jansson's allocations as
 * well (the sqlite and vault modules' statements, pages and JSON), so
 * that what keyway does with SQLITE_NOMEM or a NULL from jansson is
 * tried; elsewhere they are not counted.  They go through these, set up
 * before either library allocates anything.
 */
static bool libs_fail;
static sqlite3_mem_methods sqlite_mem;

static void *sq_malloc(int n)
{
	if (libs_fail && kwt_fail_now("sqlite3_malloc",
				      __builtin_return_address(0)))
		return NULL;
	return sqlite_mem.xMalloc(n);
}

static void *sq_realloc(void *p, int n)
{
	if (libs_fail && kwt_fail_now("sqlite3_realloc",
				      __builtin_return_address(0)))
		return NULL;
	return sqlite_mem.xRealloc(p, n);
}

static void *js_malloc(size_t n)
{
	if (libs_fail && kwt_fail_now("jansson malloc",
				      __builtin_return_address(0)))
		return NULL;
	return malloc(n);
}

static void libs_hook(void)
{
	sqlite3_mem_methods m;

	if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_mem) !=
	    SQLITE_OK)
		die("sqlite3_config(SQLITE_CONFIG_GETMALLOC) failed");
	m = sqlite_mem;
	m.xMalloc = sq_malloc;
	m.xRealloc = sq_realloc;
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK)
		die("sqlite3_config(SQLITE_CONFIG_MALLOC) failed");
	json_set_alloc_funcs(js_malloc, free);
}

/* ---- calls ---- */

static kw_status open_conf(kw_ctx **ctx, const char *text)
{
	char *path = fmt("%s/keyway.conf", dir);

	write_file(path, text, strlen(text));
	free(path);
	return kw_open(ctx, conf_path);
}

static void keep_error(void)
{
	snprintf(last_error, sizeof(last_error), "%s", kw_last_error());
}

static const kw_actor *sysadmin(void)
{
	static const kw_actor a = { sizeof(kw_actor), "root", NULL,
				    KW_ROLE_SYSADMIN };

	return &a;
}

static kw_status put(kw_ctx *ctx, const char *backend, const char *owner,
		     const char *value, const char *name, kw_put_mode mode)
{
	kw_key_ref ref = KW_KEY_REF_INIT;

	ref.backend = backend;
	ref.owner = owner;
	ref.provider = "anthropic";
	return kw_key_put(ctx, sysadmin(), &ref, value, strlen(value), name,
			  mode);
}

/* Resolve for user/org; on KW_OK the value is copied into value. */
static kw_status resolve(kw_ctx *ctx, const char *user, const char *org,
			 char *value, size_t len)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	kw_status st;

	req.provider = "anthropic";
	req.user = user;
	req.org = org;
	value[0] = '\0';
	st = kw_resolve(ctx, &req, &s);
	if (st == KW_OK)
		snprintf(value, len, "%s", kw_secret_value(s));
	kw_secret_free(s);
	return st;
}

/* The answer the torture run got, checked by the scenario: "" if right. */
static char wrong[512];

static kw_status op_open(const struct scenario *s, unsigned long n)
{
	kw_ctx *ctx = NULL;
	kw_status st;

	kwt_arm(n);
	st = kw_open(&ctx, conf_path);
	counted = kwt_disarm();
	keep_error();
	if (st == KW_OK && ctx == NULL)
		snprintf(wrong, sizeof(wrong), "KW_OK and no context");
	if (st != KW_OK && ctx != NULL)
		snprintf(wrong, sizeof(wrong), "%s and a context",
			 kw_status_str(st));
	kw_close(ctx);
	(void)s;
	return st;
}

/* kw_open with two master keys, a file's and a passphrase: on KW_OK both
 * were read (the passphrase's variable is among those keyway exec keeps
 * from a child, which counts only the keys read). */
static kw_status op_open_masters(const struct scenario *s, unsigned long n)
{
	const char *const *v;
	kw_ctx *ctx = NULL;
	bool both = false;
	kw_status st;

	kwt_arm(n);
	st = kw_open(&ctx, conf_path);
	counted = kwt_disarm();
	keep_error();
	if (st == KW_OK) {
		for (v = kw_sensitive_env(ctx); v != NULL && *v != NULL; v++)
			both = both || strcmp(*v, "KWTEST_PASS") == 0;
		if (!both)
			snprintf(wrong, sizeof(wrong), "KW_OK, but a master "
				 "key was not read");
	}
	kw_close(ctx);
	(void)s;
	return st;
}

static kw_ctx *open_or_die(const char *text)
{
	kw_ctx *ctx = NULL;
	kw_status st;

	st = text != NULL ? open_conf(&ctx, text) : kw_open(&ctx, conf_path);
	if (st != KW_OK)
		die("kw_open without a failure: %s: %s", kw_status_str(st),
		    kw_last_error());
	return ctx;
}

/* Resolve the org key of acme: K_ACME (the stores) or K_ENV. */
static kw_status op_resolve(const struct scenario *s, unsigned long n)
{
	kw_ctx *ctx = open_or_die(NULL);
	const char *want = s->store ? K_ACME : K_ENV;
	char value[128];
	kw_status st;

	kwt_arm(n);
	st = resolve(ctx, "alice", "acme", value, sizeof(value));
	counted = kwt_disarm();
	keep_error();
	if (st == KW_OK && strcmp(value, want) != 0)
		snprintf(wrong, sizeof(wrong), "KW_OK with the wrong key");
	kw_close(ctx);
	return st;
}

static kw_status op_put(const struct scenario *s, unsigned long n)
{
	kw_ctx *ctx = open_or_die(NULL);
	kw_status st;

	kwt_arm(n);
	st = put(ctx, "org_keys", "acme", K_ACME_NEW, "rotated",
		 KW_PUT_ROTATE);
	counted = kwt_disarm();
	keep_error();
	kw_close(ctx);
	(void)s;
	return st;
}

static kw_status op_delete(const struct scenario *s, unsigned long n)
{
	kw_ctx *ctx = open_or_die(NULL);
	kw_key_ref ref = KW_KEY_REF_INIT;
	kw_status st;

	ref.backend = "org_keys";
	ref.owner = "acme";
	ref.provider = "anthropic";
	kwt_arm(n);
	st = kw_key_delete(ctx, sysadmin(), &ref);
	counted = kwt_disarm();
	keep_error();
	kw_close(ctx);
	(void)s;
	return st;
}

static kw_status op_disable(const struct scenario *s, unsigned long n)
{
	kw_ctx *ctx = open_or_die(NULL);
	kw_key_ref ref = KW_KEY_REF_INIT;
	kw_status st;

	ref.backend = "org_keys";
	ref.owner = "acme";
	ref.provider = "anthropic";
	kwt_arm(n);
	st = kw_key_set_active(ctx, sysadmin(), &ref, 0);
	counted = kwt_disarm();
	keep_error();
	kw_close(ctx);
	(void)s;
	return st;
}

struct listing;
static kw_status list_one(void *arg, const kw_key_info *info);

static kw_status op_list(const struct scenario *s, unsigned long n);

/* Explain acme's key: the trace must say org_keys answered. */
static kw_status op_explain(const struct scenario *s, unsigned long n)
{
	kw_ctx *ctx = open_or_die(NULL);
	kw_request req = KW_REQUEST_INIT;
	kw_trace *t = NULL;
	kw_status st;

	req.provider = "anthropic";
	req.user = "alice";
	req.org = "acme";
	kwt_arm(n);
	st = kw_explain(ctx, &req, &t);
	counted = kwt_disarm();
	keep_error();
	/* A trace may tell of the failure (the walk's verdict is then
	 * that status), never of another backend's key. */
	if (st == KW_OK && kw_trace_result(t) == KW_OK &&
	    (kw_trace_backend(t) == NULL ||
	     strcmp(kw_trace_backend(t), "org_keys") != 0))
		snprintf(wrong, sizeof(wrong), "KW_OK with a trace that says "
			 "%s from %s", kw_status_str(kw_trace_result(t)),
			 kw_trace_backend(t) != NULL ? kw_trace_backend(t) :
						       "no backend");
	kw_trace_free(t);
	kw_close(ctx);
	(void)s;
	return st;
}

static uint64_t rekeyed;

static kw_status op_rekey(const struct scenario *s, unsigned long n)
{
	kw_ctx *ctx = open_or_die(NULL);
	kw_status st;

	rekeyed = 0;
	kwt_arm(n);
	st = kw_rekey(ctx, sysadmin(), "org_keys", &rekeyed);
	counted = kwt_disarm();
	keep_error();
	kw_close(ctx);
	(void)s;
	return st;
}

/* ---- checks after a change ---- */

struct listing {
	size_t n;
	char ids[8][64];
	char names[8][64];
	char owners[8][64];
};

static kw_status list_one(void *arg, const kw_key_info *info)
{
	struct listing *l = arg;

	if (l->n < 8) {
		snprintf(l->ids[l->n], 64, "%s", info->key_id);
		snprintf(l->names[l->n], 64, "%s", info->name);
		snprintf(l->owners[l->n], 64, "%s",
			 info->owner != NULL ? info->owner : "");
		/* Past any name the tests give: whether it is active. */
		l->names[l->n][63] = info->active ? 'A' : '-';
	}
	l->n++;
	return KW_OK;
}

static kw_status op_list(const struct scenario *s, unsigned long n)
{
	kw_ctx *ctx = open_or_die(NULL);
	struct listing l = { 0 };
	kw_status st;

	kwt_arm(n);
	st = kw_key_list(ctx, sysadmin(), NULL, NULL, list_one, &l);
	counted = kwt_disarm();
	keep_error();
	if (st == KW_OK && l.n != 3)
		snprintf(wrong, sizeof(wrong), "KW_OK with %zu keys listed",
			 l.n);
	kw_close(ctx);
	(void)s;
	return st;
}

/* The org key of acme, whole or gone (deleted), active or not (disabled):
 * -1 when gone, else its active flag; -2 when the listing fails. */
static int acme_state(kw_ctx *ctx)
{
	struct listing l = { 0 };
	int active = -1;

	if (kw_key_list(ctx, sysadmin(), "org_keys", NULL, list_one, &l) !=
	    KW_OK)
		return -2;
	for (size_t i = 0; i < l.n && i < 8; i++)
		if (strcmp(l.owners[i], "acme") == 0)
			active = l.names[i][63] == 'A' ? 1 : 0;
	return active;
}

static kw_status check_delete(const struct scenario *s, kw_status st)
{
	kw_ctx *ctx = open_or_die(s->conf_after);
	char value[128];
	kw_status rc;
	int state = acme_state(ctx);

	rc = resolve(ctx, "alice", "acme", value, sizeof(value));
	if (state == -2)
		snprintf(wrong, sizeof(wrong), "afterwards the keys do not "
			 "list");
	else if (st == KW_OK && state != -1)
		snprintf(wrong, sizeof(wrong), "KW_OK, but the key is still "
			 "listed");
	else if (rc != KW_OK ||
		 strcmp(value, state == -1 ? K_ALICE : K_ACME) != 0)
		snprintf(wrong, sizeof(wrong), "afterwards the key is %s but "
			 "resolves %s", state == -1 ? "gone" : "listed",
			 rc != KW_OK ? kw_status_str(rc) : "to another key");
	kw_close(ctx);
	return rc;
}

static kw_status check_disable(const struct scenario *s, kw_status st)
{
	kw_ctx *ctx = open_or_die(s->conf_after);
	char value[128];
	kw_status rc;
	int state = acme_state(ctx);

	rc = resolve(ctx, "alice", "acme", value, sizeof(value));
	if (state < 0)
		snprintf(wrong, sizeof(wrong), "afterwards acme's key is not "
			 "listed");
	else if (st == KW_OK && state != 0)
		snprintf(wrong, sizeof(wrong), "KW_OK, but the key is still "
			 "active");
	else if (rc != KW_OK ||
		 strcmp(value, state == 0 ? K_ALICE : K_ACME) != 0)
		snprintf(wrong, sizeof(wrong), "afterwards the key is %s but "
			 "resolves %s", state == 0 ? "disabled" : "active",
			 rc != KW_OK ? kw_status_str(rc) : "to another key");
	kw_close(ctx);
	return rc;
}

static kw_status check_put(const struct scenario *s, kw_status st)
{
	kw_ctx *ctx = open_or_die(s->conf_after);
	struct listing l = { 0 };
	char value[128];
	const char *name = NULL;
	kw_status rc;

	rc = resolve(ctx, "alice", "acme", value, sizeof(value));
	if (rc != KW_OK) {
		snprintf(wrong, sizeof(wrong), "afterwards acme's key does "
			 "not resolve: %s: %s", kw_status_str(rc),
			 kw_last_error());
		goto out;
	}
	if (st == KW_OK && strcmp(value, K_ACME_NEW) != 0) {
		snprintf(wrong, sizeof(wrong), "KW_OK, but the old key is "
			 "still stored");
		goto out;
	}
	if (strcmp(value, K_ACME_NEW) != 0 && strcmp(value, K_ACME) != 0) {
		snprintf(wrong, sizeof(wrong), "afterwards acme's key is "
			 "neither the old one nor the new one");
		goto out;
	}
	if (!s->vault) {
		rc = kw_key_list(ctx, sysadmin(), "org_keys", NULL, list_one,
				 &l);
		if (rc != KW_OK || l.n != 2) {
			snprintf(wrong, sizeof(wrong), "afterwards the org "
				 "keys list as %zu keys (%s)", l.n,
				 kw_status_str(rc));
			goto out;
		}
		for (size_t i = 0; i < l.n; i++)
			if (strcmp(l.owners[i], "acme") == 0)
				name = l.names[i];
		if (name == NULL ||
		    strcmp(name, strcmp(value, K_ACME_NEW) == 0 ?
					 "rotated" : "first") != 0)
			snprintf(wrong, sizeof(wrong), "afterwards acme's key "
				 "has the name \"%s\", which belongs with the "
				 "other value", name != NULL ? name : "?");
	}
	/* Vault keeps no copy to put back: put the old key back. */
	if (s->vault && strcmp(value, K_ACME) != 0 &&
	    put(ctx, "org_keys", "acme", K_ACME, "first", KW_PUT_ROTATE) !=
		    KW_OK)
		die("cannot put the old key back: %s", kw_last_error());
out:
	kw_close(ctx);
	return rc;
}

static kw_status check_rekey(const struct scenario *s, kw_status st)
{
	kw_ctx *ctx = open_or_die(s->conf_after);
	struct listing org = { 0 }, all = { 0 };
	static const struct {
		const char *user, *org, *want;
	} keys[] = { { "alice", "acme", K_ACME },
		     { "alice", "globex", K_GLOBEX },
		     { "alice", NULL, K_ALICE } };
	char value[128];
	kw_status rc;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		rc = resolve(ctx, keys[i].user, keys[i].org, value,
			     sizeof(value));
		if (rc != KW_OK || strcmp(value, keys[i].want) != 0) {
			snprintf(wrong, sizeof(wrong), "afterwards key %zu "
				 "resolves %s", i + 1, rc != KW_OK ?
				 kw_status_str(rc) : "to another key");
			goto out;
		}
	}
	rc = kw_key_list(ctx, sysadmin(), "org_keys", NULL, list_one, &org);
	if (rc == KW_OK)
		rc = kw_key_list(ctx, sysadmin(), NULL, NULL, list_one, &all);
	if (rc != KW_OK || org.n != 2 || all.n != 3) {
		snprintf(wrong, sizeof(wrong), "afterwards the keys list as "
			 "%zu and %zu (%s)", org.n, all.n, kw_status_str(rc));
		goto out;
	}
	/* One transaction: the org keys all under one master key; a file
	 * moves with every key it holds. */
	if (strcmp(org.ids[0], org.ids[1]) != 0) {
		snprintf(wrong, sizeof(wrong), "afterwards the org keys are "
			 "sealed under two master keys");
		goto out;
	}
	for (size_t i = 0; s->whole_file && i < all.n; i++)
		if (strcmp(all.ids[i], all.ids[0]) != 0)
			snprintf(wrong, sizeof(wrong), "afterwards the file's "
				 "keys are sealed under two master keys");
	if (st == KW_OK && rekeyed != 2 && !s->whole_file)
		snprintf(wrong, sizeof(wrong), "KW_OK with %llu keys "
			 "re-sealed", (unsigned long long)rekeyed);
out:
	kw_close(ctx);
	return rc;
}

/* ---- the sweep ---- */

static bool one_line(const char *s)
{
	return s[0] != '\0' && strchr(s, '\n') == NULL;
}

/*
 * The step of a sampled sweep: KWT_STRIDE; unless set, every N in a plain
 * build and every 7th under LeakSanitizer, whose check after each run
 * makes a run some forty times slower.
 */
static unsigned long stride(void)
{
	const char *v = getenv("KWT_STRIDE");
	unsigned long n = v != NULL && *v != '\0' ? strtoul(v, NULL, 10) :
			  __lsan_do_recoverable_leak_check != NULL ? 7 : 1;

	return n > 0 ? n : 1;
}

static unsigned long max_points(void)
{
	const char *v = getenv("KWT_MAX_POINTS");

	return v != NULL && *v != '\0' ? strtoul(v, NULL, 10) : 0;
}

/* One run with the nth allocation failed (0: none); false when it went
 * wrong, with why on stdout as TAP comments. */
static bool run_one(const struct scenario *s, unsigned long n, kw_status *out)
{
	char live[1024];
	const char *at;
	kw_status st;
	char *left;
	size_t nlive;
	bool ok = true;

	if (s->store && !s->vault)
		restore_store();
	wrong[0] = '\0';
	last_error[0] = '\0';
	kwt_epoch();
	libs_fail = s->libs;
	st = s->op(s, n);
	libs_fail = false;
	*out = st;
	at = kwt_failed_where();
	if (wrong[0] != '\0') {
		printf("# %s, N=%lu (%s at %s): %s\n", s->name, n,
		       kwt_failed_what(), at, wrong);
		ok = false;
	}
	/* KW_ERR_INTERNAL says keyway is wrong; memory running out is
	 * not that. */
	if (st == KW_ERR_INTERNAL && n > 0) {
		printf("# %s, N=%lu (%s at %s): internal error: %s\n",
		       s->name, n, kwt_failed_what(), at, last_error);
		ok = false;
	}
	if (st != KW_OK && !one_line(last_error)) {
		printf("# %s, N=%lu (%s at %s): %s with the message \"%s\"\n",
		       s->name, n, kwt_failed_what(), at, kw_status_str(st),
		       last_error);
		ok = false;
	}
	if (strstr(last_error, "SECRET") != NULL) {
		printf("# %s, N=%lu: a key in the message\n", s->name, n);
		ok = false;
	}
	if (getenv("KWT_VERBOSE") != NULL && n > 0)
		printf("# %s, N=%lu (%s at %s): %s: %s\n", s->name, n,
		       kwt_failed_what(), at, kw_status_str(st), last_error);
	nlive = kwt_live(live, sizeof(live));
	if (nlive > 0) {
		printf("# %s, N=%lu (%s at %s): %s, and %zu allocations "
		       "left after kw_close():\n%s", s->name, n,
		       kwt_failed_what(), at, kw_status_str(st), nlive, live);
		ok = false;
	}
	if (!lsan_off && __lsan_do_recoverable_leak_check != NULL &&
	    __lsan_do_recoverable_leak_check() != 0) {
		printf("# %s, N=%lu (%s at %s): LeakSanitizer found a leak "
		       "(above); no more leak checks by it in this run\n",
		       s->name, n, kwt_failed_what(), at);
		lsan_off = true;
		ok = false;
	}
	if (s->check != NULL) {
		left = s->vault ? NULL : leftover();
		if (left != NULL) {
			printf("# %s, N=%lu (%s at %s): %s left behind\n",
			       s->name, n, kwt_failed_what(), at, left);
			free(left);
			ok = false;
		}
		wrong[0] = '\0';
		s->check(s, st);
		if (wrong[0] != '\0') {
			printf("# %s, N=%lu (%s at %s): %s returned %s; %s\n",
			       s->name, n, kwt_failed_what(), at,
			       s->name, kw_status_str(st), wrong);
			ok = false;
		}
	}
	return ok;
}

static void seed(const struct scenario *s)
{
	kw_status st;
	kw_ctx *ctx;

	/* Sealed under master key A, whatever the scenario opens. */
	ctx = open_or_die(s->vault ? s->conf :
			  s->whole_file ?
			  STORE_CONF(MASTER_ONLY_A, "file", "keys.kwf", "") :
			  STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", ""));
	st = put(ctx, "org_keys", "acme", K_ACME, "first", KW_PUT_CREATE);
	/* Vault outlives a scenario: the key of the last one is there. */
	if (st == KW_ERR_EXISTS && s->vault)
		st = put(ctx, "org_keys", "acme", K_ACME, "first",
			 KW_PUT_ROTATE);
	if (st != KW_OK ||
	    (!s->vault &&
	     (put(ctx, "org_keys", "globex", K_GLOBEX, NULL, KW_PUT_CREATE) !=
		      KW_OK ||
	      put(ctx, "user_keys", "alice", K_ALICE, NULL, KW_PUT_CREATE) !=
		      KW_OK)))
		die("%s: cannot seed the store: %s", s->name, kw_last_error());
	kw_close(ctx);
}

static int tap_n;

static void sweep(const struct scenario *s)
{
	unsigned long n, total, cap = max_points(), bad = 0, runs = 0;
	unsigned long step = s->sampled ? stride() : 1;
	unsigned long by_status[64] = { 0 };
	kw_status st;
	const char *text;
	struct timespec t0, t1;
	bool ok;

	tap_n++;
	if (s->need != NULL && getenv(s->need) == NULL) {
		printf("ok %d - %s # SKIP %s is not set (run it from "
		       "tests/torture/torture.sh)\n", tap_n, s->name, s->need);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	dir = fmt("%s/keyway-torture.XXXXXX",
		  getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp: %s", strerror(errno));
	conf_path = fmt("%s/keyway.conf", dir);
	/* For the scenarios that read a master key from a file. */
	{
		char *p = fmt("%s/master.key", dir);

		write_file(p, MASTER_A "\n", strlen(MASTER_A) + 1);
		free(p);
	}
	if (getenv("KWT_VAULT_TOKEN_FILE") != NULL) {
		size_t len;
		char *t = read_file(getenv("KWT_VAULT_TOKEN_FILE"), &len);
		char *p = fmt("%s/token", dir);

		if (t != NULL)
			write_file(p, t, len);
		free(t);
		free(p);
	}
	if (getenv("KWT_REDIS_PASS_FILE") != NULL) {
		size_t len;
		char *t = read_file(getenv("KWT_REDIS_PASS_FILE"), &len);
		char *p = fmt("%s/redis.pass", dir);

		if (t != NULL)
			write_file(p, t, len);
		free(t);
		free(p);
	}
	if (s->store)
		seed(s);
	text = s->conf;
	write_file(conf_path, text, strlen(text));
	if (s->store && !s->vault)
		save_store();

	/* Once without a failure: it must succeed, and it counts. */
	ok = run_one(s, 0, &st);
	total = counted;
	if (st != KW_OK) {
		printf("not ok %d - %s: fails without a failed allocation: "
		       "%s: %s\n", tap_n, s->name, kw_status_str(st),
		       last_error);
		goto out;
	}
	for (n = 1; cap == 0 || n <= cap; n += step) {
		bool good = run_one(s, n, &st);

		if (!kwt_failed())
			break;
		runs++;
		if (!good)
			bad++;
		by_status[(unsigned)st < 64 ? (unsigned)st : 63]++;
	}
	ok = ok && bad == 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%s %d - %s: %lu torture points (%lu counted without a "
	       "failure%s)", ok ? "ok" : "not ok", tap_n, s->name, runs,
	       total, cap != 0 && n > cap ? "; stopped at KWT_MAX_POINTS" :
	       "");
	if (step > 1)
		printf(", every %luth", step);
	for (unsigned i = 0; i < 64; i++)
		if (by_status[i] != 0)
			printf(", %s %lu", kw_status_str((kw_status)i),
			       by_status[i]);
	if (bad != 0)
		printf(", %lu bad", bad);
	printf(", %.1f s\n", (double)(t1.tv_sec - t0.tv_sec) +
				     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
out:
	fflush(stdout);
	free_saved();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
	free(conf_path);
}

int main(int argc, char **argv)
{
	const char *build = getenv("KEYWAY_BUILDDIR");
	const char *vault = getenv("KWT_VAULT_ADDR");
	const char *ca = getenv("KWT_VAULT_CA");
	const char *redis = getenv("KWT_REDIS_PORT");
	char *vconf, *rconf, *mdir;
	const char *lconf =
		"keyway: {\n"
		"  ledger: { module = \"sqlite\"; path = \"ledger.db\"; };\n"
		"};\n"
		"backends: {\n"
		"  server_env: { module = \"env\"; quota = ( { limit = "
		"100000000; period = \"day\"; per = \"user\"; } ); };\n"
		"};\n"
		"chains: { default = ( " ENTRY("server_env", "required")
		" ); };\n";
	size_t nsc;

	if (build == NULL)
		die("KEYWAY_BUILDDIR is not set: run it through make check");
	mdir = fmt("%s/tests/torture/modules/.libs", build);
	setenv("KEYWAY_MODULE_DIR", mdir, 1);
	free(mdir);
	setenv("KEYWAY_MASTER_KEY", MASTER_A, 1);
	setenv("KWTEST_MASTER_B", MASTER_B, 1);
	setenv("KWTEST_PASS", "torture passphrase", 1);
	setenv("ANTHROPIC_API_KEY", K_ENV, 1);
	unsetenv("KEYWAY_CONFIG");
	unsetenv("API_KEY_ENCRYPTION_KEY");
	libs_hook();

	vconf = fmt("keyway: {\n" MASTER_ONLY_A "};\n"
		    "backends: {\n"
		    "  org_keys: { module = \"vault\"; address = \"%s\"; "
		    "scope = \"org\"; ca_file = \"%s\"; timeout_ms = 3000; "
		    "retries = 0; cache_ttl = 0; auth = { method = \"token\"; "
		    "token_file = \"%s\"; }; };\n"
		    "  server_env: { module = \"env\"; };\n"
		    "};\n"
		    "chains: { default = ( " ENTRY("org_keys", "sufficient")
		    ", " ENTRY("server_env", "required") " ); };\n",
		    vault != NULL ? vault : "", ca != NULL ? ca : "",
		    getenv("KWT_VAULT_TOKEN_FILE") != NULL ?
			    getenv("KWT_VAULT_TOKEN_FILE") : "");
	rconf = fmt("keyway: {\n"
		    "  ledger: { module = \"redis\"; address = "
		    "\"127.0.0.1:%s\"; password_file = \"redis.pass\"; };\n"
		    "};\n"
		    "backends: {\n"
		    "  server_env: { module = \"env\"; quota = ( { limit = "
		    "100000000; period = \"day\"; per = \"user\"; } ); };\n"
		    "};\n"
		    "chains: { default = ( " ENTRY("server_env", "required")
		    " ); };\n", redis != NULL ? redis : "0");

	struct scenario sc[] = {
		{ "kw_open env", "env", NULL,
		  "backends: { server_env: { module = \"env\"; }; };\n"
		  "chains: { default = ( " ENTRY("server_env", "required")
		  " ); };\n", NULL, false, false, false, op_open, NULL, false, false },
		/* Master keys read at open: from a file, and a passphrase
		 * kept until a store's salt is known. */
		{ "kw_open env, master keys from a file and a passphrase",
		  "env", NULL,
		  "keyway: {\n"
		  "  master_key = { source = \"file\"; "
		  "path = \"master.key\"; };\n"
		  "  old_master_keys = ( { source = \"passphrase\"; "
		  "var = \"KWTEST_PASS\"; } );\n"
		  "};\n"
		  "backends: { server_env: { module = \"env\"; }; };\n"
		  "chains: { default = ( " ENTRY("server_env", "required")
		  " ); };\n", NULL, false, false, false, op_open_masters, NULL,
		  false, false },
		{ "kw_resolve env", "env", NULL,
		  "backends: { server_env: { module = \"env\"; }; };\n"
		  "chains: { default = ( " ENTRY("server_env", "required")
		  " ); };\n", NULL, false, false, false, op_resolve, NULL, false, false },
		{ "kw_open sqlite", "sqlite", NULL,
		  STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", ""), NULL,
		  true, false, false, op_open, NULL, false, false },
		{ "kw_resolve sqlite", "sqlite", NULL,
		  STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", ""), NULL,
		  true, false, false, op_resolve, NULL, false, false },
		{ "kw_key_put sqlite", "sqlite", NULL,
		  STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", ""), NULL,
		  true, false, false, op_put, check_put, false, false },
		{ "kw_rekey sqlite", "sqlite", NULL,
		  STORE_CONF(MASTER_B_OLD_A, "sqlite", "keys.db", ""), NULL,
		  true, false, false, op_rekey, check_rekey, false, false },
		{ "kw_explain sqlite", "sqlite", NULL,
		  STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", ""), NULL,
		  true, false, false, op_explain, NULL, false, false },
		{ "kw_key_list sqlite", "sqlite", NULL,
		  STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", ""), NULL,
		  true, false, false, op_list, NULL, false, false },
		{ "kw_key_set_active sqlite", "sqlite", NULL,
		  STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", ""), NULL,
		  true, false, false, op_disable, check_disable, false, false },
		{ "kw_key_delete sqlite", "sqlite", NULL,
		  STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", ""), NULL,
		  true, false, false, op_delete, check_delete, false, false },
		{ "kw_open file", "file", NULL,
		  STORE_CONF(MASTER_ONLY_A, "file", "keys.kwf", ""), NULL,
		  true, false, true, op_open, NULL, false, false },
		{ "kw_resolve file", "file", NULL,
		  STORE_CONF(MASTER_ONLY_A, "file", "keys.kwf", ""), NULL,
		  true, false, true, op_resolve, NULL, false, false },
		{ "kw_key_put file", "file", NULL,
		  STORE_CONF(MASTER_ONLY_A, "file", "keys.kwf", ""), NULL,
		  true, false, true, op_put, check_put, false, false },
		{ "kw_rekey file", "file", NULL,
		  STORE_CONF(MASTER_B_OLD_A, "file", "keys.kwf", ""), NULL,
		  true, false, true, op_rekey, check_rekey, false, false },
		{ "kw_key_list file", "file", NULL,
		  STORE_CONF(MASTER_ONLY_A, "file", "keys.kwf", ""), NULL,
		  true, false, true, op_list, NULL, false, false },
		{ "kw_key_set_active file", "file", NULL,
		  STORE_CONF(MASTER_ONLY_A, "file", "keys.kwf", ""), NULL,
		  true, false, true, op_disable, check_disable, false, false },
		{ "kw_key_delete file", "file", NULL,
		  STORE_CONF(MASTER_ONLY_A, "file", "keys.kwf", ""), NULL,
		  true, false, true, op_delete, check_delete, false, false },
		{ "kw_open vault", "vault", "KWT_VAULT_ADDR", vconf, NULL,
		  true, true, false, op_open, NULL, false, false },
		{ "kw_resolve vault", "vault", "KWT_VAULT_ADDR", vconf, NULL,
		  true, true, false, op_resolve, NULL, false, false },
		{ "kw_key_put vault", "vault", "KWT_VAULT_ADDR", vconf, NULL,
		  true, true, false, op_put, check_put, false, false },
#define SQ STORE_CONF(MASTER_ONLY_A, "sqlite", "keys.db", "")
#define SQ_REKEY STORE_CONF(MASTER_B_OLD_A, "sqlite", "keys.db", "")
		{ "kw_open sqlite +libs", "sqlite", NULL, SQ, NULL, true,
		  false, false, op_open, NULL, true, true },
		{ "kw_resolve sqlite +libs", "sqlite", NULL, SQ, NULL, true,
		  false, false, op_resolve, NULL, true, false },
		{ "kw_key_put sqlite +libs", "sqlite", NULL, SQ, NULL, true,
		  false, false, op_put, check_put, true, true },
		{ "kw_rekey sqlite +libs", "sqlite", NULL, SQ_REKEY, NULL, true,
		  false, false, op_rekey, check_rekey, true, true },
		{ "kw_key_list sqlite +libs", "sqlite", NULL, SQ, NULL, true,
		  false, false, op_list, NULL, true, true },
		{ "kw_key_set_active sqlite +libs", "sqlite", NULL, SQ, NULL,
		  true, false, false, op_disable, check_disable, true, true },
		{ "kw_key_delete sqlite +libs", "sqlite", NULL, SQ, NULL, true,
		  false, false, op_delete, check_delete, true, true },
		{ "kw_open sqlite ledger +libs", "sqlite", NULL, lconf, NULL,
		  false, false, false, op_open, NULL, true, true },
		{ "kw_resolve sqlite ledger +libs", "sqlite", NULL, lconf, NULL,
		  false, false, false, op_resolve, NULL, true, false },
		{ "kw_open vault +libs", "vault", "KWT_VAULT_ADDR", vconf, NULL,
		  true, true, false, op_open, NULL, true, true },
		{ "kw_resolve vault +libs", "vault", "KWT_VAULT_ADDR", vconf,
		  NULL, true, true, false, op_resolve, NULL, true, false },
		{ "kw_key_put vault +libs", "vault", "KWT_VAULT_ADDR", vconf,
		  NULL, true, true, false, op_put, check_put, true, true },
		{ "kw_open redis ledger", "redis", "KWT_REDIS_PORT", rconf,
		  NULL, false, false, false, op_open, NULL, false, false },
		{ "kw_resolve redis ledger", "redis", "KWT_REDIS_PORT", rconf,
		  NULL, false, false, false, op_resolve, NULL, false, false },
	};
	nsc = sizeof(sc) / sizeof(sc[0]);

	printf("1..%zu\n", nsc);
	for (size_t i = 0; i < nsc; i++) {
		bool chosen = argc < 2;

		for (int a = 1; a < argc; a++)
			if (strstr(sc[i].name, argv[a]) != NULL)
				chosen = true;
		if (chosen) {
			sweep(&sc[i]);
		} else {
			tap_n++;
			printf("ok %d - %s # SKIP not asked for\n", tap_n,
			       sc[i].name);
		}
	}
	free(vconf);
	free(rconf);
	return 0;
}
