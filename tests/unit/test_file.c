/*
 * test_file.c - the file backend through the public API: keys put,
 * resolved, listed, rotated, disabled, enabled, deleted and re-sealed; a
 * change made by another context noticed, an unchanged file never read
 * again; and every way a file is refused, each with its exact line: the
 * file cut short at each header boundary, each header field altered, a
 * record's value moved to another owner, a master key that is not the
 * file's, unsafe permissions and a symlink.
 *
 * Every key in this file contains "SECRET", and no message may.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "seams.h"
#include "testutil.h"

#define MASTER_A "000102030405060708090a0b0c0d0e0f" \
		 "101112131415161718191a1b1c1d1e1f"
#define MASTER_B "f0e1d2c3b4a5968778695a4b3c2d1e0f" \
		 "0123456789abcdeffedcba9876543210"

#define K_ACME "sk-ant-SECRET-org-acme-00000001"
#define K_ACME2 "sk-ant-SECRET-org-acme-00000002"
#define K_GLOBEX "sk-ant-SECRET-org-globex-000003"
#define K_ALICE "sk-ant-SECRET-user-alice-000004"
#define K_BOB "sk-ant-SECRET-user-bob-00000005"

#define ENTRY(b) "{ backend = \"" b "\"; control = \"sufficient\"; }"

/* org_keys, with its path, is on line 3 of every configuration. */
#define BACKENDS \
	"backends: {\n" \
	"  org_keys: { module = \"file\"; path = \"keys.kwf\"; " \
	"scope = \"org\"; };\n" \
	"  user_keys: { module = \"file\"; path = \"keys.kwf\"; " \
	"scope = \"user\"; };\n" \
	"};\n" \
	"chains: {\n" \
	"  default = ( " ENTRY("org_keys") ", " ENTRY("user_keys") " );\n" \
	"};\n"

#define CONF_A "keyway: { master_key = { source = \"env\"; }; };\n" BACKENDS
#define CONF_B "keyway: { master_key = { source = \"env\"; " \
	"var = \"KWTEST_MASTER_B\"; }; };\n" BACKENDS
#define CONF_B_OLD_A "keyway: { master_key = { source = \"env\"; " \
	"var = \"KWTEST_MASTER_B\"; }; old_master_keys = ( { source = " \
	"\"env\"; } ); };\n" BACKENDS
#define ORG_LINE 3

static const char *const test_vars[] = {
	"KEYWAY_MASTER_KEY", "API_KEY_ENCRYPTION_KEY", "KWTEST_MASTER_B",
	"KEYWAY_PASSPHRASE", NULL,
};

struct fixture {
	char *dir;
	char *conf;
	char *path; /* dir/keys.kwf */
	kw_ctx *ctx;
	kw_ctx *other;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	tu_unsetenv(test_vars);
	setenv("KEYWAY_MASTER_KEY", MASTER_A, 1);
	setenv("KWTEST_MASTER_B", MASTER_B, 1);
	f->dir = tu_tmpdir();
	f->conf = tu_join(f->dir, "keyway.conf");
	f->path = tu_join(f->dir, "keys.kwf");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kw_close(f->ctx);
	kw_close(f->other);
	tu_rmrf(f->dir);
	free(f);
	tu_release(0);
	tu_unsetenv(test_vars);
	return 0;
}

static kw_status open_conf(struct fixture *f, kw_ctx **ctx, const char *text)
{
	free(tu_write(f->dir, "keyway.conf", 0600, "%s", text));
	kw_close(*ctx);
	*ctx = NULL;
	return kw_open(ctx, f->conf);
}

static void expect_ok(kw_status got)
{
	if (got != KW_OK)
		fail_msg("got %s (%d): %s", kw_status_str(got), (int)got,
			 kw_last_error());
}

