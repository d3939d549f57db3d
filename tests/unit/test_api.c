/*
 * test_api.c - the small print of keyway.h: status names, the version,
 * masking, requests, the lifetime of secrets and contexts, and guarded
 * memory of every size a secret can take.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <keyway/keyway.h>

#include "seams.h"
#include "testutil.h"

#define NSTATUS (KW_ERR_INTERNAL + 1)

/* One fake backend "b" answering found with value `value`. */
#define ONE_FAKE(value)                                                  \
	"backends: {\n"                                                  \
	"  b: { module = \"fake\"; answer = \"found\"; value = \"" value \
	"\"; };\n"                                                       \
	"};\n"                                                           \
	"chains: { default = ( { backend = \"b\"; control = "           \
	"\"required\"; } ); };\n"

#define SECRET_40 "sk-ant-api03-abcdefghijklmnopqrstuvwxyz9"

static kw_ctx *open_one_fake(void)
{
	kw_ctx *ctx = NULL;

	assert_int_equal(tu_open(&ctx, ONE_FAKE(SECRET_40), NULL), KW_OK);
	assert_non_null(ctx);
	return ctx;
}

static kw_secret *resolve_one(kw_ctx *ctx, const char *chain)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;

	req.chain = chain;
	req.provider = "anthropic";
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_OK);
	assert_non_null(s);
	return s;
}

/* ---- status names, version ---- */

static void test_status_str_every_status(void **state)
{
	static const char *const want[NSTATUS] = {
		"ok", "notfound", "denied", "unavail", "backend error",
		"decryption failed", "configuration error", "module error",
		"out of memory", "invalid argument", "i/o error",
		"permission denied", "already exists", "not supported",
		"internal error",
	};

	(void)state;
	for (int i = 0; i < NSTATUS; i++) {
		const char *s = kw_status_str((kw_status)i);

		assert_non_null(s);
		assert_string_equal(s, want[i]);
		for (int k = 0; k < i; k++)
			assert_string_not_equal(s,
						kw_status_str((kw_status)k));
	}
}

static void test_status_str_out_of_range(void **state)
{
	(void)state;
	assert_string_equal(kw_status_str((kw_status)NSTATUS),
			    "unknown status");
	assert_string_equal(kw_status_str((kw_status)1000), "unknown status");
	assert_string_equal(kw_status_str((kw_status)-1), "unknown status");
}

static void test_action_str(void **state)
{
	(void)state;
	assert_string_equal(kw_action_str(KW_ACTION_DONE), "done");
	assert_string_equal(kw_action_str(KW_ACTION_CONTINUE), "continue");
	assert_string_equal(kw_action_str(KW_ACTION_DIE), "die");
	assert_string_equal(kw_action_str(KW_ACTION_SKIP), "skip");
	assert_non_null(kw_action_str((kw_action)42));
}

static void test_version(void **state)
{
	char want[32];

	(void)state;
	snprintf(want, sizeof(want), "%d.%d.%d", KEYWAY_VERSION_MAJOR,
		 KEYWAY_VERSION_MINOR, KEYWAY_VERSION_PATCH);
	assert_non_null(kw_version());
	assert_string_equal(kw_version(), want);
	assert_string_equal(kw_version(), PACKAGE_VERSION);
}

static void test_last_error_never_null(void **state)
{
	(void)state;
	assert_non_null(kw_last_error());
}

/* ---- kw_mask ---- */

