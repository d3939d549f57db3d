/*
 * test_store.c - sealed key storage through the public API: the sqlite
 * backend seen as org, user and system keys on one file; the resolution
 * orders Pentographer (org, user, environment) and Fovea (user, system,
 * environment) document for their keys; who may manage which key;
 * provider formats and the providers table; bad references; what a
 * listing shows; many processes on one store; the modes of the files.
 * And what sharing a file's connections must not change: a walk leaves
 * no read transaction behind, a change made elsewhere is read at the next
 * walk, contexts of one process come and go on one file, a master key
 * that cannot open the keys is refused beside one that can, keys sealed
 * under several master keys, usage counts written at close, and the WAL
 * left at the last close.
 *
 * Every key in this file contains "SECRET" (but a few too short to hold
 * it), and no message may.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include <keyway/keyway.h>

#include "testutil.h"

/* Two master keys: the current one, and one to re-seal under. */
#define MASTER_A "000102030405060708090a0b0c0d0e0f" \
		 "101112131415161718191a1b1c1d1e1f"
#define MASTER_B "f0e1d2c3b4a5968778695a4b3c2d1e0f" \
		 "0123456789abcdeffedcba9876543210"

/* The keys the tests store. */
#define K_ORG_ACME "sk-ant-SECRET-org-acme-00000001"
#define K_ORG_GLOBEX "sk-ant-SECRET-org-globex-000002"
#define K_USER_ALICE "sk-ant-SECRET-user-alice-000003"
#define K_USER_BOB "sk-ant-SECRET-user-bob-00000004"
#define K_SYSTEM "sk-ant-SECRET-system-0000000005"
#define K_ENV "sk-ant-SECRET-environment-00006"
#define K_ENV_OPENAI "sk-proj-SECRET-environment-0007"
#define K_OAI_ALICE "sk-proj-SECRET-user-alice-0008"

/*
 * The store configuration: three backends on one file, the environment
 * behind them, and chains that walk them.  After a keyway section of three
 * lines, "backends" is on line 4 and org_keys, with its path, on line 5.
 */
#define ENTRY(b, c) "{ backend = \"" b "\"; control = \"" c "\"; }"

#define STORE_BACKENDS \
	"backends: {\n" \
	"  org_keys: { module = \"sqlite\"; path = \"keys.db\"; " \
	"scope = \"org\"; };\n" \
	"  user_keys: { module = \"sqlite\"; path = \"keys.db\"; " \
	"scope = \"user\"; };\n" \
	"  system_keys: { module = \"sqlite\"; path = \"keys.db\"; " \
	"scope = \"system\"; };\n" \
	"  server_env: { module = \"env\"; };\n" \
	"};\n" \
	"chains: {\n" \
	"  default = ( " ENTRY("org_keys", "sufficient") ",\n" \
	"    " ENTRY("user_keys", "sufficient") ",\n" \
	"    " ENTRY("server_env", "required") " );\n" \
	"  fovea = ( " ENTRY("user_keys", "sufficient") ",\n" \
	"    " ENTRY("system_keys", "sufficient") ",\n" \
	"    " ENTRY("server_env", "required") " );\n" \
	"  only_org = ( " ENTRY("org_keys", "sufficient") ",\n" \
	"    " ENTRY("server_env", "required") " );\n" \
	"  only_user = ( " ENTRY("user_keys", "sufficient") ",\n" \
	"    " ENTRY("server_env", "required") " );\n" \
	"  only_system = ( " ENTRY("system_keys", "sufficient") ",\n" \
	"    " ENTRY("server_env", "required") " );\n" \
	"  strict = ( " ENTRY("org_keys", "requisite") ",\n" \
	"    " ENTRY("server_env", "required") " );\n" \
	"};\n"

#define STORE_CONF \
	"keyway: {\n" \
	"  master_key = { source = \"env\"; };\n" \
	"};\n" \
	STORE_BACKENDS

#define ORG_PATH_LINE 5

/* Every variable a test may set; cleared around each test. */
static const char *const test_vars[] = {
	"KEYWAY_MASTER_KEY", "API_KEY_ENCRYPTION_KEY", "KWTEST_MASTER_B",
	"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY",
	"MISTRAL_API_KEY", "TINY_API_KEY", "KWTEST_CUR", "KWTEST_OLD1",
	"KWTEST_OLD2",
	NULL,
};

struct fixture {
	char *dir;
	char *conf; /* dir/keyway.conf */
	char *db;   /* dir/keys.db */
	kw_ctx *ctx;
	kw_ctx *more[3]; /* other contexts a test opens beside ctx */
	pthread_t thread;
	atomic_bool *stop; /* a thread runs until *stop */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	tu_unsetenv(test_vars);
	setenv("KEYWAY_MASTER_KEY", MASTER_A, 1);
	setenv("ANTHROPIC_API_KEY", K_ENV, 1);
	setenv("OPENAI_API_KEY", K_ENV_OPENAI, 1);
	f->dir = tu_tmpdir();
	if (asprintf(&f->conf, "%s/keyway.conf", f->dir) < 0 ||
	    asprintf(&f->db, "%s/keys.db", f->dir) < 0)
		return -1;
	*state = f;
	return 0;
}

/* Stop the test's thread, if one runs, and wait for it. */
static void stop_thread(struct fixture *f)
{
	if (f->stop == NULL)
		return;
	atomic_store(f->stop, true);
	pthread_join(f->thread, NULL);
	f->stop = NULL;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	stop_thread(f);
	kw_close(f->ctx);
	for (size_t i = 0; i < sizeof(f->more) / sizeof(f->more[0]); i++)
		kw_close(f->more[i]);
	free(f->conf);
	free(f->db);
	tu_rmrf(f->dir);
	free(f);
	tu_release(0);
	tu_unsetenv(test_vars);
	return 0;
}

/* Write text as f->conf (replacing the last one) and open it. */
static kw_status open_text(struct fixture *f, const char *text)
{
	char *path;

	kw_close(f->ctx);
	f->ctx = NULL;
	path = tu_write(f->dir, "keyway.conf", 0600, "%s", text);
	free(path);
	return kw_open(&f->ctx, f->conf);
}

static void open_store(struct fixture *f)
{
	kw_status st = open_text(f, STORE_CONF);

	if (st != KW_OK)
		fail_msg("kw_open: %s: %s", kw_status_str(st), kw_last_error());
}

/* The status was `want` and kw_last_error() is exactly `msg`. */
static void expect_fail(kw_status got, kw_status want, const char *msg)
{
	const char *err = kw_last_error();

	if (got != want)
		fail_msg("got %s (%d), expected %s (%d); last error \"%s\"",
			 kw_status_str(got), (int)got, kw_status_str(want),
			 (int)want, err);
	assert_string_equal(err, msg);
	tu_assert_no_secret(err);
}

static void expect_ok(kw_status got)
{
	if (got != KW_OK)
		fail_msg("got %s (%d): %s", kw_status_str(got), (int)got,
			 kw_last_error());
}

static kw_actor actor(const char *user, const char *org, kw_role role)
{
	kw_actor a = KW_ACTOR_INIT;

	a.user = user;
	a.org = org;
	a.role = role;
	return a;
}

static kw_key_ref ref(const char *backend, const char *owner,
		      const char *provider)
{
	kw_key_ref r = KW_KEY_REF_INIT;

	r.backend = backend;
	r.owner = owner;
	r.provider = provider;
	return r;
}

static kw_status put_as(struct fixture *f, const kw_actor *a,
			const char *backend, const char *owner,
			const char *provider, const char *value,
			const char *name, kw_put_mode mode)
{
	kw_key_ref r = ref(backend, owner, provider);

	return kw_key_put(f->ctx, a, &r, value, value ? strlen(value) : 0,
			  name, mode);
}

static void put_ok(struct fixture *f, const char *backend, const char *owner,
		   const char *provider, const char *value, const char *name)
{
	expect_ok(put_as(f, tu_sysadmin(), backend, owner, provider, value,
			 name, KW_PUT_CREATE));
}

static kw_status set_active_as(struct fixture *f, const kw_actor *a,
			       const char *backend, const char *owner,
			       const char *provider, int active)
{
	kw_key_ref r = ref(backend, owner, provider);

	return kw_key_set_active(f->ctx, a, &r, active);
}

static kw_status delete_as(struct fixture *f, const kw_actor *a,
			   const char *backend, const char *owner,
			   const char *provider)
{
	kw_key_ref r = ref(backend, owner, provider);

	return kw_key_delete(f->ctx, a, &r);
}

/* Resolve through ctx and check the key and the backend that gave it. */
static void expect_resolve_on(kw_ctx *ctx, const char *chain,
			      const char *provider, const char *user,
			      const char *org, const char *value,
			      const char *backend)
{
	char got[8192], from[128];
	kw_status st;

	st = tu_resolve(ctx, chain, provider, user, org, got, sizeof(got),
			from, sizeof(from));
	if (st != KW_OK)
		fail_msg("resolve %s/%s for %s@%s: %s: %s",
			 chain ? chain : "default", provider,
			 user ? user : "-", org ? org : "-", kw_status_str(st),
			 kw_last_error());
	if (strcmp(got, value) != 0)
		fail_msg("resolve %s/%s for %s@%s: a key of %zu bytes from "
			 "%s, not the expected one of %zu bytes",
			 chain ? chain : "default", provider,
			 user ? user : "-", org ? org : "-", strlen(got), from,
			 strlen(value));
	assert_string_equal(from, backend);
}

static void expect_resolve(struct fixture *f, const char *chain,
			   const char *provider, const char *user,
			   const char *org, const char *value,
			   const char *backend)
{
	expect_resolve_on(f->ctx, chain, provider, user, org, value, backend);
}

/* ---- what kw_key_list() says ---- */

struct key_copy {
	char backend[64];
	kw_scope scope;
	bool has_owner;
	char owner[128];
	char provider[64];
	char name[160];
	int active;
	char masked[KW_MASK_SIZE];
	uint64_t usage_count;
	int64_t last_used;
	int64_t created;
	int64_t rotated;
	char key_id[64];
};

struct key_list {
	size_t n;
	struct key_copy v[160];
};

static void copy_str(char *dst, size_t size, const char *src)
{
	assert_non_null(src);
	tu_assert_no_secret(src);
	assert_true(strlen(src) < size);
	strcpy(dst, src);
}

static kw_status collect(void *arg, const kw_key_info *info)
{
	struct key_list *l = arg;
	struct key_copy *k;

	assert_true(l->n < sizeof(l->v) / sizeof(l->v[0]));
	k = &l->v[l->n++];
	memset(k, 0, sizeof(*k));
	copy_str(k->backend, sizeof(k->backend), info->backend);
	k->scope = info->scope;
	k->has_owner = info->owner != NULL;
	if (info->owner != NULL)
		copy_str(k->owner, sizeof(k->owner), info->owner);
	copy_str(k->provider, sizeof(k->provider), info->provider);
	copy_str(k->name, sizeof(k->name), info->name);
	k->active = info->active;
	copy_str(k->masked, sizeof(k->masked), info->masked);
	k->usage_count = info->usage_count;
	k->last_used = info->last_used;
	k->created = info->created;
	k->rotated = info->rotated;
	copy_str(k->key_id, sizeof(k->key_id), info->key_id);
	return KW_OK;
}

static struct key_list *list_as(struct fixture *f, const kw_actor *a,
				const char *backend, const char *owner)
{
	struct key_list *l = tu_keep(calloc(1, sizeof(*l)));

	expect_ok(kw_key_list(f->ctx, a, backend, owner, collect, l));
	return l;
}

/* The key (backend, owner, provider) as the system administrator lists
 * it, or NULL when there is none. */
static const struct key_copy *find_key(struct fixture *f, const char *backend,
				       const char *owner, const char *provider)
{
	struct key_list *l = calloc(1, sizeof(*l));
	struct key_copy *found = NULL;
	kw_status st;

	assert_non_null(l);
	st = kw_key_list(f->ctx, tu_sysadmin(), backend, owner, collect, l);
	for (size_t i = 0; st == KW_OK && i < l->n && found == NULL; i++) {
		const struct key_copy *k = &l->v[i];

		if (strcmp(k->provider, provider) == 0 &&
		    k->has_owner == (owner != NULL) &&
		    (owner == NULL || strcmp(k->owner, owner) == 0)) {
			found = malloc(sizeof(*found));
			if (found != NULL)
				*found = *k;
		}
	}
	free(l);
	expect_ok(st);
	return found != NULL ? tu_keep(found) : NULL;
}

/* "sk-a****" and the last four: what a listing shows of a key of 24
 * bytes or more. */
static char *mask_of(const char *value)
{
	size_t n = strlen(value);

	assert_true(n >= 24);
	return tu_fmt("%.4s****%s", value, value + n - 4);
}

/* Wait for the clock to pass `t`, so that a later write gets a later
 * time. */
static void wait_past(int64_t t)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	while ((int64_t)time(NULL) <= t)
		nanosleep(&ts, NULL);
}

/* ---- round trip, every scope ---- */

struct scope_case {
	const char *backend;
	kw_scope scope;
	const char *owner;
	const char *chain;   /* the backend, then server_env */
	const char *desc;    /* as the store names the key */
	const char *article; /* of desc */
	const char *v1, *v2, *v3;
};

static const struct scope_case scope_cases[] = {
	{
		"org_keys", KW_SCOPE_ORG, "acme", "only_org",
		"org key of \"acme\" for anthropic", "an",
		"sk-ant-SECRET-org-first-0000011",
		"sk-ant-SECRET-org-second-000012",
		"sk-ant-SECRET-org-third-0000013",
	},
	{
		"user_keys", KW_SCOPE_USER, "alice", "only_user",
		"user key of \"alice\" for anthropic", "a",
		"sk-ant-SECRET-user-first-000021",
		"sk-ant-SECRET-user-second-00022",
		"sk-ant-SECRET-user-third-000023",
	},
	{
		"system_keys", KW_SCOPE_SYSTEM, NULL, "only_system",
		"system key for anthropic", "a",
		"sk-ant-SECRET-system-first-0031",
		"sk-ant-SECRET-system-second-032",
		"sk-ant-SECRET-system-third-0033",
	},
};

#define NSCOPES (sizeof(scope_cases) / sizeof(scope_cases[0]))

/* Resolve as a request that reaches the case's backend. */
static void expect_case_resolves(struct fixture *f, const struct scope_case *c,
				 const char *value, const char *backend)
{
	expect_resolve(f, c->chain, "anthropic", "alice", "acme", value,
		       backend);
}

/* Explain the case's chain: the first step answered `status` with
 * `detail`, and the environment gave the key. */
static void expect_case_trace(struct fixture *f, const struct scope_case *c,
			      kw_status status, const char *detail)
{
	kw_request req = KW_REQUEST_INIT;
	const kw_trace_step *s;
	kw_trace *t = NULL;

	req.chain = c->chain;
	req.provider = "anthropic";
	req.user = "alice";
	req.org = "acme";
	expect_ok(kw_explain(f->ctx, &req, &t));
	assert_int_equal(kw_trace_len(t), 2);
	s = kw_trace_get(t, 0);
	assert_string_equal(s->backend, c->backend);
	assert_string_equal(s->module, "sqlite");
	assert_int_equal(s->status, status);
	assert_int_equal(s->action, KW_ACTION_CONTINUE);
	assert_string_equal(s->detail, detail);
	assert_string_equal(s->masked, "");
	s = kw_trace_get(t, 1);
	assert_string_equal(s->backend, "server_env");
	assert_int_equal(s->status, KW_OK);
	assert_int_equal(s->action, KW_ACTION_DONE);
	assert_string_equal(s->masked, mask_of(K_ENV));
	assert_int_equal(kw_trace_result(t), KW_OK);
	assert_string_equal(kw_trace_backend(t), "server_env");
	tu_assert_no_secret(kw_trace_summary(t));
	kw_trace_free(t);
}

static void test_roundtrip_every_scope(void **state)
{
	struct fixture *f = *state;
	const struct key_copy *k;
	int64_t t0, t1, created[NSCOPES];

	open_store(f);
	t0 = (int64_t)time(NULL);
	for (size_t i = 0; i < NSCOPES; i++) {
		const struct scope_case *c = &scope_cases[i];

		put_ok(f, c->backend, c->owner, "anthropic", c->v1, "first");
		expect_case_resolves(f, c, c->v1, c->backend);
	}
	t1 = (int64_t)time(NULL);
	for (size_t i = 0; i < NSCOPES; i++) {
		const struct scope_case *c = &scope_cases[i];

		k = find_key(f, c->backend, c->owner, "anthropic");
		assert_non_null(k);
		assert_int_equal(k->scope, c->scope);
		assert_string_equal(k->name, "first");
		assert_int_equal(k->active, 1);
		assert_string_equal(k->masked, mask_of(c->v1));
		assert_true(k->created >= t0 && k->created <= t1);
		assert_int_equal(k->rotated, k->created);
		created[i] = k->created;
	}

	/* Rotation: a new value and a new time, the rest kept. */
	wait_past(t1);
	for (size_t i = 0; i < NSCOPES; i++) {
		const struct scope_case *c = &scope_cases[i];

		expect_ok(put_as(f, tu_sysadmin(), c->backend, c->owner,
				 "anthropic", c->v2, NULL, KW_PUT_ROTATE));
		expect_case_resolves(f, c, c->v2, c->backend);
		k = find_key(f, c->backend, c->owner, "anthropic");
		assert_non_null(k);
		assert_int_equal(k->created, created[i]);
		assert_true(k->rotated > k->created);
		assert_true(k->rotated <= (int64_t)time(NULL));
		assert_string_equal(k->name, "first");
		assert_string_equal(k->masked, mask_of(c->v2));

		expect_ok(put_as(f, tu_sysadmin(), c->backend, c->owner,
				 "anthropic", c->v3, "second", KW_PUT_ROTATE));
		expect_case_resolves(f, c, c->v3, c->backend);
		k = find_key(f, c->backend, c->owner, "anthropic");
		assert_non_null(k);
		assert_string_equal(k->name, "second");
		assert_int_equal(k->created, created[i]);
	}

	/* Disabled: the backend answers denied, the chain moves on. */
	for (size_t i = 0; i < NSCOPES; i++) {
		const struct scope_case *c = &scope_cases[i];

		expect_ok(set_active_as(f, tu_sysadmin(), c->backend, c->owner,
					"anthropic", 0));
		k = find_key(f, c->backend, c->owner, "anthropic");
		assert_non_null(k);
		assert_int_equal(k->active, 0);
		expect_case_resolves(f, c, K_ENV, "server_env");
		expect_case_trace(f, c, KW_ERR_DENIED,
				  tu_fmt("the %s is disabled", c->desc));
		/* Disabling twice is no error. */
		expect_ok(set_active_as(f, tu_sysadmin(), c->backend, c->owner,
					"anthropic", 0));
	}
	for (size_t i = 0; i < NSCOPES; i++) {
		const struct scope_case *c = &scope_cases[i];

		expect_ok(set_active_as(f, tu_sysadmin(), c->backend, c->owner,
					"anthropic", 1));
		expect_case_resolves(f, c, c->v3, c->backend);
		k = find_key(f, c->backend, c->owner, "anthropic");
		assert_non_null(k);
		assert_int_equal(k->active, 1);
	}

	/* One key per (scope, owner, provider). */
	for (size_t i = 0; i < NSCOPES; i++) {
		const struct scope_case *c = &scope_cases[i];

		expect_fail(
			put_as(f, tu_sysadmin(), c->backend, c->owner,
			       "anthropic", c->v1, "again", KW_PUT_CREATE),
			KW_ERR_EXISTS,
			tu_fmt("backend \"%s\": %s %s already exists; rotate "
			       "it instead",
			       c->backend, c->article, c->desc));
		expect_case_resolves(f, c, c->v3, c->backend);
	}

	/* Deleted: notfound, and every operation on it says so. */
	for (size_t i = 0; i < NSCOPES; i++) {
		const struct scope_case *c = &scope_cases[i];
		const char *gone = tu_fmt("backend \"%s\": no %s in %s",
					  c->backend, c->desc, f->db);

		expect_ok(delete_as(f, tu_sysadmin(), c->backend, c->owner,
				    "anthropic"));
		assert_null(find_key(f, c->backend, c->owner, "anthropic"));
		expect_case_resolves(f, c, K_ENV, "server_env");
		expect_case_trace(f, c, KW_ERR_NOTFOUND,
				  tu_fmt("no %s in %s", c->desc, f->db));
		expect_fail(delete_as(f, tu_sysadmin(), c->backend, c->owner,
				      "anthropic"),
			    KW_ERR_NOTFOUND, gone);
		expect_fail(put_as(f, tu_sysadmin(), c->backend, c->owner,
				   "anthropic", c->v1, NULL, KW_PUT_ROTATE),
			    KW_ERR_NOTFOUND, gone);
		expect_fail(set_active_as(f, tu_sysadmin(), c->backend,
					  c->owner, "anthropic", 1),
			    KW_ERR_NOTFOUND, gone);
		assert_null(find_key(f, c->backend, c->owner, "anthropic"));
	}
	assert_int_equal(list_as(f, tu_sysadmin(), NULL, NULL)->n, 0);
}

