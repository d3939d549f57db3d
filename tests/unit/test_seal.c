/*
 * test_seal.c - sealed storage seen from outside: a store file altered byte
 * by byte, ciphertexts moved between rows, scopes and stores, the wrong
 * master key, rekeying under load (threads and processes), every source of
 * a master key, key ids, what a store file holds at rest, the two
 * implementations of AES-256-GCM (libsodium's, OpenSSL's) against values
 * sealed before there were two, PBKDF2 against published vectors and
 * OpenSSL's, and OpenSSL loaded only when needed (this program re-runs
 * itself to see a process from its start).
 *
 * The store file is opened directly with SQLite to read and alter what
 * keyway wrote, as an attacker with the file (but not the master key)
 * could.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <dlfcn.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <sodium.h>
#include <sqlite3.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "testutil.h"

/*
 * Library-internal: this program links libkeyway_test, which has them, and
 * the seams that make sealing take OpenSSL's way even where libsodium's
 * AES-NI code would run, load another file in libcrypto's place, and run
 * PBKDF2 with any parameters.
 */
#include "crypto.h"
#include "seams.h"

/*
 * Master keys and their ids: HMAC-SHA256(key, "keyway master key id v1"),
 * first 8 bytes, computed independently.  The ids are stored in every
 * record, so they must never change for a given key.
 */
#define KEY_A "000102030405060708090a0b0c0d0e0f" \
	      "101112131415161718191a1b1c1d1e1f"
#define KEY_A_ID "d6b77ad7fe930f7c"
#define KEY_B "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" \
	      "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
#define KEY_B_ID "5b7d47751ce4a73d"
#define KEY_C "5eab5eab5eab5eab5eab5eab5eab5eab" \
	      "5eab5eab5eab5eab5eab5eab5eab5eab"
#define KEY_C_ID "d3536cb6720357b9"

/*
 * A passphrase and a salt with the key ids it must give: Argon2id
 * (t = 2, m = 19 MiB, p = 1) and PBKDF2-HMAC-SHA256 (600,000 iterations),
 * computed independently.  A store sealed under a passphrase depends on
 * exactly these parameters.
 */
#define PASS "correct horse battery staple"
#define PASS_ARGON2_ID "61934e7999155adf"
#define PASS_PBKDF2_ID "1216ca240f50c18a"
static const unsigned char pass_salt[16] = {
	0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
	0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f,
};

#define FALLBACK_VALUE "sk-ant-fallback-must-not-be-handed-out"

/* Every variable a test may set; cleared around each test. */
static const char *const test_vars[] = {
	"KEYWAY_MASTER_KEY", "API_KEY_ENCRYPTION_KEY", "KEYWAY_PASSPHRASE",
	"KWSEAL_OLD", "KWSEAL_KEY", "KWSEAL_PASS", "KWSEAL_FALLBACK",
	"CREDENTIALS_DIRECTORY", NULL,
};

/*
 * The configuration write_conf() writes: three sqlite backends (one per
 * scope) on one file, each first in its chain, with an env fallback behind
 * it that would answer if the chain went on.
 */
#define MASTER_LINE 2
#define ORG_LINE 6
#define ORG_PATH_LINE 7
static const char conf_fmt[] =
	"keyway: {\n"                                                /* 1 */
	"  %s\n"                                                     /* 2 */
	"  %s\n"                                                     /* 3 */
	"};\n"                                                       /* 4 */
	"backends: {\n"                                              /* 5 */
	"  org_keys: { module = \"sqlite\"; scope = \"org\";\n"      /* 6 */
	"    path = \"%s\"; };\n"                                    /* 7 */
	"  user_keys: { module = \"sqlite\"; scope = \"user\";\n"    /* 8 */
	"    path = \"%s\"; };\n"                                    /* 9 */
	"  sys_keys: { module = \"sqlite\"; scope = \"system\";\n"   /* 10 */
	"    path = \"%s\"; };\n"                                    /* 11 */
	"  fallback: { module = \"env\";\n"                          /* 12 */
	"    vars = { anthropic = \"KWSEAL_FALLBACK\";\n"            /* 13 */
	"             openai = \"KWSEAL_FALLBACK\"; }; };\n"         /* 14 */
	"};\n"
	"chains: {\n"
	"  default = ( { backend = \"org_keys\"; control = \"sufficient\"; },\n"
	"    { backend = \"fallback\"; control = \"sufficient\"; } );\n"
	"  user = ( { backend = \"user_keys\"; control = \"sufficient\"; },\n"
	"    { backend = \"fallback\"; control = \"sufficient\"; } );\n"
	"  system = ( { backend = \"sys_keys\"; control = \"sufficient\"; },\n"
	"    { backend = \"fallback\"; control = \"sufficient\"; } );\n"
	"};\n";

#define MASTER_ENV "master_key = { source = \"env\"; };"
#define OLD_A \
	"old_master_keys = ( { source = \"env\"; var = \"KWSEAL_OLD\"; } );"
#define NO_OLD "# no old master keys"

#define AUTH_FAILED "authentication failed: the sealed value was altered or " \
		    "belongs to another record"

struct fixture {
	char *dir;
	kw_ctx *ctx;
	kw_ctx *ctx2;
	sqlite3 *db;
	pid_t kids[8];
	size_t nkids;
};

static void set_var(const char *name, const char *value)
{
	assert_int_equal(setenv(name, value, 1), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	tu_unsetenv(test_vars);
	f->dir = tu_tmpdir();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < f->nkids; i++) {
		if (f->kids[i] > 0) {
			kill(f->kids[i], SIGKILL);
			waitpid(f->kids[i], NULL, 0);
		}
	}
	kwi_test_force_openssl(false);
	sqlite3_close(f->db);
	kw_close(f->ctx);
	kw_close(f->ctx2);
	tu_rmrf(f->dir);
	free(f);
	tu_release(0);
	tu_unsetenv(test_vars);
	return 0;
}

/* ---- configurations ---- */

/* Write dir/name from conf_fmt with every sqlite backend on db. */
static char *write_conf(const struct fixture *f, const char *name,
			const char *master, const char *old, const char *db)
{
	char *path = tu_write(f->dir, name, 0644, conf_fmt,
			      master != NULL ? master : "# no master key",
			      old != NULL ? old : NO_OLD, db, db, db);

	return tu_keep(path);
}

/* A store path in the fixture's directory. */
static char *store(const struct fixture *f, const char *name)
{
	return tu_fmt("%s/%s", f->dir, name);
}

static void open_ok(kw_ctx **ctx, const char *conf)
{
	kw_status st;

	kw_close(*ctx);
	*ctx = NULL;
	st = kw_open(ctx, conf);
	if (st != KW_OK)
		fail_msg("kw_open %s: %s: %s", conf, kw_status_str(st),
			 kw_last_error());
	assert_non_null(*ctx);
}

/* kw_open() must fail with st and exactly `want`. */
static void open_fails(const char *conf, kw_status st, const char *want)
{
	/* Not NULL to begin with: kw_open() must clear it. */
	kw_ctx *ctx = (kw_ctx *)&ctx;
	kw_status got = kw_open(&ctx, conf);

	if (got == KW_OK)
		kw_close(ctx);
	if (got != st)
		fail_msg("kw_open %s: %s, not %s: %s", conf, kw_status_str(got),
			 kw_status_str(st), kw_last_error());
	assert_null(ctx);
	assert_string_equal(kw_last_error(), want);
}

/* ---- keys ---- */

static void sysadmin(kw_actor *a)
{
	kw_actor init = KW_ACTOR_INIT;

	*a = init;
	a->user = "ops";
	a->role = KW_ROLE_SYSADMIN;
}

static kw_status put(kw_ctx *ctx, const char *backend, const char *owner,
		     const char *provider, const char *value, kw_put_mode mode)
{
	kw_key_ref ref = KW_KEY_REF_INIT;
	kw_actor a;

	sysadmin(&a);
	ref.backend = backend;
	ref.owner = owner;
	ref.provider = provider;
	return kw_key_put(ctx, &a, &ref, value, strlen(value), NULL, mode);
}

static void put_ok(kw_ctx *ctx, const char *backend, const char *owner,
		   const char *provider, const char *value)
{
	kw_status st = put(ctx, backend, owner, provider, value,
			   KW_PUT_CREATE);

	if (st != KW_OK)
		fail_msg("kw_key_put %s %s %s: %s: %s", backend,
			 owner != NULL ? owner : "-", provider,
			 kw_status_str(st), kw_last_error());
}

static void rekey_ok(kw_ctx *ctx, const char *backend, uint64_t want)
{
	uint64_t n = 12345;
	kw_status st;
	kw_actor a;

	sysadmin(&a);
	st = kw_rekey(ctx, &a, backend, &n);
	if (st != KW_OK)
		fail_msg("kw_rekey %s: %s: %s", backend, kw_status_str(st),
			 kw_last_error());
	assert_int_equal(n, want);
}

/* The chain for a backend of conf_fmt, and who the request is for. */
static void request_for(kw_request *req, const char *backend,
			const char *owner, const char *provider)
{
	kw_request_init(req);
	req->provider = provider;
	if (strcmp(backend, "user_keys") == 0) {
		req->chain = "user";
		req->user = owner;
	} else if (strcmp(backend, "sys_keys") == 0) {
		req->chain = "system";
	} else {
		req->chain = "default";
		req->org = owner;
	}
}

/* Resolve; on KW_OK copy the value and answering backend into value. */
static kw_status resolve(kw_ctx *ctx, const char *backend, const char *owner,
			 const char *provider, char *value, size_t len,
			 char *err, size_t errlen)
{
	/* Not NULL to begin with: a failed kw_resolve() must clear it. */
	kw_secret *s = (kw_secret *)&s;
	kw_request req;
	kw_status st;

	request_for(&req, backend, owner, provider);
	value[0] = '\0';
	err[0] = '\0';
	st = kw_resolve(ctx, &req, &s);
	if (st == KW_OK) {
		snprintf(value, len, "%s@%s", kw_secret_value(s),
			 kw_secret_backend(s));
		kw_secret_free(s);
	} else {
		snprintf(err, errlen, "%s", kw_last_error());
		if (s != NULL)
			snprintf(err, errlen, "failure left a secret behind");
	}
	return st;
}

static void want_value(kw_ctx *ctx, const char *backend, const char *owner,
		       const char *provider, const char *value)
{
	char got[512], err[1024], want[512];
	kw_status st;

	st = resolve(ctx, backend, owner, provider, got, sizeof(got), err,
		     sizeof(err));
	if (st != KW_OK)
		fail_msg("resolving %s %s %s: %s: %s", backend,
			 owner != NULL ? owner : "-", provider,
			 kw_status_str(st), err);
	snprintf(want, sizeof(want), "%s@%s", value, backend);
	assert_string_equal(got, want);
}

/* "the org key of "acme" for anthropic" as the sqlite backend says it. */
static char *describe(const char *backend, const char *owner,
		      const char *provider)
{
	if (strcmp(backend, "sys_keys") == 0)
		return tu_fmt("the system key for %s", provider);
	return tu_fmt("the %s key of \"%s\" for %s",
		      strcmp(backend, "user_keys") == 0 ? "user" : "org", owner,
		      provider);
}

/*
 * Resolving must fail with KW_ERR_CRYPTO, hand out nothing, stop at the
 * store (its `sufficient` control dies on an error) and say `why`.
 */
static void want_crypto(kw_ctx *ctx, const char *backend, const char *owner,
			const char *provider, const char *why)
{
	char got[512], err[1024], *want;
	const kw_trace_step *step;
	kw_trace *t = NULL;
	kw_request req;
	kw_status st;

	st = resolve(ctx, backend, owner, provider, got, sizeof(got), err,
		     sizeof(err));
	if (st == KW_OK)
		fail_msg("%s %s %s resolved to %s", backend,
			 owner != NULL ? owner : "-", provider, got);
	assert_string_equal(kw_status_str(st), kw_status_str(KW_ERR_CRYPTO));
	request_for(&req, backend, owner, provider);
	want = tu_fmt("chain \"%s\", provider \"%s\": %s answered decryption "
		      "failed: %s: %s",
		      req.chain, provider, backend,
		      describe(backend, owner, provider), why);
	assert_string_equal(err, want);

	/* Step by step: one entry asked, and it ended the chain. */
	assert_int_equal(kw_explain(ctx, &req, &t), KW_OK);
	assert_int_equal(kw_trace_result(t), KW_ERR_CRYPTO);
	assert_int_equal(kw_trace_len(t), 1);
	step = kw_trace_get(t, 0);
	assert_string_equal(step->backend, backend);
	assert_int_equal(step->status, KW_ERR_CRYPTO);
	assert_int_equal(step->action, KW_ACTION_DIE);
	assert_string_equal(step->detail,
			    tu_fmt("%s: %s", describe(backend, owner, provider),
				   why));
	assert_string_equal(step->masked, "");
	assert_null(kw_trace_backend(t));
	kw_trace_free(t);
}

/* ---- listing ---- */

struct id_check {
	const char *want;  /* every key_id must be this */
	size_t n;
	size_t bad;
	char first_bad[128];
};

static kw_status check_id(void *arg, const kw_key_info *info)
{
	struct id_check *c = arg;

	c->n++;
	if (info->key_id == NULL || strcmp(info->key_id, c->want) != 0) {
		if (c->bad++ == 0)
			snprintf(c->first_bad, sizeof(c->first_bad),
				 "%s/%s: %s", info->owner != NULL
						      ? info->owner
						      : "-",
				 info->provider,
				 info->key_id != NULL ? info->key_id
						      : "(null)");
	}
	return KW_OK;
}

/* Every key of backend (NULL: all) is sealed under `id`; n of them. */
static void want_ids(kw_ctx *ctx, const char *backend, const char *id,
		     size_t n)
{
	struct id_check c = { id, 0, 0, "" };
	kw_status st;
	kw_actor a;

	sysadmin(&a);
	st = kw_key_list(ctx, &a, backend, NULL, check_id, &c);
	if (st != KW_OK)
		fail_msg("kw_key_list: %s: %s", kw_status_str(st),
			 kw_last_error());
	if (c.bad != 0)
		fail_msg("%zu keys not under %s, first %s", c.bad, id,
			 c.first_bad);
	assert_int_equal(c.n, n);
}

struct id_of {
	char id[64];
	size_t n;
};

static kw_status get_id(void *arg, const kw_key_info *info)
{
	struct id_of *o = arg;

	o->n++;
	snprintf(o->id, sizeof(o->id), "%s",
		 info->key_id != NULL ? info->key_id : "(null)");
	return KW_OK;
}

/* The key id of the only key of backend. */
static char *only_id(kw_ctx *ctx, const char *backend)
{
	struct id_of o = { "", 0 };
	kw_actor a;

	sysadmin(&a);
	assert_int_equal(kw_key_list(ctx, &a, backend, NULL, get_id, &o),
			 KW_OK);
	assert_int_equal(o.n, 1);
	return tu_fmt("%s", o.id);
}

/* ---- the store file, directly ---- */

static sqlite3 *db_open(const char *path)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK)
		fail_msg("sqlite3_open_v2 %s: %s", path, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_busy_timeout(db, 10000), SQLITE_OK);
	/* Many small writes follow; durability is not what is tested. */
	assert_int_equal(sqlite3_exec(db, "PRAGMA synchronous = OFF", NULL,
				      NULL, NULL),
			 SQLITE_OK);
	return db;
}

static const char *scope_col(const char *backend)
{
	return strcmp(backend, "user_keys") == 0  ? "user"
	       : strcmp(backend, "sys_keys") == 0 ? "system"
						  : "org";
}

/* The sealed blob of a row (kept); its length in *len. */
static unsigned char *blob_get(sqlite3 *db, const char *backend,
			       const char *owner, const char *provider,
			       size_t *len)
{
	sqlite3_stmt *s = NULL;
	unsigned char *copy;
	const void *v;
	int n;

	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT sealed FROM keys WHERE "
					    "scope = ?1 AND owner = ?2 AND "
					    "provider = ?3",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, scope_col(backend), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, owner != NULL ? owner : "", -1,
			  SQLITE_STATIC);
	sqlite3_bind_text(s, 3, provider, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		fail_msg("no row %s %s %s", backend, owner, provider);
	}
	v = sqlite3_column_blob(s, 0);
	n = sqlite3_column_bytes(s, 0);
	copy = tu_keep(malloc((size_t)n + 1));
	memcpy(copy, v, (size_t)n);
	*len = (size_t)n;
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	return copy;
}

static void blob_set(sqlite3 *db, const char *backend, const char *owner,
		     const char *provider, const unsigned char *v, size_t len)
{
	sqlite3_stmt *s = NULL;

	assert_int_equal(sqlite3_prepare_v2(db,
					    "UPDATE keys SET sealed = ?4 "
					    "WHERE scope = ?1 AND owner = ?2 "
					    "AND provider = ?3",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, scope_col(backend), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, owner != NULL ? owner : "", -1,
			  SQLITE_STATIC);
	sqlite3_bind_text(s, 3, provider, -1, SQLITE_STATIC);
	/* A zero-length blob stays a blob, not NULL. */
	if (len == 0)
		sqlite3_bind_zeroblob(s, 4, 0);
	else
		sqlite3_bind_blob(s, 4, v, (int)len, SQLITE_TRANSIENT);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_changes(db), 1);
}

/* meta's store_id (kept). */
static char *store_id(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	char *id;

	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT v FROM meta WHERE k = "
					    "'store_id'",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	id = tu_fmt("%.*s", sqlite3_column_bytes(s, 0),
		    (const char *)sqlite3_column_blob(s, 0));
	sqlite3_finalize(s);
	return id;
}