static void test_mask_lengths(void **state)
{
	static const char s40[] = SECRET_40;
	char buf[64];

	(void)state;
	assert_int_equal(strlen(s40), 40);
	assert_ptr_equal(kw_mask("", 0, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "****");
	/* Never more than a third of the key: nothing under 12 bytes, the
	 * last four under 24, both ends from 24 on. */
	assert_ptr_equal(kw_mask("sk-abcdefgh", 11, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "****");
	assert_ptr_equal(kw_mask("sk-abcdefghi", 12, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "****fghi");
	assert_ptr_equal(kw_mask("sk-abcdefghijklm", 16, buf, sizeof(buf)),
			 buf);
	assert_string_equal(buf, "****jklm");
	assert_ptr_equal(kw_mask(s40, 23, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "****ghij");
	assert_ptr_equal(kw_mask(s40, 24, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "sk-a****hijk");
	assert_ptr_equal(kw_mask(s40, 40, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "sk-a****xyz9");
	/* Only len counts, not where the NUL is. */
	assert_ptr_equal(kw_mask(s40, 20, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "****defg");
	assert_ptr_equal(kw_mask(NULL, 0, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "****");
	assert_ptr_equal(kw_mask(NULL, 40, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "****");
}

static void test_mask_small_buffer(void **state)
{
	static const char s40[] = SECRET_40;
	char buf[16];

	(void)state;
	memset(buf, 'Z', sizeof(buf));
	assert_ptr_equal(kw_mask(s40, 40, buf, 5), buf);
	assert_string_equal(buf, "sk-a");
	assert_int_equal(buf[5], 'Z');

	memset(buf, 'Z', sizeof(buf));
	assert_ptr_equal(kw_mask(s40, 40, buf, 12), buf);
	assert_string_equal(buf, "sk-a****xyz");
	assert_int_equal(buf[12], 'Z');

	memset(buf, 'Z', sizeof(buf));
	assert_ptr_equal(kw_mask(s40, 40, buf, 13), buf);
	assert_string_equal(buf, "sk-a****xyz9");

	memset(buf, 'Z', sizeof(buf));
	assert_ptr_equal(kw_mask("short", 5, buf, 3), buf);
	assert_string_equal(buf, "**");
	assert_int_equal(buf[3], 'Z');

	memset(buf, 'Z', sizeof(buf));
	assert_ptr_equal(kw_mask(s40, 40, buf, 1), buf);
	assert_string_equal(buf, "");
	assert_int_equal(buf[1], 'Z');
}

static void test_mask_size_zero(void **state)
{
	char buf[8];

	(void)state;
	memset(buf, 'Z', sizeof(buf));
	assert_ptr_equal(kw_mask(SECRET_40, 40, buf, 0), buf);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 'Z');
	/* Nothing is written, so no buffer is needed at all. */
	assert_null(kw_mask(SECRET_40, 40, NULL, 0));
}

/* ---- requests ---- */

static void test_request_init(void **state)
{
	kw_request req;
	kw_request lit = KW_REQUEST_INIT;

	(void)state;
	memset(&req, 0xa5, sizeof(req));
	kw_request_init(&req);
	assert_int_equal(req.size, sizeof(kw_request));
	assert_null(req.chain);
	assert_null(req.provider);
	assert_null(req.user);
	assert_null(req.org);

	assert_int_equal(lit.size, sizeof(kw_request));
	assert_null(lit.chain);
	assert_null(lit.provider);
	assert_null(lit.user);
	assert_null(lit.org);
}

static void test_request_checks(void **state)
{
	kw_ctx *ctx = open_one_fake();
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = (kw_secret *)&req; /* must be set to NULL */
	kw_trace *t = (kw_trace *)&req;
	char want[256];

	(void)state;
	assert_int_equal(kw_resolve(ctx, &req, NULL), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), "kw_resolve: out is NULL");
	assert_int_equal(kw_explain(ctx, &req, NULL), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), "kw_explain: out is NULL");

	assert_int_equal(kw_resolve(NULL, &req, &s), KW_ERR_INVAL);
	assert_null(s);
	assert_string_equal(kw_last_error(), "no context or no request");
	s = (kw_secret *)&req;
	assert_int_equal(kw_resolve(ctx, NULL, &s), KW_ERR_INVAL);
	assert_null(s);

	s = (kw_secret *)&req;
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_ERR_INVAL);
	assert_null(s);
	assert_string_equal(kw_last_error(), "request names no provider");

	req.provider = "Anthropic";
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "invalid provider name (lower-case letters, "
			    "digits, '-', '_' and '.', at most 64)");

	req.provider = "anthropic";
	req.user = "al ice";
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "invalid user name (printable, no spaces or "
			    "slashes, at most 256 bytes)");
	req.user = "alice";
	req.org = "..";
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "invalid org name (printable, no spaces or "
			    "slashes, at most 256 bytes)");
	req.org = NULL;

	req.size = offsetof(kw_request, provider);
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_ERR_INVAL);
	snprintf(want, sizeof(want),
		 "request size %zu is too small; initialise it with "
		 "KW_REQUEST_INIT",
		 offsetof(kw_request, provider));
	assert_string_equal(kw_last_error(), want);
	req.size = sizeof(req);

	req.chain = "nope";
	assert_int_equal(kw_explain(ctx, &req, &t), KW_ERR_INVAL);
	assert_null(t);
	assert_true(strstr(kw_last_error(), ": no chain \"nope\"") != NULL);

	/* A request from an older caller that ends after provider: user
	 * and org are not read. */
	req.chain = NULL;
	req.user = "al ice";
	req.size = offsetof(kw_request, user);
	assert_int_equal(kw_resolve(ctx, &req, &s), KW_OK);
	assert_string_equal(kw_secret_value(s), SECRET_40);
	kw_secret_free(s);
	kw_close(ctx);
}

/* ---- names a terminal would act on ---- */

#define MASTER_HEX "000102030405060708090a0b0c0d0e0f" \
		   "101112131415161718191a1b1c1d1e1f"
#define STORE_KEY "sk-ant-api03-names-0123456789abcdef"

#define CONTROL "it holds a control character"
#define BIDI "it holds a bidirectional text control"
#define NOT_UTF8 "it is not valid UTF-8"
#define SEPARATOR "it holds a line or paragraph separator"

/* What goes between "ab" and "cd" in every name, and why it is refused. */
static const struct bad_name {
	const char *bytes;
	const char *why;
} bad_names[] = {
	{ "\x1b[31m", CONTROL },          /* ESC: starts a terminal escape */
	{ "\x01", CONTROL },
	{ "\t", CONTROL },
	{ "\x7f", CONTROL },              /* DEL */
	{ "\xc2\x80", CONTROL },          /* U+0080 */
	{ "\xc2\x85", CONTROL },          /* NEL */
	{ "\xc2\x9b", CONTROL },          /* CSI */
	{ "\xc2\x9f", CONTROL },          /* U+009F */
	{ "\x9b" "31m", NOT_UTF8 },       /* the one-byte CSI */
	{ "\xe2\x80\xaa", BIDI },         /* U+202A LRE */
	{ "\xe2\x80\xae", BIDI },         /* U+202E RLO */
	{ "\xe2\x81\xa6", BIDI },         /* U+2066 LRI */
	{ "\xe2\x81\xa9", BIDI },         /* U+2069 PDI */
	{ "\xe2\x80\x8e", BIDI },         /* U+200E LRM */
	{ "\xe2\x80\x8f", BIDI },         /* U+200F RLM */
	{ "\xd8\x9c", BIDI },             /* U+061C ALM */
	{ "\xe2\x80\xa8", SEPARATOR },    /* U+2028 LINE SEPARATOR */
	{ "\xe2\x80\xa9", SEPARATOR },    /* U+2029 PARAGRAPH SEPARATOR */
	{ "\xff", NOT_UTF8 },
	{ "\xc3", NOT_UTF8 },              /* cut short */
	{ "\xc0\xaf", NOT_UTF8 },          /* overlong '/' */
	{ "\xed\xa0\x80", NOT_UTF8 },      /* a surrogate */
	{ "\xf4\x90\x80\x80", NOT_UTF8 },  /* past U+10FFFF */
};

static kw_status count_key(void *arg, const kw_key_info *info)
{
	(void)info;
	(*(int *)arg)++;
	return KW_OK;
}

static kw_status count_row(void *arg, const kw_usage_row *row)
{
	(void)row;
	(*(int *)arg)++;
	return KW_OK;
}

/* st is KW_ERR_INVAL, and the message names the field and says why, with
 * none of the name's bytes in it. */
static void expect_bad_name(kw_status st, const char *field,
			    const char *why)
{
	char want[256];

	snprintf(want, sizeof(want), "invalid %s: %s (at byte 3)", field,
		 why);
	if (st != KW_ERR_INVAL || strcmp(kw_last_error(), want) != 0)
		fail_msg("%s: got %s \"%s\", not \"%s\"", field,
			 kw_status_str(st), kw_last_error(), want);
}

static int count_keys(kw_ctx *ctx, const kw_actor *root)
{
	int n = 0;

	assert_int_equal(kw_key_list(ctx, root, NULL, NULL, count_key, &n),
			 KW_OK);
	return n;
}

/* Each kind of name refused in every field a caller gives one in. */
static void test_names_refused(void **state)
{
	const kw_actor root = { sizeof(kw_actor), "root", NULL,
				KW_ROLE_SYSADMIN };
	kw_ctx *ctx = NULL;
	char *dir = NULL;
	int n = 0;

	(void)state;
	setenv("KEYWAY_MASTER_KEY", MASTER_HEX, 1);
	assert_int_equal(
		tu_open(&ctx,
			"keyway: { master_key = { source = \"env\"; }; };\n"
			"backends: {\n"
			"  org_keys: { module = \"sqlite\"; path = \"k.db\";"
			" scope = \"org\"; };\n"
			"};\n"
			"chains: { default = ( { backend = \"org_keys\"; "
			"control = \"required\"; } ); };\n",
			&dir),
		KW_OK);

	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		const char *why = bad_names[i].why;
		kw_request req = KW_REQUEST_INIT;
		kw_actor a = root;
		kw_key_ref r = KW_KEY_REF_INIT;
		kw_usage_filter uf;
		kw_secret *s = NULL;
		kw_trace *t = NULL;
		char bad[64];

		snprintf(bad, sizeof(bad), "ab%scd", bad_names[i].bytes);

		/* A request. */
		req.provider = "anthropic";
		req.org = "acme";
		req.user = bad;
		expect_bad_name(kw_resolve(ctx, &req, &s), "user name", why);
		assert_null(s);
		expect_bad_name(kw_explain(ctx, &req, &t), "user name", why);
		assert_null(t);
		req.user = NULL;
		req.org = bad;
		expect_bad_name(kw_resolve(ctx, &req, &s), "org name", why);
		req.org = "acme";
		req.provider = bad;
		expect_bad_name(kw_resolve(ctx, &req, &s), "provider name",
				why);
		expect_bad_name(kw_explain(ctx, &req, &t), "provider name",
				why);
		req.provider = "anthropic";
		req.chain = bad;
		expect_bad_name(kw_resolve(ctx, &req, &s), "chain name", why);
		expect_bad_name(kw_explain(ctx, &req, &t), "chain name", why);
		assert_null(s);
		assert_null(t);

		/* Storing, changing and deleting a key. */
		r.backend = "org_keys";
		r.owner = "acme";
		r.provider = "anthropic";
		expect_bad_name(kw_key_put(ctx, &root, &r, STORE_KEY,
					   strlen(STORE_KEY), bad,
					   KW_PUT_CREATE),
				"key name", why);
		expect_bad_name(kw_key_put(ctx, &root, &r, STORE_KEY,
					   strlen(STORE_KEY), bad,
					   KW_PUT_ROTATE),
				"key name", why);
		r.owner = bad;
		expect_bad_name(kw_key_put(ctx, &root, &r, STORE_KEY,
					   strlen(STORE_KEY), "prod",
					   KW_PUT_CREATE),
				"owner name", why);
		expect_bad_name(kw_key_set_active(ctx, &root, &r, 0),
				"owner name", why);
		expect_bad_name(kw_key_delete(ctx, &root, &r), "owner name",
				why);
		r.owner = "acme";
		r.provider = bad;
		expect_bad_name(kw_key_put(ctx, &root, &r, STORE_KEY,
					   strlen(STORE_KEY), NULL,
					   KW_PUT_CREATE),
				"provider name", why);
		r.provider = "anthropic";
		r.backend = bad;
		expect_bad_name(kw_key_put(ctx, &root, &r, STORE_KEY,
					   strlen(STORE_KEY), NULL,
					   KW_PUT_CREATE),
				"backend name", why);
		expect_bad_name(kw_key_delete(ctx, &root, &r), "backend name",
				why);
		a.user = bad;
		r.backend = "org_keys";
		expect_bad_name(kw_key_put(ctx, &a, &r, STORE_KEY,
					   strlen(STORE_KEY), NULL,
					   KW_PUT_CREATE),
				"actor user name", why);
		a.user = "root";
		a.org = bad;
		expect_bad_name(kw_key_delete(ctx, &a, &r), "actor org name",
				why);

		/* Listing, re-sealing, reading the usage log. */
		expect_bad_name(kw_key_list(ctx, &root, bad, NULL, count_key,
					    &n),
				"backend name", why);
		expect_bad_name(kw_key_list(ctx, &root, NULL, bad, count_key,
					    &n),
				"owner name", why);
		expect_bad_name(kw_rekey(ctx, &root, bad, NULL),
				"backend name", why);
		uf = (kw_usage_filter)KW_USAGE_FILTER_INIT;
		uf.user = bad;
		expect_bad_name(kw_usage(ctx, &root, &uf, count_row, &n),
				"user name", why);
		uf.user = NULL;
		uf.org = bad;
		expect_bad_name(kw_usage(ctx, &root, &uf, count_row, &n),
				"org name", why);
		uf.org = NULL;
		uf.backend = bad;
		expect_bad_name(kw_usage(ctx, &root, &uf, count_row, &n),
				"backend name", why);
	}
	assert_int_equal(n, 0);
	/* Nothing was stored. */
	assert_int_equal(count_keys(ctx, &root), 0);

	/* Names in other scripts, with joiners and spaces, are names. */
	{
		kw_key_ref r = KW_KEY_REF_INIT;
		const char *name = "caf\xc3\xa9 \xe2\x98\x95 \xd7\xa9\xd7\x9c "
				   "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb";

		r.backend = "org_keys";
		r.owner = "\xe6\x97\xa5\xe6\x9c\xac";
		r.provider = "anthropic";
		assert_int_equal(kw_key_put(ctx, &root, &r, STORE_KEY,
					    strlen(STORE_KEY), name,
					    KW_PUT_CREATE),
				 KW_OK);
		assert_int_equal(count_keys(ctx, &root), 1);
	}
	assert_int_equal(kw_name_check("key name", "ab\x1b" "cd"),
			 KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "invalid key name: " CONTROL " (at byte 3)");
	assert_int_equal(kw_name_check("key name", "ab cd"), KW_OK);
	assert_int_equal(kw_name_check(NULL, NULL), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), "invalid name: no name");

	kw_close(ctx);
	tu_rmrf(dir);
	unsetenv("KEYWAY_MASTER_KEY");
}