/* Rotating a key that was never there. */
static void test_rotate_missing(void **state)
{
	struct fixture *f = *state;

	open_store(f);
	expect_fail(put_as(f, tu_sysadmin(), "org_keys", "acme", "anthropic",
			   K_ORG_ACME, "x", KW_PUT_ROTATE),
		    KW_ERR_NOTFOUND,
		    tu_fmt("backend \"org_keys\": no org key of \"acme\" for "
			   "anthropic in %s",
			   f->db));
	expect_fail(put_as(f, tu_sysadmin(), "system_keys", NULL, "openai",
			   K_OAI_ALICE, NULL, KW_PUT_ROTATE),
		    KW_ERR_NOTFOUND,
		    tu_fmt("backend \"system_keys\": no system key for openai "
			   "in %s",
			   f->db));
	assert_int_equal(list_as(f, tu_sysadmin(), NULL, NULL)->n, 0);
}

/* A requisite entry stops at a disabled key. */
static void test_disabled_requisite(void **state)
{
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	expect_resolve(f, "strict", "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_ok(set_active_as(f, tu_sysadmin(), "org_keys", "acme",
				"anthropic", 0));
	req.chain = "strict";
	req.provider = "anthropic";
	req.org = "acme";
	expect_fail(kw_resolve(f->ctx, &req, &s), KW_ERR_DENIED,
		    "chain \"strict\", provider \"anthropic\": org_keys "
		    "answered denied: the org key of \"acme\" for anthropic "
		    "is disabled");
	assert_null(s);
	/* Another org's key was never there: requisite stops there too. */
	req.org = "globex";
	expect_fail(kw_resolve(f->ctx, &req, &s), KW_ERR_NOTFOUND,
		    tu_fmt("chain \"strict\", provider \"anthropic\": org_keys "
			   "answered notfound: no org key of \"globex\" for "
			   "anthropic in %s",
			   f->db));
	expect_ok(set_active_as(f, tu_sysadmin(), "org_keys", "acme",
				"anthropic", 1));
	expect_resolve(f, "strict", "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
}

/* Scopes on one file are apart: a user named like an org has keys of
 * its own, and one provider's key is not another's. */
static void test_scopes_apart(void **state)
{
	struct fixture *f = *state;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "acme", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "user_keys", "alice", "openai", K_OAI_ALICE, NULL);
	expect_resolve(f, "only_org", "anthropic", NULL, "acme", K_ORG_ACME,
		       "org_keys");
	expect_resolve(f, "only_user", "anthropic", "acme", NULL,
		       K_USER_ALICE, "user_keys");
	expect_resolve(f, "only_user", "anthropic", "alice", NULL, K_ENV,
		       "server_env");
	expect_resolve(f, "only_user", "openai", "alice", NULL, K_OAI_ALICE,
		       "user_keys");
	expect_resolve(f, "only_org", "openai", NULL, "acme", K_ENV_OPENAI,
		       "server_env");
	expect_ok(
		delete_as(f, tu_sysadmin(), "user_keys", "acme", "anthropic"));
	expect_resolve(f, "only_org", "anthropic", NULL, "acme", K_ORG_ACME,
		       "org_keys");
	assert_non_null(find_key(f, "org_keys", "acme", "anthropic"));
	assert_null(find_key(f, "user_keys", "acme", "anthropic"));
}

/* ---- the resolution orders of Pentographer and Fovea ---- */

static void expect_first_step(struct fixture *f, const char *chain,
			      const char *user, const char *org,
			      const char *backend, kw_status status,
			      const char *detail)
{
	kw_request req = KW_REQUEST_INIT;
	const kw_trace_step *s;
	kw_trace *t = NULL;

	req.chain = chain;
	req.provider = "anthropic";
	req.user = user;
	req.org = org;
	expect_ok(kw_explain(f->ctx, &req, &t));
	s = kw_trace_get(t, 0);
	assert_non_null(s);
	assert_string_equal(s->backend, backend);
	assert_int_equal(s->status, status);
	assert_int_equal(s->action, KW_ACTION_CONTINUE);
	assert_string_equal(s->detail, detail);
	kw_trace_free(t);
}

/* Pentographer: the org's key, else the user's, else the server's. */
static void test_pentographer_chain(void **state)
{
	struct fixture *f = *state;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "user_keys", "bob", "anthropic", K_USER_BOB, NULL);

	/* Members of acme get acme's key, whatever they hold themselves. */
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_resolve(f, NULL, "anthropic", "bob", "acme", K_ORG_ACME,
		       "org_keys");
	expect_resolve(f, NULL, "anthropic", "carol", "acme", K_ORG_ACME,
		       "org_keys");
	/* An org without a key: the user's own. */
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_USER_ALICE,
		       "user_keys");
	expect_resolve(f, NULL, "anthropic", "bob", "globex", K_USER_BOB,
		       "user_keys");
	/* Neither: the server's. */
	expect_resolve(f, NULL, "anthropic", "carol", "globex", K_ENV,
		       "server_env");
	/* No org in the request: the org entry is passed over. */
	expect_resolve(f, NULL, "anthropic", "alice", NULL, K_USER_ALICE,
		       "user_keys");
	expect_first_step(f, NULL, "alice", NULL, "org_keys", KW_ERR_NOTFOUND,
			  "the request names no org");
	expect_resolve(f, NULL, "anthropic", NULL, NULL, K_ENV, "server_env");
	/* The org's key disabled: the user's again. */
	expect_ok(set_active_as(f, tu_sysadmin(), "org_keys", "acme",
				"anthropic", 0));
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_USER_ALICE,
		       "user_keys");
	expect_resolve(f, NULL, "anthropic", "carol", "acme", K_ENV,
		       "server_env");
	/* Deleted: likewise. */
	expect_ok(delete_as(f, tu_sysadmin(), "org_keys", "acme", "anthropic"));
	expect_resolve(f, NULL, "anthropic", "bob", "acme", K_USER_BOB,
		       "user_keys");
	/* And without the server's key, nothing at all. */
	unsetenv("ANTHROPIC_API_KEY");
	assert_int_equal(tu_resolve(f->ctx, NULL, "anthropic", "carol",
				    "acme", NULL, 0, NULL, 0),
			 KW_ERR_NOTFOUND);
}

/* Fovea: the user's key, else the system's, else the environment's; for
 * every provider. */
static void test_fovea_chain(void **state)
{
	struct fixture *f = *state;

	open_store(f);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE,
	       "My Anthropic Key");
	put_ok(f, "user_keys", "alice", "openai", K_OAI_ALICE, NULL);
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM,
	       "Production Claude Key");

	expect_resolve(f, "fovea", "anthropic", "alice", NULL, K_USER_ALICE,
		       "user_keys");
	expect_resolve(f, "fovea", "anthropic", "bob", NULL, K_SYSTEM,
		       "system_keys");
	expect_resolve(f, "fovea", "anthropic", NULL, NULL, K_SYSTEM,
		       "system_keys");
	expect_first_step(f, "fovea", NULL, NULL, "user_keys",
			  KW_ERR_NOTFOUND, "the request names no user");
	expect_resolve(f, "fovea", "openai", "alice", NULL, K_OAI_ALICE,
		       "user_keys");
	expect_resolve(f, "fovea", "openai", "bob", NULL, K_ENV_OPENAI,
		       "server_env");
	/* The org plays no part. */
	expect_resolve(f, "fovea", "anthropic", "alice", "acme", K_USER_ALICE,
		       "user_keys");
	/* Alice's key disabled: the system's. */
	expect_ok(set_active_as(f, tu_sysadmin(), "user_keys", "alice",
				"anthropic", 0));
	expect_resolve(f, "fovea", "anthropic", "alice", NULL, K_SYSTEM,
		       "system_keys");
	/* No system key: the environment's. */
	expect_ok(
		delete_as(f, tu_sysadmin(), "system_keys", NULL, "anthropic"));
	expect_resolve(f, "fovea", "anthropic", "alice", NULL, K_ENV,
		       "server_env");
	expect_resolve(f, "fovea", "anthropic", "bob", NULL, K_ENV,
		       "server_env");
}

/* ---- who may do what ---- */

enum op { OP_PUT, OP_ROTATE, OP_ENABLE, OP_DISABLE, OP_DELETE, NOPS };

static const char *const op_names[NOPS] = {
	"put", "rotate", "enable", "disable", "delete"
};

/*
 * The keys an actor (user "alice", role R in org "acme") may manage, as
 * keyway.h states the rules, written out: org keys by that org's owners
 * and admins, user keys by that user, system keys by a system
 * administrator, who may manage every key.
 */
enum col { C_ORG_SAME, C_ORG_OTHER, C_USER_SAME, C_USER_OTHER, C_SYSTEM,
	   NCOLS };

static const struct {
	const char *backend;
	kw_scope scope;
	const char *owner;
	const char *refusal;
} cols[NCOLS] = {
	[C_ORG_SAME] = { "org_keys", KW_SCOPE_ORG, "acme",
			 "only an owner or admin of org \"acme\" may manage "
			 "its keys" },
	[C_ORG_OTHER] = { "org_keys", KW_SCOPE_ORG, "globex",
			  "only an owner or admin of org \"globex\" may "
			  "manage its keys" },
	[C_USER_SAME] = { "user_keys", KW_SCOPE_USER, "alice",
			  "only user \"alice\" may manage that user's keys" },
	[C_USER_OTHER] = { "user_keys", KW_SCOPE_USER, "bob",
			   "only user \"bob\" may manage that user's keys" },
	[C_SYSTEM] = { "system_keys", KW_SCOPE_SYSTEM, NULL,
		       "only a system administrator may manage system keys" },
};

#define NROLES 6

static const char *const role_names[NROLES] = {
	"none", "viewer", "member", "admin", "owner", "sysadmin"
};

static const bool may_manage[NROLES][NCOLS] = {
	/*                     org    org    user   user   system
	 *                     acme   globex alice  bob            */
	[KW_ROLE_NONE] =     { false, false, true,  false, false },
	[KW_ROLE_VIEWER] =   { false, false, true,  false, false },
	[KW_ROLE_MEMBER] =   { false, false, true,  false, false },
	[KW_ROLE_ADMIN] =    { true,  false, true,  false, false },
	[KW_ROLE_OWNER] =    { true,  false, true,  false, false },
	[KW_ROLE_SYSADMIN] = { true,  true,  true,  true,  true  },
};

#define V0 "sk-ant-SECRET-actor-before-0000"
#define V1 "sk-ant-SECRET-actor-after-01111"

/* Put the key of column c in the state op needs, as the administrator. */
static void prepare_key(struct fixture *f, enum col c, enum op op)
{
	const char *b = cols[c].backend, *o = cols[c].owner;
	kw_status st;

	st = delete_as(f, tu_sysadmin(), b, o, "anthropic");
	assert_true(st == KW_OK || st == KW_ERR_NOTFOUND);
	if (op == OP_PUT)
		return;
	put_ok(f, b, o, "anthropic", V0, "before");
	if (op == OP_ENABLE)
		expect_ok(
			set_active_as(f, tu_sysadmin(), b, o, "anthropic", 0));
}

static kw_status run_op(struct fixture *f, const kw_actor *a, enum col c,
			enum op op)
{
	const char *b = cols[c].backend, *o = cols[c].owner;

	switch (op) {
	case OP_PUT:
		return put_as(f, a, b, o, "anthropic", V1, "after",
			      KW_PUT_CREATE);
	case OP_ROTATE:
		return put_as(f, a, b, o, "anthropic", V1, "after",
			      KW_PUT_ROTATE);
	case OP_ENABLE:
		return set_active_as(f, a, b, o, "anthropic", 1);
	case OP_DISABLE:
		return set_active_as(f, a, b, o, "anthropic", 0);
	case OP_DELETE:
		return delete_as(f, a, b, o, "anthropic");
	case NOPS:
		break;
	}
	return KW_ERR_INTERNAL;
}

/* What the key of column c should look like after op, done or not.
 * Returns NULL when it does, else what is wrong. */
static const char *check_effect(struct fixture *f, enum col c, enum op op,
				bool done)
{
	const struct key_copy *k = find_key(f, cols[c].backend, cols[c].owner,
					    "anthropic");

	switch (op) {
	case OP_PUT:
		if (!done)
			return k == NULL ? NULL : "a key was stored";
		if (k == NULL)
			return "no key was stored";
		return strcmp(k->masked, mask_of(V1)) == 0 &&
				       strcmp(k->name, "after") == 0
			       ? NULL
			       : "the stored key is not the one put";
	case OP_ROTATE:
		if (k == NULL)
			return "the key vanished";
		if (strcmp(k->masked, mask_of(done ? V1 : V0)) != 0)
			return done ? "the key was not replaced"
				    : "the key was replaced";
		return NULL;
	case OP_ENABLE:
	case OP_DISABLE:
		if (k == NULL)
			return "the key vanished";
		if (k->active != ((op == OP_ENABLE) == done))
			return done ? "the state did not change"
				    : "the state changed";
		return NULL;
	case OP_DELETE:
		if (done)
			return k == NULL ? NULL : "the key is still there";
		return k != NULL ? NULL : "the key was deleted";
	case NOPS:
		break;
	}
	return "bad op";
}

/* Try op as actor a on column c; false (and a line of diagnostics) when
 * the outcome is not the expected one. */
static bool try_op(struct fixture *f, const char *who, const kw_actor *a,
		   enum col c, enum op op, bool allowed)
{
	const char *what = cols[c].owner ? cols[c].owner : "(system)";
	const char *wrong;
	char err[1024];
	kw_status st;

	prepare_key(f, c, op);
	st = run_op(f, a, c, op);
	snprintf(err, sizeof(err), "%s", kw_last_error());
	if (strstr(err, TU_MARK) != NULL) {
		print_message("# %s: %s %s key of %s: key in message\n", who,
			      op_names[op], cols[c].backend, what);
		return false;
	}
	if (allowed && st != KW_OK) {
		print_message("# %s: %s %s key of %s: expected ok, got "
			      "%s: %s\n",
			      who, op_names[op], cols[c].backend, what,
			      kw_status_str(st), err);
		return false;
	}
	if (!allowed &&
	    (st != KW_ERR_PERM || strcmp(err, cols[c].refusal) != 0)) {
		print_message("# %s: %s %s key of %s: expected permission "
			      "denied \"%s\", got %s: \"%s\"\n",
			      who, op_names[op], cols[c].backend, what,
			      cols[c].refusal, kw_status_str(st), err);
		return false;
	}
	wrong = check_effect(f, c, op, allowed);
	if (wrong != NULL) {
		print_message("# %s: %s %s key of %s: %s\n", who, op_names[op],
			      cols[c].backend, what, wrong);
		return false;
	}
	return true;
}

/* Which columns a listing by a shows, as a bit set. */
static unsigned listed_cols(struct fixture *f, const kw_actor *a,
			    const char *backend, const char *owner)
{
	const struct key_list *l = list_as(f, a, backend, owner);
	unsigned seen = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct key_copy *k = &l->v[i];
		size_t c;

		for (c = 0; c < NCOLS; c++)
			if (strcmp(k->backend, cols[c].backend) == 0 &&
			    k->scope == cols[c].scope &&
			    k->has_owner == (cols[c].owner != NULL) &&
			    (cols[c].owner == NULL ||
			     strcmp(k->owner, cols[c].owner) == 0))
				break;
		if (c == NCOLS)
			fail_msg("listed a key nobody stored: %s %s",
				 k->backend, k->owner);
		if (seen & (1u << c))
			fail_msg("listed %s key of %s twice", k->backend,
				 k->owner);
		seen |= 1u << c;
	}
	return seen;
}

static unsigned expected_cols(const bool row[NCOLS])
{
	unsigned set = 0;

	for (size_t c = 0; c < NCOLS; c++)
		if (row[c])
			set |= 1u << c;
	return set;
}

static void test_actor_rules(void **state)
{
	struct fixture *f = *state;
	unsigned failures = 0, cases = 0;

	open_store(f);
	for (int role = 0; role < NROLES; role++) {
		kw_actor a = actor("alice", "acme", (kw_role)role);
		const char *who = tu_fmt("alice (%s of acme)",
					 role_names[role]);

		for (int c = 0; c < NCOLS; c++) {
			for (int op = 0; op < NOPS; op++) {
				cases++;
				if (!try_op(f, who, &a, (enum col)c,
					    (enum op)op, may_manage[role][c]))
					failures++;
			}
		}
	}

	/* Listing: what one may not manage, one does not see. */
	for (int c = 0; c < NCOLS; c++)
		prepare_key(f, (enum col)c, OP_ROTATE);
	for (int role = 0; role < NROLES; role++) {
		kw_actor a = actor("alice", "acme", (kw_role)role);
		unsigned want = expected_cols(may_manage[role]);
		unsigned got = listed_cols(f, &a, NULL, NULL);

		cases++;
		if (got != want) {
			print_message("# alice (%s of acme) lists columns "
				      "%#x, expected %#x\n",
				      role_names[role], got, want);
			failures++;
		}
	}
	if (failures > 0)
		fail_msg("%u of %u actor cases went wrong", failures, cases);
}

/* Actors at the edges: no user, no org, names that look alike. */
static void test_actor_edges(void **state)
{
	struct fixture *f = *state;
	kw_actor a;

	open_store(f);
	for (int c = 0; c < NCOLS; c++)
		put_ok(f, cols[c].backend, cols[c].owner, "anthropic", V0,
		       NULL);

	/* An admin of acme with no user name: acme's org keys only. */
	a = actor(NULL, "acme", KW_ROLE_ADMIN);
	assert_true(try_op(f, "admin of acme", &a, C_ORG_SAME, OP_ROTATE,
			   true));
	assert_true(try_op(f, "admin of acme", &a, C_USER_SAME, OP_ROTATE,
			   false));
	assert_int_equal(listed_cols(f, &a, NULL, NULL), 1u << C_ORG_SAME);

	/* An owner in no org: no org key. */
	a = actor("alice", NULL, KW_ROLE_OWNER);
	assert_true(try_op(f, "alice, owner of nothing", &a, C_ORG_SAME,
			   OP_DISABLE, false));
	assert_int_equal(listed_cols(f, &a, NULL, NULL), 1u << C_USER_SAME);

	/* A user named like the org is not its admin... */
	a = actor("acme", NULL, KW_ROLE_NONE);
	assert_true(try_op(f, "user acme", &a, C_ORG_SAME, OP_DELETE, false));
	/* ...and an org named like a user does not own that user's keys. */
	a = actor(NULL, "alice", KW_ROLE_OWNER);
	assert_true(try_op(f, "owner of org alice", &a, C_USER_SAME,
			   OP_DELETE, false));
	assert_int_equal(listed_cols(f, &a, NULL, NULL), 0);

	/* A system administrator needs no name. */
	a = actor(NULL, NULL, KW_ROLE_SYSADMIN);
	for (int c = 0; c < NCOLS; c++)
		assert_true(try_op(f, "nameless sysadmin", &a, (enum col)c,
				   OP_ROTATE, true));
	assert_int_equal(listed_cols(f, &a, NULL, NULL), (1u << NCOLS) - 1);

	/* Nobody at all: nothing. */
	a = actor(NULL, NULL, KW_ROLE_NONE);
	for (int c = 0; c < NCOLS; c++)
		assert_true(try_op(f, "nobody", &a, (enum col)c, OP_PUT,
				   false));
	for (int c = 0; c < NCOLS; c++)
		prepare_key(f, (enum col)c, OP_ROTATE);
	assert_int_equal(listed_cols(f, &a, NULL, NULL), 0);
}