static void set_salt(const char *path, const unsigned char salt[16])
{
	sqlite3 *db = db_open(path);
	sqlite3_stmt *s = NULL;

	assert_int_equal(sqlite3_prepare_v2(db,
					    "UPDATE meta SET v = ?1 WHERE k = "
					    "'kdf_salt'",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(s, 1, salt, 16, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_changes(db), 1);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static char *hex(const unsigned char *p, size_t n)
{
	char *s = tu_keep(malloc(2 * n + 1));

	for (size_t i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	return s;
}

/* Contents of path (kept), or NULL if it does not exist. */
static unsigned char *read_all(const char *path, size_t *len)
{
	unsigned char *buf;
	struct stat sb;
	ssize_t got;
	size_t off = 0;
	int fd;

	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		assert_int_equal(errno, ENOENT);
		return NULL;
	}
	assert_int_equal(fstat(fd, &sb), 0);
	buf = tu_keep(malloc((size_t)sb.st_size + 1));
	while (off < (size_t)sb.st_size &&
	       (got = read(fd, buf + off, (size_t)sb.st_size - off)) > 0)
		off += (size_t)got;
	close(fd);
	assert_int_equal(off, (size_t)sb.st_size);
	*len = off;
	return buf;
}

static const char *const suffixes[3] = { "", "-wal", "-shm" };

struct snapshot {
	unsigned char *data[3];
	size_t len[3];
};

static void snap(const char *db, struct snapshot *s)
{
	for (int i = 0; i < 3; i++)
		s->data[i] = read_all(tu_fmt("%s%s", db, suffixes[i]),
				      &s->len[i]);
}

/* The first n of the store's files (3: with -shm, the WAL's index, which
 * the first reader to open a closed store rebuilds) are as they were. */
static void same_snap(const char *db, const struct snapshot *a,
		      const struct snapshot *b, int n)
{
	for (int i = 0; i < n; i++) {
		if ((a->data[i] == NULL) != (b->data[i] == NULL))
			fail_msg("%s%s %s", db, suffixes[i],
				 a->data[i] == NULL ? "appeared"
						    : "disappeared");
		if (a->data[i] == NULL)
			continue;
		if (a->len[i] != b->len[i] ||
		    memcmp(a->data[i], b->data[i], a->len[i]) != 0)
			fail_msg("%s%s changed", db, suffixes[i]);
	}
}

/* None of the store's three files holds those n bytes. */
static void absent(const char *db, const void *needle, size_t n,
		   const char *what)
{
	for (int i = 0; i < 3; i++) {
		size_t len, mark = tu_kept();
		unsigned char *data = read_all(tu_fmt("%s%s", db, suffixes[i]),
					       &len);

		if (data != NULL && memmem(data, len, needle, n) != NULL)
			fail_msg("%s found in %s%s", what, db, suffixes[i]);
		tu_release(mark);
	}
}

/* ---- 1. every bit of a sealed value matters ---- */

#define TAMPER_VALUE "sk-ant-tamper-0123456789abcdefghij"

static void test_tamper_every_bit(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL, db);
	unsigned char *blob, *bad;
	size_t len, flips = 0;
	char *why;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	set_var("KWSEAL_FALLBACK", FALLBACK_VALUE);
	open_ok(&f->ctx, conf);
	put_ok(f->ctx, "org_keys", "acme", "anthropic", TAMPER_VALUE);
	want_value(f->ctx, "org_keys", "acme", "anthropic", TAMPER_VALUE);
	/* The fallback is live: an org without a key gets it. */
	want_value(f->ctx, "fallback", "nokey", "anthropic", FALLBACK_VALUE);

	f->db = db_open(db);
	blob = blob_get(f->db, "org_keys", "acme", "anthropic", &len);
	/* version, key id, nonce, ciphertext, tag */
	assert_int_equal(len, 1 + 8 + 12 + strlen(TAMPER_VALUE) + 16);
	assert_int_equal(blob[0], 1);
	assert_string_equal(hex(blob + 1, 8), KEY_A_ID);
	bad = tu_keep(malloc(len + 1));

	/* One kw_ctx throughout: each lookup reads a fresh WAL snapshot. */
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			size_t mark = tu_kept();

			memcpy(bad, blob, len);
			bad[i] ^= (unsigned char)(1u << bit);
			blob_set(f->db, "org_keys", "acme", "anthropic", bad,
				 len);
			if (i == 0)
				why = tu_fmt("unknown seal format version %u",
					     (unsigned)bad[0]);
			else if (i < 9)
				why = tu_fmt(
					"sealed under master key %s, which "
					"is not configured",
					hex(bad + 1, 8));
			else
				why = tu_fmt("%s", AUTH_FAILED);
			want_crypto(f->ctx, "org_keys", "acme", "anthropic",
				    why);
			flips++;
			tu_release(mark);
		}
	}
	assert_int_equal(flips, 8 * len);

	/* Shortened, lengthened, emptied. */
	blob_set(f->db, "org_keys", "acme", "anthropic", blob, len - 1);
	want_crypto(f->ctx, "org_keys", "acme", "anthropic", AUTH_FAILED);
	memcpy(bad, blob, len);
	bad[len] = 0;
	blob_set(f->db, "org_keys", "acme", "anthropic", bad, len + 1);
	want_crypto(f->ctx, "org_keys", "acme", "anthropic", AUTH_FAILED);
	blob_set(f->db, "org_keys", "acme", "anthropic", blob, 36);
	want_crypto(f->ctx, "org_keys", "acme", "anthropic",
		    "sealed value is too short (36 bytes)");
	blob_set(f->db, "org_keys", "acme", "anthropic", blob, 37);
	want_crypto(f->ctx, "org_keys", "acme", "anthropic", AUTH_FAILED);
	blob_set(f->db, "org_keys", "acme", "anthropic", blob, 0);
	want_crypto(f->ctx, "org_keys", "acme", "anthropic",
		    "sealed value is too short (0 bytes)");

	/* Restored, it opens again. */
	blob_set(f->db, "org_keys", "acme", "anthropic", blob, len);
	want_value(f->ctx, "org_keys", "acme", "anthropic", TAMPER_VALUE);
}

/* ---- 2. a sealed value belongs to its row ---- */

#define ACME_ANT "sk-ant-acme-anthropic-0123456789ab"
#define ACME_OAI "sk-acme-openai-0123456789abcdef"
#define GLOBEX_ANT "sk-ant-globex-anthropic-0123456789"
#define USER_ACME_ANT "sk-ant-user-named-acme-0123456789"
#define SYS_ANT "sk-ant-system-anthropic-012345678"