/* ---- secrets ---- */

static void test_secret_value_and_len(void **state)
{
	kw_ctx *ctx = open_one_fake();
	kw_secret *s = resolve_one(ctx, NULL);

	(void)state;
	assert_int_equal(kw_secret_len(s), 40);
	assert_int_equal(strlen(kw_secret_value(s)), kw_secret_len(s));
	assert_int_equal(kw_secret_value(s)[kw_secret_len(s)], '\0');
	assert_memory_equal(kw_secret_value(s), SECRET_40, 41);
	assert_string_equal(kw_secret_backend(s), "b");
	kw_secret_free(s);
	kw_close(ctx);

	assert_null(kw_secret_value(NULL));
	assert_int_equal(kw_secret_len(NULL), 0);
	assert_null(kw_secret_backend(NULL));
}

static void test_secret_report(void **state)
{
	kw_ctx *ctx = open_one_fake();
	kw_secret *used = resolve_one(ctx, NULL);
	kw_secret *unused = resolve_one(ctx, NULL);
	kw_secret *bad = resolve_one(ctx, NULL);

	(void)state;
	assert_int_equal(kw_secret_report(used, KW_USED), KW_OK);
	assert_int_equal(kw_secret_report(used, KW_USED), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "kw_secret_report: this secret was already "
			    "reported");
	assert_int_equal(kw_secret_report(used, KW_UNUSED), KW_ERR_INVAL);

	assert_int_equal(kw_secret_report(unused, KW_UNUSED), KW_OK);
	assert_int_equal(kw_secret_report(unused, KW_UNUSED), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "kw_secret_report: this secret was already "
			    "reported");

	/* A bad outcome is refused and does not use up the one report. */
	assert_int_equal(kw_secret_report(bad, (kw_outcome)7), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "kw_secret_report: unknown outcome 7");
	assert_int_equal(kw_secret_report(bad, (kw_outcome)-1), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "kw_secret_report: unknown outcome -1");
	assert_int_equal(kw_secret_report(bad, KW_UNUSED), KW_OK);

	assert_int_equal(kw_secret_report(NULL, KW_USED), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), "kw_secret_report: no secret");

	/* Reporting does not touch the value. */
	assert_string_equal(kw_secret_value(used), SECRET_40);
	kw_secret_free(used);
	kw_secret_free(unused);
	kw_secret_free(bad);
	kw_close(ctx);
}

static void test_free_null(void **state)
{
	(void)state;
	kw_secret_free(NULL);
	kw_close(NULL);
	kw_trace_free(NULL);
}