/* Listing filters silently, never fails for lack of rights. */
static void test_list_filters(void **state)
{
	struct fixture *f = *state;
	kw_actor a;

	open_store(f);
	for (int c = 0; c < NCOLS; c++)
		put_ok(f, cols[c].backend, cols[c].owner, "anthropic", V0,
		       NULL);
	put_ok(f, "user_keys", "mike", "anthropic", K_USER_BOB, NULL);

	/* A member of acme sees none of acme's keys, only their own. */
	a = actor("mike", "acme", KW_ROLE_MEMBER);
	{
		const struct key_list *l = list_as(f, &a, NULL, NULL);

		assert_int_equal(l->n, 1);
		assert_string_equal(l->v[0].backend, "user_keys");
		assert_string_equal(l->v[0].owner, "mike");
	}
	assert_int_equal(list_as(f, &a, "org_keys", NULL)->n, 0);
	assert_int_equal(list_as(f, &a, "org_keys", "acme")->n, 0);
	a = actor("vera", "acme", KW_ROLE_VIEWER);
	assert_int_equal(list_as(f, &a, NULL, NULL)->n, 0);
	assert_int_equal(list_as(f, &a, NULL, "acme")->n, 0);

	/* Alice sees her user keys only. */
	a = actor("alice", NULL, KW_ROLE_NONE);
	assert_int_equal(listed_cols(f, &a, NULL, NULL), 1u << C_USER_SAME);
	assert_int_equal(listed_cols(f, &a, "user_keys", NULL),
			 1u << C_USER_SAME);
	assert_int_equal(listed_cols(f, &a, NULL, "bob"), 0);

	/* An admin of acme: that org's keys only. */
	a = actor("dave", "acme", KW_ROLE_ADMIN);
	assert_int_equal(listed_cols(f, &a, NULL, NULL), 1u << C_ORG_SAME);
	assert_int_equal(listed_cols(f, &a, "org_keys", NULL),
			 1u << C_ORG_SAME);
	assert_int_equal(listed_cols(f, &a, "org_keys", "globex"), 0);
	assert_int_equal(listed_cols(f, &a, "system_keys", NULL), 0);

	/* The system administrator: everything, narrowed by the filters. */
	assert_int_equal(list_as(f, tu_sysadmin(), NULL, NULL)->n, NCOLS + 1);
	assert_int_equal(listed_cols(f, tu_sysadmin(), "org_keys", NULL),
			 (1u << C_ORG_SAME) | (1u << C_ORG_OTHER));
	assert_int_equal(listed_cols(f, tu_sysadmin(), NULL, "acme"),
			 1u << C_ORG_SAME);
	assert_int_equal(listed_cols(f, tu_sysadmin(), "system_keys", NULL),
			 1u << C_SYSTEM);
}

/* ---- provider formats ---- */

/* A key of exactly len bytes: prefix, TU_MARK, then x's and digits. */
static char *make_key(const char *prefix, size_t len)
{
	char *s = tu_keep(malloc(len + 1));
	size_t n = 0;

	for (const char *p = prefix; *p != '\0' && n < len; p++)
		s[n++] = *p;
	for (const char *p = TU_MARK; *p != '\0' && n < len; p++)
		s[n++] = *p;
	while (n < len) {
		s[n] = (char)('0' + n % 10);
		n++;
	}
	s[len] = '\0';
	return s;
}

#define NAME_REFUSED "key name: at most 128 characters on one line"

/* A key name of len bytes. */
static char *make_name(size_t len)
{
	char *s = tu_keep(malloc(len + 1));

	memset(s, 'n', len);
	s[len] = '\0';
	return s;
}

struct value_case {
	const char *provider;
	const char *value;
	size_t len;          /* 0: strlen(value) */
	kw_status status;
	const char *message; /* when status is not KW_OK */
};

/* Store each value as a system key; what is accepted must come back
 * whole. */
static void run_value_cases(struct fixture *f, const struct value_case *v,
			    size_t n)
{
	for (size_t i = 0; i < n; i++) {
		kw_key_ref r = ref("system_keys", NULL, v[i].provider);
		size_t len = v[i].len ? v[i].len : strlen(v[i].value);
		kw_status st;

		st = kw_key_put(f->ctx, tu_sysadmin(), &r, v[i].value, len,
				NULL, KW_PUT_CREATE);
		if (v[i].status != KW_OK) {
			if (st != v[i].status)
				fail_msg("case %zu (%s, %zu bytes): got %s: %s",
					 i, v[i].provider, len,
					 kw_status_str(st), kw_last_error());
			expect_fail(st, v[i].status, v[i].message);
			assert_null(find_key(f, "system_keys", NULL,
					     v[i].provider));
			continue;
		}
		if (st != KW_OK)
			fail_msg("case %zu (%s, %zu bytes): refused: %s", i,
				 v[i].provider, len, kw_last_error());
		expect_resolve(f, "only_system", v[i].provider, NULL, NULL,
			       v[i].value, "system_keys");
		expect_ok(delete_as(f, tu_sysadmin(), "system_keys", NULL,
				    v[i].provider));
	}
}

static void test_builtin_providers(void **state)
{
	struct fixture *f = *state;
	const struct value_case cases[] = {
		{ "anthropic", "sk-ant-api03-SECRET-0123456789", 0, KW_OK,
		  NULL },
		{ "anthropic", "sk-proj-SECRET-0123456789abc", 0, KW_ERR_INVAL,
		  "anthropic keys start with \"sk-ant-\"" },
		{ "anthropic", "SK-ANT-SECRET-0123456789abc", 0, KW_ERR_INVAL,
		  "anthropic keys start with \"sk-ant-\"" },
		{ "anthropic", "xsk-ant-SECRET-0123456789ab", 0, KW_ERR_INVAL,
		  "anthropic keys start with \"sk-ant-\"" },
		{ "anthropic", make_key("sk-ant-", 19), 0, KW_ERR_INVAL,
		  "anthropic keys are 20 to 4096 characters long, not 19" },
		{ "anthropic", make_key("sk-ant-", 20), 0, KW_OK, NULL },
		{ "anthropic", make_key("sk-ant-", 4096), 0, KW_OK, NULL },
		{ "anthropic", make_key("sk-ant-", 4097), 0, KW_ERR_INVAL,
		  "anthropic keys are 20 to 4096 characters long, not 4097" },
		{ "anthropic", make_key("sk-ant-", 70000), 0, KW_ERR_INVAL,
		  "anthropic keys are 20 to 4096 characters long, not 70000" },
		{ "openai", "sk-proj-SECRET-0123456789abc", 0, KW_OK, NULL },
		{ "openai", "sk-SECRET-0123456789abcdefg", 0, KW_OK, NULL },
		{ "openai", "pk-SECRET-0123456789abcdefg", 0, KW_ERR_INVAL,
		  "openai keys start with \"sk-\"" },
		{ "openai", make_key("sk-", 19), 0, KW_ERR_INVAL,
		  "openai keys are 20 to 4096 characters long, not 19" },
		{ "google", make_key("AIza", 39), 0, KW_OK, NULL },
		{ "google", make_key("AIza", 30), 0, KW_OK, NULL },
		{ "google", make_key("AIza", 29), 0, KW_ERR_INVAL,
		  "google keys are 30 to 4096 characters long, not 29" },
		{ "google", make_key("AIzb", 39), 0, KW_ERR_INVAL,
		  "google keys start with \"AIza\"" },
		{ "google", make_key("sk-ant-", 39), 0, KW_ERR_INVAL,
		  "google keys start with \"AIza\"" },
		/* Blanks and control characters, wherever they are. */
		{ "anthropic", "sk-ant-SECRET 0123456789abc", 0, KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 14)" },
		{ "anthropic", " sk-ant-SECRET-0123456789ab", 0, KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 1)" },
		{ "anthropic", "sk-ant-SECRET-0123456789ab ", 0, KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 27)" },
		{ "anthropic", "sk-ant-SECRET\t0123456789abc", 0, KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 14)" },
		{ "anthropic", "sk-ant-SECRET-0123456789ab\n", 0, KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 27)" },
		{ "anthropic", "sk-ant-SECRET-01\r23456789ab", 0, KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 17)" },
		{ "anthropic", "sk-ant-SECRET-\x7f" "0123456789ab", 0,
		  KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 15)" },
		{ "anthropic", "sk-ant-SECRET-\xc3\xa9" "0123456789a", 0,
		  KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 15)" },
		{ "anthropic", "sk-ant-SECRET-\0" "0123456789ab", 27,
		  KW_ERR_INVAL,
		  "the anthropic key holds a blank or a character that is not "
		  "printable ASCII (at byte 15)" },
		/* Any other provider: printable, 8 to 4096 bytes. */
		{ "mistral", "SECRET12", 0, KW_OK, NULL },
		{ "mistral", "SECRET1", 0, KW_ERR_INVAL,
		  "mistral keys are 8 to 4096 characters long, not 7" },
		{ "mistral", "~!SECRET@#$%^&*()_+{}|:<>?`=[];',./\"\\", 0,
		  KW_OK, NULL },
		{ "mistral", make_key("", 4096), 0, KW_OK, NULL },
		{ "mistral", make_key("", 4097), 0, KW_ERR_INVAL,
		  "mistral keys are 8 to 4096 characters long, not 4097" },
		{ "mistral", "SECRET 12", 0, KW_ERR_INVAL,
		  "the mistral key holds a blank or a character that is not "
		  "printable ASCII (at byte 7)" },
		{ "assemblyai", "0123456789abcdefSECRET", 0, KW_OK, NULL },
		{ "rev.ai", "SECRET-rev-0001", 0, KW_OK, NULL },
	};
	kw_key_ref r = ref("system_keys", NULL, "anthropic");

	open_store(f);
	run_value_cases(f, cases, sizeof(cases) / sizeof(cases[0]));

	/* Nothing, and names no key may carry. */
	expect_fail(kw_key_put(f->ctx, tu_sysadmin(), &r, "", 0, NULL,
			       KW_PUT_CREATE),
		    KW_ERR_INVAL, "empty key");
	expect_fail(kw_key_put(f->ctx, tu_sysadmin(), &r, NULL, 0, NULL,
			       KW_PUT_CREATE),
		    KW_ERR_INVAL, "empty key");
	expect_fail(put_as(f, tu_sysadmin(), "system_keys", NULL, "anthropic",
			   K_SYSTEM, make_name(129), KW_PUT_CREATE),
		    KW_ERR_INVAL, NAME_REFUSED);
	expect_fail(put_as(f, tu_sysadmin(), "system_keys", NULL, "anthropic",
			   K_SYSTEM, "two\nlines", KW_PUT_CREATE),
		    KW_ERR_INVAL,
		    "invalid key name: it holds a control character (at byte "
		    "4)");
	expect_fail(put_as(f, tu_sysadmin(), "system_keys", NULL, "anthropic",
			   K_SYSTEM, "one\rline", KW_PUT_CREATE),
		    KW_ERR_INVAL,
		    "invalid key name: it holds a control character (at byte "
		    "4)");
	assert_null(find_key(f, "system_keys", NULL, "anthropic"));
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM, make_name(128));
	assert_string_equal(find_key(f, "system_keys", NULL, "anthropic")->name,
			    make_name(128));
	/* A bad value on rotation leaves the old one. */
	expect_fail(put_as(f, tu_sysadmin(), "system_keys", NULL, "anthropic",
			   "sk-proj-SECRET-0123456789abc", NULL, KW_PUT_ROTATE),
		    KW_ERR_INVAL, "anthropic keys start with \"sk-ant-\"");
	expect_resolve(f, "only_system", "anthropic", NULL, NULL, K_SYSTEM,
		       "system_keys");
}

#define PROVIDERS_CONF \
	"keyway: {\n" \
	"  master_key = { source = \"env\"; };\n" \
	"  providers: {\n" \
	"    mistral: { prefix = \"ms-\"; min_length = 10; " \
	"max_length = 40; };\n" \
	"    anthropic: { prefix = \"sk-ant-api03-\"; min_length = 30; " \
	"max_length = 200; };\n" \
	"    tiny: { prefix = \"tk-\"; min_length = 1; max_length = 8; };\n" \
	"    exact: { prefix = \"ex-\"; min_length = 12; " \
	"max_length = 12; };\n" \
	"    open: { };\n" \
	"    google: { prefix = \"AIzb\"; };\n" \
	"    openai: { max_length = 30; };\n" \
	"  };\n" \
	"};\n" \
	STORE_BACKENDS

static void test_providers_table(void **state)
{
	struct fixture *f = *state;
	const struct value_case cases[] = {
		/* Added. */
		{ "mistral", "ms-SECRET-01", 0, KW_OK, NULL },
		{ "mistral", "mx-SECRET-01", 0, KW_ERR_INVAL,
		  "mistral keys start with \"ms-\"" },
		{ "mistral", "ms-SECRET", 0, KW_ERR_INVAL,
		  "mistral keys are 10 to 40 characters long, not 9" },
		{ "mistral", make_key("ms-", 40), 0, KW_OK, NULL },
		{ "mistral", make_key("ms-", 41), 0, KW_ERR_INVAL,
		  "mistral keys are 10 to 40 characters long, not 41" },
		/* One length: said once. */
		{ "exact", "ex-SECRET-01", 0, KW_OK, NULL },
		{ "exact", "ex-SECRET-1", 0, KW_ERR_INVAL,
		  "exact keys are 12 characters long, not 11" },
		{ "mistral", "ms-SECRET 01", 0, KW_ERR_INVAL,
		  "the mistral key holds a blank or a character that is not "
		  "printable ASCII (at byte 10)" },
		/* Overridden: the table's prefix and lengths, not the
		 * built-in ones. */
		{ "anthropic", "sk-ant-SECRET-0123456789abcdef", 0,
		  KW_ERR_INVAL, "anthropic keys start with \"sk-ant-api03-\"" },
		{ "anthropic", make_key("sk-ant-api03-", 29), 0, KW_ERR_INVAL,
		  "anthropic keys are 30 to 200 characters long, not 29" },
		{ "anthropic", make_key("sk-ant-api03-", 30), 0, KW_OK, NULL },
		{ "anthropic", make_key("sk-ant-api03-", 201), 0, KW_ERR_INVAL,
		  "anthropic keys are 30 to 200 characters long, not 201" },
		/* Amended: what an entry does not set stays built in. */
		{ "openai", "sk-SECRET-0123456789abcdefg", 0, KW_OK, NULL },
		{ "openai", "pk-SECRET-0123456789abcdefg", 0, KW_ERR_INVAL,
		  "openai keys start with \"sk-\"" },
		{ "openai", make_key("sk-", 19), 0, KW_ERR_INVAL,
		  "openai keys are 20 to 30 characters long, not 19" },
		{ "openai", make_key("sk-", 31), 0, KW_ERR_INVAL,
		  "openai keys are 20 to 30 characters long, not 31" },
		{ "google", make_key("AIzb", 29), 0, KW_ERR_INVAL,
		  "google keys are 30 to 4096 characters long, not 29" },
		{ "google", make_key("AIzb", 30), 0, KW_OK, NULL },
		{ "google", make_key("AIza", 39), 0, KW_ERR_INVAL,
		  "google keys start with \"AIzb\"" },
		/* An entry with nothing in it: any printable 8 to 4096. */
		{ "open", "SECRET12", 0, KW_OK, NULL },
		{ "open", "SECRET1", 0, KW_ERR_INVAL,
		  "open keys are 8 to 4096 characters long, not 7" },
		{ "tiny", "tk-SECRT", 0, KW_OK, NULL },
		{ "tiny", "tk-SECRET", 0, KW_ERR_INVAL,
		  "tiny keys are 1 to 8 characters long, not 9" },
	};
	char *two;
	kw_key_ref r = ref("system_keys", NULL, "tiny");

	assert_int_equal(open_text(f, PROVIDERS_CONF), KW_OK);
	run_value_cases(f, cases, sizeof(cases) / sizeof(cases[0]));

	/*
	 * A value shorter than the prefix, in a buffer of exactly its own
	 * length: refused for its prefix, without reading past the end.
	 */
	two = tu_keep(malloc(2));
	memcpy(two, "tk", 2);
	expect_fail(kw_key_put(f->ctx, tu_sysadmin(), &r, two, 2, NULL,
			       KW_PUT_CREATE),
		    KW_ERR_INVAL, "tiny keys start with \"tk-\"");
	memcpy(two, "t-", 2);
	expect_fail(kw_key_put(f->ctx, tu_sysadmin(), &r, two, 1, NULL,
			       KW_PUT_CREATE),
		    KW_ERR_INVAL, "tiny keys start with \"tk-\"");
	assert_null(find_key(f, "system_keys", NULL, "tiny"));
}

/* A providers table with one mistake, and the line that names it. */
struct table_error {
	const char *name;
	const char *entry; /* line 4 of the configuration */
	int line;
	const char *message;
};

static const struct table_error table_errors[] = {
	{ "unknown setting",
	  "    mistral: {\n"
	  "      prefix = \"ms-\";\n"
	  "      suffix = \"-x\";\n"
	  "    };\n",
	  6,
	  "keyway.providers.mistral: unknown setting \"suffix\" (expected "
	  "prefix, min_length or max_length)" },
	{ "prefix not a string",
	  "    mistral: {\n"
	  "      prefix = 5;\n"
	  "    };\n",
	  5, "keyway.providers.mistral.prefix must be a string" },
	{ "min_length not an integer",
	  "    mistral: {\n"
	  "      prefix = \"ms-\";\n"
	  "      min_length = \"10\";\n"
	  "    };\n",
	  6, "keyway.providers.mistral.min_length must be an integer" },
	{ "max_length a number",
	  "    mistral: {\n"
	  "      max_length = 40.5;\n"
	  "    };\n",
	  5, "keyway.providers.mistral.max_length must be an integer" },
	{ "min above max",
	  "    mistral: {\n"
	  "      min_length = 41;\n"
	  "      max_length = 40;\n"
	  "    };\n",
	  4, "keyway.providers.mistral: min_length is above max_length" },
	{ "min above built-in max",
	  "    mistral: {\n"
	  "      min_length = 5000;\n"
	  "    };\n",
	  4, "keyway.providers.mistral: min_length is above max_length" },
	{ "min_length zero",
	  "    mistral: {\n"
	  "      min_length = 0;\n"
	  "    };\n",
	  5,
	  "keyway.providers.mistral.min_length must be between 1 and 65536" },
	{ "max_length huge",
	  "    mistral: {\n"
	  "      max_length = 65537;\n"
	  "    };\n",
	  5,
	  "keyway.providers.mistral.max_length must be between 1 and 65536" },
	{ "entry not a group",
	  "    mistral = \"ms-\";\n",
	  4, "keyway.providers.mistral must be a group { prefix = ...; }" },
	{ "invalid name",
	  "    Mistral: { prefix = \"ms-\"; };\n",
	  4, "keyway.providers: invalid provider name \"Mistral\" (lower-case "
	     "letters, digits, '-', '_' and '.')" },
};

static void test_providers_table_errors(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(table_errors) / sizeof(table_errors[0]);
	     i++) {
		const struct table_error *e = &table_errors[i];
		char *text = tu_fmt("keyway: {\n"                       /* 1 */
				    "  master_key = { source = \"env\"; };\n"
				    "  providers: {\n"                  /* 3 */
				    "%s"                                /* 4 */
				    "  };\n"
				    "};\n" STORE_BACKENDS,
				    e->entry);
		kw_status st = open_text(f, text);

		if (st != KW_ERR_CONFIG)
			fail_msg("%s: got %s: %s", e->name, kw_status_str(st),
				 kw_last_error());
		assert_null(f->ctx);
		assert_string_equal(kw_last_error(),
				    tu_fmt("%s:%d: %s", f->conf, e->line,
					   e->message));
	}

	/* Not a group at all. */
	assert_int_equal(open_text(f, "keyway: {\n"
				      "  master_key = { source = \"env\"; };\n"
				      "  providers = \"anthropic\";\n"
				      "};\n" STORE_BACKENDS),
			 KW_ERR_CONFIG);
	assert_string_equal(kw_last_error(),
			    tu_fmt("%s:3: keyway.providers must be a group { "
				   "name: { prefix = ...; }; }",
				   f->conf));
}

/* ---- references ---- */

struct ref_case {
	const char *name;
	const char *backend;
	kw_scope scope;
	const char *owner;
	const char *provider;
	kw_status status;
	const char *message;
	bool at_conf; /* the message starts with the configuration's path */
};