static void test_swap_rows(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL, db);
	unsigned char *acme, *globex, *oai, *user, *sys;
	size_t acme_len, globex_len, oai_len, user_len, sys_len;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	set_var("KWSEAL_FALLBACK", FALLBACK_VALUE);
	open_ok(&f->ctx, conf);
	put_ok(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	put_ok(f->ctx, "org_keys", "acme", "openai", ACME_OAI);
	put_ok(f->ctx, "org_keys", "globex", "anthropic", GLOBEX_ANT);
	/* A user who shares the org's name: only the scope differs. */
	put_ok(f->ctx, "user_keys", "acme", "anthropic", USER_ACME_ANT);
	put_ok(f->ctx, "sys_keys", NULL, "anthropic", SYS_ANT);

	f->db = db_open(db);
	acme = blob_get(f->db, "org_keys", "acme", "anthropic", &acme_len);
	globex = blob_get(f->db, "org_keys", "globex", "anthropic",
			  &globex_len);
	oai = blob_get(f->db, "org_keys", "acme", "openai", &oai_len);
	user = blob_get(f->db, "user_keys", "acme", "anthropic", &user_len);
	sys = blob_get(f->db, "sys_keys", NULL, "anthropic", &sys_len);

	/* Across owners. */
	blob_set(f->db, "org_keys", "globex", "anthropic", acme, acme_len);
	want_crypto(f->ctx, "org_keys", "globex", "anthropic", AUTH_FAILED);
	want_value(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	blob_set(f->db, "org_keys", "globex", "anthropic", globex,
		 globex_len);
	want_value(f->ctx, "org_keys", "globex", "anthropic", GLOBEX_ANT);

	/* Across providers (openai accepts an sk-ant- value). */
	blob_set(f->db, "org_keys", "acme", "openai", acme, acme_len);
	want_crypto(f->ctx, "org_keys", "acme", "openai", AUTH_FAILED);
	blob_set(f->db, "org_keys", "acme", "openai", oai, oai_len);
	want_value(f->ctx, "org_keys", "acme", "openai", ACME_OAI);

	/* Across scopes, both ways, same owner and provider. */
	blob_set(f->db, "user_keys", "acme", "anthropic", acme, acme_len);
	want_crypto(f->ctx, "user_keys", "acme", "anthropic", AUTH_FAILED);
	blob_set(f->db, "user_keys", "acme", "anthropic", user, user_len);
	want_value(f->ctx, "user_keys", "acme", "anthropic", USER_ACME_ANT);
	blob_set(f->db, "org_keys", "acme", "anthropic", user, user_len);
	want_crypto(f->ctx, "org_keys", "acme", "anthropic", AUTH_FAILED);
	blob_set(f->db, "org_keys", "acme", "anthropic", acme, acme_len);
	want_value(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	blob_set(f->db, "sys_keys", NULL, "anthropic", acme, acme_len);
	want_crypto(f->ctx, "sys_keys", NULL, "anthropic", AUTH_FAILED);
	blob_set(f->db, "sys_keys", NULL, "anthropic", sys, sys_len);
	want_value(f->ctx, "sys_keys", NULL, "anthropic", SYS_ANT);
}

static void test_swap_stores(void **state)
{
	struct fixture *f = *state;
	char *db1 = store(f, "one.db"), *db2 = store(f, "two.db");
	char *conf1 = write_conf(f, "one.conf", MASTER_ENV, NULL, db1);
	char *conf2 = write_conf(f, "two.conf", MASTER_ENV, NULL, db2);
	unsigned char *b1, *b2;
	size_t len1, len2;
	sqlite3 *other;
	char *id1, *id2;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	set_var("KWSEAL_FALLBACK", FALLBACK_VALUE);
	open_ok(&f->ctx, conf1);
	open_ok(&f->ctx2, conf2);
	put_ok(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	put_ok(f->ctx2, "org_keys", "acme", "anthropic", GLOBEX_ANT);
	/* One master key (no salt for an env key): only the store differs. */
	assert_string_equal(only_id(f->ctx, "org_keys"), KEY_A_ID);
	assert_string_equal(only_id(f->ctx2, "org_keys"), KEY_A_ID);

	f->db = db_open(db1);
	other = db_open(db2);
	id1 = store_id(f->db);
	id2 = store_id(other);
	assert_int_equal(strlen(id1), 32);
	assert_string_not_equal(id1, id2);
	b1 = blob_get(f->db, "org_keys", "acme", "anthropic", &len1);
	b2 = blob_get(other, "org_keys", "acme", "anthropic", &len2);

	blob_set(other, "org_keys", "acme", "anthropic", b1, len1);
	blob_set(f->db, "org_keys", "acme", "anthropic", b2, len2);
	assert_int_equal(sqlite3_close(other), SQLITE_OK);
	want_crypto(f->ctx2, "org_keys", "acme", "anthropic", AUTH_FAILED);
	want_crypto(f->ctx, "org_keys", "acme", "anthropic", AUTH_FAILED);

	/* Back where they belong. */
	other = db_open(db2);
	blob_set(other, "org_keys", "acme", "anthropic", b2, len2);
	assert_int_equal(sqlite3_close(other), SQLITE_OK);
	blob_set(f->db, "org_keys", "acme", "anthropic", b1, len1);
	want_value(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	want_value(f->ctx2, "org_keys", "acme", "anthropic", GLOBEX_ANT);
}

/* ---- 3. the wrong master key, and moving to a new one ---- */

static void test_wrong_master_key(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL, db);
	char *conf_ba = write_conf(f, "rekey.conf", MASTER_ENV, OLD_A, db);
	struct snapshot before, after;
	kw_actor owner = KW_ACTOR_INIT;
	uint64_t n = 99;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	open_ok(&f->ctx, conf);
	put_ok(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	put_ok(f->ctx, "org_keys", "globex", "anthropic", GLOBEX_ANT);
	put_ok(f->ctx, "user_keys", "acme", "anthropic", USER_ACME_ANT);
	put_ok(f->ctx, "sys_keys", NULL, "anthropic", SYS_ANT);
	want_ids(f->ctx, NULL, KEY_A_ID, 4);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* Under B alone: refused before anything is written (the -wal
	 * and -shm files stay after the last close, for the next opener). */
	snap(db, &before);
	assert_non_null(before.data[0]);
	set_var("KEYWAY_MASTER_KEY", KEY_B);
	open_fails(conf, KW_ERR_CRYPTO,
		   tu_fmt("%s:%d: backend \"org_keys\": %s holds keys sealed "
			  "under master key " KEY_A_ID ", which neither "
			  "keyway.master_key nor keyway.old_master_keys holds",
			  conf, ORG_PATH_LINE, db));
	snap(db, &after);
	same_snap(db, &before, &after, 2);
	/* Again, with the store open elsewhere (its -wal and -shm exist). */
	set_var("KEYWAY_MASTER_KEY", KEY_A);
	open_ok(&f->ctx2, conf);
	want_value(f->ctx2, "org_keys", "acme", "anthropic", ACME_ANT);
	snap(db, &before);
	assert_non_null(before.data[1]);
	assert_non_null(before.data[2]);
	set_var("KEYWAY_MASTER_KEY", KEY_B);
	open_fails(conf, KW_ERR_CRYPTO,
		   tu_fmt("%s:%d: backend \"org_keys\": %s holds keys sealed "
			  "under master key " KEY_A_ID ", which neither "
			  "keyway.master_key nor keyway.old_master_keys holds",
			  conf, ORG_PATH_LINE, db));
	snap(db, &after);
	same_snap(db, &before, &after, 3);
	kw_close(f->ctx2);
	f->ctx2 = NULL;

	/* B current, A old: opens and resolves what A sealed. */
	set_var("KWSEAL_OLD", KEY_A);
	open_ok(&f->ctx, conf_ba);
	want_value(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	want_value(f->ctx, "user_keys", "acme", "anthropic", USER_ACME_ANT);
	want_value(f->ctx, "sys_keys", NULL, "anthropic", SYS_ANT);
	want_ids(f->ctx, NULL, KEY_A_ID, 4);

	/* Only a system administrator may rekey. */
	owner.user = "wile";
	owner.org = "acme";
	owner.role = KW_ROLE_OWNER;
	assert_int_equal(kw_rekey(f->ctx, &owner, "org_keys", &n), KW_ERR_PERM);
	assert_string_equal(kw_last_error(),
			    "only a system administrator may re-seal a store");
	assert_int_equal(n, 0);
	owner.role = KW_ROLE_ADMIN;
	assert_int_equal(kw_rekey(f->ctx, &owner, "org_keys", NULL),
			 KW_ERR_PERM);
	owner.org = NULL;
	owner.user = "acme";
	owner.role = KW_ROLE_MEMBER;
	assert_int_equal(kw_rekey(f->ctx, &owner, "user_keys", NULL),
			 KW_ERR_PERM);
	assert_string_equal(kw_last_error(),
			    "only a system administrator may re-seal a store");
	want_ids(f->ctx, NULL, KEY_A_ID, 4);

	rekey_ok(f->ctx, "org_keys", 2);
	want_ids(f->ctx, "org_keys", KEY_B_ID, 2);
	want_ids(f->ctx, "user_keys", KEY_A_ID, 1);
	rekey_ok(f->ctx, "org_keys", 0);
	rekey_ok(f->ctx, "user_keys", 1);
	rekey_ok(f->ctx, "sys_keys", 1);
	want_ids(f->ctx, NULL, KEY_B_ID, 4);
	want_value(f->ctx, "org_keys", "globex", "anthropic", GLOBEX_ANT);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* B alone now opens it; A alone no longer does. */
	unsetenv("KWSEAL_OLD");
	open_ok(&f->ctx, conf);
	want_ids(f->ctx, NULL, KEY_B_ID, 4);
	want_value(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	want_value(f->ctx, "org_keys", "globex", "anthropic", GLOBEX_ANT);
	want_value(f->ctx, "user_keys", "acme", "anthropic", USER_ACME_ANT);
	want_value(f->ctx, "sys_keys", NULL, "anthropic", SYS_ANT);
	kw_close(f->ctx);
	f->ctx = NULL;
	set_var("KEYWAY_MASTER_KEY", KEY_A);
	open_fails(conf, KW_ERR_CRYPTO,
		   tu_fmt("%s:%d: backend \"org_keys\": %s holds keys sealed "
			  "under master key " KEY_B_ID ", which neither "
			  "keyway.master_key nor keyway.old_master_keys holds",
			  conf, ORG_PATH_LINE, db));
}

/* ---- 4. rekeying while others resolve ---- */

#define NORGS 20
#define NKEYS (2 * NORGS)
#define NRESOLVERS 4
#define MIX 20

static void key_of(int k, char *org, size_t olen, const char **provider,
		   char *value, size_t vlen)
{
	int o = k / 2;

	snprintf(org, olen, "org%02d", o);
	*provider = k % 2 == 0 ? "anthropic" : "openai";
	if (k % 2 == 0)
		snprintf(value, vlen, "sk-ant-load-%02d-abcdefghijklmnop", o);
	else
		snprintf(value, vlen, "sk-load-%02d-qrstuvwxyz0123456789", o);
}

/* Resolver r's j-th key: a different mix of 20 of the 40 for each. */
static int mix(int r, int j)
{
	/* Steps prime to NKEYS, so that no key repeats within a mix. */
	static const int step[NRESOLVERS] = { 1, 3, 7, 9 };

	return (r * 11 + j * step[r]) % NKEYS;
}

static void make_load_keys(const char *conf)
{
	kw_ctx *ctx = NULL;
	char org[16], value[64];
	const char *provider;

	open_ok(&ctx, conf);
	for (int k = 0; k < NKEYS; k++) {
		key_of(k, org, sizeof(org), &provider, value, sizeof(value));
		put_ok(ctx, "org_keys", org, provider, value);
	}
	want_ids(ctx, "org_keys", KEY_A_ID, NKEYS);
	kw_close(ctx);
}

/* One full pass over r's keys; 0, or -1 with what went wrong in err. */
static int resolve_pass(kw_ctx *ctx, int r, long *count, char *err,
			size_t errlen)
{
	char org[16], value[64], got[512], why[1024], want[128];
	const char *provider;

	for (int j = 0; j < MIX; j++) {
		kw_status st;

		key_of(mix(r, j), org, sizeof(org), &provider, value,
		       sizeof(value));
		st = resolve(ctx, "org_keys", org, provider, got, sizeof(got),
			     why, sizeof(why));
		(*count)++;
		snprintf(want, sizeof(want), "%s@org_keys", value);
		if (st != KW_OK) {
			snprintf(err, errlen, "%s %s: %s: %s", org, provider,
				 kw_status_str(st), why);
			return -1;
		}
		if (strcmp(got, want) != 0) {
			snprintf(err, errlen, "%s %s: got %s", org, provider,
				 got);
			return -1;
		}
	}
	return 0;
}

struct resolver {
	pthread_t thread;
	kw_ctx *ctx;
	int index;
	atomic_bool *stop;
	atomic_int passes;
	long count;
	int failed;
	char error[1200];
};

static void *resolver_main(void *arg)
{
	struct resolver *r = arg;

	for (;;) {
		bool last = atomic_load(r->stop);

		if (resolve_pass(r->ctx, r->index, &r->count, r->error,
				 sizeof(r->error)) != 0) {
			r->failed = 1;
			atomic_fetch_add(&r->passes, 1);
			break;
		}
		atomic_fetch_add(&r->passes, 1);
		if (last)
			break;
	}
	return NULL;
}

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * A thread that lists the keys over and over: rekey is one transaction, so
 * every listing sees all of them under the old key or all under the new.
 */
struct lister {
	pthread_t thread;
	kw_ctx *ctx;
	atomic_bool *stop;
	atomic_int lists;
	long saw_old, saw_new;
	int failed;
	char error[1200];
};

struct tally {
	size_t n, old, new;
};

static kw_status tally_one(void *arg, const kw_key_info *info)
{
	struct tally *t = arg;

	t->n++;
	if (info->key_id != NULL && strcmp(info->key_id, KEY_A_ID) == 0)
		t->old++;
	else if (info->key_id != NULL && strcmp(info->key_id, KEY_B_ID) == 0)
		t->new++;
	return KW_OK;
}

static void *lister_main(void *arg)
{
	struct lister *l = arg;
	kw_actor a;

	sysadmin(&a);
	for (;;) {
		bool last = atomic_load(l->stop);
		struct tally t = { 0, 0, 0 };
		kw_status st;

		st = kw_key_list(l->ctx, &a, "org_keys", NULL, tally_one, &t);
		if (st != KW_OK || t.n != NKEYS ||
		    (t.old != NKEYS && t.new != NKEYS)) {
			snprintf(l->error, sizeof(l->error),
				 "%s: %zu keys, %zu under A, %zu under B: %s",
				 kw_status_str(st), t.n, t.old, t.new,
				 st != KW_OK ? kw_last_error() : "");
			l->failed = 1;
			atomic_fetch_add(&l->lists, 1);
			break;
		}
		if (t.old == NKEYS)
			l->saw_old++;
		else
			l->saw_new++;
		atomic_fetch_add(&l->lists, 1);
		if (last)
			break;
	}
	return NULL;
}

static void test_rekey_under_threads(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *conf_a = write_conf(f, "a.conf", MASTER_ENV, NULL, db);
	char *conf_ba = write_conf(f, "ba.conf", MASTER_ENV, OLD_A, db);
	struct resolver r[NRESOLVERS];
	struct lister l;
	atomic_bool stop = false;
	char rekey_err[1024] = "";
	int started = 0;
	bool lister_started;
	uint64_t n = 0;
	kw_status st;
	kw_actor a;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	make_load_keys(conf_a);
	set_var("KEYWAY_MASTER_KEY", KEY_B);
	set_var("KWSEAL_OLD", KEY_A);
	open_ok(&f->ctx, conf_ba);
	open_ok(&f->ctx2, conf_ba);

	memset(r, 0, sizeof(r));
	memset(&l, 0, sizeof(l));
	for (int i = 0; i < NRESOLVERS; i++) {
		r[i].ctx = f->ctx;
		r[i].index = i;
		r[i].stop = &stop;
		atomic_init(&r[i].passes, 0);
		if (pthread_create(&r[i].thread, NULL, resolver_main, &r[i]) !=
		    0)
			break;
		started++;
	}
	l.ctx = f->ctx;
	l.stop = &stop;
	atomic_init(&l.lists, 0);
	lister_started = pthread_create(&l.thread, NULL, lister_main, &l) == 0;

	/* Every thread is under way before the rekey starts. */
	for (int i = 0; i < started; i++)
		for (int w = 0; w < 30000 && atomic_load(&r[i].passes) == 0;
		     w++)
			nap_ms(1);
	for (int w = 0; lister_started && w < 30000 &&
			atomic_load(&l.lists) == 0;
	     w++)
		nap_ms(1);

	sysadmin(&a);
	st = kw_rekey(f->ctx2, &a, "org_keys", &n);
	if (st != KW_OK)
		snprintf(rekey_err, sizeof(rekey_err), "%s", kw_last_error());
	atomic_store(&stop, true);
	for (int i = 0; i < started; i++)
		pthread_join(r[i].thread, NULL);
	if (lister_started)
		pthread_join(l.thread, NULL);

	assert_int_equal(started, NRESOLVERS);
	assert_true(lister_started);
	if (st != KW_OK)
		fail_msg("kw_rekey: %s: %s", kw_status_str(st), rekey_err);
	assert_int_equal(n, NKEYS);
	for (int i = 0; i < NRESOLVERS; i++) {
		if (r[i].failed)
			fail_msg("resolver %d failed after %ld resolves: %s",
				 i, r[i].count, r[i].error);
		/* At least one pass before and one after the rekey. */
		assert_true(atomic_load(&r[i].passes) >= 2);
	}
	if (l.failed)
		fail_msg("a listing saw a store half rekeyed: %s", l.error);
	/* The first listing came before the rekey, the last after it. */
	assert_true(l.saw_old >= 1);
	assert_true(l.saw_new >= 1);
	want_ids(f->ctx, "org_keys", KEY_B_ID, NKEYS);
	want_ids(f->ctx2, "org_keys", KEY_B_ID, NKEYS);
	kw_close(f->ctx);
	kw_close(f->ctx2);
	f->ctx = f->ctx2 = NULL;

	/* B alone opens it, and every value is intact. */
	unsetenv("KWSEAL_OLD");
	open_ok(&f->ctx, conf_a);
	for (int i = 0; i < NRESOLVERS; i++) {
		long count = 0;
		char err[1200];

		if (resolve_pass(f->ctx, i, &count, err, sizeof(err)) != 0)
			fail_msg("after rekey: %s", err);
	}
}

/* A resolver process: its own kw_ctx on conf; exit status says how it
 * went, stderr what went wrong. */
static int child_main(const char *conf, int index, int ready_fd, int stop_fd)
{
	kw_ctx *ctx = NULL;
	long count = 0;
	char err[1200];
	bool first = true;
	int rc = 0;

	if (kw_open(&ctx, conf) != KW_OK) {
		fprintf(stderr, "resolver %d: kw_open: %s\n", index,
			kw_last_error());
		rc = 2;
		goto out;
	}
	for (;;) {
		struct pollfd p = { stop_fd, POLLIN, 0 };
		bool last = poll(&p, 1, 0) > 0;

		if (resolve_pass(ctx, index, &count, err, sizeof(err)) != 0) {
			fprintf(stderr, "resolver %d after %ld resolves: %s\n",
				index, count, err);
			rc = 3;
			goto out;
		}
		if (first && write(ready_fd, "r", 1) != 1)
			rc = 4;
		first = false;
		if (last || rc != 0)
			break;
	}
out:
	if (first && write(ready_fd, "f", 1) != 1)
		rc = 4;
	kw_close(ctx);
	return rc;
}

static void test_rekey_under_processes(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *conf_a = write_conf(f, "a.conf", MASTER_ENV, NULL, db);
	char *conf_ba = write_conf(f, "ba.conf", MASTER_ENV, OLD_A, db);
	int ready[2], stop[2], nready = 0, status;
	kw_status st = KW_ERR_INTERNAL;
	char rekey_err[1024] = "";
	uint64_t n = 0;
	kw_actor a;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	make_load_keys(conf_a);
	set_var("KEYWAY_MASTER_KEY", KEY_B);
	set_var("KWSEAL_OLD", KEY_A);

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(stop), 0);
	for (int i = 0; i < NRESOLVERS; i++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			close(ready[0]);
			close(stop[1]);
			tu_exit(child_main(conf_ba, i, ready[1], stop[0]));
		}
		f->kids[f->nkids++] = pid;
	}
	close(ready[1]);
	close(stop[0]);

	/* Every resolver is under way before the rekey starts. */
	while (nready < NRESOLVERS) {
		struct pollfd p = { ready[0], POLLIN, 0 };
		char c;

		if (poll(&p, 1, 60000) <= 0 || read(ready[0], &c, 1) != 1)
			break;
		nready++;
	}
	open_ok(&f->ctx2, conf_ba);
	sysadmin(&a);
	if (nready == NRESOLVERS) {
		st = kw_rekey(f->ctx2, &a, "org_keys", &n);
		snprintf(rekey_err, sizeof(rekey_err), "%s", kw_last_error());
	}
	close(stop[1]);
	close(ready[0]);
	for (size_t i = 0; i < f->nkids; i++) {
		assert_int_equal(waitpid(f->kids[i], &status, 0), f->kids[i]);
		f->kids[i] = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("resolver %zu: %s %d", i,
				 WIFEXITED(status) ? "exit" : "signal",
				 WIFEXITED(status) ? WEXITSTATUS(status)
						   : WTERMSIG(status));
	}
	assert_int_equal(nready, NRESOLVERS);
	if (st != KW_OK)
		fail_msg("kw_rekey: %s: %s", kw_status_str(st), rekey_err);
	assert_int_equal(n, NKEYS);
	want_ids(f->ctx2, "org_keys", KEY_B_ID, NKEYS);
	kw_close(f->ctx2);
	f->ctx2 = NULL;

	unsetenv("KWSEAL_OLD");
	open_ok(&f->ctx, conf_a);
	want_ids(f->ctx, "org_keys", KEY_B_ID, NKEYS);
	for (int i = 0; i < NRESOLVERS; i++) {
		long count = 0;
		char err[1200];

		if (resolve_pass(f->ctx, i, &count, err, sizeof(err)) != 0)
			fail_msg("after rekey: %s", err);
	}
}

/* ---- 5. where a master key comes from ---- */

/* Open conf, store one key, resolve it; returns its key id. */
static char *store_and_resolve(struct fixture *f, const char *conf,
			       const char *value)
{
	char *id;

	open_ok(&f->ctx, conf);
	put_ok(f->ctx, "org_keys", "acme", "anthropic", value);
	want_value(f->ctx, "org_keys", "acme", "anthropic", value);
	id = only_id(f->ctx, "org_keys");
	kw_close(f->ctx);
	f->ctx = NULL;
	/* And again from a fresh context. */
	open_ok(&f->ctx, conf);
	want_value(f->ctx, "org_keys", "acme", "anthropic", value);
	kw_close(f->ctx);
	f->ctx = NULL;
	return id;
}

static void test_env_sources(void **state)
{
	struct fixture *f = *state;
	char *conf, *named, *explicit_default;
	char upper[65];

	/* $KEYWAY_MASTER_KEY by default. */
	set_var("KEYWAY_MASTER_KEY", KEY_A);
	conf = write_conf(f, "env.conf", MASTER_ENV, NULL, store(f, "1.db"));
	assert_string_equal(store_and_resolve(f, conf, ACME_ANT), KEY_A_ID);

	/* Upper-case digits are the same key. */
	for (int i = 0; i < 64; i++)
		upper[i] = (char)(KEY_B[i] >= 'a' ? KEY_B[i] - 32 : KEY_B[i]);
	upper[64] = '\0';
	set_var("KEYWAY_MASTER_KEY", upper);
	conf = write_conf(f, "upper.conf", MASTER_ENV, NULL,
			  store(f, "upper.db"));
	assert_string_equal(store_and_resolve(f, conf, ACME_ANT), KEY_B_ID);

	/* The legacy name, when var is not given. */
	unsetenv("KEYWAY_MASTER_KEY");
	set_var("API_KEY_ENCRYPTION_KEY", KEY_C);
	conf = write_conf(f, "legacy.conf", MASTER_ENV, NULL,
			  store(f, "2.db"));
	assert_string_equal(store_and_resolve(f, conf, ACME_ANT), KEY_C_ID);

	/* $KEYWAY_MASTER_KEY wins over it. */
	set_var("KEYWAY_MASTER_KEY", KEY_A);
	conf = write_conf(f, "both.conf", MASTER_ENV, NULL, store(f, "3.db"));
	assert_string_equal(store_and_resolve(f, conf, ACME_ANT), KEY_A_ID);

	/* Not when var is given, even as the default name. */
	unsetenv("KEYWAY_MASTER_KEY");
	explicit_default = write_conf(f, "explicit.conf",
				      "master_key = { source = \"env\"; var = "
				      "\"KEYWAY_MASTER_KEY\"; };",
				      NULL, store(f, "4.db"));
	open_fails(explicit_default, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $KEYWAY_MASTER_KEY is not "
			  "set",
			  explicit_default, MASTER_LINE));
	unsetenv("API_KEY_ENCRYPTION_KEY");
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $KEYWAY_MASTER_KEY is not "
			  "set (nor $API_KEY_ENCRYPTION_KEY)",
			  conf, MASTER_LINE));
	set_var("KEYWAY_MASTER_KEY", "");
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $KEYWAY_MASTER_KEY is not "
			  "set (nor $API_KEY_ENCRYPTION_KEY)",
			  conf, MASTER_LINE));

	/* A variable of one's own. */
	unsetenv("KEYWAY_MASTER_KEY");
	set_var("KWSEAL_KEY", KEY_B);
	named = write_conf(f, "named.conf",
			   "master_key = { source = \"env\"; var = "
			   "\"KWSEAL_KEY\"; };",
			   NULL, store(f, "5.db"));
	assert_string_equal(store_and_resolve(f, named, ACME_ANT), KEY_B_ID);
	unsetenv("KWSEAL_KEY");
	open_fails(named, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $KWSEAL_KEY is not set",
			  named, MASTER_LINE));
}

static void test_malformed_env_keys(void **state)
{
	struct fixture *f = *state;
	char *conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL,
				store(f, "keys.db"));
	char *named = write_conf(f, "named.conf",
				 "master_key = { source = \"env\"; var = "
				 "\"KWSEAL_KEY\"; };",
				 NULL, store(f, "keys.db"));
	char *old = write_conf(f, "old.conf", MASTER_ENV, OLD_A,
			       store(f, "keys.db"));
	const char *const bad[] = {
		/* 63 digits */
		"000102030405060708090a0b0c0d0e0f"
		"101112131415161718191a1b1c1d1e1",
		/* 65 digits */
		KEY_A "0",
		/* 64 characters, one not hexadecimal */
		"000102030405060708090a0b0c0d0e0f"
		"101112131415161718191a1b1c1d1e1g",
		/* a blank inside */
		"000102030405060708090a0b0c0d0e0f"
		" 01112131415161718191a1b1c1d1e1f",
		/* 32 digits */
		"000102030405060708090a0b0c0d0e0f",
		/* a trailing newline */
		KEY_A "\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set_var("KEYWAY_MASTER_KEY", bad[i]);
		open_fails(
			conf, KW_ERR_CONFIG,
			tu_fmt("%s:%d: keyway.master_key: $KEYWAY_MASTER_KEY "
			       "must be 64 hexadecimal digits (make one with "
			       "keyway keygen)",
			       conf, MASTER_LINE));
		set_var("KWSEAL_KEY", bad[i]);
		open_fails(
			named, KW_ERR_CONFIG,
			tu_fmt("%s:%d: keyway.master_key: $KWSEAL_KEY must be "
			       "64 hexadecimal digits (make one with keyway "
			       "keygen)",
			       named, MASTER_LINE));
		/* An old key is checked as strictly. */
		set_var("KEYWAY_MASTER_KEY", KEY_B);
		set_var("KWSEAL_OLD", bad[i]);
		open_fails(
			old, KW_ERR_CONFIG,
			tu_fmt("%s:%d: keyway.old_master_keys[0]: $KWSEAL_OLD "
			       "must be 64 hexadecimal digits (make one with "
			       "keyway keygen)",
			       old, MASTER_LINE + 1));
	}
	/* Nothing of a malformed key gets into the message. */
	set_var("KEYWAY_MASTER_KEY", "secretsecretsecret");
	open_fails(
		conf, KW_ERR_CONFIG,
		tu_fmt("%s:%d: keyway.master_key: $KEYWAY_MASTER_KEY must be "
		       "64 hexadecimal digits (make one with keyway keygen)",
		       conf, MASTER_LINE));
	/* Nor was a store created by any of these. */
	assert_int_equal(access(store(f, "keys.db"), F_OK), -1);
}

static void test_file_source(void **state)
{
	struct fixture *f = *state;
	char *key, *conf, *rel, *missing_conf, *missing;

	key = tu_keep(tu_write(f->dir, "master.key", 0600, "%s\n", KEY_A));
	conf = write_conf(f, "file.conf",
			  tu_fmt("master_key = { source = \"file\"; path = "
				 "\"%s\"; };",
				 key),
			  NULL, store(f, "1.db"));
	assert_string_equal(store_and_resolve(f, conf, ACME_ANT), KEY_A_ID);

	/* Without the newline, and relative to the configuration. */
	tu_keep(tu_write(f->dir, "bare.key", 0600, "%s", KEY_B));
	rel = write_conf(f, "rel.conf",
			 "master_key = { source = \"file\"; path = "
			 "\"bare.key\"; };",
			 NULL, store(f, "2.db"));
	assert_string_equal(store_and_resolve(f, rel, ACME_ANT), KEY_B_ID);

	/* Ending as a line written on Windows does: the same key. */
	tu_keep(tu_write(f->dir, "crlf.key", 0600, "%s\r\n", KEY_B));
	rel = write_conf(f, "crlf.conf",
			 "master_key = { source = \"file\"; path = "
			 "\"crlf.key\"; };",
			 NULL, store(f, "2crlf.db"));
	assert_string_equal(store_and_resolve(f, rel, ACME_ANT), KEY_B_ID);

	/* Readable by the group: refused, with how to fix it. */
	assert_int_equal(chmod(key, 0640), 0);
	open_fails(
		conf, KW_ERR_PERM,
		tu_fmt("%s:%d: keyway.master_key: %s is accessible by group "
		       "or others (mode 0640); it holds secrets: chmod 600 it",
		       conf, MASTER_LINE, key));
	assert_int_equal(chmod(key, 0604), 0);
	open_fails(
		conf, KW_ERR_PERM,
		tu_fmt("%s:%d: keyway.master_key: %s is accessible by group "
		       "or others (mode 0604); it holds secrets: chmod 600 it",
		       conf, MASTER_LINE, key));
	assert_int_equal(chmod(key, 0400), 0);
	open_ok(&f->ctx, conf);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* Missing: a configuration error, as a missing dotenv file is. */
	missing = tu_fmt("%s/absent.key", f->dir);
	missing_conf = write_conf(f, "missing.conf",
				  tu_fmt("master_key = { source = \"file\"; "
					 "path = \"%s\"; };",
					 missing),
				  NULL, store(f, "3.db"));
	open_fails(missing_conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: %s: No such file or "
			  "directory",
			  missing_conf, MASTER_LINE, missing));

	/* A symbolic link is not followed. */
	assert_int_equal(symlink(key, missing), 0);
	open_fails(missing_conf, KW_ERR_PERM,
		   tu_fmt("%s:%d: keyway.master_key: %s is a symbolic link; "
			  "point the setting at the file itself",
			  missing_conf, MASTER_LINE, missing));

	/* Not a key. */
	tu_keep(tu_write(f->dir, "short.key", 0600, "%.63s\n", KEY_A));
	conf = write_conf(f, "short.conf",
			  tu_fmt("master_key = { source = \"file\"; path = "
				 "\"%s/short.key\"; };",
				 f->dir),
			  NULL, store(f, "4.db"));
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: %s/short.key must hold 64 "
			  "hexadecimal digits (make one with keyway keygen -o "
			  "%s/short.key)",
			  conf, MASTER_LINE, f->dir, f->dir));
	tu_keep(tu_write(f->dir, "empty.key", 0600, "%s", ""));
	conf = write_conf(f, "empty.conf",
			  tu_fmt("master_key = { source = \"file\"; path = "
				 "\"%s/empty.key\"; };",
				 f->dir),
			  NULL, store(f, "5.db"));
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: %s/empty.key must hold 64 "
			  "hexadecimal digits (make one with keyway keygen -o "
			  "%s/empty.key)",
			  conf, MASTER_LINE, f->dir, f->dir));
}