static void test_trace_accessors_null(void **state)
{
	(void)state;
	assert_null(kw_trace_chain(NULL));
	assert_int_equal(kw_trace_len(NULL), 0);
	assert_null(kw_trace_get(NULL, 0));
	assert_int_equal(kw_trace_result(NULL), KW_ERR_INVAL);
	assert_null(kw_trace_backend(NULL));
	assert_non_null(kw_trace_summary(NULL));
}

static void test_secret_survives_close(void **state)
{
	kw_ctx *ctx = open_one_fake();
	kw_secret *a = resolve_one(ctx, NULL);
	kw_secret *b = resolve_one(ctx, NULL);

	(void)state;
	assert_int_equal(kw_secret_report(b, KW_UNUSED), KW_OK);
	kw_close(ctx);
	assert_string_equal(kw_secret_value(a), SECRET_40);
	assert_int_equal(kw_secret_len(a), 40);
	assert_string_equal(kw_secret_backend(a), "b");
	assert_string_equal(kw_secret_value(b), SECRET_40);
	assert_int_equal(kw_secret_report(a, KW_USED), KW_ERR_INVAL);
	assert_string_equal(kw_last_error(),
			    "kw_secret_report: the context that resolved "
			    "this secret was closed; report before "
			    "kw_close(), after it only kw_secret_free()");
	kw_secret_free(a);
	kw_secret_free(b);
}

/* ---- kw_open ---- */

static void test_open_null_ctx(void **state)
{
	(void)state;
	assert_int_equal(kw_open(NULL, "/nonexistent/keyway.conf"),
			 KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), "kw_open: ctx is NULL");
}

static void test_open_missing_file(void **state)
{
	char *dir = tu_tmpdir();
	char *path, want[1024];
	kw_ctx *ctx = (kw_ctx *)&dir; /* must be set to NULL */

	(void)state;
	assert_true(asprintf(&path, "%s/absent.conf", dir) > 0);
	assert_int_equal(kw_open(&ctx, path), KW_ERR_CONFIG);
	assert_null(ctx);
	snprintf(want, sizeof(want),
		 "%s: cannot open configuration: No such file or directory",
		 path);
	assert_string_equal(kw_last_error(), want);
	free(path);
	tu_rmrf(dir);
}

/* kw_check_problems(): what kw_check() reports as "file:line: message",
 * in its parts. */
struct problems {
	char text[4][512];
	size_t n;
};

static void note_problem(void *arg, const kw_problem *p)
{
	struct problems *ps = arg;

	assert_true(ps->n < 4);
	snprintf(ps->text[ps->n++], sizeof(ps->text[0]), "%s|%d|%s|%s",
		 p->file, p->line, p->message, kw_status_str(p->status));
}

static void test_check_problems(void **state)
{
	struct problems ps = { .n = 0 };
	char *dir = tu_tmpdir();
	char *path, want[1024];

	(void)state;
	path = tu_write(dir, "two.conf", 0600,
			"colour = \"blue\";\n"
			"chains: { default = ( { backend = \"nope\"; "
			"control = \"required\"; } ); };\n");
	assert_int_equal(kw_check_problems(path, note_problem, &ps),
			 KW_ERR_CONFIG);
	assert_int_equal(ps.n, 3);
	/* A problem of the whole file has line 0, and comes first: the
	 * problems are told in the order of their lines. */
	snprintf(want, sizeof(want), "%s|0|no backends section|%s", path,
		 kw_status_str(KW_ERR_CONFIG));
	assert_string_equal(ps.text[0], want);
	snprintf(want, sizeof(want), "%s|1|unknown setting \"colour\" "
		 "(expected keyway, backends, chains or daemon)|%s", path,
		 kw_status_str(KW_ERR_CONFIG));
	assert_string_equal(ps.text[1], want);
	snprintf(want, sizeof(want), "%s|2|chain \"default\": unknown "
		 "backend \"nope\"|%s", path, kw_status_str(KW_ERR_CONFIG));
	assert_string_equal(ps.text[2], want);
	free(path);

	ps.n = 0;
	assert_true(asprintf(&path, "%s/absent.conf", dir) > 0);
	assert_int_equal(kw_check_problems(path, note_problem, &ps),
			 KW_ERR_CONFIG);
	assert_int_equal(ps.n, 1);
	snprintf(want, sizeof(want), "%s|0|cannot open configuration: No such "
		 "file or directory|%s", path, kw_status_str(KW_ERR_CONFIG));
	assert_string_equal(ps.text[0], want);
	free(path);
	tu_rmrf(dir);
}

static void test_open_env_config(void **state)
{
	char *dir = tu_tmpdir();
	char *path = tu_write(dir, "env.conf", 0644, ONE_FAKE("sk-from-env-"
							      "config-0123"));
	char *missing, want[1024], value[64], backend[16];
	kw_ctx *ctx = NULL;

	(void)state;
	assert_int_equal(setenv("KEYWAY_CONFIG", path, 1), 0);
	assert_int_equal(kw_open(&ctx, NULL), KW_OK);
	assert_non_null(ctx);
	assert_int_equal(tu_resolve(ctx, NULL, "openai", NULL, NULL, value,
				    sizeof(value), backend, sizeof(backend)),
			 KW_OK);
	assert_string_equal(value, "sk-from-env-config-0123");
	assert_string_equal(backend, "b");
	kw_close(ctx);

	/* An explicit path wins over $KEYWAY_CONFIG. */
	assert_true(asprintf(&missing, "%s/absent.conf", dir) > 0);
	ctx = NULL;
	assert_int_equal(kw_open(&ctx, missing), KW_ERR_CONFIG);
	assert_null(ctx);
	snprintf(want, sizeof(want),
		 "%s: cannot open configuration: No such file or directory",
		 missing);
	assert_string_equal(kw_last_error(), want);

	/* $KEYWAY_CONFIG naming a missing file is reported by that name. */
	assert_int_equal(setenv("KEYWAY_CONFIG", missing, 1), 0);
	assert_int_equal(kw_open(&ctx, NULL), KW_ERR_CONFIG);
	assert_null(ctx);
	assert_string_equal(kw_last_error(), want);

	/* So does kw_check. */
	assert_int_equal(kw_check(NULL, NULL, NULL), KW_ERR_CONFIG);
	assert_string_equal(kw_last_error(), want);

	unsetenv("KEYWAY_CONFIG");
	free(missing);
	free(path);
	tu_rmrf(dir);
}

static void test_open_default_config(void **state)
{
	const char *def = kw_default_config();
	static const char tail[] = "/keyway/keyway.conf";
	char want[1024];
	kw_ctx *ctx = NULL;

	(void)state;
	assert_non_null(def);
	assert_int_equal(def[0], '/');
	assert_true(strlen(def) > strlen(tail));
	assert_string_equal(def + strlen(def) - strlen(tail), tail);
	assert_ptr_equal(kw_default_config(), def);

	/* An empty $KEYWAY_CONFIG means the default. */
	assert_int_equal(setenv("KEYWAY_CONFIG", "", 1), 0);
	if (access(def, F_OK) != 0 && errno == ENOENT) {
		assert_int_equal(kw_open(&ctx, NULL), KW_ERR_CONFIG);
		assert_null(ctx);
		snprintf(want, sizeof(want),
			 "%s: cannot open configuration: No such file or "
			 "directory",
			 def);
		assert_string_equal(kw_last_error(), want);
	}
	unsetenv("KEYWAY_CONFIG");
}