static void open_ok(struct fixture *f, const char *text)
{
	expect_ok(open_conf(f, &f->ctx, text));
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

static kw_status put(kw_ctx *ctx, const char *backend, const char *owner,
		     const char *value, const char *name, kw_put_mode mode)
{
	kw_key_ref r = ref(backend, owner, "anthropic");

	return kw_key_put(ctx, tu_sysadmin(), &r, value, strlen(value), name,
			  mode);
}

/* Resolve anthropic for user and org: its value, or "" and the status. */
static kw_status resolve(kw_ctx *ctx, const char *user, const char *org,
			 char *value, size_t len)
{
	value[0] = '\0';
	return tu_resolve(ctx, "default", "anthropic", user, org, value, len,
			  NULL, 0);
}

static void want_value(kw_ctx *ctx, const char *user, const char *org,
			 const char *want)
{
	char value[128];

	expect_ok(resolve(ctx, user, org, value, sizeof(value)));
	assert_string_equal(value, want);
}

static void expect_error(kw_status got, kw_status want, const char *msg)
{
	const char *err = kw_last_error();

	if (got != want)
		fail_msg("got %s, expected %s; last error \"%s\"",
			 kw_status_str(got), kw_status_str(want), err);
	assert_string_equal(err, msg);
	tu_assert_no_secret(err);
}

/* The listing as text, one line per key. */
static kw_status list_line(void *arg, const kw_key_info *k)
{
	char *buf = arg;
	size_t len = strlen(buf);

	snprintf(buf + len, 2048 - len, "%s %s %s %s %s %s %s %" PRIu64 "\n",
		 k->backend, kw_scope_str(k->scope),
		 k->owner != NULL ? k->owner : "-", k->provider,
		 k->name[0] != '\0' ? k->name : "-",
		 k->active ? "active" : "disabled", k->masked,
		 k->usage_count);
	return KW_OK;
}

static const char *listing(kw_ctx *ctx)
{
	char *buf = tu_keep(calloc(1, 2048));

	expect_ok(kw_key_list(ctx, tu_sysadmin(), NULL, NULL, list_line, buf));
	return buf;
}

static kw_status first_key_id(void *arg, const kw_key_info *k)
{
	snprintf(arg, 17, "%s", k->key_id);
	return KW_OK;
}

/* ---- managing keys ---- */

static void test_put_resolve_manage(void **state)
{
	struct fixture *f = *state;
	kw_key_ref r = ref("org_keys", "acme", "anthropic");
	struct stat sb;
	char value[128];

	open_ok(f, CONF_A);
	/* The file is made at open, private. */
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, "team", KW_PUT_CREATE));
	expect_ok(put(f->ctx, "org_keys", "globex", K_GLOBEX, NULL,
		      KW_PUT_CREATE));
	expect_ok(put(f->ctx, "user_keys", "alice", K_ALICE, NULL,
		      KW_PUT_CREATE));
	want_value(f->ctx, "alice", "acme", K_ACME);
	want_value(f->ctx, "alice", "globex", K_GLOBEX);
	want_value(f->ctx, "alice", "initech", K_ALICE);
	assert_int_equal(resolve(f->ctx, "bob", "initech", value,
				 sizeof(value)),
			 KW_ERR_NOTFOUND);

	expect_error(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
			 KW_PUT_CREATE),
		     KW_ERR_EXISTS,
		     "backend \"org_keys\": an org key of \"acme\" for "
		     "anthropic already exists; rotate it instead");
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
		      KW_PUT_ROTATE));
	want_value(f->ctx, "alice", "acme", K_ACME2);

	assert_string_equal(listing(f->ctx),
			    "org_keys org acme anthropic team active "
			    "sk-a****0002 0\n"
			    "org_keys org globex anthropic - active "
			    "sk-a****0003 0\n"
			    "user_keys user alice anthropic - active "
			    "sk-a****0004 0\n");

	expect_ok(kw_key_set_active(f->ctx, tu_sysadmin(), &r, 0));
	/* Disabled: the chain goes on to alice's own key. */
	want_value(f->ctx, "alice", "acme", K_ALICE);
	expect_ok(kw_key_set_active(f->ctx, tu_sysadmin(), &r, 1));
	want_value(f->ctx, "alice", "acme", K_ACME2);
	expect_ok(kw_key_delete(f->ctx, tu_sysadmin(), &r));
	want_value(f->ctx, "alice", "acme", K_ALICE);
	expect_error(kw_key_delete(f->ctx, tu_sysadmin(), &r), KW_ERR_NOTFOUND,
		     tu_fmt("backend \"org_keys\": no org key of \"acme\" for "
			    "anthropic in %s", f->path));
	/* Neither a rotation nor a change of state makes a key that is
	 * not there. */
	expect_error(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
			 KW_PUT_ROTATE),
		     KW_ERR_NOTFOUND,
		     tu_fmt("backend \"org_keys\": no org key of \"acme\" for "
			    "anthropic in %s", f->path));
	expect_error(kw_key_set_active(f->ctx, tu_sysadmin(), &r, 1),
		     KW_ERR_NOTFOUND,
		     tu_fmt("backend \"org_keys\": no org key of \"acme\" for "
			    "anthropic in %s", f->path));

	/* All of it is in the file: a new context reads the same. */
	expect_ok(open_conf(f, &f->other, CONF_A));
	want_value(f->other, "bob", "globex", K_GLOBEX);
	want_value(f->other, "alice", "acme", K_ALICE);

	/* Use counts are written when a context closes. */
	kw_close(f->ctx);
	f->ctx = NULL;
	kw_close(f->other);
	f->other = NULL;
	open_ok(f, CONF_A);
	assert_string_equal(listing(f->ctx),
			    "org_keys org globex anthropic - active "
			    "sk-a****0003 2\n"
			    "user_keys user alice anthropic - active "
			    "sk-a****0004 4\n");
}

/* Another context's write is seen at the next resolve. */
static void test_change_noticed(void **state)
{
	struct fixture *f = *state;

	open_ok(f, CONF_A);
	expect_ok(open_conf(f, &f->other, CONF_A));
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	want_value(f->other, "bob", "acme", K_ACME);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
		      KW_PUT_ROTATE));
	want_value(f->other, "bob", "acme", K_ACME2);
}

/*
 * A file that stat() shows unchanged is not read again: its bytes are
 * altered in place, with its size and modification time kept, and the
 * key still resolves from what was read.  Touched, it is read but not
 * opened again (same header, same nonce); with another nonce it is, and
 * refused.
 */