static const struct ref_case ref_cases[] = {
	{ "unknown backend", "nope", KW_SCOPE_NONE, "acme", "anthropic",
	  KW_ERR_INVAL, "no backend \"nope\"", true },
	{ "no backend", NULL, KW_SCOPE_NONE, "acme", "anthropic",
	  KW_ERR_INVAL, "no context or no backend", false },
	{ "env stores nothing", "server_env", KW_SCOPE_NONE, NULL,
	  "anthropic", KW_ERR_UNSUPPORTED,
	  "backend \"server_env\" (module \"env\") does not store keys",
	  false },
	{ "env with a scope", "server_env", KW_SCOPE_SYSTEM, NULL,
	  "anthropic", KW_ERR_UNSUPPORTED,
	  "backend \"server_env\" (module \"env\") does not store keys",
	  false },
	{ "user scope on org_keys", "org_keys", KW_SCOPE_USER, "acme",
	  "anthropic", KW_ERR_INVAL,
	  "backend \"org_keys\" holds org keys, not user keys", false },
	{ "org scope on system_keys", "system_keys", KW_SCOPE_ORG, NULL,
	  "anthropic", KW_ERR_INVAL,
	  "backend \"system_keys\" holds system keys, not org keys", false },
	{ "system scope on user_keys", "user_keys", KW_SCOPE_SYSTEM, "alice",
	  "anthropic", KW_ERR_INVAL,
	  "backend \"user_keys\" holds user keys, not system keys", false },
	{ "org key without owner", "org_keys", KW_SCOPE_NONE, NULL,
	  "anthropic", KW_ERR_INVAL,
	  "org keys need a valid owner (the org's name)", false },
	{ "org key with empty owner", "org_keys", KW_SCOPE_ORG, "",
	  "anthropic", KW_ERR_INVAL,
	  "org keys need a valid owner (the org's name)", false },
	{ "user key without owner", "user_keys", KW_SCOPE_USER, NULL,
	  "anthropic", KW_ERR_INVAL,
	  "user keys need a valid owner (the user's name)", false },
	{ "user key with a path for owner", "user_keys", KW_SCOPE_NONE,
	  "../alice", "anthropic", KW_ERR_INVAL,
	  "user keys need a valid owner (the user's name)", false },
	{ "user key with a blank in owner", "user_keys", KW_SCOPE_NONE,
	  "alice smith", "anthropic", KW_ERR_INVAL,
	  "user keys need a valid owner (the user's name)", false },
	{ "system key with owner", "system_keys", KW_SCOPE_NONE, "root",
	  "anthropic", KW_ERR_INVAL, "system keys have no owner", false },
	{ "system key with empty owner", "system_keys", KW_SCOPE_SYSTEM, "",
	  "anthropic", KW_ERR_INVAL, "system keys have no owner", false },
	{ "provider in capitals", "org_keys", KW_SCOPE_NONE, "acme",
	  "Anthropic", KW_ERR_INVAL,
	  "invalid provider name (lower-case letters, digits, '-', '_' and "
	  "'.')", false },
	{ "no provider", "org_keys", KW_SCOPE_NONE, "acme", NULL,
	  KW_ERR_INVAL,
	  "invalid provider name (lower-case letters, digits, '-', '_' and "
	  "'.')", false },
	{ "provider with a slash", "org_keys", KW_SCOPE_NONE, "acme",
	  "anthropic/x", KW_ERR_INVAL,
	  "invalid provider name (lower-case letters, digits, '-', '_' and "
	  "'.')", false },
};

static void test_bad_references(void **state)
{
	struct fixture *f = *state;
	kw_actor a;
	kw_key_ref r;
	uint64_t count = 99;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	for (size_t i = 0; i < sizeof(ref_cases) / sizeof(ref_cases[0]); i++) {
		const struct ref_case *c = &ref_cases[i];
		const char *msg = c->at_conf ? tu_fmt("%s: %s", f->conf,
						      c->message)
					     : c->message;
		kw_status st[4];

		r = ref(c->backend, c->owner, c->provider);
		r.scope = c->scope;
		st[0] = kw_key_put(f->ctx, tu_sysadmin(), &r, K_SYSTEM,
				   strlen(K_SYSTEM), NULL, KW_PUT_CREATE);
		if (st[0] != c->status)
			fail_msg("%s: put: got %s: %s", c->name,
				 kw_status_str(st[0]), kw_last_error());
		expect_fail(st[0], c->status, msg);
		st[1] = kw_key_put(f->ctx, tu_sysadmin(), &r, K_SYSTEM,
				   strlen(K_SYSTEM), NULL, KW_PUT_ROTATE);
		expect_fail(st[1], c->status, msg);
		st[2] = kw_key_set_active(f->ctx, tu_sysadmin(), &r, 0);
		expect_fail(st[2], c->status, msg);
		st[3] = kw_key_delete(f->ctx, tu_sysadmin(), &r);
		expect_fail(st[3], c->status, msg);
	}
	/* Nothing changed. */
	assert_int_equal(list_as(f, tu_sysadmin(), NULL, NULL)->n, 1);
	expect_resolve(f, "strict", "anthropic", NULL, "acme", K_ORG_ACME,
		       "org_keys");

	/* The scope may be given when it is the backend's. */
	r = ref("user_keys", "alice", "anthropic");
	r.scope = KW_SCOPE_USER;
	expect_ok(kw_key_put(f->ctx, tu_sysadmin(), &r, K_USER_ALICE,
			     strlen(K_USER_ALICE), NULL, KW_PUT_CREATE));
	r = ref("system_keys", NULL, "anthropic");
	r.scope = KW_SCOPE_SYSTEM;
	expect_ok(kw_key_put(f->ctx, tu_sysadmin(), &r, K_SYSTEM,
			     strlen(K_SYSTEM), NULL, KW_PUT_CREATE));

	/* References and actors not made with the INIT macros. */
	r = ref("org_keys", "acme", "anthropic");
	expect_fail(kw_key_delete(f->ctx, tu_sysadmin(), NULL), KW_ERR_INVAL,
		    "no key reference, or one not initialised with "
		    "KW_KEY_REF_INIT");
	r.size = 0;
	expect_fail(kw_key_set_active(f->ctx, tu_sysadmin(), &r, 0),
		    KW_ERR_INVAL,
		    "no key reference, or one not initialised with "
		    "KW_KEY_REF_INIT");
	r = ref("org_keys", "acme", "anthropic");
	expect_fail(kw_key_delete(f->ctx, NULL, &r), KW_ERR_INVAL,
		    "no actor, or one not initialised with KW_ACTOR_INIT");
	a = actor(NULL, NULL, KW_ROLE_SYSADMIN);
	a.size = 0;
	expect_fail(kw_key_delete(f->ctx, &a, &r), KW_ERR_INVAL,
		    "no actor, or one not initialised with KW_ACTOR_INIT");
	a = actor("alice", "acme", (kw_role)99);
	expect_fail(kw_key_delete(f->ctx, &a, &r), KW_ERR_INVAL,
		    "unknown actor role 99");
	a = actor("alice smith", "acme", KW_ROLE_OWNER);
	expect_fail(kw_key_delete(f->ctx, &a, &r), KW_ERR_INVAL,
		    "invalid actor user or org name");
	a = actor("alice", "../acme", KW_ROLE_OWNER);
	expect_fail(kw_key_delete(f->ctx, &a, &r), KW_ERR_INVAL,
		    "invalid actor user or org name");
	expect_fail(kw_key_put(f->ctx, tu_sysadmin(), &r, K_ORG_ACME,
			       strlen(K_ORG_ACME), NULL, (kw_put_mode)7),
		    KW_ERR_INVAL, "unknown put mode 7");
	expect_fail(kw_key_delete(NULL, tu_sysadmin(), &r), KW_ERR_INVAL,
		    "no context or no backend");
	expect_resolve(f, "strict", "anthropic", NULL, "acme", K_ORG_ACME,
		       "org_keys");

	/* Listing. */
	expect_fail(kw_key_list(f->ctx, tu_sysadmin(), "server_env", NULL,
				collect,
				tu_keep(calloc(1, sizeof(struct key_list)))),
		    KW_ERR_UNSUPPORTED,
		    "backend \"server_env\" (module \"env\") does not list "
		    "keys");
	expect_fail(kw_key_list(f->ctx, tu_sysadmin(), "nope", NULL, collect,
				tu_keep(calloc(1, sizeof(struct key_list)))),
		    KW_ERR_INVAL, tu_fmt("%s: no backend \"nope\"", f->conf));
	expect_fail(kw_key_list(f->ctx, tu_sysadmin(), NULL, "../acme", collect,
				tu_keep(calloc(1, sizeof(struct key_list)))),
		    KW_ERR_INVAL, "invalid owner name");
	expect_fail(kw_key_list(f->ctx, tu_sysadmin(), NULL, NULL, NULL, NULL),
		    KW_ERR_INVAL, "no context or no callback");
	expect_fail(kw_key_list(f->ctx, NULL, NULL, NULL, collect, NULL),
		    KW_ERR_INVAL,
		    "no actor, or one not initialised with KW_ACTOR_INIT");

	/* Re-sealing. */
	expect_fail(kw_rekey(f->ctx, tu_sysadmin(), "server_env", &count),
		    KW_ERR_UNSUPPORTED,
		    "backend \"server_env\" (module \"env\") does not store "
		    "keys");
	assert_int_equal(count, 0);
	expect_fail(kw_rekey(f->ctx, tu_sysadmin(), "nope", NULL), KW_ERR_INVAL,
		    tu_fmt("%s: no backend \"nope\"", f->conf));
	for (int role = KW_ROLE_NONE; role < KW_ROLE_SYSADMIN; role++) {
		a = actor("alice", "acme", (kw_role)role);
		count = 99;
		expect_fail(kw_rekey(f->ctx, &a, "org_keys", &count),
			    KW_ERR_PERM,
			    "only a system administrator may re-seal a store");
		assert_int_equal(count, 0);
	}
}

/* A stopping callback stops the listing, and its status comes back. */
static kw_status stop_after_one(void *arg, const kw_key_info *info)
{
	unsigned *n = arg;

	(void)info;
	(*n)++;
	return KW_ERR_EXISTS;
}

static void test_list_callback_stops(void **state)
{
	struct fixture *f = *state;
	unsigned n = 0;

	open_store(f);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "user_keys", "bob", "anthropic", K_USER_BOB, NULL);
	assert_int_equal(kw_key_list(f->ctx, tu_sysadmin(), "user_keys", NULL,
				     stop_after_one, &n),
			 KW_ERR_EXISTS);
	assert_int_equal(n, 1);
}

/* ---- what a listing shows ---- */

static bool is_hex16(const char *s)
{
	if (strlen(s) != 16)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* No field holds a piece of the key: any 6 bytes of it in a row. */
static void assert_no_piece(const char *field, const char *value)
{
	size_t n = strlen(value);
	char piece[7];

	for (size_t i = 0; i + 6 <= n; i++) {
		memcpy(piece, value + i, 6);
		piece[6] = '\0';
		if (strstr(field, piece) != NULL)
			fail_msg("\"%s\" holds a piece of a key", field);
	}
}

static void test_list_contents(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *backend, *owner, *provider, *value, *name;
		const char *masked;
	} keys[] = {
		{ "org_keys", "acme", "anthropic",
		  "sk-ant-SECRET-q7Zp2Lx9Vt4Nw8Rk0001",
		  "Production Claude Key", "sk-a****0001" },
		{ "org_keys", "globex", "openai",
		  "sk-proj-SECRET-0123456789xyz",
		  NULL, "sk-p****9xyz" },
		{ "user_keys", "alice", "anthropic",
		  "sk-ant-SECRET-Hj3Kq8Wm2Xc5Bv9Z0003", "My Anthropic Key",
		  "sk-a****0003" },
		{ "user_keys", "alice", "mistral", "SECRET-m0015", NULL,
		  "****0015" },
		{ "user_keys", "alice", "google",
		  "AIzaSyA-SECRET-0123456789QWERTYghij", "g", "AIza****ghij" },
		{ "system_keys", NULL, "anthropic",
		  "sk-ant-SECRET-Yq4Tr7Ue1Io6Pa3S0005", "shared",
		  "sk-a****0005" },
	};
	const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
	const struct key_list *l;
	int64_t t0, t1;

	open_store(f);
	t0 = (int64_t)time(NULL);
	for (size_t i = 0; i < nkeys; i++)
		put_ok(f, keys[i].backend, keys[i].owner, keys[i].provider,
		       keys[i].value, keys[i].name);
	expect_ok(set_active_as(f, tu_sysadmin(), "user_keys", "alice",
				"mistral", 0));
	t1 = (int64_t)time(NULL);

	l = list_as(f, tu_sysadmin(), NULL, NULL);
	assert_int_equal(l->n, nkeys);
	for (size_t i = 0; i < nkeys; i++) {
		const struct key_copy *k = NULL;

		for (size_t j = 0; j < l->n && k == NULL; j++)
			if (strcmp(l->v[j].backend, keys[i].backend) == 0 &&
			    strcmp(l->v[j].provider, keys[i].provider) == 0 &&
			    (keys[i].owner == NULL
				     ? !l->v[j].has_owner
				     : strcmp(l->v[j].owner, keys[i].owner) ==
					       0))
				k = &l->v[j];
		if (k == NULL)
			fail_msg("key %zu is not listed", i);
		assert_int_equal(k->scope,
				 keys[i].owner == NULL ? KW_SCOPE_SYSTEM
				 : strcmp(keys[i].backend, "org_keys") == 0
					 ? KW_SCOPE_ORG
					 : KW_SCOPE_USER);
		assert_string_equal(k->name, keys[i].name ? keys[i].name : "");
		assert_string_equal(k->masked, keys[i].masked);
		assert_int_equal(k->active,
				 strcmp(keys[i].provider, "mistral") != 0);
		assert_true(k->created >= t0 && k->created <= t1);
		assert_int_equal(k->rotated, k->created);
		assert_int_equal(k->usage_count, 0);
		assert_int_equal(k->last_used, 0);
		if (!is_hex16(k->key_id))
			fail_msg("key id \"%s\" is not 16 hex digits",
				 k->key_id);
		assert_string_equal(k->key_id, l->v[0].key_id);
		assert_no_piece(k->backend, keys[i].value);
		assert_no_piece(k->owner, keys[i].value);
		assert_no_piece(k->provider, keys[i].value);
		assert_no_piece(k->name, keys[i].value);
		assert_no_piece(k->key_id, keys[i].value);
		if (strlen(keys[i].value) >= 16)
			assert_no_piece(k->masked, keys[i].value);
	}
	/* Sorted by owner within a backend, backends in config order. */
	assert_string_equal(l->v[0].backend, "org_keys");
	assert_string_equal(l->v[0].owner, "acme");
	assert_string_equal(l->v[1].owner, "globex");
	assert_string_equal(l->v[2].backend, "user_keys");
	assert_string_equal(l->v[5].backend, "system_keys");
	assert_false(l->v[5].has_owner);

	/* The key id names the master key: another gives another id. */
	setenv("KEYWAY_MASTER_KEY", MASTER_B, 1);
	{
		char *dir = tu_tmpdir();
		char *conf = tu_write(dir, "keyway.conf", 0600, "%s",
				      STORE_CONF);
		kw_ctx *other = NULL;
		struct key_list *l2 = tu_keep(calloc(1, sizeof(*l2)));
		kw_key_ref r = ref("system_keys", NULL, "anthropic");
		kw_status st;

		st = kw_open(&other, conf);
		if (st == KW_OK)
			st = kw_key_put(other, tu_sysadmin(), &r, K_SYSTEM,
					strlen(K_SYSTEM), NULL, KW_PUT_CREATE);
		if (st == KW_OK)
			st = kw_key_list(other, tu_sysadmin(), NULL, NULL,
					 collect, l2);
		kw_close(other);
		free(conf);
		tu_rmrf(dir);
		expect_ok(st);
		assert_int_equal(l2->n, 1);
		assert_true(is_hex16(l2->v[0].key_id));
		assert_string_not_equal(l2->v[0].key_id, l->v[0].key_id);
	}
}

/* kw_mask() alone: the first and last four of 24 bytes or more, the last
 * four of 12 or more. */
static void test_mask(void **state)
{
	char buf[KW_MASK_SIZE];

	(void)state;
	assert_string_equal(kw_mask("sk-ant-api03-abc123-xyz9", 24, buf,
				    sizeof(buf)),
			    "sk-a****xyz9");
	assert_string_equal(kw_mask("sk-ant-api03-abc123xyz9", 23, buf,
				    sizeof(buf)),
			    "****xyz9");
	assert_string_equal(kw_mask("0123456789abcdef", 16, buf, sizeof(buf)),
			    "****cdef");
	assert_string_equal(kw_mask("0123456789ab", 12, buf, sizeof(buf)),
			    "****89ab");
	assert_string_equal(kw_mask("0123456789a", 11, buf, sizeof(buf)),
			    "****");
	assert_string_equal(kw_mask("", 0, buf, sizeof(buf)), "****");
	assert_string_equal(kw_mask("0123456789abcdef", 16, buf, 5), "****");
}

/* ---- sealed values in the file ---- */

static sqlite3 *open_db(const char *path)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK)
		fail_msg("cannot open %s: %s", path, sqlite3_errmsg(db));
	sqlite3_busy_timeout(db, 5000);
	return db;
}

/* The sealed blob of one row, malloc'd and kept. */
static unsigned char *sealed_blob(sqlite3 *db, const char *scope,
				  const char *owner, const char *provider,
				  int *len)
{
	sqlite3_stmt *s = NULL;
	unsigned char *copy;

	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT sealed FROM keys WHERE "
					    "scope = ?1 AND owner = ?2 AND "
					    "provider = ?3",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, owner, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, provider, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	*len = sqlite3_column_bytes(s, 0);
	copy = tu_keep(malloc((size_t)*len));
	memcpy(copy, sqlite3_column_blob(s, 0), (size_t)*len);
	sqlite3_finalize(s);
	return copy;
}

/* Does any of the store's files hold these bytes? */
static bool store_holds(struct fixture *f, const void *bytes, size_t n)
{
	static const char *const suffix[] = { "", "-wal", "-shm",
					      "-journal" };

	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		size_t len;
		char *data = tu_slurp(tu_fmt("%s%s", f->db, suffix[i]), &len);

		if (data != NULL && memmem(data, len, bytes, n) != NULL)
			return true;
	}
	return false;
}

static void test_no_plaintext_in_store(void **state)
{
	struct fixture *f = *state;
	static const char *const values[] = { K_ORG_ACME, K_USER_ALICE,
					      K_SYSTEM };

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM, NULL);
	expect_ok(put_as(f, tu_sysadmin(), "org_keys", "acme", "anthropic",
			 K_ORG_GLOBEX, NULL, KW_PUT_ROTATE));
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_GLOBEX,
		       "org_keys");
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		assert_false(store_holds(f, values[i], strlen(values[i])));
	assert_false(store_holds(f, K_ORG_GLOBEX, strlen(K_ORG_GLOBEX)));
	assert_false(store_holds(f, TU_MARK, strlen(TU_MARK)));
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_false(store_holds(f, TU_MARK, strlen(TU_MARK)));
}

/* A deleted key's sealed bytes leave the file, WAL included. */
static void test_delete_erases(void **state)
{
	struct fixture *f = *state;
	unsigned char *acme, *alice;
	sqlite3 *db;
	int acme_len, alice_len;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "org_keys", "globex", "anthropic", K_ORG_GLOBEX, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	db = open_db(f->db);
	acme = sealed_blob(db, "org", "acme", "anthropic", &acme_len);
	alice = sealed_blob(db, "user", "alice", "anthropic", &alice_len);
	sqlite3_close(db);
	assert_true(acme_len > 37);
	assert_true(store_holds(f, acme, (size_t)acme_len));

	expect_ok(delete_as(f, tu_sysadmin(), "org_keys", "acme", "anthropic"));
	assert_false(store_holds(f, acme, (size_t)acme_len));
	assert_true(store_holds(f, alice, (size_t)alice_len));
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_ORG_GLOBEX,
		       "org_keys");
	expect_resolve(f, NULL, "anthropic", "alice", NULL, K_USER_ALICE,
		       "user_keys");
}

/* A sealed value copied onto another row does not open there. */
static void test_sealed_bound_to_row(void **state)
{
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	unsigned char *blob;
	sqlite3_stmt *st = NULL;
	sqlite3 *db;
	int len;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "org_keys", "globex", "anthropic", K_ORG_GLOBEX, NULL);
	put_ok(f, "user_keys", "acme", "anthropic", K_USER_ALICE, NULL);
	db = open_db(f->db);
	blob = sealed_blob(db, "org", "acme", "anthropic", &len);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "UPDATE keys SET sealed = ?1 "
					    "WHERE owner IN ('globex', 'acme') "
					    "AND NOT (scope = 'org' AND "
					    "owner = 'acme')",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, blob, len, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	assert_int_equal(sqlite3_changes(db), 2);
	sqlite3_finalize(st);
	sqlite3_close(db);

	expect_resolve(f, "only_org", "anthropic", NULL, "acme", K_ORG_ACME,
		       "org_keys");
	req.chain = "only_org";
	req.provider = "anthropic";
	req.org = "globex";
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_ERR_CRYPTO);
	assert_null(s);
	assert_non_null(strstr(kw_last_error(),
			       "chain \"only_org\", provider \"anthropic\": "
			       "org_keys answered decryption failed: the org "
			       "key of \"globex\" for anthropic: "));
	tu_assert_no_secret(kw_last_error());
	req.chain = "only_user";
	req.user = "acme";
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_ERR_CRYPTO);
	assert_non_null(strstr(kw_last_error(),
			       "user_keys answered decryption failed: the "
			       "user key of \"acme\" for anthropic: "));
	tu_assert_no_secret(kw_last_error());
}

/* ---- re-sealing ---- */