/* ---- guarded memory through real resolves ---- */

/* Secret lengths around every slot size of the arena (the header and the
 * backend name come on top), up to values only sodium_malloc serves. */
static const size_t lengths[] = {
	1,    2,    3,    7,    8,    15,   16,   17,   31,   32,   33,
	47,   63,   64,   65,   95,   127,  128,  129,  191,  255,  256,
	257,  400,  511,  512,  513,  777,  1000, 1023, 1024, 1025, 1500,
	1990, 2000, 2010, 2047, 2048, 2049, 3000, 4095, 4096, 4097, 8192,
	10000, 10239, 10240,
};

#define NLENGTHS (sizeof(lengths) / sizeof(lengths[0]))

static char pattern_char(size_t len, size_t i)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz"
				       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

	return alphabet[(i * 7 + len * 13) % (sizeof(alphabet) - 1)];
}

/* The value of length len, malloc'd. */
static char *pattern(size_t len)
{
	char *v = malloc(len + 1);

	assert_non_null(v);
	for (size_t i = 0; i < len; i++)
		v[i] = pattern_char(len, i);
	v[len] = '\0';
	return v;
}

/* One backend and one chain per length: backend bN, chain lN. */
static kw_ctx *open_sizes(void)
{
	size_t cap = 256, used = 0;
	kw_ctx *ctx = NULL;
	char *text;

	for (size_t i = 0; i < NLENGTHS; i++)
		cap += lengths[i] + 256;
	text = malloc(cap);
	assert_non_null(text);
#define ADD(...)                                                          \
	do {                                                              \
		int n_ = snprintf(text + used, cap - used, __VA_ARGS__);  \
		assert_true(n_ >= 0 && (size_t)n_ < cap - used);          \
		used += (size_t)n_;                                       \
	} while (0)
	ADD("backends: {\n");
	for (size_t i = 0; i < NLENGTHS; i++) {
		char *v = pattern(lengths[i]);

		ADD("  b%zu: { module = \"fake\"; answer = \"found\"; "
		    "value = \"%s\"; };\n",
		    lengths[i], v);
		free(v);
	}
	ADD("};\nchains: {\n");
	for (size_t i = 0; i < NLENGTHS; i++)
		ADD("  l%zu = ( { backend = \"b%zu\"; control = "
		    "\"requisite\"; } );\n",
		    lengths[i], lengths[i]);
	ADD("};\n");
#undef ADD
	assert_int_equal(tu_open(&ctx, text, NULL), KW_OK);
	free(text);
	return ctx;
}

static void check_secret(const kw_secret *s, size_t len)
{
	char backend[32];

	snprintf(backend, sizeof(backend), "b%zu", len);
	assert_int_equal(kw_secret_len(s), len);
	assert_int_equal(kw_secret_value(s)[len], '\0');
	for (size_t i = 0; i < len; i++)
		if (kw_secret_value(s)[i] != pattern_char(len, i))
			fail_msg("secret of length %zu differs at byte %zu",
				 len, i);
	assert_string_equal(kw_secret_backend(s), backend);
}

static void test_sizes_exact_bytes(void **state)
{
	kw_ctx *ctx = open_sizes();
	kw_secret *held[NLENGTHS][3];
	char chain[32];

	(void)state;
	/* Three of each at once, all checked only after every one was
	 * allocated, so that no two of them share memory. */
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < NLENGTHS; i++) {
			snprintf(chain, sizeof(chain), "l%zu", lengths[i]);
			held[i][round] = resolve_one(ctx, chain);
		}
	}
	for (size_t i = 0; i < NLENGTHS; i++)
		for (int round = 0; round < 3; round++)
			check_secret(held[i][round], lengths[i]);

	/* Free every other one and allocate again: slots are reused. */
	for (size_t i = 0; i < NLENGTHS; i++) {
		kw_secret_free(held[i][1]);
		held[i][1] = NULL;
	}
	for (size_t i = NLENGTHS; i-- > 0;) {
		snprintf(chain, sizeof(chain), "l%zu", lengths[i]);
		held[i][1] = resolve_one(ctx, chain);
	}
	kw_close(ctx);
	for (size_t i = 0; i < NLENGTHS; i++) {
		for (int round = 0; round < 3; round++) {
			check_secret(held[i][round], lengths[i]);
			kw_secret_free(held[i][round]);
		}
	}
}

/* More secrets of one size than one slab holds, all alive at once. */
#define NMANY 5000

static void test_many_secrets_one_size(void **state)
{
	kw_ctx *ctx = open_sizes();
	kw_secret **held = calloc(NMANY, sizeof(*held));

	(void)state;
	assert_non_null(held);
	for (size_t i = 0; i < NMANY; i++)
		held[i] = resolve_one(ctx, i % 2 ? "l17" : "l1");
	for (size_t i = 0; i < NMANY; i++)
		check_secret(held[i], i % 2 ? 17 : 1);
	for (size_t i = 0; i < NMANY; i += 2)
		kw_secret_free(held[i]);
	for (size_t i = 0; i < NMANY; i += 2)
		held[i] = resolve_one(ctx, "l33");
	for (size_t i = 0; i < NMANY; i++)
		check_secret(held[i], i % 2 ? 17 : 33);
	for (size_t i = 0; i < NMANY; i++)
		kw_secret_free(held[i]);
	free(held);
	kw_close(ctx);
}

/* ---- host->log() ---- */

/* What backend "b" logs: by default a line of two, with a tab. */
static const char *log_text = "first line\\nsecond\\tline";

/* Backend "b" logs log_text at warning level on every lookup; `keyway`
 * is the text of the keyway section. */
static char *log_conf(const char *keyway)
{
	char *text;

	if (asprintf(&text,
		     "keyway: { %s };\n"
		     "backends: {\n"
		     "  b: { module = \"fake\"; answer = \"found\"; "
		     "value = \"" SECRET_40 "\";\n"
		     "       log = \"%s\"; };\n"
		     "};\n"
		     "chains: { default = ( { backend = \"b\"; "
		     "control = \"required\"; } ); };\n",
		     keyway, log_text) < 0)
		abort();
	return text;
}

#define LOG_LINE "keyway: backend \"b\": first line second line"

/* Resolve once with fd 2 on `fd`, and put it back. */
static void resolve_with_stderr(const char *keyway, int fd)
{
	char *text = log_conf(keyway);
	kw_ctx *ctx = NULL;
	kw_secret *s;
	int saved;

	assert_int_equal(tu_open(&ctx, text, NULL), KW_OK);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	s = resolve_one(ctx, NULL);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	kw_secret_free(s);
	kw_close(ctx);
	free(text);
}