static void test_unchanged_not_reread(void **state)
{
	struct fixture *f = *state;
	struct timespec times[2];
	struct stat sb;
	unsigned char byte;
	char value[128];
	int fd;

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	want_value(f->ctx, "bob", "acme", K_ACME);
	assert_int_equal(stat(f->path, &sb), 0);
	fd = open(f->path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, 100), 1);
	byte ^= 1;
	assert_int_equal(pwrite(fd, &byte, 1, 100), 1);
	close(fd);
	times[0] = sb.st_atim;
	times[1] = sb.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, f->path, times, 0), 0);
	want_value(f->ctx, "bob", "acme", K_ACME);

	/* Touched: the header and nonce say it is the file we have. */
	times[1].tv_sec++;
	assert_int_equal(utimensat(AT_FDCWD, f->path, times, 0), 0);
	want_value(f->ctx, "bob", "acme", K_ACME);

	/* Another nonce is another write: read again, and refused. */
	fd = open(f->path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, 80), 1);
	byte ^= 1;
	assert_int_equal(pwrite(fd, &byte, 1, 80), 1);
	close(fd);
	times[1].tv_sec++;
	assert_int_equal(utimensat(AT_FDCWD, f->path, times, 0), 0);
	assert_int_equal(resolve(f->ctx, "bob", "acme", value, sizeof(value)),
			 KW_ERR_CRYPTO);
	assert_string_equal(value, "");
}

static void test_rekey(void **state)
{
	struct fixture *f = *state;
	char id_a[17] = "", id_b[17] = "";
	uint64_t count = 0;

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	expect_ok(put(f->ctx, "org_keys", "globex", K_GLOBEX, NULL,
		      KW_PUT_CREATE));
	expect_ok(put(f->ctx, "user_keys", "alice", K_ALICE, NULL,
		      KW_PUT_CREATE));
	expect_ok(kw_key_list(f->ctx, tu_sysadmin(), "org_keys", NULL,
			      first_key_id, id_a));

	/* Under B with A as the old key: both read, and a rekey through
	 * either backend moves every key in the file, whatever its scope. */
	open_ok(f, CONF_B_OLD_A);
	want_value(f->ctx, "alice", "acme", K_ACME);
	expect_ok(kw_rekey(f->ctx, tu_sysadmin(), "org_keys", &count));
	assert_int_equal(count, 3);
	expect_ok(kw_rekey(f->ctx, tu_sysadmin(), "org_keys", &count));
	assert_int_equal(count, 0);
	expect_ok(kw_rekey(f->ctx, tu_sysadmin(), "user_keys", &count));
	assert_int_equal(count, 0);
	expect_ok(kw_key_list(f->ctx, tu_sysadmin(), "org_keys", NULL,
			      first_key_id, id_b));
	assert_string_not_equal(id_a, id_b);

	/* B alone now opens everything. */
	open_ok(f, CONF_B);
	want_value(f->ctx, "alice", "acme", K_ACME);
	want_value(f->ctx, "alice", "initech", K_ALICE);

	/* And A alone is refused, naming the key the file needs. */
	expect_error(open_conf(f, &f->other, CONF_A), KW_ERR_CRYPTO,
		     tu_fmt("%s:%d: backend \"org_keys\": %s is sealed under "
			    "master key %s, which neither keyway.master_key "
			    "nor keyway.old_master_keys holds: configure that "
			    "key (or its passphrase)",
			    f->conf, ORG_LINE, f->path, id_b));
}

/* Threads resolving through one context while another rotates the key:
 * every answer is the old key or the new one. */
struct reader {
	kw_ctx *ctx;
	atomic_bool *stop;
	unsigned found, bad;
};

static void *read_loop(void *arg)
{
	struct reader *r = arg;
	char value[128];

	while (!atomic_load(r->stop)) {
		if (resolve(r->ctx, "bob", "acme", value, sizeof(value)) ==
			    KW_OK &&
		    (strcmp(value, K_ACME) == 0 ||
		     strcmp(value, K_ACME2) == 0))
			r->found++;
		else
			r->bad++;
	}
	return NULL;
}

static void test_readers_during_writes(void **state)
{
	struct fixture *f = *state;
	struct reader readers[4];
	pthread_t threads[4];
	atomic_bool stop = false;

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	expect_ok(open_conf(f, &f->other, CONF_A));
	for (int i = 0; i < 4; i++) {
		readers[i] = (struct reader){ f->ctx, &stop, 0, 0 };
		assert_int_equal(pthread_create(&threads[i], NULL, read_loop,
						&readers[i]),
				 0);
	}
	for (int i = 0; i < 40; i++)
		expect_ok(put(f->other, "org_keys", "acme",
			      i % 2 == 0 ? K_ACME2 : K_ACME, NULL,
			      KW_PUT_ROTATE));
	atomic_store(&stop, true);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		assert_int_equal(readers[i].bad, 0);
		assert_true(readers[i].found > 0);
	}
	want_value(f->ctx, "bob", "acme", K_ACME);
}

/* ---- refusals ---- */

/* The file's bytes, kept to alter. */
static unsigned char *file_bytes(struct fixture *f, size_t *len)
{
	return (unsigned char *)tu_slurp(f->path, len);
}