/*
 * An access ACL as the kernel stores it: the owner r--, the user uid
 * (-1: none) r--, the owning group gperm, mask r--, others ---.  What
 * systemd gives a service's user on a credential it writes 0400 on a file
 * system with ACLs.  false when the file system has none.
 */
static bool set_acl(const char *path, long uid, unsigned gperm)
{
	unsigned char acl[4 + 5 * 8], *e = acl + 4;
	const struct { unsigned tag, perm; uint32_t id; } ent[] = {
		{ 0x01, 4, UINT32_MAX }, { 0x02, 4, (uint32_t)uid },
		{ 0x04, gperm, UINT32_MAX }, { 0x10, 4, UINT32_MAX },
		{ 0x20, 0, UINT32_MAX },
	};

	acl[0] = 2;
	acl[1] = acl[2] = acl[3] = 0;
	for (size_t i = 0; i < 5; i++) {
		if (ent[i].tag == 0x02 && uid < 0)
			continue;
		e[0] = (unsigned char)ent[i].tag;
		e[1] = 0;
		e[2] = (unsigned char)ent[i].perm;
		e[3] = 0;
		for (int b = 0; b < 4; b++)
			e[4 + b] = (unsigned char)(ent[i].id >> (8 * b));
		e += 8;
	}
	if (setxattr(path, "system.posix_acl_access", acl, (size_t)(e - acl),
		     0) == 0)
		return true;
	assert_true(errno == ENOTSUP || errno == EOPNOTSUPP);
	return false;
}

static void test_credential_source(void **state)
{
	struct fixture *f = *state;
	char *creds = tu_fmt("%s/creds", f->dir);
	char *key, *conf, *named, *dflt, *c, *shown;

	assert_int_equal(mkdir(creds, 0700), 0);
	key = tu_keep(tu_write(creds, "master.key", 0400, "%s\n", KEY_A));
	tu_keep(tu_write(creds, "other.key", 0400, "%s", KEY_B));
	conf = write_conf(f, "cred.conf",
			  "master_key = { source = \"credential\"; name = "
			  "\"master.key\"; };",
			  NULL, store(f, "1.db"));
	shown = tu_fmt("credential \"master.key\" (%s)", key);

	/* Without $CREDENTIALS_DIRECTORY: what to set. */
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: source \"credential\" "
			  "reads $CREDENTIALS_DIRECTORY/master.key, but "
			  "$CREDENTIALS_DIRECTORY is not set: run keyway under "
			  "systemd with LoadCredential=master.key:PATH, or set "
			  "it to the directory that holds master.key",
			  conf, MASTER_LINE));
	set_var("CREDENTIALS_DIRECTORY", "");
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: source \"credential\" "
			  "reads $CREDENTIALS_DIRECTORY/master.key, but "
			  "$CREDENTIALS_DIRECTORY is not set: run keyway under "
			  "systemd with LoadCredential=master.key:PATH, or set "
			  "it to the directory that holds master.key",
			  conf, MASTER_LINE));
	set_var("CREDENTIALS_DIRECTORY", "creds");
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $CREDENTIALS_DIRECTORY "
			  "(creds) is not an absolute path",
			  conf, MASTER_LINE));

	/* systemd's 0400 file, owned by the service's user. */
	set_var("CREDENTIALS_DIRECTORY", creds);
	assert_string_equal(store_and_resolve(f, conf, ACME_ANT), KEY_A_ID);
	/* name is master.key unless given. */
	dflt = write_conf(f, "dflt.conf",
			  "master_key = { source = \"credential\"; };", NULL,
			  store(f, "1.db"));
	open_ok(&f->ctx, dflt);
	want_value(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	/* No variable holds it: keyway exec has none more to keep from a
	 * child, and certainly not one without a name. */
	for (const char *const *v = kw_sensitive_env(f->ctx); *v != NULL; v++)
		assert_true((*v)[0] != '\0');
	kw_close(f->ctx);
	f->ctx = NULL;
	named = write_conf(f, "named.conf",
			   "master_key = { source = \"credential\"; name = "
			   "\"other.key\"; };",
			   NULL, store(f, "2.db"));
	assert_string_equal(store_and_resolve(f, named, ACME_ANT), KEY_B_ID);
	/* Its owner may write it (a file made by hand). */
	assert_int_equal(chmod(key, 0600), 0);
	open_ok(&f->ctx, conf);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* No one else may read or write it. */
	assert_int_equal(chmod(key, 0440), 0);
	open_fails(conf, KW_ERR_PERM,
		   tu_fmt("%s:%d: keyway.master_key: %s is readable by its "
			  "group; it holds secrets: chmod 400 it",
			  conf, MASTER_LINE, shown));
	assert_int_equal(chmod(key, 0404), 0);
	open_fails(conf, KW_ERR_PERM,
		   tu_fmt("%s:%d: keyway.master_key: %s is accessible by others "
			  "or writable by its group (mode 0404); it holds "
			  "secrets: chmod 400 it",
			  conf, MASTER_LINE, shown));
	assert_int_equal(chmod(key, 0420), 0);
	open_fails(conf, KW_ERR_PERM,
		   tu_fmt("%s:%d: keyway.master_key: %s is accessible by others "
			  "or writable by its group (mode 0420); it holds "
			  "secrets: chmod 400 it",
			  conf, MASTER_LINE, shown));

	/* systemd's other way: the file stays root's, 0400, and an ACL lets
	 * the service's user read it (the group bits show the ACL's mask). */
	assert_int_equal(chmod(key, 0400), 0);
	if (set_acl(key, (long)geteuid(), 0)) {
		struct stat st;

		assert_int_equal(stat(key, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0440);
		open_ok(&f->ctx, conf);
		kw_close(f->ctx);
		f->ctx = NULL;
		/* Not when it lets another user read it... */
		assert_true(set_acl(key, 4242, 0));
		open_fails(conf, KW_ERR_PERM,
			   tu_fmt("%s:%d: keyway.master_key: %s is readable by "
				  "uid 4242 through its ACL; it holds secrets: "
				  "setfacl -b it",
				  conf, MASTER_LINE, shown));
		/* ...or its group. */
		assert_true(set_acl(key, (long)geteuid(), 4));
		open_fails(conf, KW_ERR_PERM,
			   tu_fmt("%s:%d: keyway.master_key: %s is readable by "
				  "a group through its ACL; it holds secrets: "
				  "setfacl -b it",
				  conf, MASTER_LINE, shown));
		assert_true(set_acl(key, -1, 4));
		open_fails(conf, KW_ERR_PERM,
			   tu_fmt("%s:%d: keyway.master_key: %s is readable by "
				  "a group through its ACL; it holds secrets: "
				  "setfacl -b it",
				  conf, MASTER_LINE, shown));
		assert_int_equal(removexattr(key, "system.posix_acl_access"),
				 0);
	} else {
		print_message("# no ACLs on %s: their cases are not tried\n",
			      creds);
	}
	assert_int_equal(chmod(key, 0400), 0);
	open_ok(&f->ctx, conf);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* Owned by someone else. */
	if (geteuid() == 0) {
		assert_int_equal(chown(key, 4242, (gid_t)-1), 0);
		open_fails(conf, KW_ERR_PERM,
			   tu_fmt("%s:%d: keyway.master_key: %s is owned by "
				  "uid 4242; it must belong to root",
				  conf, MASTER_LINE, shown));
		assert_int_equal(chown(key, 0, (gid_t)-1), 0);
	}

	/* A directory others may write: they could swap the key. */
	assert_int_equal(chmod(creds, 0777), 0);
	open_fails(conf, KW_ERR_PERM,
		   tu_fmt("%s:%d: keyway.master_key: $CREDENTIALS_DIRECTORY: %s "
			  "is writable by others; chmod go-w it",
			  conf, MASTER_LINE, creds));
	assert_int_equal(chmod(creds, 0700), 0);

	/* Missing, a link, a directory, not a key. */
	set_var("CREDENTIALS_DIRECTORY", f->dir);
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: no credential "
			  "\"master.key\" in $CREDENTIALS_DIRECTORY (%s): give "
			  "the service LoadCredential=master.key:PATH",
			  conf, MASTER_LINE, f->dir));
	assert_int_equal(symlink(key, tu_fmt("%s/master.key", f->dir)), 0);
	open_fails(conf, KW_ERR_PERM,
		   tu_fmt("%s:%d: keyway.master_key: credential \"master.key\" "
			  "(%s/master.key) is a symbolic link; put the key "
			  "itself there",
			  conf, MASTER_LINE, f->dir));
	assert_int_equal(mkdir(tu_fmt("%s/other.key", f->dir), 0700), 0);
	open_fails(named, KW_ERR_PERM,
		   tu_fmt("%s:%d: keyway.master_key: credential \"other.key\" "
			  "(%s/other.key) is not a regular file",
			  named, MASTER_LINE, f->dir));
	set_var("CREDENTIALS_DIRECTORY", tu_fmt("%s/absent", f->dir));
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $CREDENTIALS_DIRECTORY: "
			  "%s/absent: No such file or directory",
			  conf, MASTER_LINE, f->dir));
	set_var("CREDENTIALS_DIRECTORY", creds);
	tu_keep(tu_write(creds, "short.key", 0400, "%.63s\n", KEY_A));
	tu_keep(tu_write(creds, "marked.key", 0400, "%s%s", TU_MARK, KEY_A));
	c = write_conf(f, "short.conf",
		       "master_key = { source = \"credential\"; name = "
		       "\"short.key\"; };",
		       NULL, store(f, "3.db"));
	open_fails(c, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: credential \"short.key\" "
			  "(%s/short.key) must hold 64 hexadecimal digits (make "
			  "the FILE of LoadCredential=short.key:FILE with "
			  "keyway keygen -o FILE)",
			  c, MASTER_LINE, creds));
	c = write_conf(f, "marked.conf",
		       "master_key = { source = \"credential\"; name = "
		       "\"marked.key\"; };",
		       NULL, store(f, "3.db"));
	assert_int_not_equal(kw_open(&f->ctx, c), KW_OK);
	tu_assert_no_secret(kw_last_error());

	/* A name is one file of the directory, refused at its line. */
	{
		static const char *const bad[] = { "../master.key", "a/b", "/k",
						   ".", ".." };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			c = write_conf(f, "badname.conf",
				       tu_fmt("master_key = { source = "
					      "\"credential\";\n"
					      "    name = \"%s\"; };",
					      bad[i]),
				       NULL, store(f, "4.db"));
			open_fails(c, KW_ERR_CONFIG,
				   tu_fmt("%s:%d: keyway.master_key: name \"%s\" "
					  "must be a plain file name of "
					  "$CREDENTIALS_DIRECTORY, as "
					  "LoadCredential= gives it (no '/', "
					  "not \".\" or \"..\", at most 255 "
					  "bytes)",
					  c, MASTER_LINE + 1, bad[i]));
		}
		c = write_conf(f, "badname.conf",
			       "master_key = { source = \"credential\"; "
			       "name = \"a\\nb\"; };",
			       NULL, store(f, "4.db"));
		open_fails(c, KW_ERR_CONFIG,
			   tu_fmt("%s:%d: keyway.master_key: name must be a "
				  "plain file name of $CREDENTIALS_DIRECTORY, "
				  "as LoadCredential= gives it (no '/', not "
				  "\".\" or \"..\", at most 255 bytes)",
				  c, MASTER_LINE));
	}
	c = write_conf(f, "extra.conf",
		       "master_key = { source = \"credential\"; path = "
		       "\"/k\"; };",
		       NULL, store(f, "4.db"));
	open_fails(c, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: source \"credential\" "
			  "takes only name",
			  c, MASTER_LINE));
	/* None of these made a store. */
	assert_int_equal(access(store(f, "3.db"), F_OK), -1);
	assert_int_equal(access(store(f, "4.db"), F_OK), -1);
}

/* The errno fgetxattr() fails with (0: it runs), for a file system that
 * cannot say what ACL a file has.  The library is linked into this
 * program, and calls this one. */
static int fgetxattr_errno;

ssize_t fgetxattr(int fd, const char *name, void *value, size_t size)
{
	static ssize_t (*real)(int, const char *, void *, size_t);
	void *p;

	if (fgetxattr_errno != 0) {
		errno = fgetxattr_errno;
		return -1;
	}
	if (real == NULL) {
		p = dlsym(RTLD_NEXT, "fgetxattr");
		if (p == NULL)
			abort();
		memcpy(&real, &p, sizeof(p));
	}
	return real(fd, name, value, size);
}

/*
 * A credentials directory too long for a path, a credential that cannot
 * be opened (a socket), and one whose ACL cannot be read: each refused in
 * one line that names it.
 */
static void test_credential_odd_files(void **state)
{
	struct fixture *f = *state;
	char *creds = tu_fmt("%s/creds", f->dir);
	char *conf, *key, *longdir, *shown;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	assert_int_equal(mkdir(creds, 0700), 0);
	conf = write_conf(f, "cred.conf",
			  "master_key = { source = \"credential\"; };", NULL,
			  store(f, "1.db"));
	key = tu_fmt("%s/master.key", creds);
	shown = tu_fmt("credential \"master.key\" (%s)", key);

	longdir = tu_keep(calloc(1, 1102));
	longdir[0] = '/';
	memset(longdir + 1, 'd', 1100);
	set_var("CREDENTIALS_DIRECTORY", longdir);
	open_fails(conf, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $CREDENTIALS_DIRECTORY "
			  "is longer than 768 bytes",
			  conf, MASTER_LINE));

	set_var("CREDENTIALS_DIRECTORY", creds);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_true(strlen(key) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, key);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	open_fails(conf, KW_ERR_IO,
		   tu_fmt("%s:%d: keyway.master_key: %s: No such device or "
			  "address",
			  conf, MASTER_LINE, shown));
	close(fd);
	assert_int_equal(unlink(key), 0);

	free(tu_write(creds, "master.key", 0440, "%s\n", KEY_A));
	fgetxattr_errno = EIO;
	open_fails(conf, KW_ERR_IO,
		   tu_fmt("%s:%d: keyway.master_key: %s: cannot read its ACL: "
			  "Input/output error",
			  conf, MASTER_LINE, shown));
	fgetxattr_errno = 0;
	/* Without an ACL, 0440 is a group's read. */
	open_fails(conf, KW_ERR_PERM,
		   tu_fmt("%s:%d: keyway.master_key: %s is readable by its "
			  "group; it holds secrets: chmod 400 it",
			  conf, MASTER_LINE, shown));
	assert_int_equal(access(store(f, "1.db"), F_OK), -1);
}

#define PASS_MASTER(kdf) \
	"master_key = { source = \"passphrase\"; var = \"KWSEAL_PASS\"; " \
	"kdf = \"" kdf "\"; };"

/* A fresh, empty store at path with a known salt. */
static void make_salted_store(struct fixture *f, const char *path)
{
	char *conf;

	set_var("KEYWAY_MASTER_KEY", KEY_C);
	conf = write_conf(f, "init.conf", MASTER_ENV, NULL, path);
	open_ok(&f->ctx, conf);
	kw_close(f->ctx);
	f->ctx = NULL;
	unsetenv("KEYWAY_MASTER_KEY");
	set_salt(path, pass_salt);
}

static void test_passphrase(void **state)
{
	struct fixture *f = *state;
	char *argon = store(f, "argon.db"), *pbkdf = store(f, "pbkdf.db");
	char *other = store(f, "other.db"), *third = store(f, "third.db");
	char *conf_argon, *conf_pbkdf, *conf_default, *c1, *c2, *id1, *id2;

	set_var("KWSEAL_PASS", PASS);

	/* Known salt, known key id: the KDF and its parameters. */
	make_salted_store(f, argon);
	conf_argon = write_conf(f, "argon.conf", PASS_MASTER("argon2id"),
				NULL, argon);
	assert_string_equal(store_and_resolve(f, conf_argon, ACME_ANT),
			    PASS_ARGON2_ID);
	make_salted_store(f, pbkdf);
	conf_pbkdf = write_conf(f, "pbkdf.conf",
				PASS_MASTER("pbkdf2-sha256"), NULL, pbkdf);
	assert_string_equal(store_and_resolve(f, conf_pbkdf, ACME_ANT),
			    PASS_PBKDF2_ID);

	/* Argon2id is the default, and $KEYWAY_PASSPHRASE the default
	 * variable. */
	make_salted_store(f, third);
	conf_default = write_conf(f, "default.conf",
				  "master_key = { source = \"passphrase\"; };",
				  NULL, third);
	set_var("KEYWAY_PASSPHRASE", PASS);
	unsetenv("KWSEAL_PASS");
	assert_string_equal(store_and_resolve(f, conf_default, GLOBEX_ANT),
			    PASS_ARGON2_ID);
	unsetenv("KEYWAY_PASSPHRASE");
	open_fails(conf_default, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $KEYWAY_PASSPHRASE is not "
			  "set",
			  conf_default, MASTER_LINE));
	set_var("KWSEAL_PASS", PASS);

	/* The same passphrase, another store: another salt, another key. */
	c1 = write_conf(f, "c1.conf", PASS_MASTER("argon2id"), NULL, other);
	id1 = store_and_resolve(f, c1, ACME_ANT);
	assert_int_equal(strlen(id1), 16);
	assert_string_not_equal(id1, PASS_ARGON2_ID);
	c2 = write_conf(f, "c2.conf", PASS_MASTER("argon2id"), NULL,
			store(f, "another.db"));
	id2 = store_and_resolve(f, c2, ACME_ANT);
	assert_string_not_equal(id1, id2);

	/* A different passphrase is refused at open. */
	set_var("KWSEAL_PASS", "correct horse battery stapler");
	open_fails(conf_argon, KW_ERR_CRYPTO,
		   tu_fmt("%s:%d: backend \"org_keys\": %s holds keys sealed "
			  "under master key " PASS_ARGON2_ID ", which neither "
			  "keyway.master_key nor keyway.old_master_keys holds",
			  conf_argon, ORG_PATH_LINE, argon));
	/* So is the right passphrase through the other KDF. */
	set_var("KWSEAL_PASS", PASS);
	c1 = write_conf(f, "swapped.conf", PASS_MASTER("pbkdf2-sha256"), NULL,
			argon);
	open_fails(c1, KW_ERR_CRYPTO,
		   tu_fmt("%s:%d: backend \"org_keys\": %s holds keys sealed "
			  "under master key " PASS_ARGON2_ID ", which neither "
			  "keyway.master_key nor keyway.old_master_keys holds",
			  c1, ORG_PATH_LINE, argon));
	set_var("KWSEAL_PASS", "");
	open_fails(conf_argon, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.master_key: $KWSEAL_PASS is not set",
			  conf_argon, MASTER_LINE));
}