#define REKEY_CONF \
	"keyway: {\n" \
	"  master_key = { source = \"env\"; var = \"KWTEST_MASTER_B\"; };\n" \
	"  old_master_keys = ( { source = \"env\"; } );\n" \
	"};\n" \
	STORE_BACKENDS

#define NEW_ONLY_CONF \
	"keyway: {\n" \
	"  master_key = { source = \"env\"; var = \"KWTEST_MASTER_B\"; };\n" \
	"};\n" \
	STORE_BACKENDS

static void test_rekey(void **state)
{
	struct fixture *f = *state;
	const struct key_copy *k;
	char old_id[64], new_id[64];
	uint64_t count = 99;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "user_keys", "bob", "anthropic", K_USER_BOB, NULL);
	k = find_key(f, "org_keys", "acme", "anthropic");
	assert_non_null(k);
	snprintf(old_id, sizeof(old_id), "%s", k->key_id);

	/* The new master key alone cannot open the store yet. */
	setenv("KWTEST_MASTER_B", MASTER_B, 1);
	assert_int_equal(open_text(f, NEW_ONLY_CONF), KW_ERR_CRYPTO);
	assert_string_equal(
		kw_last_error(),
		tu_fmt("%s:5: backend \"org_keys\": %s holds keys "
		       "sealed under master key %s, which neither "
		       "keyway.master_key nor keyway.old_master_keys "
		       "holds",
		       f->conf, f->db, old_id));

	/* With the old one listed, keys resolve before and after. */
	assert_int_equal(open_text(f, REKEY_CONF), KW_OK);
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_ok(kw_rekey(f->ctx, tu_sysadmin(), "org_keys", &count));
	assert_int_equal(count, 1);
	k = find_key(f, "org_keys", "acme", "anthropic");
	assert_non_null(k);
	snprintf(new_id, sizeof(new_id), "%s", k->key_id);
	assert_true(is_hex16(new_id));
	assert_string_not_equal(new_id, old_id);
	k = find_key(f, "user_keys", "bob", "anthropic");
	assert_non_null(k);
	assert_string_equal(k->key_id, old_id);
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_resolve(f, NULL, "anthropic", "bob", NULL, K_USER_BOB,
		       "user_keys");

	/* Half done: the user keys still need the old key. */
	assert_int_equal(open_text(f, NEW_ONLY_CONF), KW_ERR_CRYPTO);
	assert_int_equal(open_text(f, REKEY_CONF), KW_OK);
	expect_ok(kw_rekey(f->ctx, tu_sysadmin(), "user_keys", &count));
	assert_int_equal(count, 2);
	expect_ok(kw_rekey(f->ctx, tu_sysadmin(), "user_keys", &count));
	assert_int_equal(count, 0);
	expect_ok(kw_rekey(f->ctx, tu_sysadmin(), "system_keys", NULL));

	/* The new key alone now does. */
	unsetenv("KEYWAY_MASTER_KEY");
	assert_int_equal(open_text(f, NEW_ONLY_CONF), KW_OK);
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_resolve(f, NULL, "anthropic", "alice", NULL, K_USER_ALICE,
		       "user_keys");
	expect_resolve(f, NULL, "anthropic", "bob", "globex", K_USER_BOB,
		       "user_keys");
	k = find_key(f, "user_keys", "bob", "anthropic");
	assert_non_null(k);
	assert_string_equal(k->key_id, new_id);
}

/* ---- many processes on one store ---- */

#define NCHILDREN 4
#define PER_CHILD 25
#define PARENT_KEYS 10

/* The program's own path, for children that must start afresh. */
static const char *self_exe;

static void child_key(char *buf, size_t size, int child, int i)
{
	snprintf(buf, size, "sk-ant-SECRET-child%d-key%02d-%08d", child, i,
		 child * 1000 + i);
}

/*
 * In a child: no cmocka, only an exit status and lines on stderr.  Put
 * nkeys user keys, then read every one back.
 */
static int child_work(const char *conf, int child, int start_fd, int nkeys)
{
	kw_ctx *ctx = NULL;
	char owner[64], value[128], got[256], from[64];
	int failures = 0;
	kw_status st;
	char go;

	/* Wait for the parent's word, so that all start at once. */
	if (read(start_fd, &go, 1) < 0)
		return 90;
	close(start_fd);
	st = kw_open(&ctx, conf);
	if (st != KW_OK) {
		fprintf(stderr, "# child %d: kw_open: %s\n", child,
			kw_last_error());
		return 91;
	}
	for (int i = 0; i < nkeys; i++) {
		kw_key_ref r = KW_KEY_REF_INIT;

		snprintf(owner, sizeof(owner), "c%du%02d", child, i);
		child_key(value, sizeof(value), child, i);
		r.backend = "user_keys";
		r.owner = owner;
		r.provider = "anthropic";
		st = kw_key_put(ctx, tu_sysadmin(), &r, value, strlen(value),
				NULL, KW_PUT_CREATE);
		if (st != KW_OK) {
			fprintf(stderr, "# child %d: put %d: %s: %s\n", child,
				i, kw_status_str(st), kw_last_error());
			failures++;
		}
	}
	for (int i = 0; i < nkeys; i++) {
		snprintf(owner, sizeof(owner), "c%du%02d", child, i);
		child_key(value, sizeof(value), child, i);
		st = tu_resolve(ctx, "only_user", "anthropic", owner, NULL,
				got, sizeof(got), from, sizeof(from));
		if (st != KW_OK || strcmp(got, value) != 0 ||
		    strcmp(from, "user_keys") != 0) {
			fprintf(stderr, "# child %d: resolve %d: %s: %s\n",
				child, i, kw_status_str(st),
				st == KW_OK ? "wrong key" : kw_last_error());
			failures++;
		}
	}
	kw_close(ctx);
	return failures > 80 ? 80 : failures;
}

/*
 * Fork n children running child_work(); they start when *go is closed.
 * The caller has no store open: SQLite connections must not cross a fork.
 */
static void fork_children(const char *conf, pid_t *pids, int n, int nkeys,
			  int *go)
{
	int fds[2];

	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	for (int c = 0; c < n; c++) {
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			close(fds[1]);
			tu_exit(child_work(conf, c, fds[0], nkeys));
		}
	}
	close(fds[0]);
	*go = fds[1];
}

/* Wait for every child (none may outlive the test's directory), then
 * say which failed. */
static void reap_children(pid_t *pids, int n)
{
	unsigned failed = 0;

	for (int c = 0; c < n; c++) {
		int status = 0;

		if (pids[c] < 0)
			continue;
		if (waitpid(pids[c], &status, 0) != pids[c]) {
			print_message("# child %d: waitpid: %s\n", c,
				      strerror(errno));
			failed++;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			print_message("# child %d: %s %d\n", c,
				      WIFEXITED(status) ? "exit status"
							: "signal",
				      WIFEXITED(status) ? WEXITSTATUS(status)
							: WTERMSIG(status));
			failed++;
		}
		pids[c] = -1;
	}
	if (failed > 0)
		fail_msg("%u of %d children failed", failed, n);
}

static void expect_children_keys(struct fixture *f, int n, int nkeys)
{
	char owner[64], value[128];

	for (int c = 0; c < n; c++) {
		for (int i = 0; i < nkeys; i++) {
			snprintf(owner, sizeof(owner), "c%du%02d", c, i);
			child_key(value, sizeof(value), c, i);
			expect_resolve(f, "only_user", "anthropic", owner,
				       NULL, value, "user_keys");
		}
	}
}

static void parent_key(char *owner, size_t osize, char *value, size_t vsize,
		       int i)
{
	snprintf(owner, osize, "parent%02d", i);
	snprintf(value, vsize, "sk-ant-SECRET-parent-%02d-xyzw", i);
}

static void test_many_processes(void **state)
{
	struct fixture *f = *state;
	pid_t pids[NCHILDREN];
	char owner[64], value[128], got[256], from[64];
	unsigned rounds = 0, wrong = 0;
	int go, running = NCHILDREN;

	open_store(f);
	for (int i = 0; i < PARENT_KEYS; i++) {
		parent_key(owner, sizeof(owner), value, sizeof(value), i);
		put_ok(f, "user_keys", owner, "anthropic", value, NULL);
	}
	kw_close(f->ctx);
	f->ctx = NULL;
	fork_children(f->conf, pids, NCHILDREN, PER_CHILD, &go);
	open_store(f);
	close(go);

	/* The parent reads its own keys while the children write. */
	while (running > 0 || rounds < 5) {
		for (int i = 0; i < PARENT_KEYS; i++) {
			kw_status st;

			parent_key(owner, sizeof(owner), value, sizeof(value),
				   i);
			st = tu_resolve(f->ctx, "only_user", "anthropic",
					owner, NULL, got, sizeof(got), from,
					sizeof(from));
			if (st != KW_OK || strcmp(got, value) != 0) {
				print_message("# parent: %s: %s\n",
					      kw_status_str(st),
					      kw_last_error());
				wrong++;
			}
		}
		rounds++;
		running = 0;
		for (int c = 0; c < NCHILDREN; c++) {
			int status;

			if (pids[c] < 0)
				continue;
			if (waitpid(pids[c], &status, WNOHANG) == 0) {
				running++;
				continue;
			}
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				print_message("# child %d: status %#x\n", c,
					      (unsigned)status);
				wrong++;
			}
			pids[c] = -1;
		}
	}
	assert_int_equal(wrong, 0);

	/* Every key is there, once, and opens in this process too. */
	assert_int_equal(list_as(f, tu_sysadmin(), "user_keys", NULL)->n,
			 NCHILDREN * PER_CHILD + PARENT_KEYS);
	expect_children_keys(f, NCHILDREN, PER_CHILD);
}

/*
 * Processes that find no store create it together: one schema, one
 * identity, every key there and readable by all.  A few rounds, each on a
 * fresh store, since the race is in the first moments.
 */
#define NEW_STORE_ROUNDS 6
#define NEW_STORE_KEYS 5

static void test_many_processes_new_store(void **state)
{
	struct fixture *f = *state;
	pid_t pids[NCHILDREN];
	char *path;
	int go;

	for (int round = 0; round < NEW_STORE_ROUNDS; round++) {
		kw_close(f->ctx);
		f->ctx = NULL;
		unlink(f->db);
		unlink(tu_fmt("%s-wal", f->db));
		unlink(tu_fmt("%s-shm", f->db));
		unlink(tu_fmt("%s-journal", f->db));
		path = tu_write(f->dir, "keyway.conf", 0600, "%s", STORE_CONF);
		free(path);
		fork_children(f->conf, pids, NCHILDREN, NEW_STORE_KEYS, &go);
		close(go);
		reap_children(pids, NCHILDREN);
		open_store(f);
		assert_int_equal(list_as(f, tu_sysadmin(), NULL, NULL)->n,
				 NCHILDREN * NEW_STORE_KEYS);
		expect_children_keys(f, NCHILDREN, NEW_STORE_KEYS);
	}
}

/* What `--child-resolve CONF USER` prints: USER's key from only_user. */
static int child_resolve(const char *conf, const char *user)
{
	char value[256], from[64];
	kw_ctx *ctx = NULL;
	kw_status st;

	st = kw_open(&ctx, conf);
	if (st == KW_OK)
		st = tu_resolve(ctx, "only_user", "anthropic", user, NULL,
				value, sizeof(value), from, sizeof(from));
	if (st != KW_OK) {
		fprintf(stderr, "# child: %s: %s\n", kw_status_str(st),
			kw_last_error());
		kw_close(ctx);
		return 1;
	}
	printf("%s %s\n", from, value);
	kw_close(ctx);
	return 0;
}

/* Run this program afresh as `--child-resolve CONF USER`; what it
 * printed, or "" when it failed. */
static const char *resolve_elsewhere(struct fixture *f, const char *user)
{
	char *out = tu_keep(calloc(1, 512));
	size_t got = 0;
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execl(self_exe, self_exe, "--child-resolve", f->conf, user,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (got < 511 && (n = read(fds[0], out + got, 511 - got)) > 0)
		got += (size_t)n;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return "";
	if (got > 0 && out[got - 1] == '\n')
		out[got - 1] = '\0';
	return out;
}

/*
 * A store this process holds open stays whole while other processes come
 * and go: one that closes last must not take the WAL from under it, and
 * what this process writes next is what the others read.  Several
 * backends on one file, as the store configuration has them.
 */
static void test_other_processes_come_and_go(void **state)
{
	struct fixture *f = *state;
	struct stat sb;

	open_store(f);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	assert_string_equal(resolve_elsewhere(f, "alice"),
			    "user_keys " K_USER_ALICE);
	if (stat(tu_fmt("%s-wal", f->db), &sb) != 0)
		fail_msg("another process removed the WAL of a store this "
			 "process has open");
	put_ok(f, "user_keys", "bob", "anthropic", K_USER_BOB, NULL);
	assert_string_equal(resolve_elsewhere(f, "bob"),
			    "user_keys " K_USER_BOB);
	expect_ok(put_as(f, tu_sysadmin(), "user_keys", "alice", "anthropic",
			 K_ORG_ACME, NULL, KW_PUT_ROTATE));
	assert_string_equal(resolve_elsewhere(f, "alice"),
			    "user_keys " K_ORG_ACME);
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_string_equal(resolve_elsewhere(f, "bob"),
			    "user_keys " K_USER_BOB);
}

/* ---- files ---- */

static void expect_mode(const char *path, mode_t mode)
{
	struct stat sb;

	if (lstat(path, &sb) != 0)
		fail_msg("%s: %s", path, strerror(errno));
	assert_true(S_ISREG(sb.st_mode));
	if ((sb.st_mode & 07777) != mode)
		fail_msg("%s has mode %04o, not %04o", path,
			 (unsigned)(sb.st_mode & 07777), (unsigned)mode);
}

static void create_with_umask(struct fixture *f, mode_t mask)
{
	mode_t old = umask(mask);

	open_store(f);
	umask(old);
	expect_mode(f->db, 0600);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	expect_mode(f->db, 0600);
	expect_mode(tu_fmt("%s-wal", f->db), 0600);
	expect_mode(tu_fmt("%s-shm", f->db), 0600);
	expect_resolve(f, NULL, "anthropic", "alice", NULL, K_USER_ALICE,
		       "user_keys");
}

static void test_store_created_private(void **state)
{
	create_with_umask(*state, 022);
}

static void test_store_created_private_umask0(void **state)
{
	struct fixture *f = *state;

	create_with_umask(f, 0);
	/* And the files SQLite makes later, under the same umask. */
	kw_close(f->ctx);
	f->ctx = NULL;
	unlink(tu_fmt("%s-wal", f->db));
	unlink(tu_fmt("%s-shm", f->db));
	{
		mode_t old = umask(0);

		open_store(f);
		put_ok(f, "user_keys", "bob", "anthropic", K_USER_BOB, NULL);
		umask(old);
	}
	expect_mode(f->db, 0600);
	expect_mode(tu_fmt("%s-wal", f->db), 0600);
	expect_mode(tu_fmt("%s-shm", f->db), 0600);
}

static void test_store_permissions_refused(void **state)
{
	struct fixture *f = *state;
	static const mode_t modes[] = { 0640, 0604, 0660, 0644, 0610 };

	open_store(f);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	kw_close(f->ctx);
	f->ctx = NULL;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		assert_int_equal(chmod(f->db, modes[i]), 0);
		assert_int_equal(kw_open(&f->ctx, f->conf), KW_ERR_PERM);
		assert_null(f->ctx);
		assert_string_equal(
			kw_last_error(),
			tu_fmt("%s:%d: backend \"org_keys\": %s is "
			       "accessible by group or others (mode "
			       "%04o); it holds secrets: chmod 600 it",
			       f->conf, ORG_PATH_LINE, f->db,
			       (unsigned)modes[i]));
	}
	assert_int_equal(chmod(f->db, 0600), 0);
	open_store(f);
	expect_resolve(f, NULL, "anthropic", "alice", NULL, K_USER_ALICE,
		       "user_keys");
	kw_close(f->ctx);
	f->ctx = NULL;

	/* A symbolic link is not followed, even to a private store. */
	assert_int_equal(rename(f->db, tu_fmt("%s/real.db", f->dir)), 0);
	assert_int_equal(symlink("real.db", f->db), 0);
	assert_int_equal(kw_open(&f->ctx, f->conf), KW_ERR_PERM);
	assert_string_equal(
		kw_last_error(),
		tu_fmt("%s:%d: backend \"org_keys\": %s is a symbolic "
		       "link; point the setting at the file itself",
		       f->conf, ORG_PATH_LINE, f->db));
}

/*
 * SQLite reads a -wal file it finds beside the store as part of it, and
 * writes through a -shm file: both are held to the store's own rules.
 */
static void test_store_wal_permissions_refused(void **state)
{
	struct fixture *f = *state;
	static const char *const sidecar[] = { "wal", "shm" };

	open_store(f);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	kw_close(f->ctx);
	f->ctx = NULL;
	for (size_t i = 0; i < 2; i++) {
		char *path = tu_fmt("%s-%s", f->db, sidecar[i]);
		const char *holds = i == 0 ? "secrets"
					   : "the index of the write-ahead log";
		char *why;

		assert_int_equal(access(path, F_OK), 0);
		assert_int_equal(chmod(path, 0666), 0);
		why = tu_fmt("%s:%d: backend \"org_keys\": %s is accessible by "
			     "group or others (mode 0666); it holds %s: chmod "
			     "600 it",
			     f->conf, ORG_PATH_LINE, path, holds);
		expect_fail(kw_open(&f->ctx, f->conf), KW_ERR_PERM, why);
		assert_null(f->ctx);
		/* keyway check says so too. */
		assert_int_equal(kw_check(f->conf, NULL, NULL), KW_ERR_PERM);
		assert_string_equal(kw_last_error(), why);
		assert_int_equal(chmod(path, 0600), 0);

		if (geteuid() == 0) {
			assert_int_equal(chown(path, 65534, 65534), 0);
			expect_fail(kw_open(&f->ctx, f->conf), KW_ERR_PERM,
				    tu_fmt("%s:%d: backend \"org_keys\": %s is "
					   "owned by uid 65534; it must belong "
					   "to root",
					   f->conf, ORG_PATH_LINE, path));
			assert_int_equal(chown(path, 0, 0), 0);
		}
		/* A link there is not followed. */
		assert_int_equal(rename(path, tu_fmt("%s/moved", f->dir)), 0);
		assert_int_equal(symlink("moved", path), 0);
		expect_fail(kw_open(&f->ctx, f->conf), KW_ERR_PERM,
			    tu_fmt("%s:%d: backend \"org_keys\": %s is a "
				   "symbolic link, which SQLite would follow: "
				   "remove it",
				   f->conf, ORG_PATH_LINE, path));
		assert_int_equal(unlink(path), 0);
		assert_int_equal(rename(tu_fmt("%s/moved", f->dir), path), 0);
	}
	open_store(f);
	expect_resolve(f, NULL, "anthropic", "alice", NULL, K_USER_ALICE,
		       "user_keys");
}

/* What kw_check() reports, one line after another. */
struct check_lines {
	char text[4096];
};

static void collect_line(void *arg, const char *line)
{
	struct check_lines *c = arg;
	size_t len = strlen(c->text);

	snprintf(c->text + len, sizeof(c->text) - len, "%s\n", line);
}

/* A check reads a store whose name holds what a URI would take for
 * something else ("?", "#", "%", a space): its read-only connection opens
 * the file the setting names, and no other. */
static void test_check_name_escaped(void **state)
{
	struct fixture *f = *state;
	char *conf;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(rename(f->db, tu_fmt("%s/my keys?a=1#%%41.db",
					      f->dir)),
			 0);
	conf = tu_keep(tu_write(
		f->dir, "keyway.conf", 0600,
		"keyway: { master_key = { source = \"env\"; }; };\n"
		"backends: { s: { module = \"sqlite\"; "
		"path = \"my keys?a=1#%%41.db\"; scope = \"org\"; }; };\n"
		"chains: { default = ( { backend = \"s\"; "
		"control = \"required\"; } ); };\n"));
	if (kw_check(conf, NULL, NULL) != KW_OK)
		fail_msg("%s", kw_last_error());
	assert_int_equal(access(tu_fmt("%s/my keys", f->dir), F_OK), -1);
	assert_int_equal(access(tu_fmt("%s/my keysA.db", f->dir), F_OK), -1);
}