static void write_bytes(struct fixture *f, const unsigned char *buf,
			size_t len)
{
	int fd = open(f->path, O_WRONLY | O_TRUNC | O_CREAT, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

#define AUTH_FAILED \
	"cannot be opened: it was altered or damaged (authentication " \
	"failed: the sealed value was altered or belongs to another " \
	"record): restore it from a backup"

struct damage {
	const char *what;
	size_t at;        /* byte to alter (with `xor`), or cut at (cut) */
	unsigned char xor;
	bool cut;
	const char *said; /* after "PATH " */
};

static void test_corruption_table(void **state)
{
	struct fixture *f = *state;
	char key_id[17] = "", other_id[17];
	const struct damage table[] = {
		{ "empty", 0, 0, true,
		  "is truncated (0 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "inside the magic", 4, 0, true,
		  "is truncated (4 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the magic", 8, 0, true,
		  "is truncated (8 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the version", 10, 0, true,
		  "is truncated (10 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the KDF id", 12, 0, true,
		  "is truncated (12 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the KDF parameters", 24, 0, true,
		  "is truncated (24 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the salt", 40, 0, true,
		  "is truncated (40 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the file id", 56, 0, true,
		  "is truncated (56 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the generation", 64, 0, true,
		  "is truncated (64 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the envelope version", 65, 0, true,
		  "is truncated (65 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the key id", 73, 0, true,
		  "is truncated (73 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "after the nonce", 85, 0, true,
		  "is truncated (85 bytes; a keyway file has at least 101): "
		  "restore it from a backup" },
		{ "inside the tag", SIZE_MAX, 0, true, AUTH_FAILED },
		{ "magic", 1, 0x20, false,
		  "is not a keyway file (bad magic)" },
		{ "version", 9, 0x03, false,
		  "has format version 2, which this keyway does not read (it "
		  "reads version 1): upgrade keyway" },
		{ "KDF id", 10, 0x07, false,
		  "names an unknown key derivation (7.0): restore it from a "
		  "backup" },
		{ "reserved byte", 11, 0x01, false,
		  "names an unknown key derivation (0.1): restore it from a "
		  "backup" },
		{ "KDF parameter", 13, 0x01, false,
		  "has key derivation parameters but no key derivation: "
		  "restore it from a backup" },
		{ "salt", 30, 0x01, false, AUTH_FAILED },
		{ "file id", 45, 0x01, false, AUTH_FAILED },
		{ "generation", 63, 0x01, false, AUTH_FAILED },
		{ "envelope version", 64, 0x03, false,
		  "has an envelope of unknown version 2: upgrade keyway" },
		{ "key id", 66, 0x01, false, NULL },
		{ "nonce", 80, 0x01, false, AUTH_FAILED },
		{ "ciphertext", 90, 0x01, false, AUTH_FAILED },
		{ "tag", SIZE_MAX - 1, 0x01, false, AUTH_FAILED },
	};
	unsigned char *good, *bad;
	size_t len;

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	expect_ok(kw_key_list(f->ctx, tu_sysadmin(), "org_keys", NULL,
			      first_key_id, key_id));
	kw_close(f->ctx);
	f->ctx = NULL;
	good = file_bytes(f, &len);
	assert_true(len > 101);
	bad = tu_keep(malloc(len));
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct damage *d = &table[i];
		size_t at = d->at == SIZE_MAX       ? len - 1
			    : d->at == SIZE_MAX - 1 ? len - 3
						    : d->at;
		size_t n = d->cut ? at : len;
		const char *said = d->said;
		unsigned char *after;
		size_t after_len;

		memcpy(bad, good, len);
		if (!d->cut)
			bad[at] ^= d->xor;
		if (said == NULL) {
			sodium_bin2hex(other_id, sizeof(other_id), bad + 65, 8);
			said = tu_fmt("is sealed under master key %s, which "
				      "neither keyway.master_key nor "
				      "keyway.old_master_keys holds: "
				      "configure that key (or its "
				      "passphrase)",
				      other_id);
		}
		write_bytes(f, bad, n);
		print_message("# damaged: %s\n", d->what);
		expect_error(open_conf(f, &f->ctx, CONF_A),
			     strstr(said, "master key") != NULL ||
				     strstr(said, "authentication") != NULL
				     ? KW_ERR_CRYPTO
				     : KW_ERR_BACKEND,
			     tu_fmt("%s:%d: backend \"org_keys\": %s %s",
				    f->conf, ORG_LINE, f->path, said));
		/* Nothing was written over it. */
		after = (unsigned char *)tu_slurp(f->path, &after_len);
		assert_int_equal(after_len, n);
		assert_memory_equal(after, bad, n);
	}
	/* The file as it was opens again. */
	write_bytes(f, good, len);
	open_ok(f, CONF_A);
	want_value(f->ctx, "bob", "acme", K_ACME);
}

/* A record's value moved to another owner does not open. */
static void test_record_moved_between_owners(void **state)
{
	struct fixture *f = *state;
	unsigned char key[32], *buf, *plain, *out;
	char aad_hex[129], value[128];
	unsigned char aad[14 + 21 + 4 + 128 + 4 + 4 + 4 + 4];
	unsigned long long plen, clen;
	size_t len, at, lo, lp, ln;
	size_t s1, l1, s2, l2;
	unsigned char *p;

	if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available())
		skip();
	open_ok(f, CONF_A);
	/* Values of one length, so that swapping them keeps the layout. */
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	expect_ok(put(f->ctx, "org_keys", "globex", K_ACME2, NULL,
		      KW_PUT_CREATE));
	want_value(f->ctx, "bob", "acme", K_ACME);
	kw_close(f->ctx);
	f->ctx = NULL;

	/* Open the envelope as docs/file-format.md says. */
	buf = file_bytes(f, &len);
	sodium_hex2bin(key, sizeof(key), MASTER_A, 64, NULL, NULL, NULL);
	sodium_bin2hex(aad_hex, sizeof(aad_hex), buf, 64);
	p = aad;
	memcpy(p, "keyway seal v1", 14);
	memcpy(p + 14, buf + 64, 21);
	p += 35;
	memcpy(p, "\0\0\0\x80", 4);
	memcpy(p + 4, aad_hex, 128);
	p += 132;
	memcpy(p, "\0\0\0\x04none\0\0\0\0\0\0\0\0", 16);
	plain = tu_keep(malloc(len));
	assert_int_equal(crypto_aead_aes256gcm_decrypt(
				 plain, &plen, NULL, buf + 85, len - 85, aad,
				 sizeof(aad), buf + 73, key),
			 0);

	/* The two records' sealed values, swapped. */
	at = 4;
	lo = (size_t)plain[at + 2] << 8 | plain[at + 3];
	lp = (size_t)plain[at + 4] << 8 | plain[at + 5];
	ln = (size_t)plain[at + 6] << 8 | plain[at + 7];
	at += 40 + lo + lp + ln;
	l1 = (size_t)plain[at + 2] << 8 | plain[at + 3];
	s1 = at + 4;
	at = s1 + l1;
	lo = (size_t)plain[at + 2] << 8 | plain[at + 3];
	lp = (size_t)plain[at + 4] << 8 | plain[at + 5];
	ln = (size_t)plain[at + 6] << 8 | plain[at + 7];
	at += 40 + lo + lp + ln;
	l2 = (size_t)plain[at + 2] << 8 | plain[at + 3];
	s2 = at + 4;
	assert_int_equal(l1, l2);
	{
		unsigned char *tmp = tu_keep(malloc(l1));

		memcpy(tmp, plain + s1, l1);
		memcpy(plain + s1, plain + s2, l1);
		memcpy(plain + s2, tmp, l1);
	}

	/* Sealed again, under a fresh nonce, as keyway would. */
	out = tu_keep(malloc(len));
	memcpy(out, buf, 85);
	randombytes_buf(out + 73, 12);
	memcpy(aad + 14, out + 64, 21);
	assert_int_equal(crypto_aead_aes256gcm_encrypt(out + 85, &clen, plain,
						       plen, aad, sizeof(aad),
						       NULL, out + 73, key),
			 0);
	assert_int_equal(clen + 85, len);
	write_bytes(f, out, len);

	open_ok(f, CONF_A);
	assert_int_equal(resolve(f->ctx, "bob", "acme", value, sizeof(value)),
			 KW_ERR_CRYPTO);
	assert_string_equal(value, "");
	tu_assert_no_secret(kw_last_error());
	assert_non_null(strstr(kw_last_error(),
			       tu_fmt("the org key of \"acme\" for anthropic "
				      "in %s: authentication failed",
				      f->path)));
}