static void test_master_key_settings(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *c;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	set_var("KWSEAL_PASS", PASS);

#define BAD(master, line, msg, ...)                                        \
	do {                                                               \
		c = write_conf(f, "bad.conf", master, NULL, db);           \
		open_fails(c, KW_ERR_CONFIG,                               \
			   tu_fmt("%s:%d: " msg, c, line, ##__VA_ARGS__)); \
	} while (0)

	BAD("master_key = { source = \"passphrase\"; var = \"KWSEAL_PASS\";"
	    " kdf = \"scrypt\"; };",
	    MASTER_LINE,
	    "keyway.master_key: unknown kdf \"scrypt\" (expected "
	    "\"argon2id\" or \"pbkdf2-sha256\")");
	BAD("master_key = { source = \"passphrase\"; kdf = \"pbkdf2\"; };",
	    MASTER_LINE,
	    "keyway.master_key: unknown kdf \"pbkdf2\" (expected "
	    "\"argon2id\" or \"pbkdf2-sha256\")");
	BAD("master_key = { source = \"vault\"; };", MASTER_LINE,
	    "keyway.master_key: unknown source \"vault\" (expected \"env\", "
	    "\"file\", \"passphrase\" or \"credential\")");
	BAD("master_key = { var = \"KEYWAY_MASTER_KEY\"; };", MASTER_LINE,
	    "keyway.master_key: missing source (\"env\", \"file\", "
	    "\"passphrase\" or \"credential\")");
	BAD("master_key = { source = \"env\";\n"
	    "    salt = \"x\"; };",
	    MASTER_LINE + 1,
	    "keyway.master_key: unknown setting \"salt\" (expected source, "
	    "var, path, kdf or name)");
	BAD("master_key = { source = \"env\"; iterations = 5; };", MASTER_LINE,
	    "keyway.master_key: unknown setting \"iterations\" (expected "
	    "source, var, path, kdf or name)");
	BAD("master_key = { source = \"env\"; var = 5; };", MASTER_LINE,
	    "keyway.master_key: var must be a non-empty string");
	BAD("master_key = { source = \"env\"; var = \"\"; };", MASTER_LINE,
	    "keyway.master_key: var must be a non-empty string");
	BAD("master_key = { source = \"env\"; path = \"/k\"; };", MASTER_LINE,
	    "keyway.master_key: source \"env\" takes only var");
	BAD("master_key = { source = \"env\"; kdf = \"argon2id\"; };",
	    MASTER_LINE, "keyway.master_key: source \"env\" takes only var");
	BAD("master_key = { source = \"file\"; path = \"/k\"; var = \"X\"; };",
	    MASTER_LINE, "keyway.master_key: source \"file\" takes only path");
	BAD("master_key = { source = \"file\"; };", MASTER_LINE,
	    "keyway.master_key: source \"file\" needs a path");
	BAD("master_key = { source = \"passphrase\"; path = \"/k\"; };",
	    MASTER_LINE,
	    "keyway.master_key: source \"passphrase\" takes only var and kdf");
	BAD("master_key = { source = \"env\"; name = \"master.key\"; };",
	    MASTER_LINE, "keyway.master_key: source \"env\" takes only var");
	BAD("master_key = { source = \"file\"; path = \"/k\"; name = \"k\"; };",
	    MASTER_LINE, "keyway.master_key: source \"file\" takes only path");
	BAD("master_key = { source = \"passphrase\"; name = \"k\"; };",
	    MASTER_LINE,
	    "keyway.master_key: source \"passphrase\" takes only var and kdf");
	BAD("master_key = \"" KEY_A "\";", MASTER_LINE,
	    "keyway.master_key must be a group { source = ...; }");

	/* The old keys: a list of the same groups, each named by index. */
	c = write_conf(f, "bad.conf", MASTER_ENV,
		       "old_master_keys = ( { source = \"env\"; var = "
		       "\"KWSEAL_OLD\"; },\n"
		       "    { source = \"tpm\"; } );",
		       db);
	set_var("KWSEAL_OLD", KEY_B);
	open_fails(c, KW_ERR_CONFIG,
		   tu_fmt("%s:%d: keyway.old_master_keys[1]: unknown source "
			  "\"tpm\" (expected \"env\", \"file\", "
			  "\"passphrase\" or \"credential\")",
			  c, MASTER_LINE + 2));
	BAD("# none\n  old_master_keys = ( { source = \"env\"; } );",
	    MASTER_LINE + 1,
	    "keyway.old_master_keys without keyway.master_key");
#undef BAD
	assert_int_equal(access(db, F_OK), -1);

	/* A store that seals needs a master key. */
	unsetenv("KEYWAY_MASTER_KEY");
	c = write_conf(f, "none.conf", NULL, NULL, db);
	open_fails(
		c, KW_ERR_CONFIG,
		tu_fmt("%s:%d: backend \"org_keys\": module \"sqlite\" seals "
		       "the keys it stores: set keyway.master_key",
		       c, ORG_LINE));
}

/* ---- 6. key ids ---- */

static void test_key_id(void **state)
{
	struct fixture *f = *state;
	const char *const keys[] = { KEY_A, KEY_B, KEY_C };
	const char *const ids[] = { KEY_A_ID, KEY_B_ID, KEY_C_ID };
	unsigned char *blob;
	char *id, *again, *c1, *c2;
	size_t len;

	for (size_t k = 0; k < 3; k++) {
		char *d1 = store(f, tu_fmt("k%zu-1.db", k));
		char *d2 = store(f, tu_fmt("k%zu-2.db", k));

		set_var("KEYWAY_MASTER_KEY", keys[k]);
		c1 = write_conf(f, "1.conf", MASTER_ENV, NULL, d1);
		c2 = write_conf(f, "2.conf", MASTER_ENV, NULL, d2);
		open_ok(&f->ctx, c1);
		put_ok(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
		id = only_id(f->ctx, "org_keys");
		kw_close(f->ctx);
		f->ctx = NULL;
		open_ok(&f->ctx, c2);
		put_ok(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
		again = only_id(f->ctx, "org_keys");
		kw_close(f->ctx);
		f->ctx = NULL;

		/* Stable across contexts and stores, and known. */
		assert_string_equal(id, again);
		assert_string_equal(id, ids[k]);
		/* 16 lower-case hex digits that are not the key. */
		assert_int_equal(strlen(id), 16);
		assert_int_equal(strspn(id, "0123456789abcdef"), 16);
		assert_null(strstr(keys[k], id));
		assert_int_not_equal(strncmp(keys[k], id, 16), 0);
		/* The record's header names the same key. */
		f->db = db_open(d1);
		blob = blob_get(f->db, "org_keys", "acme", "anthropic", &len);
		assert_string_equal(hex(blob + 1, 8), id);
		sqlite3_close(f->db);
		f->db = NULL;
	}
	assert_string_not_equal(KEY_A_ID, KEY_B_ID);

	/* The source does not matter: the same key from a file. */
	unsetenv("KEYWAY_MASTER_KEY");
	tu_keep(tu_write(f->dir, "a.key", 0600, "%s\n", KEY_A));
	c1 = write_conf(f, "file.conf",
			tu_fmt("master_key = { source = \"file\"; path = "
			       "\"%s/a.key\"; };",
			       f->dir),
			NULL, store(f, "file.db"));
	open_ok(&f->ctx, c1);
	put_ok(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	assert_string_equal(only_id(f->ctx, "org_keys"), KEY_A_ID);
}

/* ---- 7. nothing in the clear at rest ---- */

#define P_ORG1 "sk-ant-rest-org-one-PLAIN-a1b2c3d4e5"
#define P_ORG1_NEW "sk-ant-rest-org-one-ROTATED-f6g7h8i9"
#define P_ORG2 "sk-rest-org-two-PLAIN-j0k1l2m3n4o5p6"
#define P_USER "sk-ant-rest-user-PLAIN-q7r8s9t0u1v2"
#define P_USER_NEW "sk-ant-rest-user-ROTATED-w3x4y5z6a7"
#define P_SYS "AIzaRestSystemPLAINb8c9d0e1f2g3h4i5j6"
#define P_GONE "sk-ant-rest-deleted-PLAIN-k7l8m9n0o1"

static void no_plaintext(const char *db)
{
	static const char *const plain[] = {
		P_ORG1, P_ORG1_NEW, P_ORG2, P_USER, P_USER_NEW, P_SYS, P_GONE,
	};

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		absent(db, plain[i], strlen(plain[i]), plain[i]);
		/* Nor any long part of it (the part after the prefix). */
		absent(db, plain[i] + 8, 16, plain[i] + 8);
	}
}

static void test_nothing_in_clear(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *conf_a = write_conf(f, "a.conf", MASTER_ENV, NULL, db);
	char *conf_ba = write_conf(f, "ba.conf", MASTER_ENV, OLD_A, db);
	unsigned char *gone, *old_org1, *old_sys;
	size_t gone_len, org1_len, sys_len;
	kw_key_ref ref = KW_KEY_REF_INIT;
	kw_actor a;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	open_ok(&f->ctx, conf_a);
	put_ok(f->ctx, "org_keys", "acme", "anthropic", P_ORG1);
	put_ok(f->ctx, "org_keys", "globex", "openai", P_ORG2);
	put_ok(f->ctx, "user_keys", "alice", "anthropic", P_USER);
	put_ok(f->ctx, "sys_keys", NULL, "google", P_SYS);
	put_ok(f->ctx, "org_keys", "initech", "anthropic", P_GONE);
	no_plaintext(db);
	assert_int_equal(put(f->ctx, "org_keys", "acme", "anthropic",
			     P_ORG1_NEW, KW_PUT_ROTATE),
			 KW_OK);
	assert_int_equal(put(f->ctx, "user_keys", "alice", "anthropic",
			     P_USER_NEW, KW_PUT_ROTATE),
			 KW_OK);
	sysadmin(&a);
	ref.backend = "org_keys";
	ref.owner = "globex";
	ref.provider = "openai";
	assert_int_equal(kw_key_set_active(f->ctx, &a, &ref, 0), KW_OK);
	no_plaintext(db);
	want_value(f->ctx, "org_keys", "acme", "anthropic", P_ORG1_NEW);
	want_value(f->ctx, "user_keys", "alice", "anthropic", P_USER_NEW);
	kw_close(f->ctx);
	f->ctx = NULL;
	no_plaintext(db);

	/* Rekey: the copies sealed under the old key leave the file. */
	f->db = db_open(db);
	old_org1 = blob_get(f->db, "org_keys", "acme", "anthropic",
			    &org1_len);
	old_sys = blob_get(f->db, "sys_keys", NULL, "google", &sys_len);
	sqlite3_close(f->db);
	f->db = NULL;
	set_var("KEYWAY_MASTER_KEY", KEY_B);
	set_var("KWSEAL_OLD", KEY_A);
	open_ok(&f->ctx, conf_ba);
	rekey_ok(f->ctx, "org_keys", 3);
	rekey_ok(f->ctx, "user_keys", 1);
	rekey_ok(f->ctx, "sys_keys", 1);
	want_ids(f->ctx, NULL, KEY_B_ID, 5);
	no_plaintext(db);
	absent(db, old_org1, org1_len, "org key sealed under the old key");
	absent(db, old_sys, sys_len, "system key sealed under the old key");

	/* Delete: neither the value nor its sealed bytes stay. */
	f->db = db_open(db);
	gone = blob_get(f->db, "org_keys", "initech", "anthropic", &gone_len);
	sqlite3_close(f->db);
	f->db = NULL;
	ref.owner = "initech";
	ref.provider = "anthropic";
	assert_int_equal(kw_key_delete(f->ctx, &a, &ref), KW_OK);
	no_plaintext(db);
	absent(db, gone, gone_len, "the deleted key's sealed value");
	/* Its nonce and tag are as unique as the whole. */
	absent(db, gone + 9, 12, "the deleted key's nonce");
	absent(db, gone + gone_len - 16, 16, "the deleted key's tag");
	want_ids(f->ctx, NULL, KEY_B_ID, 4);
	want_value(f->ctx, "org_keys", "acme", "anthropic", P_ORG1_NEW);
	want_value(f->ctx, "sys_keys", NULL, "google", P_SYS);
	kw_close(f->ctx);
	f->ctx = NULL;
	no_plaintext(db);
	absent(db, gone, gone_len, "the deleted key's sealed value");
}

/*
 * With many records, b-tree balancing moves cells between pages and can
 * leave stale copies in the free space of pages that stay in use: a
 * deleted key's sealed bytes must not survive there either.
 */
#define MANY 300
#define DELETED_EVERY 7

static void many_value(int i, char *buf, size_t len)
{
	snprintf(buf, len, "sk-ant-many-%03d-PLAIN-%0*d", i, 20 + i % 40, i);
}

static void test_delete_among_many(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL, db);
	unsigned char *gone[MANY];
	size_t gone_len[MANY];
	kw_key_ref ref = KW_KEY_REF_INIT;
	char owner[32], value[128];
	kw_actor a;

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	open_ok(&f->ctx, conf);
	for (int i = 0; i < MANY; i++) {
		snprintf(owner, sizeof(owner), "org%03d", (i * 37) % MANY);
		many_value(i, value, sizeof(value));
		put_ok(f->ctx, "org_keys", owner, "anthropic", value);
	}
	f->db = db_open(db);
	for (int i = 0; i < MANY; i += DELETED_EVERY) {
		snprintf(owner, sizeof(owner), "org%03d", (i * 37) % MANY);
		gone[i] = blob_get(f->db, "org_keys", owner, "anthropic",
				   &gone_len[i]);
	}
	sqlite3_close(f->db);
	f->db = NULL;

	sysadmin(&a);
	ref.backend = "org_keys";
	ref.provider = "anthropic";
	for (int i = 0; i < MANY; i += DELETED_EVERY) {
		snprintf(owner, sizeof(owner), "org%03d", (i * 37) % MANY);
		ref.owner = owner;
		assert_int_equal(kw_key_delete(f->ctx, &a, &ref), KW_OK);
	}
	for (int i = 0; i < MANY; i++) {
		many_value(i, value, sizeof(value));
		absent(db, value, strlen(value), value);
		if (i % DELETED_EVERY == 0)
			absent(db, gone[i], gone_len[i],
			       tu_fmt("the sealed value of deleted key %d", i));
	}
	/* The others are all there. */
	want_ids(f->ctx, "org_keys", KEY_A_ID,
		 MANY - (MANY + DELETED_EVERY - 1) / DELETED_EVERY);
	for (int i = 1; i < MANY; i += 10) {
		if (i % DELETED_EVERY == 0)
			continue;
		snprintf(owner, sizeof(owner), "org%03d", (i * 37) % MANY);
		many_value(i, value, sizeof(value));
		want_value(f->ctx, "org_keys", owner, "anthropic", value);
	}
}

/* ---- 8. two implementations of one seal ---- */

enum way { SODIUM, OPENSSL };
static const char *const way_name[] = { "libsodium", "OpenSSL" };

/* Seal and open the given way from now on. */
static void via(enum way w)
{
	kwi_test_force_openssl(w == OPENSSL);
}

/*
 * Sealed by keyway before libsodium's AES-256-GCM was used at all (OpenSSL
 * EVP, the associated data fed field by field).  Both ways must open them,
 * and say exactly what they opened.  kat_user is under KEY_A, the others
 * under KEY_B.
 */
#define KAT_STORE "kat-store-5f3c"
#define KAT_USER_VALUE \
	"sk-ant-api03-KnownAnswerVector-0123456789abcdefghijklmnopqrstuvwxyz" \
	"ABCDEFGHIJKLMNOPQRSTUV-0123456AA"
#define KAT_SYSTEM_VALUE "sk-proj-known-answer-vector-under-key-b"

/* { KAT_STORE, KW_SCOPE_USER, "alice@example.org", "anthropic" } */
static const unsigned char kat_user[136] = {
	0x01, 0xd6, 0xb7, 0x7a, 0xd7, 0xfe, 0x93, 0x0f,
	0x7c, 0x87, 0xe6, 0xe5, 0x28, 0x2c, 0xfa, 0xa8,
	0xc5, 0xc8, 0xbf, 0x7f, 0xbc, 0x90, 0x65, 0xeb,
	0xdb, 0xb3, 0x79, 0x63, 0x57, 0x9f, 0xc2, 0x52,
	0x65, 0xfc, 0x9c, 0xc3, 0xc6, 0x63, 0x47, 0xc4,
	0xaf, 0x7b, 0x51, 0x6d, 0x6b, 0xf9, 0x38, 0x2d,
	0xdc, 0x5c, 0x27, 0xb5, 0xdc, 0x31, 0x3a, 0x90,
	0x8f, 0x24, 0x43, 0xd2, 0x2e, 0xe2, 0xc6, 0xea,
	0x67, 0xf9, 0x73, 0xe9, 0x4b, 0xc6, 0x72, 0xe4,
	0x5d, 0x22, 0x93, 0x72, 0x2c, 0x9f, 0x53, 0x1a,
	0x69, 0x68, 0x8c, 0x69, 0x90, 0xc4, 0x14, 0x5c,
	0x2e, 0x4a, 0x52, 0xa9, 0x66, 0x6c, 0xf8, 0x6b,
	0x16, 0x21, 0x52, 0x22, 0x37, 0xe9, 0x5a, 0x89,
	0xa2, 0x00, 0xf4, 0xaa, 0x8d, 0xa6, 0xae, 0xca,
	0x70, 0x33, 0x94, 0x70, 0xc8, 0x2d, 0x1c, 0xcd,
	0x84, 0xe9, 0xec, 0xfd, 0xa1, 0xc6, 0x46, 0x38,
	0x4c, 0x67, 0xb5, 0xef, 0xfe, 0xfe, 0xd7, 0xda,
};

/* { KAT_STORE, KW_SCOPE_SYSTEM, NULL, "openai" } */
static const unsigned char kat_system[76] = {
	0x01, 0x5b, 0x7d, 0x47, 0x75, 0x1c, 0xe4, 0xa7,
	0x3d, 0x90, 0x1f, 0xf2, 0x96, 0xe4, 0xad, 0xba,
	0x0c, 0xd2, 0xce, 0x0e, 0x9c, 0x12, 0xf4, 0xa2,
	0xdf, 0xa3, 0x12, 0x30, 0xdb, 0x9f, 0x9b, 0x2e,
	0x73, 0xa6, 0x0c, 0x0b, 0xba, 0xaa, 0xd0, 0x21,
	0x40, 0x42, 0x94, 0x31, 0x35, 0x15, 0x19, 0x17,
	0x8f, 0xd1, 0x4c, 0xb0, 0xb9, 0xf5, 0xcd, 0xd1,
	0xee, 0x61, 0xb6, 0x56, 0x2a, 0x45, 0xd6, 0x57,
	0x89, 0x2c, 0x2f, 0x03, 0xb3, 0x34, 0x4e, 0x7f,
	0x83, 0xaf, 0xb0, 0x73,
};

/* An empty value: { "", KW_SCOPE_ORG, "acme", "x" } */
static const unsigned char kat_empty[37] = {
	0x01, 0x5b, 0x7d, 0x47, 0x75, 0x1c, 0xe4, 0xa7,
	0x3d, 0xa5, 0xff, 0xe4, 0x80, 0x02, 0x51, 0x33,
	0xbb, 0x6b, 0x30, 0xf5, 0x05, 0xf0, 0xd3, 0x5e,
	0x0e, 0xc7, 0x99, 0xcd, 0xa1, 0x7a, 0xcc, 0x42,
	0x2d, 0x8a, 0xec, 0xc8, 0x41,
};

static const kw_seal_aad kat_user_aad = {
	KAT_STORE, KW_SCOPE_USER, "alice@example.org", "anthropic"
};
static const kw_seal_aad kat_system_aad = {
	KAT_STORE, KW_SCOPE_SYSTEM, NULL, "openai"
};
static const kw_seal_aad kat_empty_aad = { "", KW_SCOPE_ORG, "acme", "x" };

/* KEY_B current, KEY_A old, bound to a salt that no store has. */
static const kw_keyring *ring(struct fixture *f)
{
	static const unsigned char salt[KW_SALT_SIZE] = { 0x6b, 0x61, 0x74 };
	char *conf = write_conf(f, "ring.conf", MASTER_ENV, OLD_A,
				store(f, "ring.db"));
	kw_keyring *kr = NULL;

	set_var("KEYWAY_MASTER_KEY", KEY_B);
	set_var("KWSEAL_OLD", KEY_A);
	open_ok(&f->ctx, conf);
	assert_int_equal(kwi_keyring_get(f->ctx, salt, &kr), KW_OK);
	assert_non_null(kr);
	return kr;
}

/* The bytes [p, p + n) are all zero. */
static bool zeroed(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* Open blob the way w and expect exactly value (len bytes). */
static void opens_to(const kw_keyring *kr, enum way w, const kw_seal_aad *aad,
		     const unsigned char *blob, size_t blen, const char *value,
		     size_t len)
{
	char *plain = tu_keep(malloc(blen + 1)), why[256] = "";
	kw_status st;

	assert_int_equal(blen, len + KW_SEAL_OVERHEAD);
	memset(plain, 0xa5, blen + 1);
	via(w);
	st = kwi_unseal(kr, aad, blob, blen, plain, why, sizeof(why));
	if (st != KW_OK)
		fail_msg("%s: opening %zu bytes: %s: %s", way_name[w], len,
			 kw_status_str(st), why);
	assert_memory_equal(plain, value, len);
	/* Not a byte more. */
	assert_int_equal((unsigned char)plain[len], 0xa5);
}

/* Opening blob the way w fails with exactly why, and plain is wiped. */
static void fails_to_open(const kw_keyring *kr, enum way w,
			  const kw_seal_aad *aad, const unsigned char *blob,
			  size_t blen, const char *want)
{
	size_t plen = blen >= KW_SEAL_OVERHEAD ? blen - KW_SEAL_OVERHEAD : 0;
	char *plain = tu_keep(malloc(plen + 1)), why[256] = "";
	kw_status st;

	memset(plain, 0xa5, plen + 1);
	via(w);
	st = kwi_unseal(kr, aad, blob, blen, plain, why, sizeof(why));
	if (st == KW_OK)
		fail_msg("%s: a %zu-byte blob that must not open opened",
			 way_name[w], blen);
	assert_string_equal(kw_status_str(st), kw_status_str(KW_ERR_CRYPTO));
	assert_string_equal(why, want);
	if (blen >= KW_SEAL_OVERHEAD && !zeroed(plain, plen))
		fail_msg("%s: %zu bytes of plaintext not wiped after \"%s\"",
			 way_name[w], plen, want);
	assert_int_equal((unsigned char)plain[plen], 0xa5);
}

/* Seal value the way w (kept); checks the header. */
static unsigned char *seal_via(const kw_keyring *kr, enum way w,
			       const kw_seal_aad *aad, const char *value,
			       size_t len, size_t *blen)
{
	unsigned char *blob = NULL;
	kw_status st;

	via(w);
	st = kwi_seal(kr, aad, value, len, &blob, blen);
	if (st != KW_OK)
		fail_msg("%s: sealing %zu bytes: %s", way_name[w], len,
			 kw_status_str(st));
	tu_keep(blob);
	assert_int_equal(*blen, len + KW_SEAL_OVERHEAD);
	assert_int_equal(blob[0], 1);
	/* Under the current master key. */
	assert_string_equal(hex(blob + 1, 8), KEY_B_ID);
	return blob;
}

static void test_known_answers(void **state)
{
	struct fixture *f = *state;
	const kw_keyring *kr = ring(f);
	kw_seal_aad other;

	for (enum way w = SODIUM; w <= OPENSSL; w++) {
		opens_to(kr, w, &kat_user_aad, kat_user, sizeof(kat_user),
			 KAT_USER_VALUE, strlen(KAT_USER_VALUE));
		opens_to(kr, w, &kat_system_aad, kat_system,
			 sizeof(kat_system), KAT_SYSTEM_VALUE,
			 strlen(KAT_SYSTEM_VALUE));
		opens_to(kr, w, &kat_empty_aad, kat_empty, sizeof(kat_empty),
			 "", 0);
		/* A missing owner is bound as an empty one. */
		other = kat_system_aad;
		other.owner = "";
		opens_to(kr, w, &other, kat_system, sizeof(kat_system),
			 KAT_SYSTEM_VALUE, strlen(KAT_SYSTEM_VALUE));

		/* Each field of the associated data is bound. */
		other = kat_user_aad;
		other.store_id = "kat-store-5f3d";
		fails_to_open(kr, w, &other, kat_user, sizeof(kat_user),
			      AUTH_FAILED);
		other = kat_user_aad;
		other.scope = KW_SCOPE_ORG;
		fails_to_open(kr, w, &other, kat_user, sizeof(kat_user),
			      AUTH_FAILED);
		other = kat_user_aad;
		other.owner = "alice@example.com";
		fails_to_open(kr, w, &other, kat_user, sizeof(kat_user),
			      AUTH_FAILED);
		other = kat_user_aad;
		other.owner = NULL;
		fails_to_open(kr, w, &other, kat_user, sizeof(kat_user),
			      AUTH_FAILED);
		other = kat_user_aad;
		other.provider = "anthropi";
		fails_to_open(kr, w, &other, kat_user, sizeof(kat_user),
			      AUTH_FAILED);
		/* The length prefixes: the same bytes split differently. */
		other = kat_user_aad;
		other.store_id = KAT_STORE "u";
		other.owner = "ser";
		fails_to_open(kr, w, &other, kat_user, sizeof(kat_user),
			      AUTH_FAILED);
		fails_to_open(kr, w, &kat_user_aad, kat_system,
			      sizeof(kat_system), AUTH_FAILED);
	}
}

static void test_cross_ways(void **state)
{
	static const size_t lens[] = { 0,   1,   15,  16,  17,  31,  32,
				       33,  99,  108, 127, 128, 129, 255,
				       256, 257, 1000, 4097 };
	struct fixture *f = *state;
	const kw_keyring *kr = ring(f);
	kw_seal_aad aad = { "cross-store", KW_SCOPE_ORG, "acme", "anthropic" };
	char *value = tu_keep(malloc(4097)), *long_id;
	unsigned char *blob, *again;
	size_t blen, alen;
	unsigned long uses;
	char *db, *conf;

	for (size_t i = 0; i < 4097; i++)
		value[i] = (char)(0x21 + (i * 7) % 94);

	/* The seam does switch: OpenSSL runs only when asked to (or when
	 * the CPU cannot run libsodium's code). */
	uses = kwi_test_force_openssl(false);
	blob = seal_via(kr, SODIUM, &aad, value, 108, &blen);
	opens_to(kr, SODIUM, &aad, blob, blen, value, 108);
	assert_int_equal(kwi_test_force_openssl(false),
			 crypto_aead_aes256gcm_is_available() ? uses
							      : uses + 2);
	uses = kwi_test_force_openssl(false);
	blob = seal_via(kr, OPENSSL, &aad, value, 108, &blen);
	opens_to(kr, OPENSSL, &aad, blob, blen, value, 108);
	assert_int_equal(kwi_test_force_openssl(false), uses + 2);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (enum way w = SODIUM; w <= OPENSSL; w++) {
			size_t mark = tu_kept();

			blob = seal_via(kr, w, &aad, value, lens[i], &blen);
			opens_to(kr, SODIUM, &aad, blob, blen, value, lens[i]);
			opens_to(kr, OPENSSL, &aad, blob, blen, value,
				 lens[i]);
			/* A fresh nonce every time. */
			again = seal_via(kr, w, &aad, value, lens[i], &alen);
			assert_memory_not_equal(blob + 9, again + 9, 12);
			tu_release(mark);
		}
	}

	/* Associated data longer than fits on the stack. */
	long_id = tu_keep(malloc(701));
	memset(long_id, 's', 700);
	long_id[700] = '\0';
	aad.store_id = long_id;
	for (enum way w = SODIUM; w <= OPENSSL; w++) {
		blob = seal_via(kr, w, &aad, value, 108, &blen);
		opens_to(kr, SODIUM, &aad, blob, blen, value, 108);
		opens_to(kr, OPENSSL, &aad, blob, blen, value, 108);
		long_id[699] = 't';
		fails_to_open(kr, w, &aad, blob, blen, AUTH_FAILED);
		long_id[699] = 's';
	}

	/* Through a store: put one way, resolve the other. */
	kw_close(f->ctx);
	f->ctx = NULL;
	db = store(f, "keys.db");
	conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL, db);
	set_var("KEYWAY_MASTER_KEY", KEY_A);
	open_ok(&f->ctx, conf);
	via(OPENSSL);
	put_ok(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	put_ok(f->ctx, "user_keys", "alice", "anthropic", USER_ACME_ANT);
	via(SODIUM);
	put_ok(f->ctx, "org_keys", "globex", "anthropic", GLOBEX_ANT);
	put_ok(f->ctx, "sys_keys", NULL, "anthropic", SYS_ANT);
	want_value(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	want_value(f->ctx, "user_keys", "alice", "anthropic", USER_ACME_ANT);
	via(OPENSSL);
	want_value(f->ctx, "org_keys", "globex", "anthropic", GLOBEX_ANT);
	want_value(f->ctx, "sys_keys", NULL, "anthropic", SYS_ANT);
	want_value(f->ctx, "org_keys", "acme", "anthropic", ACME_ANT);
	via(SODIUM);
	want_value(f->ctx, "org_keys", "globex", "anthropic", GLOBEX_ANT);
}

/*
 * A value too long for the format's 32-bit lengths is refused before
 * anything is read or allocated, both ways: sealing it is KW_ERR_INVAL
 * with nothing handed back, opening a blob that claims it is a crypto
 * error that says so.
 */
static void test_too_long_refused(void **state)
{
	struct fixture *f = *state;
	const kw_keyring *kr = ring(f);
	const kw_seal_aad aad = { "long-store", KW_SCOPE_ORG, "acme",
				  "anthropic" };
	unsigned char *blob = (unsigned char *)"x", head[KW_SEAL_OVERHEAD];
	size_t blen = 7;
	char plain[1], why[256];

	for (enum way w = SODIUM; w <= OPENSSL; w++) {
		via(w);
		assert_int_equal(kwi_seal(kr, &aad, "x",
					  (size_t)INT32_MAX - KW_SEAL_OVERHEAD +
						  1,
					  &blob, &blen),
				 KW_ERR_INVAL);
		assert_null(blob);
		assert_int_equal(blen, 0);
		blob = (unsigned char *)"x";
		memset(head, 1, sizeof(head));
		assert_int_equal(kwi_unseal(kr, &aad, head,
					    (size_t)INT32_MAX +
						    KW_SEAL_OVERHEAD + 1,
					    plain, why, sizeof(why)),
				 KW_ERR_CRYPTO);
		assert_string_equal(why, tu_fmt("sealed value is too long "
						"(%zu bytes, at most %zu)",
						(size_t)INT32_MAX +
							KW_SEAL_OVERHEAD + 1,
						(size_t)INT32_MAX +
							KW_SEAL_OVERHEAD));
	}
	via(SODIUM);
}

#define TAMPER_LEN 40

static void test_tamper_both_ways(void **state)
{
	struct fixture *f = *state;
	const kw_keyring *kr = ring(f);
	const kw_seal_aad aad = { "tamper-store", KW_SCOPE_USER, "bob",
				  "openai" };
	unsigned char *blob, *bad;
	char value[TAMPER_LEN];
	size_t blen;
	char *why;

	for (size_t i = 0; i < TAMPER_LEN; i++)
		value[i] = (char)('a' + i % 26);
	bad = tu_keep(malloc(TAMPER_LEN + KW_SEAL_OVERHEAD + 1));
	for (enum way sealer = SODIUM; sealer <= OPENSSL; sealer++) {
		blob = seal_via(kr, sealer, &aad, value, TAMPER_LEN, &blen);
		for (size_t i = 0; i < blen; i++) {
			for (int bit = 0; bit < 8; bit++) {
				size_t mark = tu_kept();

				memcpy(bad, blob, blen);
				bad[i] ^= (unsigned char)(1u << bit);
				if (i == 0)
					why = tu_fmt(
						"unknown seal format version "
						"%u",
						(unsigned)bad[0]);
				else if (i < 9)
					why = tu_fmt(
						"sealed under master key %s, "
						"which is not configured",
						hex(bad + 1, 8));
				else
					why = tu_fmt("%s", AUTH_FAILED);
				fails_to_open(kr, SODIUM, &aad, bad, blen,
					      why);
				fails_to_open(kr, OPENSSL, &aad, bad, blen,
					      why);
				tu_release(mark);
			}
		}
		/* Shortened to every length, and lengthened by a byte. */
		for (size_t n = 0; n < blen; n++) {
			size_t mark = tu_kept();

			why = n < KW_SEAL_OVERHEAD
				      ? tu_fmt("sealed value is truncated (%zu "
					       "bytes)",
					       n)
				      : tu_fmt("%s", AUTH_FAILED);
			fails_to_open(kr, SODIUM, &aad, blob, n, why);
			fails_to_open(kr, OPENSSL, &aad, blob, n, why);
			tu_release(mark);
		}
		memcpy(bad, blob, blen);
		bad[blen] = 0;
		fails_to_open(kr, SODIUM, &aad, bad, blen + 1, AUTH_FAILED);
		fails_to_open(kr, OPENSSL, &aad, bad, blen + 1, AUTH_FAILED);
		/* A failure leaves nothing behind that breaks the next. */
		opens_to(kr, SODIUM, &aad, blob, blen, value, TAMPER_LEN);
		opens_to(kr, OPENSSL, &aad, blob, blen, value, TAMPER_LEN);
	}
}

/*
 * Threads opening at once: OpenSSL's way keeps one cipher context per
 * thread, libsodium's shares the keyring's expanded keys.  Every thread
 * opens every value (starting at its own), seals and opens one of its own,
 * and fails on a tampered one, round after round.
 */
#define T_THREADS 8
#define T_VALUES 48
#define T_ROUNDS 40

struct t_value {
	char owner[16];
	char value[320];
	size_t len;
	unsigned char *blob;
	size_t blen;
};

struct opener {
	pthread_t thread;
	const kw_keyring *kr;
	const struct t_value *values;
	const unsigned char *bad;
	size_t bad_len;
	int index;
	long opened;
	int failed;
	char error[256];
};

static void t_aad(kw_seal_aad *aad, const char *owner)
{
	aad->store_id = "thread-store";
	aad->scope = KW_SCOPE_USER;
	aad->owner = owner;
	aad->provider = "anthropic";
}

static bool opener_round(struct opener *o, char *plain, char *why,
			 size_t whylen)
{
	unsigned char *mine = NULL;
	kw_seal_aad aad;
	kw_status st;
	size_t mlen;

	for (int j = 0; j < T_VALUES; j++) {
		const struct t_value *v =
			&o->values[(o->index * 5 + j) % T_VALUES];

		t_aad(&aad, v->owner);
		st = kwi_unseal(o->kr, &aad, v->blob, v->blen, plain, why,
				whylen);
		if (st != KW_OK || memcmp(plain, v->value, v->len) != 0) {
			snprintf(o->error, sizeof(o->error), "%s: %s: %s",
				 v->owner, kw_status_str(st),
				 st != KW_OK ? why : "wrong value");
			return false;
		}
		o->opened++;
	}
	t_aad(&aad, "tampered");
	if (kwi_unseal(o->kr, &aad, o->bad, o->bad_len, plain, why, whylen) !=
		    KW_ERR_CRYPTO ||
	    !zeroed(plain, o->bad_len - KW_SEAL_OVERHEAD)) {
		snprintf(o->error, sizeof(o->error),
			 "a tampered value opened, or was not wiped");
		return false;
	}
	t_aad(&aad, o->values[o->index].owner);
	if (kwi_seal(o->kr, &aad, o->values[o->index].value,
		     o->values[o->index].len, &mine, &mlen) != KW_OK ||
	    kwi_unseal(o->kr, &aad, mine, mlen, plain, why, whylen) !=
		    KW_OK ||
	    memcmp(plain, o->values[o->index].value,
		   o->values[o->index].len) != 0) {
		snprintf(o->error, sizeof(o->error),
			 "sealing and opening %s failed",
			 o->values[o->index].owner);
		free(mine);
		return false;
	}
	free(mine);
	return true;
}

static void *opener_main(void *arg)
{
	struct opener *o = arg;
	char plain[320], why[256];

	for (int r = 0; r < T_ROUNDS; r++) {
		if (!opener_round(o, plain, why, sizeof(why))) {
			o->failed = 1;
			break;
		}
	}
	memset(plain, 0, sizeof(plain));
	return NULL;
}

static void test_threads_both_ways(void **state)
{
	struct fixture *f = *state;
	const kw_keyring *kr = ring(f);
	struct t_value *values = tu_keep(calloc(T_VALUES, sizeof(*values)));
	struct opener *o = tu_keep(calloc(T_THREADS, sizeof(*o)));
	unsigned char *bad;
	size_t bad_len;
	kw_seal_aad aad;

	/* Values of many lengths, sealed half one way, half the other. */
	for (int i = 0; i < T_VALUES; i++) {
		struct t_value *v = &values[i];

		snprintf(v->owner, sizeof(v->owner), "user%02d", i);
		v->len = (size_t)snprintf(v->value, sizeof(v->value),
					  "sk-ant-thread-%02d-%0*d", i,
					  1 + (i * 37) % 280, i);
		t_aad(&aad, v->owner);
		v->blob = seal_via(kr, i % 2 == 0 ? SODIUM : OPENSSL, &aad,
				   v->value, v->len, &v->blen);
	}
	t_aad(&aad, "tampered");
	bad = seal_via(kr, SODIUM, &aad, values[0].value, values[0].len,
		       &bad_len);
	bad[bad_len - 1] ^= 0x80;

	/* OpenSSL's way twice: the second threads make new contexts after
	 * the first ones' were freed. */
	for (int pass = 0; pass < 3; pass++) {
		enum way w = pass == 0 ? SODIUM : OPENSSL;
		long total = 0;

		via(w);
		for (int t = 0; t < T_THREADS; t++) {
			o[t] = (struct opener){ .kr = kr, .values = values,
						.bad = bad, .bad_len = bad_len,
						.index = t };
			assert_int_equal(pthread_create(&o[t].thread, NULL,
							opener_main, &o[t]),
					 0);
		}
		for (int t = 0; t < T_THREADS; t++)
			assert_int_equal(pthread_join(o[t].thread, NULL), 0);
		for (int t = 0; t < T_THREADS; t++) {
			if (o[t].failed)
				fail_msg("%s, thread %d: %s", way_name[w], t,
					 o[t].error);
			total += o[t].opened;
		}
		assert_int_equal(total, (long)T_THREADS * T_ROUNDS * T_VALUES);
	}
}

/* ---- 9. OpenSSL only when needed, PBKDF2 without it ---- */

#define STRINGIFY(x) #x
#define SONAME(major) "libcrypto.so." STRINGIFY(major)
#define LIBCRYPTO SONAME(OPENSSL_VERSION_MAJOR)
#define NO_LIBCRYPTO "libkeyway-test-no-such-libcrypto.so.3"

/* RFC 7914, section 11: PBKDF2-HMAC-SHA256, 64 bytes. */
static const unsigned char rfc7914_passwd[64] = {
	0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f,
	0xec, 0x16, 0x91, 0xc2, 0x25, 0x44, 0xb6, 0x05,
	0xf9, 0x41, 0x85, 0x21, 0x6d, 0xde, 0x04, 0x65,
	0xe6, 0x8b, 0x9d, 0x57, 0xc2, 0x0d, 0xac, 0xbc,
	0x49, 0xca, 0x9c, 0xcc, 0xf1, 0x79, 0xb6, 0x45,
	0x99, 0x16, 0x64, 0xb3, 0x9d, 0x77, 0xef, 0x31,
	0x7c, 0x71, 0xb8, 0x45, 0xb1, 0xe3, 0x0b, 0xd5,
	0x09, 0x11, 0x20, 0x41, 0xd3, 0xa1, 0x97, 0x83,
};
static const unsigned char rfc7914_password[64] = {
	0x4d, 0xdc, 0xd8, 0xf6, 0x0b, 0x98, 0xbe, 0x21,
	0x83, 0x0c, 0xee, 0x5e, 0xf2, 0x27, 0x01, 0xf9,
	0x64, 0x1a, 0x44, 0x18, 0xd0, 0x4c, 0x04, 0x14,
	0xae, 0xff, 0x08, 0x87, 0x6b, 0x34, 0xab, 0x56,
	0xa1, 0xd4, 0x25, 0xa1, 0x22, 0x58, 0x33, 0x54,
	0x9a, 0xdb, 0x84, 0x1b, 0x51, 0xc9, 0xb3, 0x17,
	0x6a, 0x27, 0x2b, 0xde, 0xbb, 0xa1, 0xd0, 0x78,
	0x47, 0x8f, 0x62, 0xb3, 0x97, 0xf3, 0x3c, 0x8d,
};

/* OpenSSL's PBKDF2 and the SHA-256 it takes, from libcrypto. */
struct ossl_pbkdf2 {
	typeof(&PKCS5_PBKDF2_HMAC) pbkdf2;
	typeof(&EVP_sha256) sha256;
};

/* keyway's PBKDF2 gives what OpenSSL's does, and not a byte more. */
static void same_as_openssl(const struct ossl_pbkdf2 *o, const char *pass,
			    size_t pass_len, const unsigned char *salt,
			    size_t salt_len, unsigned long iterations,
			    size_t out_len)
{
	unsigned char got[101], want[100];

	assert_true(out_len < sizeof(got));
	memset(got, 0xa5, sizeof(got));
	memset(want, 0x5a, sizeof(want));
	assert_int_equal(o->pbkdf2(pass, (int)pass_len, salt, (int)salt_len,
				   (int)iterations, o->sha256(), (int)out_len,
				   want),
			 1);
	assert_true(kwi_test_pbkdf2_sha256(pass, pass_len, salt, salt_len,
					   iterations, got, out_len));
	if (memcmp(got, want, out_len) != 0)
		fail_msg("PBKDF2 differs from OpenSSL's: passphrase %zu bytes, "
			 "salt %zu, %lu iterations, %zu bytes out",
			 pass_len, salt_len, iterations, out_len);
	assert_int_equal(got[out_len], 0xa5);
}

static void test_pbkdf2_vectors(void **state)
{
	static const size_t pass_lens[] = { 0, 1, 28, 63, 64, 65, 200 };
	static const size_t salt_lens[] = { 0, 1, 16, 100 };
	static const size_t out_lens[] = { 1, 31, 32, 33, 64, 100 };
	struct ossl_pbkdf2 o;
	char pass[200];
	unsigned char salt[100], got[64];
	void *lib, *fn;

	(void)state;
	assert_true(kwi_test_pbkdf2_sha256("passwd", 6,
					   (const unsigned char *)"salt", 4, 1,
					   got, 64));
	assert_memory_equal(got, rfc7914_passwd, 64);
	assert_true(kwi_test_pbkdf2_sha256("Password", 8,
					   (const unsigned char *)"NaCl", 4,
					   80000, got, 64));
	assert_memory_equal(got, rfc7914_password, 64);
	/* A shorter output is a prefix. */
	memset(got, 0, sizeof(got));
	assert_true(kwi_test_pbkdf2_sha256("passwd", 6,
					   (const unsigned char *)"salt", 4, 1,
					   got, 33));
	assert_memory_equal(got, rfc7914_passwd, 33);
	assert_true(zeroed((const char *)got + 33, sizeof(got) - 33));
	/* RFC 8018 asks for at least one iteration. */
	assert_false(kwi_test_pbkdf2_sha256("passwd", 6,
					    (const unsigned char *)"salt", 4,
					    0, got, 32));

	/* OpenSSL's, which keyway used before, on the edges of HMAC's
	 * 64-byte block (a longer passphrase is hashed first) and of
	 * SHA-256's 32-byte output.  Loaded the way libkeyway loads it, so
	 * that this program does not link it. */
	lib = dlopen(LIBCRYPTO, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL)
		fail_msg("%s", dlerror());
	fn = dlsym(lib, "PKCS5_PBKDF2_HMAC");
	assert_non_null(fn);
	memcpy(&o.pbkdf2, &fn, sizeof(fn));
	fn = dlsym(lib, "EVP_sha256");
	assert_non_null(fn);
	memcpy(&o.sha256, &fn, sizeof(fn));
	for (size_t i = 0; i < sizeof(pass); i++)
		pass[i] = (char)(0x20 + (i * 13) % 95);
	for (size_t i = 0; i < sizeof(salt); i++)
		salt[i] = (unsigned char)(i * 29 + 7);
	for (size_t p = 0; p < sizeof(pass_lens) / sizeof(pass_lens[0]); p++) {
		for (size_t s = 0; s < sizeof(salt_lens) / sizeof(salt_lens[0]);
		     s++) {
			for (size_t n = 0;
			     n < sizeof(out_lens) / sizeof(out_lens[0]); n++) {
				for (unsigned long c = 1; c <= 3; c++)
					same_as_openssl(&o, pass, pass_lens[p],
							salt, salt_lens[s], c,
							out_lens[n]);
			}
		}
		/* Longer runs on a few lengths. */
		same_as_openssl(&o, pass, pass_lens[p], salt, 16, 1000, 32);
		same_as_openssl(&o, pass, pass_lens[p], salt, 16, 4096, 100);
	}
	dlclose(lib);
}

/*
 * Sealed by keyway when PBKDF2 was OpenSSL's: PASS over pass_salt,
 * 600,000 iterations, under the key whose id is PASS_PBKDF2_ID.
 */
#define KAT_PBKDF2_VALUE "sk-ant-sealed-under-a-pbkdf2-passphrase-key"
static const kw_seal_aad kat_pbkdf2_aad = {
	"pbkdf2-store-7a1e", KW_SCOPE_ORG, "acme", "anthropic"
};
static const unsigned char kat_pbkdf2[80] = {
	0x01, 0x12, 0x16, 0xca, 0x24, 0x0f, 0x50, 0xc1,
	0x8a, 0x9b, 0xaa, 0xa0, 0x2f, 0xf5, 0x0d, 0xce,
	0xab, 0x13, 0xb9, 0x0b, 0xf0, 0x3b, 0xfa, 0xef,
	0xcc, 0xf1, 0x3a, 0x26, 0x53, 0x46, 0x13, 0x6b,
	0x65, 0x08, 0xdc, 0x56, 0x57, 0x3a, 0x28, 0xe9,
	0x2e, 0x3e, 0xb4, 0xd8, 0xa4, 0x39, 0x6c, 0x9b,
	0x59, 0xbd, 0x58, 0xd1, 0x28, 0x42, 0x93, 0xf1,
	0xb0, 0x48, 0xcb, 0x61, 0x04, 0x8d, 0x2d, 0xbf,
	0xf6, 0xc4, 0x84, 0xb6, 0x44, 0xee, 0x91, 0xc8,
	0xa1, 0x9f, 0x16, 0x60, 0x8c, 0x58, 0x73, 0x45,
};

static void test_pbkdf2_sealed_before(void **state)
{
	struct fixture *f = *state;
	char *conf = write_conf(f, "pbkdf.conf", PASS_MASTER("pbkdf2-sha256"),
				NULL, store(f, "pbkdf.db"));
	kw_keyring *kr = NULL;

	set_var("KWSEAL_PASS", PASS);
	open_ok(&f->ctx, conf);
	assert_int_equal(kwi_keyring_get(f->ctx, pass_salt, &kr), KW_OK);
	for (enum way w = SODIUM; w <= OPENSSL; w++) {
		opens_to(kr, w, &kat_pbkdf2_aad, kat_pbkdf2,
			 sizeof(kat_pbkdf2), KAT_PBKDF2_VALUE,
			 strlen(KAT_PBKDF2_VALUE));
		fails_to_open(kr, w, &kat_system_aad, kat_pbkdf2,
			      sizeof(kat_pbkdf2), AUTH_FAILED);
	}
	/* Argon2id's key from the same passphrase and salt is another. */
	kw_close(f->ctx);
	f->ctx = NULL;
	conf = write_conf(f, "argon.conf", PASS_MASTER("argon2id"), NULL,
			  store(f, "argon.db"));
	open_ok(&f->ctx, conf);
	assert_int_equal(kwi_keyring_get(f->ctx, pass_salt, &kr), KW_OK);
	fails_to_open(kr, SODIUM, &kat_pbkdf2_aad, kat_pbkdf2,
		      sizeof(kat_pbkdf2),
		      "sealed under master key " PASS_PBKDF2_ID ", which is "
		      "not configured");
}

/* True when libcrypto is mapped into this process. */
static bool libcrypto_loaded(void)
{
	void *h = dlopen(LIBCRYPTO, RTLD_NOW | RTLD_NOLOAD);

	if (h == NULL)
		return false;
	dlclose(h);
	return true;
}

/* fresh_main's report: one line per step, on standard output. */
static void say(const char *step, kw_status st, const char *why)
{
	printf("%s: %s%s%s\n", step, kw_status_str(st),
	       why != NULL && why[0] != '\0' ? ": " : "",
	       why != NULL ? why : "");
}

struct fresh_open {
	const kw_keyring *kr;
	const unsigned char *blob;
	size_t blen;
	kw_status st;
	char why[512];
};

static void *fresh_open_main(void *arg)
{
	struct fresh_open *o = arg;
	char plain[256];

	if (o->blen - KW_SEAL_OVERHEAD > sizeof(plain))
		return NULL;
	o->st = kwi_unseal(o->kr, &kat_user_aad, o->blob, o->blen, plain,
			   o->why, sizeof(o->why));
	return NULL;
}

static int fresh_nomem(const char *conf);
static int fresh_fake(const char *what, const char *conf);

/*
 * What runs in a fresh process, from its start (see run_fresh): `lazy`
 * opens a store, puts and resolves a key, then seals and opens OpenSSL's
 * way, and says whether libcrypto is loaded at each step; `missing` does
 * the same with a libcrypto that cannot be found.  Plain C, no cmocka:
 * the parent compares the whole output.
 */
static int fresh_main(const char *mode, const char *conf)
{
	static const unsigned char salt[KW_SALT_SIZE] = { 0x6c, 0x61, 0x7a };
	bool missing = strcmp(mode, "missing") == 0;
	struct fresh_open o = { 0 };
	unsigned char *blob = NULL, *sealed = NULL;
	char value[256], err[1024], plain[256], why[512];
	kw_keyring *kr = NULL;
	pthread_t thread;
	kw_ctx *ctx = NULL;
	size_t blen = 0, slen = 0;
	kw_status st;

	if (strcmp(mode, "nomem") == 0)
		return fresh_nomem(conf);
	if (strncmp(mode, "fake-", 5) == 0)
		return fresh_fake(mode + 5, conf);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "refused") == 0) {
		/* No AES-NI and no libcrypto: the store cannot open what it
		 * holds, so it does not open. */
		kwi_test_libcrypto(NO_LIBCRYPTO);
		kwi_test_force_openssl(true);
		st = kw_open(&ctx, conf);
		say("kw_open", st, kw_last_error());
		kw_close(ctx);
		return 0;
	}
	if (missing)
		kwi_test_libcrypto(NO_LIBCRYPTO);
	printf("at start: %s\n", libcrypto_loaded() ? "loaded" : "not loaded");
	st = kw_open(&ctx, conf);
	if (st != KW_OK) {
		say("kw_open", st, kw_last_error());
		return 1;
	}
	st = put(ctx, "org_keys", "acme", "anthropic", ACME_ANT,
		 KW_PUT_CREATE);
	say("put", st, st != KW_OK ? kw_last_error() : NULL);
	st = resolve(ctx, "org_keys", "acme", "anthropic", value,
		     sizeof(value), err, sizeof(err));
	say("resolve", st, st == KW_OK ? value : err);
	printf("after a put and a resolve: %s\n",
	       libcrypto_loaded() ? "loaded" : "not loaded");
	if (kwi_keyring_get(ctx, salt, &kr) != KW_OK)
		return 1;

	/* A blob to open, sealed before OpenSSL's way is forced. */
	st = kwi_seal(kr, &kat_user_aad, KAT_USER_VALUE,
		      strlen(KAT_USER_VALUE), &blob, &blen);
	say("seal", st, NULL);
	kwi_test_force_openssl(true);
	st = kwi_seal(kr, &kat_user_aad, KAT_USER_VALUE,
		      strlen(KAT_USER_VALUE), &sealed, &slen);
	say("seal via OpenSSL", st, NULL);
	memset(plain, 0xa5, sizeof(plain));
	why[0] = '\0';
	st = kwi_unseal(kr, &kat_user_aad, blob, blen, plain, why,
			sizeof(why));
	say("open via OpenSSL", st, why);
	if (st == KW_OK)
		printf("opened: %s\n",
		       blen - KW_SEAL_OVERHEAD == strlen(KAT_USER_VALUE) &&
				       memcmp(plain, KAT_USER_VALUE,
					      strlen(KAT_USER_VALUE)) == 0
			       ? "the value"
			       : "something else");
	else
		printf("plaintext: %s\n",
		       zeroed(plain, strlen(KAT_USER_VALUE)) ? "wiped"
							     : "left behind");
	/* Another thread sees the same outcome: loaded once. */
	o.kr = kr;
	o.blob = blob;
	o.blen = blen;
	o.st = KW_ERR_INTERNAL;
	if (pthread_create(&thread, NULL, fresh_open_main, &o) != 0 ||
	    pthread_join(thread, NULL) != 0)
		return 1;
	say("open via OpenSSL, another thread", o.st, o.why);
	printf("at the end: %s\n",
	       libcrypto_loaded() ? "loaded" : "not loaded");

	/* libsodium's way does not need it. */
	kwi_test_force_openssl(false);
	free(sealed);
	sealed = NULL;
	st = kwi_seal(kr, &kat_user_aad, KAT_USER_VALUE,
		      strlen(KAT_USER_VALUE), &sealed, &slen);
	say("seal via libsodium", st, NULL);
	why[0] = '\0';
	if (st == KW_OK)
		st = kwi_unseal(kr, &kat_user_aad, sealed, slen, plain, why,
				sizeof(why));
	say("open via libsodium", st, why);
	free(blob);
	free(sealed);
	kw_close(ctx);
	return 0;
}

/* Lower this process's address space to what it maps now and `more`
 * bytes (0: lift the limit again); false if it cannot. */
static bool limit_memory(size_t more)
{
	struct rlimit rl;
	unsigned long pages = 0;
	FILE *f;

	if (getrlimit(RLIMIT_AS, &rl) != 0)
		return false;
	if (more == 0) {
		rl.rlim_cur = rl.rlim_max;
		return setrlimit(RLIMIT_AS, &rl) == 0;
	}
	f = fopen("/proc/self/statm", "r");
	if (f == NULL || fscanf(f, "%lu", &pages) != 1) {
		if (f != NULL)
			fclose(f);
		return false;
	}
	fclose(f);
	rl.rlim_cur = pages * (unsigned long)sysconf(_SC_PAGESIZE) + more;
	return setrlimit(RLIMIT_AS, &rl) == 0;
}

/*
 * fresh_main's "nomem": the associated data of an owner longer than any
 * name keyway takes (the module interface lets a store say anything) is
 * put together in memory of its own, and when that memory cannot be had,
 * sealing and opening fail with KW_ERR_NOMEM; a keyring whose Argon2id
 * cannot have its memory is not made.
 */
static int fresh_nomem(const char *conf)
{
	static const unsigned char salt[KW_SALT_SIZE] = { 0x6e, 0x6f, 0x6d };
	static const unsigned char salt2[KW_SALT_SIZE] = { 0x6e, 0x6f, 0x32 };
	const size_t big = (size_t)64 << 20;
	char *owner = malloc(big + 1), plain[256], why[512];
	kw_seal_aad aad = { KAT_STORE, KW_SCOPE_USER, owner, "anthropic" };
	unsigned char *blob = NULL, *again = NULL;
	size_t blen = 0, alen = 0, vlen = strlen(KAT_USER_VALUE);
	kw_keyring *kr = NULL, *kr2 = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (owner == NULL)
		return 1;
	memset(owner, 'o', big);
	owner[big] = '\0';
	st = kw_open(&ctx, conf);
	if (st != KW_OK) {
		say("kw_open", st, kw_last_error());
		return 1;
	}
	if (kwi_keyring_get(ctx, salt, &kr) != KW_OK)
		return 1;
	st = kwi_seal(kr, &aad, KAT_USER_VALUE, vlen, &blob, &blen);
	say("seal", st, NULL);
	if (st != KW_OK || !limit_memory((size_t)16 << 20))
		return 1;
	st = kwi_seal(kr, &aad, KAT_USER_VALUE, vlen, &again, &alen);
	say("seal, out of memory", st, NULL);
	memset(plain, 0xa5, sizeof(plain));
	why[0] = '\0';
	st = kwi_unseal(kr, &aad, blob, blen, plain, why, sizeof(why));
	say("open, out of memory", st, why);
	printf("plaintext: %s\n", zeroed(plain, vlen) ? "wiped" : "left behind");
	st = kwi_keyring_get(ctx, salt2, &kr2);
	say("keyring, out of memory", st, NULL);
	if (!limit_memory(0))
		return 1;
	why[0] = '\0';
	st = kwi_unseal(kr, &aad, blob, blen, plain, why, sizeof(why));
	say("open", st, why);
	if (st == KW_OK)
		printf("opened: %s\n", memcmp(plain, KAT_USER_VALUE, vlen) == 0
					       ? "the value"
					       : "something else");
	/* The whole owner is bound: its last byte too. */
	owner[big - 1] = 'p';
	why[0] = '\0';
	st = kwi_unseal(kr, &aad, blob, blen, plain, why, sizeof(why));
	say("open under another owner", st, why);
	st = kwi_keyring_get(ctx, salt2, &kr2);
	say("keyring", st, NULL);
	free(blob);
	free(again);
	free(owner);
	kw_close(ctx);
	return 0;
}

/*
 * fresh_main's "fake-WHAT": OpenSSL's way with tests/modules/fakecrypto.c
 * for libcrypto, WHAT failing in it ("fetch", "ctx", "scrub"; "keys": the
 * process has no thread key left for OpenSSL's contexts).  The fake has
 * no PBKDF2: with "fetch" the store's key is a PBKDF2 passphrase's, which
 * libsodium then derives.
 */
static int fresh_fake(const char *what, const char *conf)
{
	static const unsigned char salt[KW_SALT_SIZE] = { 0x66, 0x61, 0x6b };
	static char lib[4096];
	const char *build = getenv("KEYWAY_BUILDDIR");
	size_t vlen = strlen(KAT_USER_VALUE);
	char plain[256], why[512];
	void (*contexts)(int *, int *) = NULL;
	unsigned char *blob = NULL;
	kw_keyring *kr = NULL;
	kw_ctx *ctx = NULL;
	int made = -1, freed = -1;
	size_t blen = 0;
	kw_status st;
	void *h, *fn;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (build == NULL)
		return 1;
	snprintf(lib, sizeof(lib), "%s/modules/.libs/fakecrypto.so", build);
	setenv("KWTEST_FAKECRYPTO", what, 1);
	kwi_test_libcrypto(lib);
	st = kw_open(&ctx, conf);
	if (st != KW_OK) {
		say("kw_open", st, kw_last_error());
		return 1;
	}
	if (strcmp(what, "fetch") == 0) {
		st = kwi_keyring_get(ctx, pass_salt, &kr);
		say("keyring", st, NULL);
		if (st != KW_OK)
			return 1;
		why[0] = '\0';
		st = kwi_unseal(kr, &kat_pbkdf2_aad, kat_pbkdf2,
				sizeof(kat_pbkdf2), plain, why, sizeof(why));
		say("open via libsodium", st, why);
		if (st == KW_OK)
			printf("opened: %s\n",
			       memcmp(plain, KAT_PBKDF2_VALUE,
				      strlen(KAT_PBKDF2_VALUE)) == 0
				       ? "the value"
				       : "something else");
	} else if (kwi_keyring_get(ctx, salt, &kr) != KW_OK) {
		return 1;
	}
	if (strcmp(what, "keys") == 0) {
		pthread_key_t k;

		while (pthread_key_create(&k, NULL) == 0)
			;
	}
	kwi_test_force_openssl(true);
	for (int i = 0; i < 2; i++) {
		st = kwi_seal(kr, &kat_user_aad, KAT_USER_VALUE, vlen, &blob,
			      &blen);
		say("seal via OpenSSL", st, NULL);
		free(blob);
		blob = NULL;
	}
	memset(plain, 0xa5, sizeof(plain));
	why[0] = '\0';
	if (strcmp(what, "fetch") == 0) {
		vlen = sizeof(kat_pbkdf2) - KW_SEAL_OVERHEAD;
		st = kwi_unseal(kr, &kat_pbkdf2_aad, kat_pbkdf2,
				sizeof(kat_pbkdf2), plain, why, sizeof(why));
	} else {
		st = kwi_unseal(kr, &kat_user_aad, kat_user, sizeof(kat_user),
				plain, why, sizeof(why));
	}
	say("open via OpenSSL", st, why);
	if (st != KW_OK)
		printf("plaintext: %s\n",
		       zeroed(plain, vlen) ? "wiped" : "left behind");
	h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
	fn = h != NULL ? dlsym(h, "fakecrypto_contexts") : NULL;
	if (fn != NULL) {
		memcpy(&contexts, &fn, sizeof(fn));
		contexts(&made, &freed);
	}
	printf("contexts: %d made, %d freed\n", made, freed);
	kw_close(ctx);
	return 0;
}

/* Run this program again as fresh_main(mode, conf); its output (kept). */
static char *run_fresh(const char *mode, const char *conf)
{
	char *out = tu_keep(calloc(1, 8192));
	size_t len = 0;
	ssize_t got;
	int fd[2], status;
	pid_t pid;
	const char *self = tu_self();

	assert_int_equal(pipe(fd), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd[1], 1);
		dup2(fd[1], 2);
		close(fd[0]);
		close(fd[1]);
		execl(self, "test_seal", "--fresh", mode, conf,
		      (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	while (len < 8191 && (got = read(fd[0], out + len, 8191 - len)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		assert_true(got > 0);
		len += (size_t)got;
	}
	close(fd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s process: status %d, said:\n%s", mode, status, out);
	return out;
}

static void test_libcrypto_on_demand(void **state)
{
	struct fixture *f = *state;
	char *conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL,
				store(f, "keys.db"));
	bool aesni = crypto_aead_aes256gcm_is_available();
	const char *ok = kw_status_str(KW_OK);

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	/* Where libsodium's code runs, a process never loads libcrypto
	 * until told to take OpenSSL's way. */
	assert_string_equal(
		run_fresh("lazy", conf),
		tu_fmt("at start: not loaded\n"
		       "put: %s\n"
		       "resolve: %s: " ACME_ANT "@org_keys\n"
		       "after a put and a resolve: %s\n"
		       "seal: %s\n"
		       "seal via OpenSSL: %s\n"
		       "open via OpenSSL: %s\n"
		       "opened: the value\n"
		       "open via OpenSSL, another thread: %s\n"
		       "at the end: loaded\n"
		       "seal via libsodium: %s\n"
		       "open via libsodium: %s\n",
		       ok, ok, aesni ? "not loaded" : "loaded", ok, ok, ok, ok,
		       ok, ok));
}

static void test_libcrypto_missing(void **state)
{
	struct fixture *f = *state;
	char *conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL,
				store(f, "keys.db"));
	const char *why = "AES-256-GCM needs AES-NI or OpenSSL's " LIBCRYPTO
			  ": " NO_LIBCRYPTO ": cannot open shared object "
			  "file: No such file or directory";
	const char *ok = kw_status_str(KW_OK);
	const char *bad = kw_status_str(KW_ERR_CRYPTO);

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	if (!crypto_aead_aes256gcm_is_available())
		skip();
	/* Sealing and opening fail, and say why, every time and in every
	 * thread; nothing crashes, and libsodium's way goes on. */
	assert_string_equal(
		run_fresh("missing", conf),
		tu_fmt("at start: not loaded\n"
		       "put: %s\n"
		       "resolve: %s: " ACME_ANT "@org_keys\n"
		       "after a put and a resolve: not loaded\n"
		       "seal: %s\n"
		       "seal via OpenSSL: %s\n"
		       "open via OpenSSL: %s: %s\n"
		       "plaintext: wiped\n"
		       "open via OpenSSL, another thread: %s: %s\n"
		       "at the end: not loaded\n"
		       "seal via libsodium: %s\n"
		       "open via libsodium: %s\n",
		       ok, ok, ok, bad, bad, why, bad, why, ok, ok));
}

static void test_libcrypto_missing_at_open(void **state)
{
	struct fixture *f = *state;
	char *db = store(f, "keys.db");
	char *conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL, db);

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	assert_string_equal(
		run_fresh("refused", conf),
		tu_fmt("kw_open: %s: %s:%d: backend \"org_keys\": AES-256-GCM "
		       "needs AES-NI or OpenSSL's " LIBCRYPTO ": " NO_LIBCRYPTO
		       ": cannot open shared object file: No such file or "
		       "directory\n",
		       kw_status_str(KW_ERR_CRYPTO), conf, ORG_LINE));
}

/*
 * Associated data longer than the buffer on the stack: sealed and opened
 * whole; when its memory cannot be had, the seal and the open fail with
 * KW_ERR_NOMEM and say so, and so does a keyring whose Argon2id has no
 * memory.  Not under AddressSanitizer, whose allocator stops the process
 * rather than return NULL (and whose skip() the TAP driver counts as a
 * failure).
 */
static void test_long_aad_nomem(void **state)
{
	struct fixture *f = *state;
	char *conf = write_conf(f, "keyway.conf", PASS_MASTER("argon2id"),
				NULL, store(f, "keys.db"));
	const char *ok = kw_status_str(KW_OK);
	const char *nomem = kw_status_str(KW_ERR_NOMEM);

	set_var("KWSEAL_PASS", PASS);
	if (!crypto_aead_aes256gcm_is_available())
		skip();
#ifdef __SANITIZE_ADDRESS__
	print_message("# not under AddressSanitizer\n");
	return;
#endif
	assert_string_equal(
		run_fresh("nomem", conf),
		tu_fmt("seal: %s\n"
		       "seal, out of memory: %s\n"
		       "open, out of memory: %s: out of memory\n"
		       "plaintext: wiped\n"
		       "keyring, out of memory: %s\n"
		       "open: %s\n"
		       "opened: the value\n"
		       "open under another owner: %s: " AUTH_FAILED "\n"
		       "keyring: %s\n",
		       ok, nomem, nomem, nomem, ok,
		       kw_status_str(KW_ERR_CRYPTO), ok));
}

/*
 * OpenSSL's calls failing, with a stand-in for libcrypto: its cipher not
 * to be had, no context, a context that cannot be cleared after use (it
 * is dropped, and the next call makes another), no thread key left.  A
 * libcrypto without PBKDF2 leaves it to libsodium, to the same key.
 */
static void test_libcrypto_failing(void **state)
{
	struct fixture *f = *state;
	char *env_conf = write_conf(f, "keyway.conf", MASTER_ENV, NULL,
				    store(f, "keys.db"));
	char *pass_conf = write_conf(f, "pass.conf",
				     PASS_MASTER("pbkdf2-sha256"), NULL,
				     store(f, "pass.db"));
	const char *ok = kw_status_str(KW_OK);
	const char *bad = kw_status_str(KW_ERR_CRYPTO);

	set_var("KEYWAY_MASTER_KEY", KEY_A);
	set_var("KWSEAL_PASS", PASS);
	if (!crypto_aead_aes256gcm_is_available())
		skip();
	assert_string_equal(
		run_fresh("fake-fetch", pass_conf),
		tu_fmt("keyring: %s\n"
		       "open via libsodium: %s\n"
		       "opened: the value\n"
		       "seal via OpenSSL: %s\n"
		       "seal via OpenSSL: %s\n"
		       "open via OpenSSL: %s: AES-256-GCM needs AES-NI or "
		       "OpenSSL's " LIBCRYPTO ": its AES-256-GCM cannot be "
		       "fetched\n"
		       "plaintext: wiped\n"
		       "contexts: 0 made, 0 freed\n",
		       ok, ok, bad, bad, bad));
	assert_string_equal(
		run_fresh("fake-ctx", env_conf),
		tu_fmt("seal via OpenSSL: %s\n"
		       "seal via OpenSSL: %s\n"
		       "open via OpenSSL: %s: out of memory\n"
		       "plaintext: wiped\n"
		       "contexts: 0 made, 0 freed\n",
		       bad, bad, bad));
	assert_string_equal(
		run_fresh("fake-scrub", env_conf),
		tu_fmt("seal via OpenSSL: %s\n"
		       "seal via OpenSSL: %s\n"
		       "open via OpenSSL: %s\n"
		       "contexts: 3 made, 3 freed\n",
		       ok, ok, ok));
	/* The same without the failure: one context, kept. */
	assert_string_equal(
		run_fresh("fake-none", env_conf),
		tu_fmt("seal via OpenSSL: %s\n"
		       "seal via OpenSSL: %s\n"
		       "open via OpenSSL: %s\n"
		       "contexts: 1 made, 0 freed\n",
		       ok, ok, ok));
	assert_string_equal(
		run_fresh("fake-keys", env_conf),
		tu_fmt("seal via OpenSSL: %s\n"
		       "seal via OpenSSL: %s\n"
		       "open via OpenSSL: %s: cannot keep OpenSSL's per-thread "
		       "state: Resource temporarily unavailable\n"
		       "plaintext: wiped\n"
		       "contexts: 0 made, 0 freed\n",
		       bad, bad, bad));
}

/* libkeyway.so as built does not link libcrypto (readelf's NEEDED). */
static void test_no_libcrypto_needed(void **state)
{
	const char *builddir = getenv("KEYWAY_BUILDDIR");
	char line[1024], *cmd, *needed = tu_keep(calloc(1, 4096));
	size_t len = 0;
	FILE *p;

	(void)state;
	if (builddir == NULL || builddir[0] == '\0')
		fail_msg("$KEYWAY_BUILDDIR is not set (make check sets it)");
	cmd = tu_fmt("readelf -d -W '%s/lib/.libs/libkeyway.so' 2>&1",
		     builddir);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p) != NULL) {
		char *a = strstr(line, "(NEEDED)"), *b, *e;

		if (a == NULL || (b = strchr(a, '[')) == NULL ||
		    (e = strchr(b, ']')) == NULL)
			continue;
		len += (size_t)snprintf(needed + len, 4096 - len, "%.*s ",
					(int)(e - b - 1), b + 1);
		assert_true(len < 4096);
	}
	if (pclose(p) != 0)
		fail_msg("%s failed", cmd);
	/* What it must need, so that an empty list does not pass. */
	if (strstr(needed, "libsodium.so") == NULL)
		fail_msg("libkeyway.so needs only: %s", needed);
	if (strstr(needed, "libcrypto") != NULL ||
	    strstr(needed, "libssl") != NULL)
		fail_msg("libkeyway.so links OpenSSL: it needs %s", needed);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tamper_every_bit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_swap_rows, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_swap_stores, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_wrong_master_key, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rekey_under_threads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_rekey_under_processes,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_sources, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_malformed_env_keys, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_source, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_credential_source, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_credential_odd_files,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_passphrase, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_master_key_settings,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nothing_in_clear, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_delete_among_many, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_known_answers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cross_ways, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_too_long_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tamper_both_ways, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_threads_both_ways, setup,
						teardown),
		cmocka_unit_test(test_pbkdf2_vectors),
		cmocka_unit_test_setup_teardown(test_pbkdf2_sealed_before,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_libcrypto_on_demand,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_libcrypto_missing, setup,
						teardown),
		cmocka_unit_test(test_no_libcrypto_needed),
		cmocka_unit_test_setup_teardown(test_libcrypto_missing_at_open,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_aad_nomem, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_libcrypto_failing, setup,
						teardown),
	};

	if (argc == 4 && strcmp(argv[1], "--fresh") == 0)
		return fresh_main(argv[2], argv[3]);

	return cmocka_run_group_tests(tests, NULL, NULL);
}