/* A check creates nothing: a missing store is reported, and stays missing. */
static void test_check_creates_no_store(void **state)
{
	struct fixture *f = *state;
	struct check_lines c = { "" };
	char *conf = tu_keep(
		tu_write(f->dir, "keyway.conf", 0600, "%s", STORE_CONF));

	assert_int_equal(kw_check(conf, collect_line, &c), KW_ERR_CONFIG);
	assert_string_equal(
		c.text,
		tu_fmt("%s:5: backend \"org_keys\": store %s does not exist: "
		       "create it with keyway init (or a first keyway put)\n"
		       "%s:6: backend \"user_keys\": store %s does not exist: "
		       "create it with keyway init (or a first keyway put)\n"
		       "%s:7: backend \"system_keys\": "
		       "store %s does not exist: "
		       "create it with keyway init (or a first keyway put)\n",
		       conf, f->db, conf, f->db, conf, f->db));
	assert_int_equal(access(f->db, F_OK), -1);
	assert_int_equal(access(tu_fmt("%s-wal", f->db), F_OK), -1);

	/* Once made, the same check passes. */
	open_store(f);
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(kw_check(conf, NULL, NULL), KW_OK);
}


#define ONE_STORE(path) \
	"keyway: { master_key = { source = \"env\"; }; };\n" \
	"backends: { user_keys: { module = \"sqlite\"; path = \"" path "\"; " \
	"scope = \"user\"; }; };\n" \
	"chains: { default = ( { backend = \"user_keys\"; " \
	"control = \"required\"; } ); };\n"

/* A path that names a directory, or a file in a directory that does not
 * exist, and a store without a scope, are refused at open in one line
 * that names them. */
static void test_store_path_refused(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(mkdir(tu_join(f->dir, "sub"), 0700), 0);
	expect_fail(open_text(f, ONE_STORE("sub")), KW_ERR_PERM,
		    tu_fmt("%s:2: backend \"user_keys\": %s/sub is not a "
			   "regular file",
			   f->conf, f->dir));
	expect_fail(open_text(f, ONE_STORE("nodir/keys.db")), KW_ERR_IO,
		    tu_fmt("%s:2: backend \"user_keys\": cannot create store "
			   "%s/nodir/keys.db: No such file or directory",
			   f->conf, f->dir));
	assert_int_equal(access(tu_join(f->dir, "nodir"), F_OK), -1);
	/* A store holds the keys of one scope, which must be given. */
	expect_fail(open_text(f, "keyway: { master_key = { source = \"env\"; "
				 "}; };\n"
				 "backends: { user_keys: { module = \"sqlite\"; "
				 "path = \"keys.db\"; }; };\n"
				 "chains: { default = ( { backend = "
				 "\"user_keys\"; control = \"required\"; } ); "
				 "};\n"),
		    KW_ERR_CONFIG,
		    tu_fmt("%s:2: backend \"user_keys\": missing scope "
			   "(\"user\", \"org\" or \"system\")",
			   f->conf));
	assert_int_equal(access(f->db, F_OK), -1);
}

/* A store keyway cannot write to fails its health check. */
static void test_check_read_only_store(void **state)
{
	struct fixture *f = *state;
	struct check_lines c = { "" };
	const char *why;

	open_store(f);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(chmod(f->db, 0400), 0);
	assert_int_equal(kw_check(f->conf, collect_line, &c), KW_ERR_PERM);
	why = tu_fmt("health check: permission denied: store %s is read-only "
		     "(mode 0400); keyway writes to it: chmod 600 it",
		     f->db);
	assert_string_equal(c.text,
			    tu_fmt("%s:5: backend \"org_keys\": %s\n"
				   "%s:6: backend \"user_keys\": %s\n"
				   "%s:7: backend \"system_keys\": %s\n",
				   f->conf, why, f->conf, why, f->conf, why));
	assert_int_equal(chmod(f->db, 0600), 0);
	assert_int_equal(kw_check(f->conf, NULL, NULL), KW_OK);
}

/* A file that is not a keyway store is left alone. */
static void test_not_a_store(void **state)
{
	struct fixture *f = *state;
	char *path;
	sqlite3 *db = NULL;

	path = tu_write(f->dir, "keys.db", 0600, "not a database at all, "
		       "just some text that is long enough to be a header\n");
	free(path);
	assert_int_equal(open_text(f, STORE_CONF), KW_ERR_BACKEND);
	assert_string_equal(kw_last_error(),
			    tu_fmt("%s:%d: backend \"org_keys\": %s is not a "
				   "SQLite database",
				   f->conf, ORG_PATH_LINE, f->db));
	unlink(f->db);
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x);", NULL, NULL,
				      NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(chmod(f->db, 0600), 0);
	assert_int_equal(open_text(f, STORE_CONF), KW_ERR_BACKEND);
	assert_string_equal(
		kw_last_error(),
		tu_fmt("%s:%d: backend \"org_keys\": %s is a SQLite "
		       "database but not a keyway store",
		       f->conf, ORG_PATH_LINE, f->db));
}

/* No master key, no store. */
static void test_store_needs_master_key(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(open_text(f, "keyway: { };\n"
				      "backends: {\n"
				      "  user_keys: { module = \"sqlite\"; "
				      "path = \"keys.db\"; scope = \"user\"; "
				      "};\n"
				      "};\n"
				      "chains: { default = ( { backend = "
				      "\"user_keys\"; control = "
				      "\"sufficient\"; } ); };\n"),
			 KW_ERR_CONFIG);
	assert_string_equal(kw_last_error(),
			    tu_fmt("%s:3: backend \"user_keys\": module "
				   "\"sqlite\" seals the keys it stores: set "
				   "keyway.master_key",
				   f->conf));
}

/* ---- walks, shared connections and the WAL ---- */

/*
 * Keys of these tests, beside those above.  Every one is a valid
 * anthropic key that contains "SECRET".
 */
#define K_ORG_ACME_2 "sk-ant-SECRET-org-acme-second-01"
#define K_ORG_ACME_3 "sk-ant-SECRET-org-acme-third-001"
#define K_USER_ALICE_2 "sk-ant-SECRET-user-alice-second-1"
#define K_ORG_INITECH "sk-ant-SECRET-org-initech-000009"
#define K_USER_CAROL "sk-ant-SECRET-user-carol-0000010"

/* Size of a file, or -1 when it does not exist. */
static long long file_size(const char *path)
{
	struct stat sb;

	if (stat(path, &sb) != 0) {
		if (errno != ENOENT)
			fail_msg("%s: %s", path, strerror(errno));
		return -1;
	}
	return (long long)sb.st_size;
}

/*
 * Nothing of keyway holds a read transaction on the store (`after` says
 * what ran last): another connection writes to it, and a TRUNCATE
 * checkpoint then copies the whole WAL into the file and empties it,
 * which it cannot do while any reader holds a snapshot.  Its busy handler
 * waits up to 2 s for a write of keyway's own (usage counts) to end.
 */
static void expect_no_reader(struct fixture *f, const char *after)
{
	const char *wal = tu_fmt("%s-wal", f->db);
	sqlite3_stmt *s = NULL;
	sqlite3 *db = open_db(f->db);
	int busy, log, done;

	sqlite3_busy_timeout(db, 2000);
	/* A change of a row keyway ignores: a write that changes nothing
	 * would leave the WAL as it is. */
	if (sqlite3_exec(db,
			 "INSERT OR REPLACE INTO meta (k, v) "
			 "VALUES ('test-probe', randomblob(8))",
			 NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("after %s: cannot write to the store: %s", after,
			 sqlite3_errmsg(db));
	if (file_size(wal) <= 0)
		fail_msg("after %s: a write left %s empty", after, wal);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "PRAGMA wal_checkpoint(TRUNCATE)",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	busy = sqlite3_column_int(s, 0);
	log = sqlite3_column_int(s, 1);
	done = sqlite3_column_int(s, 2);
	sqlite3_finalize(s);
	sqlite3_close(db);
	if (busy != 0)
		fail_msg("after %s: a reader holds the store open: the "
			 "checkpoint was busy (%d frames, %d copied)",
			 after, log, done);
	if (file_size(wal) != 0)
		fail_msg("after %s: %s holds %lld bytes after a TRUNCATE "
			 "checkpoint", after, wal, file_size(wal));
}

/* Explain a request; the trace is the caller's to free. */
static kw_trace *explain_on(kw_ctx *ctx, const char *chain,
			    const char *provider, const char *user,
			    const char *org)
{
	kw_request req = KW_REQUEST_INIT;
	kw_trace *t = NULL;

	req.chain = chain;
	req.provider = provider;
	req.user = user;
	req.org = org;
	expect_ok(kw_explain(ctx, &req, &t));
	assert_non_null(t);
	return t;
}

static void expect_step(const kw_trace *t, size_t i, const char *backend,
			kw_status status, kw_action action,
			const char *detail, const char *masked)
{
	const kw_trace_step *s = kw_trace_get(t, i);

	assert_non_null(s);
	assert_int_equal(s->index, i + 1);
	assert_string_equal(s->backend, backend);
	assert_int_equal(s->status, status);
	assert_int_equal(s->action, action);
	assert_string_equal(s->detail, detail);
	assert_string_equal(s->masked, masked);
}

/*
 * A walk through org_keys then user_keys, on one file, leaves no read
 * transaction behind, however it ends: found at the first entry (the
 * walk stops there), found further on, not found anywhere, dying on a
 * notfound or on a value that does not open, denied; and kw_explain()
 * likewise.
 */
static void test_walk_leaves_no_reader(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db;
	kw_trace *t;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "org_keys", "initech", "anthropic", K_ORG_INITECH, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM, NULL);
	expect_no_reader(f, "storing keys");

	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_no_reader(f, "a walk that stopped at its first entry");
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_USER_ALICE,
		       "user_keys");
	expect_no_reader(f, "a walk found at its second entry");
	expect_resolve(f, "fovea", "anthropic", "bob", "acme", K_SYSTEM,
		       "system_keys");
	expect_no_reader(f, "a walk through user and system keys");
	expect_fail(tu_resolve(f->ctx, NULL, "mistral", "alice", "acme", NULL,
			       0, NULL, 0),
		    KW_ERR_NOTFOUND,
		    "chain \"default\": no backend has a key for provider "
		    "\"mistral\"");
	expect_no_reader(f, "a walk that found nothing");
	expect_fail(tu_resolve(f->ctx, "strict", "anthropic", "alice", "globex",
			       NULL, 0, NULL, 0),
		    KW_ERR_NOTFOUND,
		    tu_fmt("chain \"strict\", provider \"anthropic\": org_keys "
			   "answered notfound: no org key of \"globex\" for "
			   "anthropic in %s",
			   f->db));
	expect_no_reader(f, "a walk that died on notfound");

	expect_ok(set_active_as(f, tu_sysadmin(), "org_keys", "acme",
				"anthropic", 0));
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_USER_ALICE,
		       "user_keys");
	expect_no_reader(f, "a walk past a disabled key");
	expect_ok(set_active_as(f, tu_sysadmin(), "org_keys", "acme",
				"anthropic", 1));

	/* A sealed value cut short: the store answers error, the chain
	 * dies on it. */
	db = open_db(f->db);
	assert_int_equal(sqlite3_exec(db,
				      "UPDATE keys SET sealed = x'0102' "
				      "WHERE scope = 'org' AND "
				      "owner = 'initech'",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_changes(db), 1);
	sqlite3_close(db);
	expect_fail(tu_resolve(f->ctx, NULL, "anthropic", "alice", "initech",
			       NULL, 0, NULL, 0),
		    KW_ERR_CRYPTO,
		    "chain \"default\", provider \"anthropic\": org_keys "
		    "answered decryption failed: the org key of \"initech\" "
		    "for anthropic: sealed value is too short (2 bytes)");
	expect_no_reader(f, "a walk that died on a broken value");

	/* Explanations, found at the first entry and further on. */
	t = explain_on(f->ctx, NULL, "anthropic", "alice", "acme");
	assert_int_equal(kw_trace_len(t), 1);
	expect_step(t, 0, "org_keys", KW_OK, KW_ACTION_DONE,
		    tu_fmt("org key of \"acme\" for anthropic in %s", f->db),
		    mask_of(K_ORG_ACME));
	kw_trace_free(t);
	expect_no_reader(f, "an explanation that stopped at its first entry");
	t = explain_on(f->ctx, NULL, "anthropic", "alice", "globex");
	assert_int_equal(kw_trace_len(t), 2);
	expect_step(t, 0, "org_keys", KW_ERR_NOTFOUND, KW_ACTION_CONTINUE,
		    tu_fmt("no org key of \"globex\" for anthropic in %s",
			   f->db),
		    "");
	expect_step(t, 1, "user_keys", KW_OK, KW_ACTION_DONE,
		    tu_fmt("user key of \"alice\" for anthropic in %s", f->db),
		    mask_of(K_USER_ALICE));
	kw_trace_free(t);
	expect_no_reader(f, "an explanation found at its second entry");
	t = explain_on(f->ctx, NULL, "mistral", "alice", "globex");
	assert_int_equal(kw_trace_len(t), 3);
	assert_int_equal(kw_trace_result(t), KW_ERR_NOTFOUND);
	expect_step(t, 1, "user_keys", KW_ERR_NOTFOUND, KW_ACTION_CONTINUE,
		    tu_fmt("no user key of \"alice\" for mistral in %s", f->db),
		    "");
	kw_trace_free(t);
	expect_no_reader(f, "an explanation that found nothing");

	/* And it all still answers. */
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_resolve(f, "fovea", "anthropic", "alice", NULL, K_USER_ALICE,
		       "user_keys");
}

/* ---- changes made elsewhere are seen at once ---- */

/* What `--child-put CONF BACKEND OWNER create|rotate` prints: "ok", or
 * why it failed.  It reads the key from its standard input, since a
 * key has no place in argv; OWNER "-" is none. */
static int child_put(const char *conf, const char *backend,
		     const char *owner, const char *mode)
{
	kw_key_ref r = KW_KEY_REF_INIT;
	kw_ctx *ctx = NULL;
	char value[256];
	kw_status st;

	if (fgets(value, sizeof(value), stdin) == NULL) {
		printf("no key on standard input\n");
		return 1;
	}
	value[strcspn(value, "\n")] = '\0';
	st = kw_open(&ctx, conf);
	if (st == KW_OK) {
		r.backend = backend;
		r.owner = strcmp(owner, "-") == 0 ? NULL : owner;
		r.provider = "anthropic";
		st = kw_key_put(ctx, tu_sysadmin(), &r, value, strlen(value),
				NULL,
				strcmp(mode, "create") == 0 ? KW_PUT_CREATE
							    : KW_PUT_ROTATE);
	}
	explicit_bzero(value, sizeof(value));
	if (st != KW_OK)
		printf("%s: %s\n", kw_status_str(st), kw_last_error());
	else
		printf("ok\n");
	kw_close(ctx);
	return st == KW_OK ? 0 : 1;
}

/* Run this program afresh to put a key, as another process would; what
 * it printed. */
static const char *put_elsewhere(struct fixture *f, const char *backend,
				 const char *owner, const char *value,
				 const char *mode)
{
	char *out = tu_keep(calloc(1, 1024));
	size_t got = 0, len = strlen(value);
	int in[2], fds[2], status;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		close(in[0]);
		close(in[1]);
		close(fds[0]);
		close(fds[1]);
		execl(self_exe, self_exe, "--child-put", f->conf, backend,
		      owner != NULL ? owner : "-", mode, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(fds[1]);
	assert_int_equal(write(in[1], value, len), (ssize_t)len);
	assert_int_equal(write(in[1], "\n", 1), 1);
	close(in[1]);
	while (got < 1023 && (n = read(fds[0], out + got, 1023 - got)) > 0)
		got += (size_t)n;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (got > 0 && out[got - 1] == '\n')
		out[got - 1] = '\0';
	if (!WIFEXITED(status))
		return "killed";
	return out;
}

static kw_status put_on(kw_ctx *ctx, const char *backend, const char *owner,
			const char *value, kw_put_mode mode)
{
	kw_key_ref r = ref(backend, owner, "anthropic");

	return kw_key_put(ctx, tu_sysadmin(), &r, value, strlen(value), NULL,
			  mode);
}

static kw_ctx *open_more(struct fixture *f, size_t i, const char *conf)
{
	kw_status st;

	assert_true(i < sizeof(f->more) / sizeof(f->more[0]));
	assert_null(f->more[i]);
	st = kw_open(&f->more[i], conf != NULL ? conf : f->conf);
	if (st != KW_OK)
		fail_msg("kw_open: %s: %s", kw_status_str(st),
			 kw_last_error());
	return f->more[i];
}

static void close_more(struct fixture *f, size_t i)
{
	kw_close(f->more[i]);
	f->more[i] = NULL;
}

/* What another process stores is what the next walk reads, through the
 * org's entry and through the user's behind it. */
static void test_no_stale_read_other_process(void **state)
{
	struct fixture *f = *state;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_USER_ALICE,
		       "user_keys");

	assert_string_equal(put_elsewhere(f, "org_keys", "acme", K_ORG_ACME_2,
					  "rotate"),
			    "ok");
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME_2,
		       "org_keys");
	assert_string_equal(put_elsewhere(f, "user_keys", "alice",
					  K_USER_ALICE_2, "rotate"),
			    "ok");
	expect_resolve(f, NULL, "anthropic", "alice", "globex",
		       K_USER_ALICE_2, "user_keys");
	/* A key that was missing at the last walk is there at the next. */
	assert_string_equal(put_elsewhere(f, "org_keys", "globex",
					  K_ORG_GLOBEX, "create"),
			    "ok");
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_ORG_GLOBEX,
		       "org_keys");
	assert_string_equal(put_elsewhere(f, "system_keys", NULL, K_SYSTEM,
					  "create"),
			    "ok");
	expect_resolve(f, "fovea", "anthropic", "bob", NULL, K_SYSTEM,
		       "system_keys");
	/* Rotated twice between two walks: the last value. */
	assert_string_equal(put_elsewhere(f, "org_keys", "acme", K_ORG_ACME_3,
					  "rotate"),
			    "ok");
	assert_string_equal(put_elsewhere(f, "org_keys", "acme", K_ORG_ACME,
					  "rotate"),
			    "ok");
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
}

/* Likewise a second context of this process, which shares the file's
 * connections; and the other way round. */
static void test_no_stale_read_other_context(void **state)
{
	struct fixture *f = *state;
	kw_ctx *other;
	kw_trace *t;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	other = open_more(f, 0, NULL);
	for (int round = 0; round < 3; round++) {
		expect_resolve(f, NULL, "anthropic", "alice", "acme",
			       K_ORG_ACME, "org_keys");
		expect_resolve_on(other, NULL, "anthropic", "alice", "globex",
				  K_USER_ALICE, "user_keys");
		expect_ok(put_on(other, "org_keys", "acme", K_ORG_ACME_2,
				 KW_PUT_ROTATE));
		expect_resolve(f, NULL, "anthropic", "alice", "acme",
			       K_ORG_ACME_2, "org_keys");
		expect_ok(put_on(f->ctx, "user_keys", "alice", K_USER_ALICE_2,
				 KW_PUT_ROTATE));
		expect_resolve_on(other, NULL, "anthropic", "alice", "globex",
				  K_USER_ALICE_2, "user_keys");
		t = explain_on(f->ctx, NULL, "anthropic", "alice", "globex");
		assert_int_equal(kw_trace_len(t), 2);
		expect_step(t, 1, "user_keys", KW_OK, KW_ACTION_DONE,
			    tu_fmt("user key of \"alice\" for anthropic in %s",
				   f->db),
			    mask_of(K_USER_ALICE_2));
		kw_trace_free(t);
		expect_ok(put_on(other, "org_keys", "acme", K_ORG_ACME,
				 KW_PUT_ROTATE));
		expect_ok(put_on(other, "user_keys", "alice", K_USER_ALICE,
				 KW_PUT_ROTATE));
	}
	/* Missing at one walk, stored by the other context, found next. */
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_USER_ALICE,
		       "user_keys");
	expect_ok(put_on(other, "org_keys", "globex", K_ORG_GLOBEX,
			 KW_PUT_CREATE));
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_ORG_GLOBEX,
		       "org_keys");
	/* Disabled in one, deleted in the other: passed over at once in
	 * both. */
	expect_ok(set_active_as(f, tu_sysadmin(), "org_keys", "globex",
				"anthropic", 0));
	expect_resolve_on(other, NULL, "anthropic", "alice", "globex",
			  K_USER_ALICE, "user_keys");
	{
		kw_key_ref r = ref("user_keys", "alice", "anthropic");

		expect_ok(kw_key_delete(other, tu_sysadmin(), &r));
	}
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_ENV,
		       "server_env");
}

/* ---- contexts that share a file ---- */

/* What kw_open() says of a store with keys sealed under master key id,
 * which conf does not hold. */
static const char *wrong_key_msg(const char *conf, int line,
				 const char *db, const char *id)
{
	return tu_fmt("%s:%d: backend \"org_keys\": %s holds keys sealed under "
		      "master key %s, which neither keyway.master_key nor "
		      "keyway.old_master_keys holds",
		      conf, line, db, id);
}