static void test_unsafe_file(void **state)
{
	struct fixture *f = *state;
	struct timespec times[2] = { { 0, UTIME_OMIT }, { 0, 0 } };
	char *target, value[128];

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	want_value(f->ctx, "bob", "acme", K_ACME);
	/* Made unsafe under a reader: refused at its next look. */
	assert_int_equal(chmod(f->path, 0644), 0);
	times[1].tv_sec = time(NULL) + 10;
	assert_int_equal(utimensat(AT_FDCWD, f->path, times, 0), 0);
	expect_error(resolve(f->ctx, "bob", "acme", value, sizeof(value)),
		     KW_ERR_PERM,
		     tu_fmt("chain \"default\", provider \"anthropic\": "
			    "org_keys answered permission denied: %s is "
			    "accessible by "
			    "group or others (mode 0644); it holds secrets: "
			    "chmod 600 it",
			    f->path));
	assert_string_equal(value, "");
	assert_int_equal(chmod(f->path, 0600), 0);
	want_value(f->ctx, "bob", "acme", K_ACME);
	kw_close(f->ctx);
	f->ctx = NULL;
	assert_int_equal(chmod(f->path, 0640), 0);
	expect_error(open_conf(f, &f->ctx, CONF_A), KW_ERR_PERM,
		     tu_fmt("%s:%d: backend \"org_keys\": %s is accessible by "
			    "group or others (mode 0640); it holds secrets: "
			    "chmod 600 it",
			    f->conf, ORG_LINE, f->path));
	assert_int_equal(chmod(f->path, 0600), 0);
	target = tu_join(f->dir, "real.kwf");
	assert_int_equal(rename(f->path, target), 0);
	assert_int_equal(symlink(target, f->path), 0);
	expect_error(open_conf(f, &f->ctx, CONF_A), KW_ERR_PERM,
		     tu_fmt("%s:%d: backend \"org_keys\": %s is a symbolic "
			    "link; point the setting at the file itself",
			    f->conf, ORG_LINE, f->path));
}

/*
 * A writer reads the file under the lock, whatever stat() says: another
 * writer's file put in place with the inode, size and modification time
 * of the one we read must not be written over from what we had.
 */