/* What a file got: stderr that is not a terminal. */
static char *stderr_to_file(const char *keyway)
{
	FILE *f = tmpfile();
	static char buf[4096];
	size_t n;

	assert_non_null(f);
	resolve_with_stderr(keyway, fileno(f));
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* What a terminal got (a pseudo-terminal's output, "\r\n" made "\n"). */
static char *stderr_to_tty(const char *keyway)
{
	static char buf[4096];
	size_t n = 0;
	int master, slave;
	ssize_t got;

	master = posix_openpt(O_RDWR | O_NOCTTY);
	assert_true(master >= 0);
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	assert_true(slave >= 0);
	assert_true(isatty(slave));
	resolve_with_stderr(keyway, slave);
	close(slave);
	assert_int_equal(fcntl(master, F_SETFL, O_NONBLOCK), 0);
	while (n < sizeof(buf) - 1 &&
	       (got = read(master, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)got;
	close(master);
	buf[n] = '\0';
	for (char *p = buf; (p = strstr(p, "\r\n")) != NULL;)
		memmove(p, p + 1, strlen(p + 1) + 1);
	return buf;
}

static void test_log_stderr(void **state)
{
	(void)state;
	/* By default: on a terminal only. */
	assert_string_equal(stderr_to_tty(""), LOG_LINE "\n");
	assert_string_equal(stderr_to_file(""), "");
	/* stderr = true: wherever stderr goes; false: never. */
	assert_string_equal(stderr_to_file("log: { stderr = true; };"),
			    LOG_LINE "\n");
	assert_string_equal(stderr_to_tty("log: { stderr = false; };"), "");
	/* level: the least severe level shown (warning here). */
	assert_string_equal(stderr_to_file("log: { stderr = true; "
					   "level = \"warning\"; };"),
			    LOG_LINE "\n");
	assert_string_equal(stderr_to_file("log: { stderr = true; "
					   "level = \"error\"; };"),
			    "");
	assert_string_equal(stderr_to_tty("log: { level = \"error\"; };"), "");
}

/*
 * Nothing in a module's line drives the terminal or reorders what it
 * shows: C1 controls (as UTF-8, and the one byte 0x9b, an 8-bit CSI),
 * bidirectional controls, line and paragraph separators and other bytes
 * that are not UTF-8 each become one '?'; C0 controls a space.
 */
static void test_log_stderr_unshowable(void **state)
{
	(void)state;
	log_text = "a\xc2\x9b" "31m b\x9b" "1m c\xc2\x85" "d "
		   "e\xe2\x80\xae" "f\xe2\x81\xa6" "g\xe2\x80\x8f" "h\xd8\x9c"
		   "i\xe2\x80\xa8" "j\xe2\x80\xa9" "k\xff" "l "
		   "caf\xc3\xa9 \xe2\x82\xac \x1b[2J";
	assert_string_equal(stderr_to_tty(""),
			    "keyway: backend \"b\": a?31m b?1m c?d "
			    "e?f?g?h?i?j?k?l caf\xc3\xa9 \xe2\x82\xac  [2J\n");
	log_text = "first line\\nsecond\\tline";
}

static void expect_log_refused(const char *keyway, const char *msg)
{
	char *text = log_conf(keyway), *dir, want[1024];
	kw_ctx *ctx = (kw_ctx *)&text;

	assert_int_equal(tu_open(&ctx, text, &dir), KW_ERR_CONFIG);
	assert_null(ctx);
	snprintf(want, sizeof(want), "%s/keyway.conf:1: %s", dir, msg);
	assert_string_equal(kw_last_error(), want);
	free(text);
	tu_rmrf(dir);
}

static void test_log_settings_checked(void **state)
{
	(void)state;
	expect_log_refused("log: { stdout = true; };",
			   "keyway.log: unknown setting \"stdout\" (expected "
			   "stderr or level)");
	expect_log_refused("log: { stderr = \"yes\"; };",
			   "keyway.log.stderr must be true or false");
	expect_log_refused("log: { level = \"loud\"; };",
			   "keyway.log.level must be \"error\", \"warning\", "
			   "\"info\" or \"debug\"");
	expect_log_refused("log = true;",
			   "keyway.log must be a group { stderr = true; }");
}

/* ---- fork() ---- */

#define FORK_MASTER "000102030405060708090a0b0c0d0e0f" \
		    "101112131415161718191a1b1c1d1e1f"
#define FORK_KEY "sk-ant-fork-0123456789abcdefghij"
#define FORK_USES 3

static const char fork_conf[] =
	"keyway: {\n"
	"  master_key = { source = \"env\"; var = \"KWTEST_FORK_MASTER\"; };\n"
	"};\n"
	"backends: {\n"
	"  user_keys: { module = \"sqlite\"; path = \"keys.db\"; "
	"scope = \"user\"; };\n"
	"};\n"
	"chains: { default = ( { backend = \"user_keys\"; "
	"control = \"required\"; } ); };\n";

static const kw_actor fork_alice = { sizeof(kw_actor), "alice", NULL,
				     KW_ROLE_NONE };

static kw_status fork_resolve(kw_ctx *ctx, kw_secret **s)
{
	kw_request req = KW_REQUEST_INIT;

	req.provider = "anthropic";
	req.user = "alice";
	return kw_resolve(ctx, &req, s);
}

static kw_status count_uses(void *arg, const kw_key_info *info)
{
	*(uint64_t *)arg = info->usage_count;
	return KW_OK;
}

/* The child writes what went wrong to fd and exits 1; cmocka's assertions
 * belong to the parent. */
static int child_says(int fd, const char *what, kw_status got,
		      kw_status want, const char *msg, const char *want_msg)
{
	char line[1024];
	int n;

	if (got == want && strcmp(msg, want_msg) == 0)
		return 0;
	n = snprintf(line, sizeof(line), "%s: %s (%d), \"%s\"; want %s, "
		     "\"%s\"\n", what, kw_status_str(got), (int)got, msg,
		     kw_status_str(want), want_msg);
	if (n > 0)
		(void)!write(fd, line, (size_t)n < sizeof(line) ? (size_t)n
								: sizeof(line));
	return 1;
}

static int fork_child(kw_ctx *ctx, kw_secret *held, pid_t parent, int fd)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = (kw_secret *)&s;
	kw_trace *t = (kw_trace *)&t;
	uint64_t n = 0;
	char want[256];
	int bad = 0;

	snprintf(want, sizeof(want),
		 "this context was opened by process %ld; open a new one "
		 "after fork()",
		 (long)parent);
	bad |= child_says(fd, "kw_resolve", fork_resolve(ctx, &s),
			  KW_ERR_INVAL, kw_last_error(), want);
	if (s != NULL)
		bad |= child_says(fd, "kw_resolve left *out set", KW_OK,
				  KW_ERR_INVAL, "", "");
	req.provider = "anthropic";
	bad |= child_says(fd, "kw_explain", kw_explain(ctx, &req, &t),
			  KW_ERR_INVAL, kw_last_error(), want);
	bad |= child_says(fd, "kw_key_list",
			  kw_key_list(ctx, &fork_alice, NULL, NULL,
				      count_uses, &n),
			  KW_ERR_INVAL, kw_last_error(), want);
	bad |= child_says(fd, "kw_secret_report",
			  kw_secret_report(held, KW_UNUSED), KW_ERR_INVAL,
			  kw_last_error(),
			  "kw_secret_report: this secret was resolved before "
			  "fork(); the process that resolved it reports it");
	/* Reading an inherited secret is fine; freeing it counts nothing
	 * here: the parent frees its own copy. */
	if (strcmp(kw_secret_value(held), FORK_KEY) != 0)
		bad |= child_says(fd, "inherited secret", KW_OK, KW_OK,
				  "differs", "");
	kw_secret_free(held);
	kw_close(ctx);
	return bad;
}

/* Resolves and frees keys on the parent's context until told to stop, so
 * that forks happen while its locks are taken. */
struct busy {
	kw_ctx *ctx;
	atomic_bool stop;
	unsigned long uses;
	kw_status failed;
};

static void *busy_resolve(void *arg)
{
	struct busy *b = arg;
	kw_secret *s;

	while (!atomic_load(&b->stop)) {
		kw_status st = fork_resolve(b->ctx, &s);

		if (st != KW_OK) {
			b->failed = st;
			break;
		}
		kw_secret_free(s);
		b->uses++;
	}
	return NULL;
}

/* Fork; the child runs the checks and exits, the parent waits for it and
 * fails the test with what the child said. */
static void fork_once(kw_ctx *ctx, kw_secret *held)
{
	char msg[4096];
	int fds[2], status;
	ssize_t got;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		alarm(10);
		tu_exit(fork_child(ctx, held, getppid(), fds[1]));
	}
	close(fds[1]);
	for (size_t n = 0;; n += (size_t)got) {
		got = read(fds[0], msg + n, sizeof(msg) - 1 - n);
		if (got <= 0) {
			msg[n] = '\0';
			break;
		}
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		fail_msg("the child hung (in kw_close()?): %s", msg);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the child failed (status %#x): %s", status, msg);
}

#define NFORKS 20

/*
 * A process opens a context, resolves, and forks with uses waiting to be
 * written, a secret in hand and another thread resolving.  In each child
 * every call but kw_close() fails with the documented error, and
 * kw_close() returns at once (alarm() ends a child that hangs); the
 * parent writes the uses, each once.
 */
static void test_fork_child_closes(void **state)
{
	kw_key_ref ref = KW_KEY_REF_INIT;
	kw_ctx *ctx = NULL;
	kw_secret *s, *held = NULL;
	struct busy busy;
	pthread_t thread;
	char *dir, *path;
	uint64_t uses = 0;

	(void)state;
	assert_int_equal(setenv("KWTEST_FORK_MASTER", FORK_MASTER, 1), 0);
	assert_int_equal(tu_open(&ctx, fork_conf, &dir), KW_OK);
	ref.backend = "user_keys";
	ref.owner = "alice";
	ref.provider = "anthropic";
	assert_int_equal(kw_key_put(ctx, &fork_alice, &ref, FORK_KEY,
				    strlen(FORK_KEY), NULL, KW_PUT_CREATE),
			 KW_OK);
	for (int i = 0; i < FORK_USES; i++) {
		assert_int_equal(fork_resolve(ctx, &s), KW_OK);
		kw_secret_free(s);
	}
	assert_int_equal(fork_resolve(ctx, &held), KW_OK);

	/* Alone first, then with a thread taking the locks. */
	fork_once(ctx, held);
	busy.ctx = ctx;
	atomic_init(&busy.stop, false);
	busy.uses = 0;
	busy.failed = KW_OK;
	assert_int_equal(pthread_create(&thread, NULL, busy_resolve, &busy),
			 0);
	for (int i = 0; i < NFORKS; i++)
		fork_once(ctx, held);
	atomic_store(&busy.stop, true);
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_int_equal(busy.failed, KW_OK);

	/* The parent goes on as if nothing happened. */
	assert_int_equal(fork_resolve(ctx, &s), KW_OK);
	assert_string_equal(kw_secret_value(s), FORK_KEY);
	kw_secret_free(s);
	kw_secret_free(held);
	kw_close(ctx);

	/* Every use once: FORK_USES, the busy thread's, the one held across
	 * the forks and the one after them. */
	assert_true(asprintf(&path, "%s/keyway.conf", dir) > 0);
	assert_int_equal(kw_open(&ctx, path), KW_OK);
	free(path);
	assert_int_equal(kw_key_list(ctx, &fork_alice, "user_keys", "alice",
				     count_uses, &uses),
			 KW_OK);
	assert_int_equal(uses, FORK_USES + 2 + busy.uses);
	kw_close(ctx);
	unsetenv("KWTEST_FORK_MASTER");
	tu_rmrf(dir);
}

#define NREOPENS 30

/* What a child is given: the inherited context, the configurations to
 * open (one whose store the parent has open, one whose store it has not)
 * and the parent's pid. */
struct reopen {
	kw_ctx *ctx;
	const char *same;
	const char *other;
	pid_t parent;
};

/* Open the configuration at path, resolve alice's key from it and close
 * it; 0 when all went well. */
static int child_resolves(int fd, const char *path)
{
	kw_ctx *c = NULL;
	kw_secret *s;
	int bad;

	bad = child_says(fd, "kw_open", kw_open(&c, path), KW_OK,
			 kw_last_error(), kw_last_error());
	if (bad == 0) {
		bad = child_says(fd, "kw_resolve", fork_resolve(c, &s), KW_OK,
				 kw_last_error(), kw_last_error());
		if (bad == 0) {
			if (strcmp(kw_secret_value(s), FORK_KEY) != 0)
				bad = child_says(fd, "resolved key", KW_OK,
						 KW_OK, "differs", "");
			kw_secret_free(s);
		}
	}
	kw_close(c);
	return bad;
}

static int reopen_child(const struct reopen *r, int fd)
{
	char want[4096];
	kw_ctx *c = (kw_ctx *)&c;
	int bad = 0;

	kw_close(r->ctx);
	if (r->same != NULL) {
		snprintf(want, sizeof(want),
			 "%s:5: backend \"user_keys\": %.*s/keys.db was "
			 "opened by process %ld before fork(): a child cannot "
			 "open it again; open keyway in each process after "
			 "fork() (gunicorn: a post_fork hook), or kw_close() "
			 "before forking",
			 r->same, (int)(strrchr(r->same, '/') - r->same),
			 r->same, (long)r->parent);
		bad |= child_says(fd, "kw_open of the parent's store",
				  kw_open(&c, r->same), KW_ERR_INVAL,
				  kw_last_error(), want);
		if (c != NULL)
			bad |= child_says(fd, "kw_open left *ctx set", KW_OK,
					  KW_ERR_INVAL, "", "");
	}
	if (r->other != NULL)
		bad |= child_resolves(fd, r->other);
	return bad;
}

/* Fork; the child runs reopen_child() under alarm() and exits, the
 * parent fails the test with what the child said. */
static void fork_reopen(const struct reopen *r)
{
	char msg[4096];
	int fds[2], status;
	ssize_t got;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		alarm(10);
		tu_exit(reopen_child(r, fds[1]));
	}
	close(fds[1]);
	for (size_t n = 0;; n += (size_t)got) {
		got = read(fds[0], msg + n, sizeof(msg) - 1 - n);
		if (got <= 0) {
			msg[n] = '\0';
			break;
		}
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		fail_msg("the child hung: %s", msg);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the child failed (status %#x): %s", status, msg);
}

/* A context with alice's key in its store; its configuration's path in
 * *conf and its directory in *dir. */
static kw_ctx *fork_store(char **dir, char **conf)
{
	kw_key_ref ref = KW_KEY_REF_INIT;
	kw_ctx *ctx = NULL;

	assert_int_equal(tu_open(&ctx, fork_conf, dir), KW_OK);
	ref.backend = "user_keys";
	ref.owner = "alice";
	ref.provider = "anthropic";
	assert_int_equal(kw_key_put(ctx, &fork_alice, &ref, FORK_KEY,
				    strlen(FORK_KEY), NULL, KW_PUT_CREATE),
			 KW_OK);
	assert_true(asprintf(conf, "%s/keyway.conf", *dir) > 0);
	return ctx;
}

/*
 * A process with a store open forks while its usage thread writes counts
 * to it every millisecond.  In every child kw_close() of the inherited
 * context returns, a new context on the parent's store is refused with
 * how to do it instead (SQLite's state of that file is the parent's), and
 * a context on a store the parent does not have open resolves: no lock of
 * SQLite's was inherited taken.  alarm() ends a child that hangs.
 */
static void test_fork_child_reopens(void **state)
{
	struct reopen r;
	kw_ctx *ctx, *other;
	kw_secret *s;
	char *dir, *odir, *conf, *oconf;

	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	/* GCC 12's AddressSanitizer does not hold its allocator's lock
	 * across fork(): a child forked while the usage thread is in
	 * malloc(), as it is every millisecond here, can hang in its own
	 * first malloc().  glibc's malloc is fork-safe; the plain build runs
	 * this test. */
	print_message("built with AddressSanitizer: not run\n");
	return;
#endif
	assert_int_equal(setenv("KWTEST_FORK_MASTER", FORK_MASTER, 1), 0);
	kwi_test_usecount_flush_ms(1);
	other = fork_store(&odir, &oconf);
	kw_close(other);
	ctx = fork_store(&dir, &conf);
	r.ctx = ctx;
	r.same = conf;
	r.other = oconf;
	r.parent = getpid();
	for (int i = 0; i < NREOPENS; i++) {
		/* A use to write, and a fork at a different moment of the
		 * write each time. */
		assert_int_equal(fork_resolve(ctx, &s), KW_OK);
		kw_secret_free(s);
		usleep((useconds_t)(i * 37 % 1000));
		fork_reopen(&r);
	}
	kw_close(ctx);
	kwi_test_usecount_flush_ms(0);
	free(conf);
	free(oconf);
	unsetenv("KWTEST_FORK_MASTER");
	tu_rmrf(dir);
	tu_rmrf(odir);
}

/* A parent that closed its context before fork() leaves nothing of the
 * store's open: the child opens it and resolves. */
static void test_fork_after_close(void **state)
{
	struct reopen r;
	char *dir, *conf;

	(void)state;
	assert_int_equal(setenv("KWTEST_FORK_MASTER", FORK_MASTER, 1), 0);
	kw_close(fork_store(&dir, &conf));
	r.ctx = NULL;
	r.same = NULL;
	r.other = conf;
	r.parent = getpid();
	fork_reopen(&r);
	free(conf);
	unsetenv("KWTEST_FORK_MASTER");
	tu_rmrf(dir);
}

/* The ledger is a file of its own: a child cannot open the parent's
 * either, whatever store beside it. */
static void test_fork_child_ledger(void **state)
{
	static const char conf[] =
		"keyway: {\n"
		"  master_key = { source = \"env\"; "
		"var = \"KWTEST_FORK_MASTER\"; };\n"
		"  ledger = { module = \"sqlite\"; path = \"%s\"; };\n"
		"};\n"
		"backends: {\n"
		"  user_keys: { module = \"sqlite\"; path = \"keys.db\"; "
		"scope = \"user\"; };\n"
		"};\n"
		"chains: { default = ( { backend = \"user_keys\"; "
		"control = \"required\"; } ); };\n";
	kw_ctx *ctx = NULL;
	char *dir, *odir = tu_tmpdir(), *ledger, *text, *oconf;
	char want[4096], got[4096];
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	(void)state;
	assert_int_equal(setenv("KWTEST_FORK_MASTER", FORK_MASTER, 1), 0);
	assert_true(asprintf(&text, conf, "ledger.db") > 0);
	assert_int_equal(tu_open(&ctx, text, &dir), KW_OK);
	free(text);
	assert_true(asprintf(&ledger, "%s/ledger.db", dir) > 0);
	assert_true(asprintf(&text, conf, ledger) > 0);
	oconf = tu_write(odir, "keyway.conf", 0644, "%s", text);
	free(text);
	snprintf(want, sizeof(want),
		 "%s:3: keyway.ledger: %s was opened by process %ld before "
		 "fork(): a child cannot open it again; open keyway in each "
		 "process after fork() (gunicorn: a post_fork hook), or "
		 "kw_close() before forking",
		 oconf, ledger, (long)getpid());
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kw_ctx *c = NULL;
		kw_status st;

		close(fds[0]);
		alarm(10);
		kw_close(ctx);
		st = kw_open(&c, oconf);
		(void)!write(fds[1], kw_last_error(),
			     strlen(kw_last_error()));
		tu_exit(st == KW_ERR_INVAL && c == NULL ? 0 : 1);
	}
	close(fds[1]);
	n = read(fds[0], got, sizeof(got) - 1);
	close(fds[0]);
	got[n > 0 ? n : 0] = '\0';
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_string_equal(got, want);
	assert_int_equal(WEXITSTATUS(status), 0);
	kw_close(ctx);
	free(ledger);
	free(oconf);
	unsetenv("KWTEST_FORK_MASTER");
	tu_rmrf(dir);
	tu_rmrf(odir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_str_every_status),
		cmocka_unit_test(test_status_str_out_of_range),
		cmocka_unit_test(test_action_str),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_last_error_never_null),
		cmocka_unit_test(test_mask_lengths),
		cmocka_unit_test(test_mask_small_buffer),
		cmocka_unit_test(test_mask_size_zero),
		cmocka_unit_test(test_request_init),
		cmocka_unit_test(test_request_checks),
		cmocka_unit_test(test_names_refused),
		cmocka_unit_test(test_secret_value_and_len),
		cmocka_unit_test(test_secret_report),
		cmocka_unit_test(test_free_null),
		cmocka_unit_test(test_trace_accessors_null),
		cmocka_unit_test(test_secret_survives_close),
		cmocka_unit_test(test_open_null_ctx),
		cmocka_unit_test(test_open_missing_file),
		cmocka_unit_test(test_check_problems),
		cmocka_unit_test(test_open_env_config),
		cmocka_unit_test(test_open_default_config),
		cmocka_unit_test(test_sizes_exact_bytes),
		cmocka_unit_test(test_many_secrets_one_size),
		cmocka_unit_test(test_log_stderr),
		cmocka_unit_test(test_log_stderr_unshowable),
		cmocka_unit_test(test_log_settings_checked),
		cmocka_unit_test(test_fork_child_closes),
		cmocka_unit_test(test_fork_child_reopens),
		cmocka_unit_test(test_fork_after_close),
		cmocka_unit_test(test_fork_child_ledger),
	};

	unsetenv("KEYWAY_CONFIG");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