/* Open conf, which must fail with the message of a missing master key. */
static void expect_refused(const char *conf, int line, const char *db,
			   const char *id)
{
	kw_ctx *ctx = (kw_ctx *)&ctx;
	kw_status st = kw_open(&ctx, conf);

	if (st == KW_OK)
		kw_close(ctx);
	expect_fail(st, KW_ERR_CRYPTO, wrong_key_msg(conf, line, db, id));
	assert_null(ctx);
}

/* Likewise, naming either of two ids that are both missing. */
static void expect_refused_either(const char *conf, int line,
				  const char *db, const char *id1,
				  const char *id2)
{
	kw_ctx *ctx = (kw_ctx *)&ctx;
	kw_status st = kw_open(&ctx, conf);
	const char *err = tu_fmt("%s", kw_last_error());

	if (st == KW_OK)
		kw_close(ctx);
	assert_int_equal(st, KW_ERR_CRYPTO);
	assert_null(ctx);
	if (strcmp(err, wrong_key_msg(conf, line, db, id1)) != 0)
		assert_string_equal(err, wrong_key_msg(conf, line, db, id2));
}

/* Every scope of the store answers through ctx. */
static void expect_all_scopes(kw_ctx *ctx, const char *org_value,
			      const char *user_value)
{
	expect_resolve_on(ctx, NULL, "anthropic", "alice", "acme", org_value,
			  "org_keys");
	expect_resolve_on(ctx, NULL, "anthropic", "alice", "globex",
			  user_value, "user_keys");
	expect_resolve_on(ctx, "fovea", "anthropic", "bob", NULL, K_SYSTEM,
			  "system_keys");
	expect_resolve_on(ctx, "fovea", "anthropic", "alice", NULL,
			  user_value, "user_keys");
}

/*
 * Contexts come and go on one file while others keep using it: the first
 * one to open it closes first, a later one joins, the last one to close
 * is not the first; and what each stores, the others read.
 */
static void test_contexts_share_a_file(void **state)
{
	struct fixture *f = *state;
	kw_ctx *second, *third;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM, NULL);
	second = open_more(f, 0, NULL);
	expect_all_scopes(f->ctx, K_ORG_ACME, K_USER_ALICE);
	expect_all_scopes(second, K_ORG_ACME, K_USER_ALICE);

	/* The first closes; the second goes on, reading and writing. */
	kw_close(f->ctx);
	f->ctx = NULL;
	expect_all_scopes(second, K_ORG_ACME, K_USER_ALICE);
	expect_ok(put_on(second, "user_keys", "alice", K_USER_ALICE_2,
			 KW_PUT_ROTATE));
	expect_ok(put_on(second, "user_keys", "carol", K_USER_CAROL,
			 KW_PUT_CREATE));
	expect_all_scopes(second, K_ORG_ACME, K_USER_ALICE_2);

	/* A third joins it, sees what the second wrote, and writes. */
	third = open_more(f, 1, NULL);
	expect_all_scopes(third, K_ORG_ACME, K_USER_ALICE_2);
	expect_resolve_on(third, "only_user", "anthropic", "carol", NULL,
			  K_USER_CAROL, "user_keys");
	expect_ok(put_on(third, "org_keys", "acme", K_ORG_ACME_2,
			 KW_PUT_ROTATE));
	expect_all_scopes(second, K_ORG_ACME_2, K_USER_ALICE_2);

	/* The second closes; the third goes on alone. */
	close_more(f, 0);
	expect_all_scopes(third, K_ORG_ACME_2, K_USER_ALICE_2);
	expect_ok(put_on(third, "org_keys", "acme", K_ORG_ACME_3,
			 KW_PUT_ROTATE));
	expect_all_scopes(third, K_ORG_ACME_3, K_USER_ALICE_2);
	close_more(f, 1);

	/* Nothing open: a new context opens the file afresh. */
	open_store(f);
	expect_all_scopes(f->ctx, K_ORG_ACME_3, K_USER_ALICE_2);
	assert_int_equal(list_as(f, tu_sysadmin(), NULL, NULL)->n, 4);
}

/*
 * One context resolves on a thread of its own while, on the main thread,
 * contexts on the same file open, answer, store and close, and contexts
 * with a master key that cannot open it are refused: the thread's answers
 * are right throughout.
 */
struct load_worker {
	kw_ctx *ctx;
	atomic_bool stop;       /* fixture.stop points here */
	unsigned long calls;
	unsigned long bad;
	char first_bad[512];
};

static void *load_work(void *arg)
{
	static const struct {
		const char *chain, *user, *org, *value, *backend;
	} reqs[] = {
		{ NULL, "alice", "acme", K_ORG_ACME, "org_keys" },
		{ NULL, "alice", "globex", K_USER_ALICE, "user_keys" },
		{ "fovea", "bob", NULL, K_SYSTEM, "system_keys" },
	};
	struct load_worker *w = arg;
	char got[256], from[64];

	while (!atomic_load(&w->stop)) {
		for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
			kw_status st;

			st = tu_resolve(w->ctx, reqs[i].chain, "anthropic",
					reqs[i].user, reqs[i].org, got,
					sizeof(got), from, sizeof(from));
			w->calls++;
			if (st == KW_OK && strcmp(got, reqs[i].value) == 0 &&
			    strcmp(from, reqs[i].backend) == 0)
				continue;
			if (w->bad++ == 0)
				snprintf(w->first_bad, sizeof(w->first_bad),
					 "request %zu: %s: %s", i,
					 kw_status_str(st),
					 st == KW_OK ? "wrong key"
						     : kw_last_error());
		}
	}
	return NULL;
}

static void test_contexts_come_and_go_under_load(void **state)
{
	struct fixture *f = *state;
	const char *bad_conf = tu_fmt("%s/new-only.conf", f->dir);
	struct load_worker *w = tu_keep(calloc(1, sizeof(*w)));
	char id[64];

	free(tu_write(f->dir, "new-only.conf", 0600, "%s", NEW_ONLY_CONF));
	setenv("KWTEST_MASTER_B", MASTER_B, 1);
	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM, NULL);
	put_ok(f, "user_keys", "dave", "anthropic", K_USER_BOB, NULL);
	snprintf(id, sizeof(id), "%s",
		 find_key(f, "org_keys", "acme", "anthropic")->key_id);
	kw_close(f->ctx);
	f->ctx = NULL;

	atomic_init(&w->stop, false);
	w->ctx = open_more(f, 0, NULL);
	assert_int_equal(pthread_create(&f->thread, NULL, load_work, w), 0);
	/* From here a failure leaves the test at once: teardown() stops
	 * and joins the thread before it closes the context. */
	f->stop = &w->stop;
	for (int round = 0; round < 12; round++) {
		const char *v = round % 2 == 0 ? K_USER_CAROL : K_USER_BOB;

		open_store(f);
		expect_all_scopes(f->ctx, K_ORG_ACME, K_USER_ALICE);
		expect_ok(put_as(f, tu_sysadmin(), "user_keys", "dave",
				 "anthropic", v, NULL, KW_PUT_ROTATE));
		expect_resolve(f, "only_user", "anthropic", "dave", NULL, v,
			       "user_keys");
		if (round % 3 == 0)
			open_more(f, 1, NULL);
		kw_close(f->ctx);
		f->ctx = NULL;
		expect_refused(bad_conf, ORG_PATH_LINE, f->db, id);
		if (f->more[1] != NULL) {
			expect_resolve_on(f->more[1], "only_user",
					  "anthropic", "dave", NULL, v,
					  "user_keys");
			close_more(f, 1);
		}
	}
	stop_thread(f);
	if (w->bad != 0)
		fail_msg("%lu of %lu resolves wrong; first: %s", w->bad,
			 w->calls, w->first_bad);
	assert_true(w->calls > 0);
	expect_all_scopes(w->ctx, K_ORG_ACME, K_USER_ALICE);
}

/*
 * Backends that name one file differently: with another busy timeout (a
 * pool of their own), and through another path to the same file.  A walk
 * goes from one to the other and back.
 */
static void test_one_file_many_backends(void **state)
{
	struct fixture *f = *state;
	kw_ctx *other;

	assert_int_equal(open_text(f,
		"keyway: {\n"
		"  master_key = { source = \"env\"; };\n"
		"};\n"
		"backends: {\n"
		"  org_keys: { module = \"sqlite\"; path = \"keys.db\"; "
		"scope = \"org\"; };\n"
		"  user_keys: { module = \"sqlite\"; path = \"./keys.db\"; "
		"scope = \"user\"; busy_timeout_ms = 1234; };\n"
		"  system_keys: { module = \"sqlite\"; path = \"./keys.db\"; "
		"scope = \"system\"; };\n"
		"  more_org: { module = \"sqlite\"; path = \"keys.db\"; "
		"scope = \"org\"; busy_timeout_ms = 1234; };\n"
		"  server_env: { module = \"env\"; };\n"
		"};\n"
		"chains: {\n"
		"  default = ( " ENTRY("org_keys", "sufficient") ",\n"
		"    " ENTRY("user_keys", "sufficient") ",\n"
		"    " ENTRY("system_keys", "sufficient") ",\n"
		"    " ENTRY("more_org", "sufficient") ",\n"
		"    " ENTRY("server_env", "required") " );\n"
		"  back = ( " ENTRY("more_org", "sufficient") ",\n"
		"    " ENTRY("system_keys", "sufficient") ",\n"
		"    " ENTRY("user_keys", "sufficient") ",\n"
		"    " ENTRY("org_keys", "sufficient") ",\n"
		"    " ENTRY("server_env", "required") " );\n"
		"};\n"),
		KW_OK);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM, NULL);
	for (int round = 0; round < 3; round++) {
		expect_resolve(f, NULL, "anthropic", "alice", "acme",
			       K_ORG_ACME, "org_keys");
		expect_resolve(f, NULL, "anthropic", "alice", "globex",
			       K_USER_ALICE, "user_keys");
		expect_resolve(f, NULL, "anthropic", "bob", "globex",
			       K_SYSTEM, "system_keys");
		expect_resolve(f, "back", "anthropic", "alice", "acme",
			       K_ORG_ACME, "more_org");
		expect_resolve(f, "back", "anthropic", "alice", "globex",
			       K_SYSTEM, "system_keys");
		expect_resolve(f, "back", "anthropic", "bob", "globex",
			       K_SYSTEM, "system_keys");
	}
	/* One backend's change, the other's next read. */
	expect_ok(put_as(f, tu_sysadmin(), "more_org", "acme", "anthropic",
			 K_ORG_ACME_2, NULL, KW_PUT_ROTATE));
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME_2,
		       "org_keys");
	expect_ok(
		delete_as(f, tu_sysadmin(), "system_keys", NULL, "anthropic"));
	expect_resolve(f, "back", "anthropic", "alice", "globex",
		       K_USER_ALICE, "user_keys");
	expect_ok(
		delete_as(f, tu_sysadmin(), "user_keys", "alice", "anthropic"));
	expect_resolve(f, "back", "anthropic", "alice", "globex", K_ENV,
		       "server_env");
	/* The store configuration beside it, in another context: it
	 * shares the file with some of these backends. */
	free(tu_write(f->dir, "store.conf", 0600, "%s", STORE_CONF));
	other = open_more(f, 0, tu_fmt("%s/store.conf", f->dir));
	expect_resolve_on(other, NULL, "anthropic", "alice", "acme",
			  K_ORG_ACME_2, "org_keys");
	expect_resolve_on(other, NULL, "anthropic", "bob", NULL, K_ENV,
			  "server_env");
	expect_ok(put_on(other, "system_keys", NULL, K_SYSTEM,
			 KW_PUT_CREATE));
	expect_resolve(f, NULL, "anthropic", "bob", "globex", K_SYSTEM,
		       "system_keys");
	expect_resolve(f, "back", "anthropic", "alice", "acme", K_ORG_ACME_2,
		       "more_org");
}

/* ---- a master key that cannot open the keys ---- */

/*
 * A context that brings a master key that cannot open the keys is refused
 * with the id of the one that can, also while another context of this
 * process has the file open; that one goes on as if nothing happened.
 */
static void test_wrong_master_key_beside_open(void **state)
{
	struct fixture *f = *state;
	const char *bad_conf = tu_fmt("%s/new-only.conf", f->dir);
	const struct key_copy *k;
	char id[64];

	free(tu_write(f->dir, "new-only.conf", 0600, "%s", NEW_ONLY_CONF));
	setenv("KWTEST_MASTER_B", MASTER_B, 1);
	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	k = find_key(f, "org_keys", "acme", "anthropic");
	assert_non_null(k);
	snprintf(id, sizeof(id), "%s", k->key_id);

	for (int round = 0; round < 3; round++) {
		expect_refused(bad_conf, ORG_PATH_LINE, f->db, id);
		expect_resolve(f, NULL, "anthropic", "alice", "acme",
			       K_ORG_ACME, "org_keys");
		expect_resolve(f, NULL, "anthropic", "alice", "globex",
			       K_USER_ALICE, "user_keys");
	}
	put_ok(f, "org_keys", "globex", "anthropic", K_ORG_GLOBEX, NULL);
	expect_ok(put_as(f, tu_sysadmin(), "user_keys", "alice", "anthropic",
			 K_USER_ALICE_2, NULL, KW_PUT_ROTATE));
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_ORG_GLOBEX,
		       "org_keys");
	expect_resolve(f, "only_user", "anthropic", "alice", NULL,
		       K_USER_ALICE_2, "user_keys");
	assert_int_equal(list_as(f, tu_sysadmin(), NULL, NULL)->n, 3);

	/* Another context with the right key joins, the first leaves, the
	 * wrong key is still refused, the second goes on. */
	open_more(f, 0, NULL);
	kw_close(f->ctx);
	f->ctx = NULL;
	expect_refused(bad_conf, ORG_PATH_LINE, f->db, id);
	expect_resolve_on(f->more[0], NULL, "anthropic", "alice", "acme",
			  K_ORG_ACME, "org_keys");
	expect_resolve_on(f->more[0], "only_user", "anthropic", "alice",
			  NULL, K_USER_ALICE_2, "user_keys");
	close_more(f, 0);

	/* Nothing open: refused all the same. */
	expect_refused(bad_conf, ORG_PATH_LINE, f->db, id);
	open_store(f);
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
}

/* ---- keys sealed under several master keys ---- */

/* Master keys for the tests of several ids (64 hex digits each). */
#define MASTER_C "5eab5eab5eab5eab5eab5eab5eab5eab" \
		 "5eab5eab5eab5eab5eab5eab5eab5eab"

/*
 * A configuration of the store whose current master key is in $KWTEST_CUR
 * and whose old ones are in $KWTEST_OLD1 and $KWTEST_OLD2, as many as
 * `nold` says.  org_keys' path is on line 6.
 */
#define MULTI_PATH_LINE 6

static const char *multi_conf(struct fixture *f, int nold)
{
	static const char *const olds[] = {
		"# no old master keys",
		"old_master_keys = ( { source = \"env\"; "
		"var = \"KWTEST_OLD1\"; } );",
		"old_master_keys = ( { source = \"env\"; "
		"var = \"KWTEST_OLD1\"; }, { source = \"env\"; "
		"var = \"KWTEST_OLD2\"; } );",
	};
	const char *name = tu_fmt("multi%d.conf", nold);

	free(tu_write(f->dir, name, 0600,
		      "keyway: {\n"
		      "  master_key = { source = \"env\"; var = "
		      "\"KWTEST_CUR\"; };\n"
		      "  %s\n"
		      "};\n"
		      "%s",
		      olds[nold], STORE_BACKENDS));
	return tu_fmt("%s/%s", f->dir, name);
}

/* Set the master keys for multi_conf(): the current one, then old ones
 * (NULL: not set). */
static void set_masters(const char *cur, const char *old1, const char *old2)
{
	setenv("KWTEST_CUR", cur, 1);
	if (old1 != NULL)
		setenv("KWTEST_OLD1", old1, 1);
	else
		unsetenv("KWTEST_OLD1");
	if (old2 != NULL)
		setenv("KWTEST_OLD2", old2, 1);
	else
		unsetenv("KWTEST_OLD2");
}

static const char *key_id_of(struct fixture *f, const char *backend,
			     const char *owner)
{
	const struct key_copy *k = find_key(f, backend, owner, "anthropic");

	assert_non_null(k);
	assert_true(is_hex16(k->key_id));
	return tu_fmt("%s", k->key_id);
}

static void open_multi_ok(struct fixture *f, const char *conf)
{
	kw_status st = kw_open(&f->ctx, conf);

	if (st != KW_OK)
		fail_msg("kw_open: %s: %s", kw_status_str(st),
			 kw_last_error());
}

static void expect_multi_keys(struct fixture *f, bool with_system)
{
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_USER_ALICE,
		       "user_keys");
	if (with_system)
		expect_resolve(f, "fovea", "anthropic", "bob", NULL, K_SYSTEM,
			       "system_keys");
}

/*
 * Keys sealed under two master keys, then three: the store opens only
 * when every one of them is configured, and otherwise names one that is
 * missing, wherever its id sorts among the others.
 */
static void test_keys_under_several_master_keys(void **state)
{
	struct fixture *f = *state;
	const char *c0 = multi_conf(f, 0), *c1 = multi_conf(f, 1);
	const char *c2 = multi_conf(f, 2);
	const char *a, *b, *c;

	/* The org's key under A, the user's under B. */
	set_masters(MASTER_A, NULL, NULL);
	open_multi_ok(f, c0);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	a = key_id_of(f, "org_keys", "acme");
	kw_close(f->ctx);
	f->ctx = NULL;
	set_masters(MASTER_B, MASTER_A, NULL);
	open_multi_ok(f, c1);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	b = key_id_of(f, "user_keys", "alice");
	assert_string_not_equal(a, b);
	assert_string_equal(key_id_of(f, "org_keys", "acme"), a);
	expect_multi_keys(f, false);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* Either one alone: refused, naming the other. */
	set_masters(MASTER_A, NULL, NULL);
	expect_refused(c0, MULTI_PATH_LINE, f->db, b);
	set_masters(MASTER_B, NULL, NULL);
	expect_refused(c0, MULTI_PATH_LINE, f->db, a);
	/* Or beside a key that holds nothing here. */
	set_masters(MASTER_C, MASTER_A, NULL);
	expect_refused(c1, MULTI_PATH_LINE, f->db, b);
	set_masters(MASTER_B, MASTER_C, NULL);
	expect_refused(c1, MULTI_PATH_LINE, f->db, a);
	/* Both, either way round. */
	set_masters(MASTER_A, MASTER_B, NULL);
	open_multi_ok(f, c1);
	expect_multi_keys(f, false);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* And the system's key under C: three ids in the file. */
	set_masters(MASTER_C, MASTER_A, MASTER_B);
	open_multi_ok(f, c2);
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM, NULL);
	c = key_id_of(f, "system_keys", NULL);
	assert_string_not_equal(c, a);
	assert_string_not_equal(c, b);
	expect_multi_keys(f, true);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* Any one missing, wherever its id sorts: named. */
	set_masters(MASTER_A, MASTER_B, NULL);
	expect_refused(c1, MULTI_PATH_LINE, f->db, c);
	set_masters(MASTER_C, MASTER_B, NULL);
	expect_refused(c1, MULTI_PATH_LINE, f->db, a);
	set_masters(MASTER_A, MASTER_C, NULL);
	expect_refused(c1, MULTI_PATH_LINE, f->db, b);
	/* Two missing: one of them. */
	set_masters(MASTER_A, NULL, NULL);
	expect_refused_either(c0, MULTI_PATH_LINE, f->db, b, c);
	set_masters(MASTER_B, NULL, NULL);
	expect_refused_either(c0, MULTI_PATH_LINE, f->db, a, c);
	set_masters(MASTER_C, NULL, NULL);
	expect_refused_either(c0, MULTI_PATH_LINE, f->db, a, b);
	/* All three, in any order. */
	set_masters(MASTER_A, MASTER_C, MASTER_B);
	open_multi_ok(f, c2);
	expect_multi_keys(f, true);
	kw_close(f->ctx);
	f->ctx = NULL;
	set_masters(MASTER_B, MASTER_C, MASTER_A);
	open_multi_ok(f, c2);
	expect_multi_keys(f, true);
}

/* ---- usage counts ---- */

struct use_case {
	const char *backend;
	const char *owner;
	const char *chain;
	const char *user, *org; /* the request that reaches the key */
	const char *value;
	unsigned uses;          /* resolves reported (or freed) as used */
	unsigned unused;        /* resolves reported unused */
};

static const struct use_case use_cases[] = {
	{ "org_keys", "acme", NULL, "alice", "acme", K_ORG_ACME, 1, 0 },
	{ "org_keys", "globex", NULL, "zoe", "globex", K_ORG_GLOBEX, 2, 1 },
	{ "user_keys", "alice", NULL, "alice", NULL, K_USER_ALICE, 3, 0 },
	{ "user_keys", "bob", "only_user", "bob", NULL, K_USER_BOB, 4, 2 },
	{ "system_keys", NULL, "only_system", NULL, NULL, K_SYSTEM, 5, 0 },
	{ "org_keys", "initech", NULL, "alice", "initech", K_ORG_INITECH, 0,
	  3 },
};