static void test_write_sees_lookalike(void **state)
{
	struct fixture *f = *state;
	struct timespec times[2];
	unsigned char *bytes;
	struct stat sb;
	char *keep;
	size_t len;
	int fd;

	open_ok(f, CONF_A);
	expect_ok(open_conf(f, &f->other, CONF_A));
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	want_value(f->ctx, "bob", "acme", K_ACME);
	assert_int_equal(stat(f->path, &sb), 0);
	keep = tu_join(f->dir, "keys.keep");
	assert_int_equal(link(f->path, keep), 0);
	expect_ok(put(f->other, "org_keys", "acme", K_ACME2, NULL,
		      KW_PUT_ROTATE));
	bytes = file_bytes(f, &len);
	assert_int_equal((off_t)len, sb.st_size);
	fd = open(keep, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, 0), (ssize_t)len);
	close(fd);
	times[0] = sb.st_atim;
	times[1] = sb.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, keep, times, 0), 0);
	assert_int_equal(rename(keep, f->path), 0);

	expect_ok(put(f->ctx, "org_keys", "beta", K_ACME, NULL,
		      KW_PUT_CREATE));
	want_value(f->other, "bob", "acme", K_ACME2);
	want_value(f->ctx, "bob", "acme", K_ACME2);
}

/*
 * A writer stopped with the lock held hangs no one: the uses counted at
 * close are given up after a short wait, and a put waits a bounded time
 * and says who is in the way.  (Before, both waited for ever: the alarm
 * ends the test then.)
 */
static void test_stuck_writer(void **state)
{
	struct fixture *f = *state;
	struct timespec t0, t1;
	char *lock;
	int fd;

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	want_value(f->ctx, "bob", "acme", K_ACME);
	lock = tu_fmt("%s.lock", f->path);
	fd = open(lock, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	alarm(30);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	kw_close(f->ctx);
	f->ctx = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 3);
	open_ok(f, CONF_A);
	expect_error(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
			 KW_PUT_ROTATE),
		     KW_ERR_UNAVAIL,
		     tu_fmt("backend \"org_keys\": %s is locked by another "
			    "keyway writer "
			    "(waited 10 seconds for %s); nothing was written",
			    f->path, lock));
	alarm(0);
	close(fd);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
		      KW_PUT_ROTATE));
	want_value(f->ctx, "bob", "acme", K_ACME2);
}

/* A lock file others may write, or not a file, is refused: whoever can
 * take it can keep every writer out. */
static void test_unsafe_lock_file(void **state)
{
	struct fixture *f = *state;
	char *lock;

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	lock = tu_fmt("%s.lock", f->path);
	assert_int_equal(chmod(lock, 0666), 0);
	expect_error(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
			 KW_PUT_ROTATE),
		     KW_ERR_PERM,
		     tu_fmt("backend \"org_keys\": %s is writable by group or "
			    "others (mode 0666): chmod 600 it",
			    lock));
	assert_int_equal(unlink(lock), 0);
	assert_int_equal(mkfifo(lock, 0600), 0);
	expect_error(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
			 KW_PUT_ROTATE),
		     KW_ERR_PERM,
		     tu_fmt("backend \"org_keys\": %s is not a regular file: "
			    "remove it",
			    lock));
	assert_int_equal(unlink(lock), 0);
	/* Root takes no lock file another user could hold the writers
	 * out with. */
	if (geteuid() == 0) {
		free(tu_write(f->dir, "keys.kwf.lock", 0600, "%s", ""));
		assert_int_equal(chown(lock, 12345, 12345), 0);
		expect_error(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
				 KW_PUT_ROTATE),
			     KW_ERR_PERM,
			     tu_fmt("backend \"org_keys\": %s is owned by uid "
				    "12345; it must belong to root: "
				    "chown 0 it",
				    lock));
		assert_int_equal(unlink(lock), 0);
	}
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
		      KW_PUT_ROTATE));
	want_value(f->ctx, "bob", "acme", K_ACME2);
}

/* An unsafe lock file found where the file is to be made stops the open,
 * in one line saying what to do and that nothing was made. */
static void test_unsafe_lock_at_create(void **state)
{
	struct fixture *f = *state;
	const char *lock = tu_fmt("%s.lock", f->path);
	struct stat sb;
	kw_status st;

	free(tu_write(f->dir, "keys.kwf.lock", 0600, "%s", ""));
	assert_int_equal(chmod(lock, 0666), 0);
	st = open_conf(f, &f->ctx, CONF_A);
	assert_int_equal(st, KW_ERR_PERM);
	if (strstr(kw_last_error(), tu_fmt("%s is writable by group or others "
					   "(mode 0666): chmod 600 it",
					   lock)) == NULL ||
	    strchr(kw_last_error(), '\n') != NULL)
		fail_msg("%s", kw_last_error());
	assert_int_equal(lstat(f->path, &sb), -1);
	assert_int_equal(unlink(lock), 0);
	assert_int_equal(symlink("elsewhere", lock), 0);
	st = open_conf(f, &f->ctx, CONF_A);
	assert_int_not_equal(st, KW_OK);
	if (strstr(kw_last_error(), tu_fmt("cannot lock %s: ", lock)) == NULL ||
	    strstr(kw_last_error(), "; nothing was created") == NULL)
		fail_msg("%s", kw_last_error());
	assert_int_equal(lstat(f->path, &sb), -1);
	assert_int_equal(unlink(lock), 0);
	open_ok(f, CONF_A);
	assert_int_equal(lstat(f->path, &sb), 0);
}

/* Another keyway file moved into the file's place, and a file too large
 * to be one, are refused in one line that says what to do. */
static void test_file_replaced(void **state)
{
	struct fixture *f = *state;
	char *dir2 = tu_tmpdir(), value[128];
	kw_ctx *ctx2 = NULL;
	kw_status st;

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	want_value(f->ctx, "alice", "acme", K_ACME);
	free(tu_write(dir2, "keyway.conf", 0600, "%s", CONF_A));
	expect_ok(kw_open(&ctx2, tu_join(dir2, "keyway.conf")));
	expect_ok(put(ctx2, "org_keys", "acme", K_ACME2, NULL, KW_PUT_CREATE));
	kw_close(ctx2);
	assert_int_equal(rename(tu_join(dir2, "keys.kwf"), f->path), 0);
	tu_rmrf(dir2);
	st = resolve(f->ctx, "alice", "acme", value, sizeof(value));
	assert_int_equal(st, KW_ERR_BACKEND);
	assert_string_equal(value, "");
	if (strstr(kw_last_error(), tu_fmt("%s was replaced by another keyway "
					   "file (file id ", f->path)) == NULL ||
	    strstr(kw_last_error(), "): restart the program to read it") ==
		    NULL)
		fail_msg("%s", kw_last_error());
	tu_assert_no_secret(kw_last_error());

	/* A program started now reads it; past 2 GiB it is no keyway file. */
	open_ok(f, CONF_A);
	want_value(f->ctx, "alice", "acme", K_ACME2);
	assert_int_equal(truncate(f->path, 3LL << 30), 0);
	st = resolve(f->ctx, "alice", "acme", value, sizeof(value));
	assert_int_equal(st, KW_ERR_BACKEND);
	if (strstr(kw_last_error(), tu_fmt("%s is too large (3221225472 "
					   "bytes)", f->path)) == NULL)
		fail_msg("%s", kw_last_error());
}

/*
 * An older copy put in the file's place is refused by a program that has
 * read a newer one, for lookups and writes alike, with a line saying
 * what happened; a program started afterwards reads it.
 */
static uint64_t generation(const struct fixture *f);

static void test_older_copy_refused(void **state)
{
	struct fixture *f = *state;
	char value[128], *tmp;
	unsigned char *old;
	size_t len;
	int fd;

	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	old = (unsigned char *)tu_slurp(f->path, &len);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME2, NULL,
		      KW_PUT_ROTATE));
	want_value(f->ctx, "bob", "acme", K_ACME2);

	tmp = tu_join(f->dir, "older");
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, old, len), (ssize_t)len);
	close(fd);
	assert_int_equal(rename(tmp, f->path), 0);

	expect_error(resolve(f->ctx, "bob", "acme", value, sizeof(value)),
		     KW_ERR_BACKEND,
		     tu_fmt("chain \"default\", provider \"anthropic\": "
			    "org_keys answered backend error: %s was "
			    "replaced by an older copy of itself (generation "
			    "2, after 3): if that was meant, restart the "
			    "program to read it",
			    f->path));
	assert_string_equal(value, "");
	assert_int_not_equal(put(f->ctx, "org_keys", "globex", K_GLOBEX,
				 NULL, KW_PUT_CREATE),
			     KW_OK);
	assert_non_null(strstr(kw_last_error(), "older copy"));
	assert_non_null(strstr(kw_last_error(), "nothing was written"));

	/* Opened afresh, the copy is the file. */
	expect_ok(open_conf(f, &f->other, CONF_A));
	want_value(f->other, "bob", "acme", K_ACME);

	/* Written past the generation the first context had, the copy is
	 * still refused there: the key it brought back stays out. */
	expect_ok(put(f->other, "org_keys", "globex", K_GLOBEX, NULL,
		      KW_PUT_CREATE));
	expect_ok(put(f->other, "org_keys", "globex", K_GLOBEX, NULL,
		      KW_PUT_ROTATE));
	assert_true(generation(f) > 3);
	assert_int_equal(resolve(f->ctx, "bob", "acme", value, sizeof(value)),
			 KW_ERR_BACKEND);
	assert_non_null(strstr(kw_last_error(), "(generation 2, after 3)"));
	assert_string_equal(value, "");
}

/*
 * Temporary files that killed writers left are removed by the next
 * write, and nothing else: not a name of another length or alphabet, not
 * a file that does not begin as a keyway file, not a symbolic link, not
 * another file's.
 */