#define NUSE_CASES (sizeof(use_cases) / sizeof(use_cases[0]))

/* Resolve the case's key once; outcome: 0 used (reported), 1 used (freed
 * unreported), 2 unused. */
static void use_once(struct fixture *f, const struct use_case *u, int how)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;

	req.chain = u->chain;
	req.provider = "anthropic";
	req.user = u->user;
	req.org = u->org;
	expect_ok(kw_resolve(f->ctx, &req, &s));
	assert_string_equal(kw_secret_value(s), u->value);
	assert_string_equal(kw_secret_backend(s), u->backend);
	if (how == 0)
		expect_ok(kw_secret_report(s, KW_USED));
	else if (how == 2)
		expect_ok(kw_secret_report(s, KW_UNUSED));
	if (how != 1) {
		expect_fail(kw_secret_report(s, KW_USED), KW_ERR_INVAL,
			    "kw_secret_report: this secret was already "
			    "reported");
	}
	kw_secret_free(s);
}

static void expect_usage(struct fixture *f, const struct use_case *u,
			 uint64_t count, int64_t from, int64_t to)
{
	const struct key_copy *k = find_key(f, u->backend, u->owner,
					    "anthropic");

	assert_non_null(k);
	if (k->usage_count != count)
		fail_msg("%s %s: usage count %llu, want %llu", u->backend,
			 u->owner != NULL ? u->owner : "(system)",
			 (unsigned long long)k->usage_count,
			 (unsigned long long)count);
	if (count == 0)
		assert_int_equal(k->last_used, 0);
	else if (k->last_used < from || k->last_used > to)
		fail_msg("%s %s: last used at %lld, not within [%lld, %lld]",
			 u->backend, u->owner != NULL ? u->owner : "(system)",
			 (long long)k->last_used, (long long)from,
			 (long long)to);
}

/*
 * Keys of three backends on one file are used, each a number of times;
 * kw_close() writes the counts (in one batch per backend); a new context
 * lists each count exactly.  Uses reported unused do not count, a key
 * deleted before the counts are written is no error, and counts add up
 * across contexts.
 */
static void test_usage_counts_written(void **state)
{
	struct fixture *f = *state;
	const struct use_case carol = {
		"user_keys", "carol", "only_user", "carol", NULL, K_USER_CAROL,
		2, 0,
	};
	int64_t t0, t1, first0, first1;

	open_store(f);
	for (size_t i = 0; i < NUSE_CASES; i++)
		put_ok(f, use_cases[i].backend, use_cases[i].owner,
		       "anthropic", use_cases[i].value, NULL);
	put_ok(f, carol.backend, carol.owner, "anthropic", carol.value, NULL);
	t0 = (int64_t)time(NULL);
	for (unsigned round = 0; round < 5; round++) {
		for (size_t i = 0; i < NUSE_CASES; i++) {
			const struct use_case *u = &use_cases[i];

			if (round < u->uses)
				use_once(f, u, (int)(round % 2));
			if (round < u->unused)
				use_once(f, u, 2);
		}
	}
	use_once(f, &carol, 0);
	use_once(f, &carol, 1);
	expect_ok(
		delete_as(f, tu_sysadmin(), "user_keys", "carol", "anthropic"));
	t1 = (int64_t)time(NULL);
	kw_close(f->ctx);
	f->ctx = NULL;

	first0 = t0;
	first1 = t1;
	open_store(f);
	for (size_t i = 0; i < NUSE_CASES; i++)
		expect_usage(f, &use_cases[i], use_cases[i].uses, t0, t1);
	assert_null(find_key(f, "user_keys", "carol", "anthropic"));

	/* More uses in another context: added to what is there. */
	wait_past(t1);
	t0 = (int64_t)time(NULL);
	use_once(f, &use_cases[0], 0);
	use_once(f, &use_cases[0], 1);
	use_once(f, &use_cases[4], 0);
	t1 = (int64_t)time(NULL);
	kw_close(f->ctx);
	f->ctx = NULL;
	open_store(f);
	expect_usage(f, &use_cases[0], use_cases[0].uses + 2, t0, t1);
	expect_usage(f, &use_cases[4], use_cases[4].uses + 1, t0, t1);
	expect_usage(f, &use_cases[2], use_cases[2].uses, first0, first1);
	expect_usage(f, &use_cases[5], 0, 0, 0);
}

/* ---- what the file alone holds ---- */

/* Copy the store's main file, and nothing else, to dir/name. */
static const char *copy_main_file(struct fixture *f, const char *name)
{
	const char *to = tu_fmt("%s/%s", f->dir, name);
	size_t len;
	char *data = tu_slurp(f->db, &len);
	FILE *fp;

	assert_non_null(data);
	fp = fopen(to, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(to, 0600), 0);
	assert_int_equal(file_size(tu_fmt("%s-wal", to)), -1);
	return to;
}

/* The sealed value and active flag of a row of db, or a NULL blob when
 * there is no such row. */
static unsigned char *row_of(const char *path, const char *scope,
			     const char *owner, int *len, int *active)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	unsigned char *copy = NULL;
	int rc;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK)
		fail_msg("cannot open %s: %s", path, sqlite3_errmsg(db));
	if (sqlite3_prepare_v2(db,
			       "SELECT sealed, active FROM keys "
			       "WHERE scope = ?1 AND owner = ?2 "
			       "AND provider = 'anthropic'",
			       -1, &s, NULL) != SQLITE_OK) {
		const char *why = tu_fmt("%s", sqlite3_errmsg(db));

		sqlite3_close(db);
		fail_msg("cannot read %s: %s", path, why);
	}
	sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, owner, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	*len = 0;
	*active = -1;
	if (rc == SQLITE_ROW) {
		*len = sqlite3_column_bytes(s, 0);
		*active = sqlite3_column_int(s, 1);
		copy = tu_keep(malloc((size_t)*len + 1));
		memcpy(copy, sqlite3_column_blob(s, 0), (size_t)*len);
	} else {
		assert_int_equal(rc, SQLITE_DONE);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return copy;
}

/* The copy holds the row exactly as the store does. */
static void expect_copy_row(struct fixture *f, const char *copy,
			    const char *scope, const char *owner, int active)
{
	int clen, cactive, slen, sactive;
	unsigned char *c = row_of(copy, scope, owner, &clen, &cactive);
	unsigned char *s = row_of(f->db, scope, owner, &slen, &sactive);

	assert_non_null(s);
	if (c == NULL)
		fail_msg("the main file alone lacks the %s key of %s: the "
			 "change stayed in the WAL", scope, owner);
	assert_int_equal(cactive, active);
	assert_int_equal(sactive, active);
	assert_int_equal(clen, slen);
	if (memcmp(c, s, (size_t)clen) != 0)
		fail_msg("the main file alone holds an old value of the %s "
			 "key of %s", scope, owner);
}

/* STORE_CONF on dir/NAME.db instead of keys.db, as dir/NAME.conf. */
static const char *conf_for(struct fixture *f, const char *name)
{
	const char *text = STORE_CONF, *p;
	char *out = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&out, &len);

	assert_non_null(mf);
	while ((p = strstr(text, "\"keys.db\"")) != NULL) {
		fwrite(text, 1, (size_t)(p - text), mf);
		fprintf(mf, "\"%s.db\"", name);
		text = p + strlen("\"keys.db\"");
	}
	fputs(text, mf);
	assert_int_equal(fclose(mf), 0);
	tu_keep(out);
	free(tu_write(f->dir, tu_fmt("%s.conf", name), 0600, "%s", out));
	return tu_fmt("%s/%s.conf", f->dir, name);
}

/* Copy the store as `sqlite3 STORE '.backup COPY'` does: a consistent
 * snapshot, WAL included. */
static const char *backup_store(struct fixture *f, const char *name)
{
	const char *to = tu_fmt("%s/%s", f->dir, name);
	sqlite3 *src = open_db(f->db), *dst = NULL;
	sqlite3_backup *b;

	assert_int_equal(sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE |
						       SQLITE_OPEN_CREATE,
					 NULL),
			 SQLITE_OK);
	b = sqlite3_backup_init(dst, "main", src, "main");
	assert_non_null(b);
	assert_int_equal(sqlite3_backup_step(b, -1), SQLITE_DONE);
	assert_int_equal(sqlite3_backup_finish(b), SQLITE_OK);
	sqlite3_close(dst);
	sqlite3_close(src);
	assert_int_equal(chmod(to, 0600), 0);
	return to;
}

/* The WAL's length in pages of 4096 bytes, as its size says. */
static long long wal_pages(struct fixture *f)
{
	long long n = file_size(tu_fmt("%s-wal", f->db));

	return n <= 32 ? 0 : (n - 32) / (4096 + 24);
}

/*
 * The WAL outlives the last close and may hold the latest changes: a
 * backup taken through SQLite, as keyway.conf(5) says to take one, holds
 * them all.  Once the WAL has grown long, the last context of the process
 * to close the store copies it into the file and empties it: the file
 * alone then holds every key, and opens as a store.
 */
static void test_wal_at_last_close(void **state)
{
	struct fixture *f = *state;
	const char *copy;
	char owner[32], value[64];
	long long pages;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	expect_ok(set_active_as(f, tu_sysadmin(), "user_keys", "alice",
				"anthropic", 0));
	kw_close(f->ctx);
	f->ctx = NULL;
	/* The last to close changed keys: the file alone holds them. */
	if (file_size(tu_fmt("%s-wal", f->db)) > 0)
		fail_msg("the last close after a change left a WAL of %lld "
			 "pages", wal_pages(f));
	copy = copy_main_file(f, "changed.db");
	expect_copy_row(f, copy, "org", "acme", 1);
	expect_copy_row(f, copy, "user", "alice", 0);
	copy = backup_store(f, "backup.db");
	expect_copy_row(f, copy, "org", "acme", 1);
	expect_copy_row(f, copy, "user", "alice", 0);

	/* A long WAL, and two contexts: the second to close is the last. */
	open_store(f);
	open_more(f, 0, NULL);
	expect_ok(put_as(f, tu_sysadmin(), "org_keys", "acme", "anthropic",
			 K_ORG_ACME_2, NULL, KW_PUT_ROTATE));
	put_ok(f, "system_keys", NULL, "anthropic", K_SYSTEM, NULL);
	for (int i = 0; i < 150; i++) {
		snprintf(owner, sizeof(owner), "user%03d", i);
		snprintf(value, sizeof(value),
			 "sk-ant-SECRET-bulk-%03d-0123456", i);
		expect_ok(put_on(f->more[0], "user_keys", owner, value,
				 KW_PUT_CREATE));
	}
	pages = wal_pages(f);
	if (pages < 150 || pages >= 1000)
		fail_msg("the test needs a WAL of 150 to 999 pages, not %lld",
			 pages);
	kw_close(f->ctx);
	f->ctx = NULL;
	expect_resolve_on(f->more[0], NULL, "anthropic", "alice", "acme",
			  K_ORG_ACME_2, "org_keys");
	close_more(f, 0);
	if (file_size(tu_fmt("%s-wal", f->db)) > 0)
		fail_msg("the last close left a WAL of %lld pages",
			 wal_pages(f));
	copy = copy_main_file(f, "copy.db");
	expect_copy_row(f, copy, "org", "acme", 1);
	expect_copy_row(f, copy, "system", "", 1);
	expect_copy_row(f, copy, "user", "user000", 1);
	expect_copy_row(f, copy, "user", "user149", 1);

	/* The copy is a store: it opens and answers with the new values. */
	open_more(f, 0, conf_for(f, "copy"));
	expect_resolve_on(f->more[0], NULL, "anthropic", "alice", "acme",
			  K_ORG_ACME_2, "org_keys");
	expect_resolve_on(f->more[0], NULL, "anthropic", "alice", "globex",
			  K_ENV, "server_env");
	expect_resolve_on(f->more[0], "fovea", "anthropic", "bob", NULL,
			  K_SYSTEM, "system_keys");
	expect_resolve_on(f->more[0], "only_user", "anthropic", "user149",
			  NULL, "sk-ant-SECRET-bulk-149-0123456", "user_keys");
}

/* How many of this process's descriptors are open on path. */
static int fds_on(const char *path)
{
	char want[PATH_MAX], link[PATH_MAX], got[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int n = 0;

	if (realpath(path, want) == NULL || (d = opendir("/proc/self/fd")) ==
						    NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		ssize_t len;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		len = readlink(link, got, sizeof(got) - 1);
		if (len <= 0)
			continue;
		got[len] = '\0';
		if (strcmp(got, want) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/*
 * A child of fork() cannot open the store its parent has open: SQLite's
 * record of the file's locks, and its mutexes, are the parent's, and a
 * second connection in the child could hang or corrupt the file.  Its
 * kw_open() says so, naming the file and the parent, and opens nothing
 * on the file; the parent's connections go on.
 */
static void test_fork_child_refuses_parent_file(void **state)
{
	struct fixture *f = *state;
	int status = 0;
	pid_t pid;

	open_store(f);
	put_ok(f, "user_keys", "alice", "anthropic", K_USER_ALICE, NULL);
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_USER_ALICE,
		       "user_keys");
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char want[PATH_MAX + 64];
		int before = fds_on(f->db);
		kw_ctx *c = (kw_ctx *)&c;

		alarm(60);
		snprintf(want, sizeof(want),
			 "%s was opened by process %ld before fork(): a child "
			 "cannot open it again;",
			 f->db, (long)getppid());
		if (kw_open(&c, f->conf) != KW_ERR_INVAL || c != NULL)
			tu_exit(2);
		if (strstr(kw_last_error(), want) == NULL)
			tu_exit(3);
		tu_exit(before >= 0 && fds_on(f->db) == before ? 0 : 4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The parent's connections go on. */
	expect_resolve(f, NULL, "anthropic", "alice", "globex", K_USER_ALICE,
		       "user_keys");
}

/* A key_id that is not an id (binary, or with a NUL in it) makes the store
 * damaged, and its open ends with that, in time. */
static void test_damaged_key_id(void **state)
{
	static const char *const damage[] = {
		"UPDATE keys SET key_id = key_id || char(0) || 'x'",
		"UPDATE keys SET key_id = CAST(key_id AS BLOB)",
		"UPDATE keys SET key_id = zeroblob(8)",
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
		sqlite3 *db;
		kw_status st;

		unlink(f->db);
		open_store(f);
		put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
		kw_close(f->ctx);
		f->ctx = NULL;
		db = open_db(f->db);
		assert_int_equal(sqlite3_exec(db, damage[i], NULL, NULL, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_close(db), SQLITE_OK);
		alarm(60);
		st = open_text(f, STORE_CONF);
		alarm(0);
		assert_int_equal(st, KW_ERR_BACKEND);
		if (strstr(kw_last_error(),
			   tu_fmt("store %s is damaged: a key_id "
				  "is not a master key id",
				  f->db)) == NULL)
			fail_msg("damage %zu: %s", i, kw_last_error());
	}
}

/* A meta table without the store's id or salt, or with one malformed, and
 * a schema newer than this keyway knows, make the open fail with one line
 * that names the store and what is wrong with it. */
static void test_damaged_meta(void **state)
{
	static const struct {
		const char *sql, *said;
	} damage[] = {
		{ "UPDATE meta SET v = 'not-hex-not-hex-not-hex-not-hex' "
		  "WHERE k = 'store_id'",
		  "is damaged: meta store_id is malformed" },
		{ "UPDATE meta SET v = '0123456789abcdef0123456789ABCDEF' "
		  "WHERE k = 'store_id'",
		  "is damaged: meta store_id is malformed" },
		{ "UPDATE meta SET v = zeroblob(3) WHERE k = 'kdf_salt'",
		  "is damaged: meta kdf_salt is malformed" },
		{ "DELETE FROM meta WHERE k = 'kdf_salt'",
		  "is damaged: its meta table has no kdf_salt" },
		{ "DELETE FROM meta WHERE k = 'store_id'",
		  "is damaged: its meta table has no store_id" },
		{ "PRAGMA user_version = 99",
		  "has schema version 99; this keyway knows up to " },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
		sqlite3 *db;
		kw_status st;

		unlink(f->db);
		open_store(f);
		put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
		kw_close(f->ctx);
		f->ctx = NULL;
		db = open_db(f->db);
		assert_int_equal(sqlite3_exec(db, damage[i].sql, NULL, NULL,
					      NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_close(db), SQLITE_OK);
		st = open_text(f, STORE_CONF);
		assert_int_equal(st, KW_ERR_BACKEND);
		if (strstr(kw_last_error(), f->db) == NULL ||
		    strstr(kw_last_error(), damage[i].said) == NULL ||
		    strchr(kw_last_error(), '\n') != NULL)
			fail_msg("damage %zu: %s", i, kw_last_error());
	}
}

/* busy_timeout_ms out of its range is refused in one line naming it. */
static void test_busy_timeout_refused(void **state)
{
	struct fixture *f = *state;
	kw_status st;

	st = open_text(f, "keyway: { master_key = { source = \"env\"; }; };\n"
			  "backends: { s: { module = \"sqlite\"; "
			  "path = \"keys.db\"; scope = \"org\"; "
			  "busy_timeout_ms = -1; }; };\n"
			  "chains: { default = ( { backend = \"s\"; "
			  "control = \"required\"; } ); };\n");
	assert_int_equal(st, KW_ERR_CONFIG);
	if (strstr(kw_last_error(), "busy_timeout_ms must be between 0 and ")
	    == NULL)
		fail_msg("%s", kw_last_error());
}

/*
 * A key deleted while a reader held the WAL: the erase cannot empty it
 * then, so the last close does, and no frame keeps the deleted key's
 * sealed bytes.
 */
static void test_delete_under_reader_wal_emptied(void **state)
{
	struct fixture *f = *state;
	sqlite3 *reader;

	open_store(f);
	put_ok(f, "org_keys", "acme", "anthropic", K_ORG_ACME, NULL);
	expect_resolve(f, NULL, "anthropic", "alice", "acme", K_ORG_ACME,
		       "org_keys");
	reader = open_db(f->db);
	assert_int_equal(sqlite3_exec(reader,
				      "BEGIN; SELECT count(*) FROM keys",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	expect_ok(delete_as(f, tu_sysadmin(), "org_keys", "acme", "anthropic"));
	assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL),
			 SQLITE_OK);
	kw_close(f->ctx);
	f->ctx = NULL;
	/* The reader's connection is still open: this close emptied it. */
	assert_int_equal(file_size(tu_fmt("%s-wal", f->db)), 0);
	assert_int_equal(sqlite3_close(reader), SQLITE_OK);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(test_roundtrip_every_scope),
		T(test_rotate_missing),
		T(test_disabled_requisite),
		T(test_scopes_apart),
		T(test_pentographer_chain),
		T(test_fovea_chain),
		T(test_actor_rules),
		T(test_actor_edges),
		T(test_list_filters),
		T(test_list_callback_stops),
		T(test_builtin_providers),
		T(test_providers_table),
		T(test_providers_table_errors),
		T(test_bad_references),
		T(test_list_contents),
		T(test_mask),
		T(test_no_plaintext_in_store),
		T(test_delete_erases),
		T(test_sealed_bound_to_row),
		T(test_rekey),
		T(test_many_processes),
		T(test_many_processes_new_store),
		T(test_other_processes_come_and_go),
		T(test_store_created_private),
		T(test_store_created_private_umask0),
		T(test_store_permissions_refused),
		T(test_store_wal_permissions_refused),
		T(test_check_creates_no_store),
		T(test_check_read_only_store),
		T(test_store_path_refused),
		T(test_not_a_store),
		T(test_store_needs_master_key),
		T(test_walk_leaves_no_reader),
		T(test_no_stale_read_other_process),
		T(test_no_stale_read_other_context),
		T(test_contexts_share_a_file),
		T(test_contexts_come_and_go_under_load),
		T(test_one_file_many_backends),
		T(test_wrong_master_key_beside_open),
		T(test_keys_under_several_master_keys),
		T(test_usage_counts_written),
		T(test_wal_at_last_close),
		T(test_fork_child_refuses_parent_file),
		T(test_damaged_key_id),
		T(test_damaged_meta),
		T(test_busy_timeout_refused),
		T(test_check_name_escaped),
		T(test_delete_under_reader_wal_emptied),
	};

	if (argc == 4 && strcmp(argv[1], "--child-resolve") == 0)
		return child_resolve(argv[2], argv[3]);
	if (argc == 6 && strcmp(argv[1], "--child-put") == 0)
		return child_put(argv[2], argv[3], argv[4], argv[5]);
	self_exe = argv[0];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