static void test_leftover_temps_swept(void **state)
{
	struct fixture *f = *state;
	static const char *const keep[] = {
		"keys.kwf.tmp.abc1234", "keys.kwf.tmp.ab12", "keys.kwf.tmpx.abc123",
		"other.kwf.tmp.abc123", "keys.kwf.tmp.a-b_c.", "keys.kwf.tmp.NOTES1",
		"keys.kwf.tmp.LnK456",
	};
	struct stat sb;

	open_ok(f, CONF_A);
	free(tu_write(f->dir, "keys.kwf.tmp.Ab9xZ1", 0600,
		      "\x89KEYWAY\nhalf a file"));
	free(tu_write(f->dir, "keys.kwf.tmp.000000", 0600, "%s", ""));
	free(tu_write(f->dir, "keys.kwf.tmp.zzzzz9", 0600, "\x89KEY"));
	/* The right names, but not what a writer leaves: someone's own. */
	for (size_t i = 0; i < 6; i++)
		free(tu_write(f->dir, keep[i], 0600, "\x89KEYWAY\n"));
	free(tu_write(f->dir, keep[5], 0600, "my notes"));
	assert_int_equal(symlink("keys.kwf",
				 tu_join(f->dir, keep[6])), 0);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	assert_int_equal(lstat(tu_join(f->dir, "keys.kwf.tmp.Ab9xZ1"), &sb),
			 -1);
	assert_int_equal(lstat(tu_join(f->dir, "keys.kwf.tmp.000000"), &sb),
			 -1);
	assert_int_equal(lstat(tu_join(f->dir, "keys.kwf.tmp.zzzzz9"), &sb),
			 -1);
	for (size_t i = 0; i < 7; i++)
		if (lstat(tu_join(f->dir, keep[i]), &sb) != 0)
			fail_msg("%s was removed", keep[i]);
	want_value(f->ctx, "bob", "acme", K_ACME);
}

/* The file's generation, from its header. */
static uint64_t generation(const struct fixture *f)
{
	unsigned char *buf;
	uint64_t g = 0;
	size_t len;

	buf = (unsigned char *)tu_slurp(f->path, &len);
	assert_true(len >= 64);
	for (int i = 56; i < 64; i++)
		g = g << 8 | buf[i];
	return g;
}

/* Let the library hand its use counts to the backend a few times. */
static void let_counts_flush(void)
{
	struct timespec pause = { 0, 150 * 1000 * 1000 };

	nanosleep(&pause, NULL);
}

/*
 * Use counts are written at once the first time, then held (at most one
 * write a minute), and the rest written as the context closes, by the
 * process that counted them: not by a child that inherited them.
 */
static void test_counts_written_seldom(void **state)
{
	struct fixture *f = *state;
	uint64_t g;
	pid_t pid;
	int status;

	kwi_test_usecount_flush_ms(10);
	open_ok(f, CONF_A);
	expect_ok(put(f->ctx, "org_keys", "acme", K_ACME, NULL, KW_PUT_CREATE));
	g = generation(f);
	want_value(f->ctx, "bob", "acme", K_ACME);
	let_counts_flush();
	assert_int_equal(generation(f), g + 1);
	for (int i = 0; i < 5; i++) {
		want_value(f->ctx, "bob", "acme", K_ACME);
		let_counts_flush();
	}
	assert_int_equal(generation(f), g + 1);
#if !defined(__SANITIZE_ADDRESS__)
	/* (GCC 12's AddressSanitizer is not fork-safe with the usage thread
	 * running; the plain build runs this part.) */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kw_close(f->ctx);
		tu_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(generation(f), g + 1);
#else
	(void)pid;
	(void)status;
#endif
	kw_close(f->ctx);
	f->ctx = NULL;
	kwi_test_usecount_flush_ms(0);
	assert_int_equal(generation(f), g + 2);
	open_ok(f, CONF_A);
	assert_string_equal(listing(f->ctx), "org_keys org acme anthropic - "
					     "active sk-a****0001 6\n");
}

/* kw_key_describe() on a full buffer writes nothing, not even past it. */
static void test_key_describe_full(void **state)
{
	char buf[16];
	size_t len = 8;

	(void)state;
	memset(buf, 'x', sizeof(buf));
	kw_key_describe(buf, 8, &len, KW_SCOPE_ORG, "acme", "anthropic");
	assert_int_equal(len, 8);
	assert_int_equal(buf[8], 'x');
	len = 0;
	kw_key_describe(buf, sizeof(buf), &len, KW_SCOPE_NONE, NULL, "p");
	assert_string_equal(buf, "unscoped key fo");
	len = 0;
	kw_key_describe(buf, sizeof(buf), &len, KW_SCOPE_ORG, "a", "p");
	assert_string_equal(buf, "org key of \"a\" ");
}

/* The scope words stores keep: the three scopes a key has, no other. */
static void test_key_scope_word(void **state)
{
	(void)state;
	assert_string_equal(kw_key_scope_word(KW_SCOPE_USER), "user");
	assert_string_equal(kw_key_scope_word(KW_SCOPE_ORG), "org");
	assert_string_equal(kw_key_scope_word(KW_SCOPE_SYSTEM), "system");
	assert_null(kw_key_scope_word(KW_SCOPE_NONE));
	assert_null(kw_key_scope_word((kw_scope)42));
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_put_resolve_manage),
		T(test_change_noticed),
		T(test_unchanged_not_reread),
		T(test_rekey),
		T(test_readers_during_writes),
		T(test_corruption_table),
		T(test_record_moved_between_owners),
		T(test_unsafe_file),
		T(test_write_sees_lookalike),
		T(test_stuck_writer),
		T(test_unsafe_lock_file),
		T(test_file_replaced),
		T(test_unsafe_lock_at_create),
		T(test_older_copy_refused),
		T(test_leftover_temps_swept),
		T(test_counts_written_seldom),
		cmocka_unit_test(test_key_describe_full),
		cmocka_unit_test(test_key_scope_word),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
