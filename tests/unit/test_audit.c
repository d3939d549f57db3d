/*
 * test_audit.c - the audit trail's lines: fingerprints pinned to known
 * values, the exact members in their order, JSON escaping of names that
 * need it, lines longer than any buffer, a file that cannot grow (every
 * line still whole), many threads appending to one file at once, and no
 * secret anywhere in it.
 *
 * Names the public API refuses (backslashes, control characters, names of
 * 100,000 bytes), and names that are not UTF-8, are handed to
 * kwi_audit_resolve() and kwi_audit_change() directly: this program links
 * the library built for the tests, whose internal symbols it can reach.
 * Every secret here contains "SECRET", and no audit line may.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include <keyway/keyway.h>

#include "audit.h"
#include "request.h"
#include "testutil.h"

#define MASTER "000102030405060708090a0b0c0d0e0f" \
	       "101112131415161718191a1b1c1d1e1f"
#define PASSPHRASE "correct horse SECRET staple"

#define VALUE "sk-ant-SECRET-audit-0001"
/* 118 bytes: more than one SHA-256 block of its own. */
#define VALUE_LONG "sk-ant-api03-SECRET-" \
	"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" \
	"0123456789abcdefghijklmnopqrstuvwxyz"

/*
 * HMAC-SHA256 of the value under HMAC-SHA256("keyway audit fingerprint v1")
 * keyed with the master key, first 16 bytes: what every release so far has
 * written.  A change here orphans every trail already written.
 */
#define FP_VALUE "4b067e90e030358ec622b4cf6c267567"
#define FP_VALUE_LONG "4209c575d00a21cffbf1e288cbce2be2"
/* The same for the passphrase, stretched with Argon2id over the audit's
 * own fixed salt. */
#define FP_PASSPHRASE "d88030cf55fb07814cc6ac47a6ce9b67"

#define NTHREADS 8
#define NCALLS 400

#define CONF_HEAD(master) \
	"keyway: {\n" \
	"  master_key = { source = \"" master "\"; };\n" \
	"  audit: { sink = \"jsonl\"; path = \"audit.jsonl\"; };\n" \
	"};\n"

#define CONF_BODY \
	"backends: {\n" \
	"  vault: { module = \"fake\"; answer = \"found\";\n" \
	"           value = \"" VALUE "\"; };\n" \
	"  long: { module = \"fake\"; answer = \"found\";\n" \
	"          value = \"" VALUE_LONG "\"; };\n" \
	"  empty: { module = \"fake\"; answer = \"notfound\"; };\n" \
	"};\n" \
	"chains: {\n" \
	"  default = ( { backend = \"vault\"; control = \"required\"; } );\n" \
	"  long = ( { backend = \"long\"; control = \"required\"; } );\n" \
	"  none = ( { backend = \"empty\"; control = \"required\"; } );\n" \
	"};\n"

static const char conf_env[] = CONF_HEAD("env") CONF_BODY;
static const char conf_pass[] = CONF_HEAD("passphrase") CONF_BODY;
static const char conf_allow[] =
	"keyway: {\n"
	"  master_key = { source = \"env\"; };\n"
	"  audit: { sink = \"jsonl\"; path = \"audit.jsonl\";\n"
	"           on_failure = \"allow\"; };\n"
	"};\n" CONF_BODY;

/* ---- fixture ---- */

struct fixture {
	kw_ctx *ctx;
	char *dir;
	char audit[4096];
	char *text;         /* the file, as last read */
	size_t len;
	char **lines;       /* into text, '\n' replaced by NUL */
	size_t nlines;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	setenv("KEYWAY_MASTER_KEY", MASTER, 1);
	unsetenv("KEYWAY_PASSPHRASE");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kw_close(f->ctx);
	if (f->dir != NULL)
		tu_rmrf(f->dir);
	free(f->text);
	free(f->lines);
	free(f);
	unsetenv("KEYWAY_MASTER_KEY");
	unsetenv("KEYWAY_PASSPHRASE");
	return 0;
}

static void open_conf(struct fixture *f, const char *text)
{
	kw_status st = tu_open(&f->ctx, text, &f->dir);

	if (st != KW_OK)
		fail_msg("kw_open: %s", kw_last_error());
	snprintf(f->audit, sizeof(f->audit), "%s/audit.jsonl", f->dir);
}

/* Read the audit file and split it into lines; each must end in '\n'. */
static void read_lines(struct fixture *f)
{
	FILE *fp = fopen(f->audit, "rb");
	size_t cap = 0;
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n >= 0);
	rewind(fp);
	free(f->text);
	free(f->lines);
	f->lines = NULL;
	f->nlines = 0;
	f->len = (size_t)n;
	f->text = malloc(f->len + 1);
	assert_non_null(f->text);
	assert_int_equal(fread(f->text, 1, f->len, fp), f->len);
	fclose(fp);
	f->text[f->len] = '\0';
	if (f->len > 0 && f->text[f->len - 1] != '\n')
		fail_msg("the audit file does not end with a whole line");
	for (char *p = f->text; p < f->text + f->len;) {
		char *nl = memchr(p, '\n', (size_t)(f->text + f->len - p));

		assert_non_null(nl);
		*nl = '\0';
		if (f->nlines == cap) {
			cap = cap == 0 ? 64 : 2 * cap;
			f->lines = realloc(f->lines, cap * sizeof(*f->lines));
			assert_non_null(f->lines);
		}
		f->lines[f->nlines++] = p;
		p = nl + 1;
	}
}

/*
 * Parse a line.  It must be the compact form jansson itself writes for
 * what it holds, members in the order written: the same escaping, no
 * spaces, nothing before or after.
 */
static json_t *parse_line(const char *line)
{
	json_error_t e;
	json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &e);
	char *again;

	if (o == NULL || !json_is_object(o))
		fail_msg("not a JSON object (%s): %.200s", e.text, line);
	again = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_non_null(again);
	if (strcmp(again, line) != 0)
		fail_msg("not in jansson's compact form:\n%.300s\nnot\n%.300s",
			 line, again);
	free(again);
	return o;
}

/* The names of o's members, in order, joined by spaces. */
static void member_names(json_t *o, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (void *it = json_object_iter(o); it != NULL && used < len;
	     it = json_object_iter_next(o, it))
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 used > 0 ? " " : "",
					 json_object_iter_key(it));
}

static void expect_members(json_t *o, const char *want)
{
	char names[512];

	member_names(o, names, sizeof(names));
	assert_string_equal(names, want);
}

static const char *str_member(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_string(v))
		fail_msg("\"%s\" is not a string", name);
	return json_string_value(v);
}

/* The line must read exactly `want`, where "%T" stands for its time. */
static void expect_line(const char *line, const char *want)
{
	json_t *o = parse_line(line);
	const char *ts = str_member(o, "time");
	const char *at = strstr(want, "%T");
	char *exact;

	tu_expect_timestamp(ts);
	assert_non_null(at);
	exact = malloc(strlen(want) + strlen(ts) + 1);
	assert_non_null(exact);
	sprintf(exact, "%.*s%s%s", (int)(at - want), want, ts, at + 2);
	assert_string_equal(line, exact);
	free(exact);
	json_decref(o);
}

static kw_status resolve(kw_ctx *ctx, const char *chain, const char *user,
			 const char *org, const char *want)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	kw_status st;

	req.chain = chain;
	req.provider = "anthropic";
	req.user = user;
	req.org = org;
	st = kw_resolve(ctx, &req, &s);
	if (st == KW_OK) {
		assert_non_null(want);
		assert_string_equal(kw_secret_value(s), want);
		kw_secret_free(s);
	}
	return st;
}

/* No secret, nor the master key or passphrase, anywhere in the file. */
static void expect_file_clean(struct fixture *f)
{
	static const char *const secrets[] = {
		TU_MARK, VALUE, VALUE_LONG, MASTER, PASSPHRASE,
	};

	read_lines(f);
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		if (memmem(f->text, f->len, secrets[i], strlen(secrets[i])) !=
		    NULL)
			fail_msg("the audit file holds \"%s\"", secrets[i]);
}

/* ---- fingerprints ---- */

static void test_fingerprint_pinned(void **state)
{
	struct fixture *f = *state;
	json_t *o;

	open_conf(f, conf_env);
	assert_int_equal(resolve(f->ctx, NULL, "alice", "acme", VALUE), KW_OK);
	assert_int_equal(resolve(f->ctx, "long", "bob", NULL, VALUE_LONG),
			 KW_OK);
	assert_int_equal(resolve(f->ctx, NULL, "carol", NULL, VALUE), KW_OK);
	read_lines(f);
	assert_int_equal(f->nlines, 3);
	expect_line(f->lines[0],
		    "{\"time\":\"%T\",\"event\":\"resolve\","
		    "\"chain\":\"default\",\"provider\":\"anthropic\","
		    "\"user\":\"alice\",\"org\":\"acme\",\"result\":\"ok\","
		    "\"backend\":\"vault\",\"fingerprint\":\"" FP_VALUE "\"}");
	expect_line(f->lines[1],
		    "{\"time\":\"%T\",\"event\":\"resolve\","
		    "\"chain\":\"long\",\"provider\":\"anthropic\","
		    "\"user\":\"bob\",\"org\":null,\"result\":\"ok\","
		    "\"backend\":\"long\",\"fingerprint\":\"" FP_VALUE_LONG
		    "\"}");
	o = parse_line(f->lines[2]);
	assert_string_equal(str_member(o, "fingerprint"), FP_VALUE);
	json_decref(o);
	expect_file_clean(f);
}

/* A fresh context, then a passphrase instead of the key itself. */
static void test_fingerprint_passphrase(void **state)
{
	struct fixture *f = *state;
	json_t *o;

	unsetenv("KEYWAY_MASTER_KEY");
	setenv("KEYWAY_PASSPHRASE", PASSPHRASE, 1);
	open_conf(f, conf_pass);
	assert_int_equal(resolve(f->ctx, NULL, "alice", NULL, VALUE), KW_OK);
	read_lines(f);
	assert_int_equal(f->nlines, 1);
	o = parse_line(f->lines[0]);
	assert_string_equal(str_member(o, "fingerprint"), FP_PASSPHRASE);
	json_decref(o);
	expect_file_clean(f);
}

/* ---- the lines ---- */

static void test_failed_resolve_line(void **state)
{
	struct fixture *f = *state;

	open_conf(f, conf_env);
	assert_int_equal(resolve(f->ctx, "none", "alice", "acme", NULL),
			 KW_ERR_NOTFOUND);
	assert_int_equal(resolve(f->ctx, "none", NULL, NULL, NULL),
			 KW_ERR_NOTFOUND);
	read_lines(f);
	assert_int_equal(f->nlines, 2);
	expect_line(f->lines[0],
		    "{\"time\":\"%T\",\"event\":\"resolve\","
		    "\"chain\":\"none\",\"provider\":\"anthropic\","
		    "\"user\":\"alice\",\"org\":\"acme\","
		    "\"result\":\"notfound\"}");
	expect_line(f->lines[1],
		    "{\"time\":\"%T\",\"event\":\"resolve\","
		    "\"chain\":\"none\",\"provider\":\"anthropic\","
		    "\"user\":null,\"org\":null,\"result\":\"notfound\"}");
}

/* A refusal of keywayd's: its members in their order, the uid and pid as
 * numbers (left out when unknown), null for no chain or provider; what is
 * malformed is refused and writes nothing. */
static void test_refusal_line(void **state)
{
	struct fixture *f = *state;
	kw_refusal r = KW_REFUSAL_INIT, bad;

	open_conf(f, conf_env);
	r.op = "resolve";
	r.caller = "www-data";
	r.uid = 33;
	r.pid = 4242;
	r.chain = "default";
	r.provider = "anthropic";
	r.reason = "not allowed by daemon.clients";
	assert_int_equal(kw_audit_refusal(f->ctx, &r), KW_OK);
	r = (kw_refusal)KW_REFUSAL_INIT;
	r.op = "ls";
	r.caller = "tcp 127.0.0.1:40112";
	r.reason = "a \"wrong\" token";
	assert_int_equal(kw_audit_refusal(f->ctx, &r), KW_OK);

	bad = r;
	bad.reason = NULL;
	assert_int_equal(kw_audit_refusal(f->ctx, &bad), KW_ERR_INVAL);
	bad = r;
	bad.size = offsetof(kw_refusal, reason);
	assert_int_equal(kw_audit_refusal(f->ctx, &bad), KW_ERR_INVAL);
	assert_int_equal(kw_audit_refusal(f->ctx, NULL), KW_ERR_INVAL);
	assert_int_equal(kw_audit_refusal(NULL, &r), KW_ERR_INVAL);

	read_lines(f);
	assert_int_equal(f->nlines, 2);
	expect_line(f->lines[0],
		    "{\"time\":\"%T\",\"event\":\"refused\","
		    "\"op\":\"resolve\",\"caller\":{\"name\":\"www-data\","
		    "\"uid\":33,\"pid\":4242},\"chain\":\"default\","
		    "\"provider\":\"anthropic\","
		    "\"reason\":\"not allowed by daemon.clients\"}");
	expect_line(f->lines[1],
		    "{\"time\":\"%T\",\"event\":\"refused\","
		    "\"op\":\"ls\",\"caller\":{\"name\":"
		    "\"tcp 127.0.0.1:40112\"},\"chain\":null,"
		    "\"provider\":null,\"reason\":\"a \\\"wrong\\\" token\"}");
}

/* Names the public API lets through that JSON must escape, or that are
 * not ASCII: each comes back from the line as it went in. */
static void test_names_round_trip(void **state)
{
	static const char *const names[] = {
		"o\"brien",
		"\"\"\"",
		"caf\xc3\xa9",                          /* é */
		"\xe6\x97\xa5\xe6\x9c\xac",             /* two CJK */
		"\xf0\x9f\x94\x91-key",                 /* U+1F511 */
		"{\"user\":\"root\"}",
		"a'b<c>&d\x7e",
		"\xef\xbf\xbf\xc2\xa0",                 /* U+FFFF, U+00A0 */
	};
	struct fixture *f = *state;
	const size_t n = sizeof(names) / sizeof(names[0]);

	open_conf(f, conf_env);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(resolve(f->ctx, NULL, names[i],
					 names[n - 1 - i], VALUE),
				 KW_OK);
	read_lines(f);
	assert_int_equal(f->nlines, n);
	for (size_t i = 0; i < n; i++) {
		json_t *o = parse_line(f->lines[i]);

		expect_members(o, "time event chain provider user org result "
				  "backend fingerprint");
		assert_string_equal(str_member(o, "user"), names[i]);
		assert_string_equal(str_member(o, "org"), names[n - 1 - i]);
		assert_string_equal(str_member(o, "fingerprint"), FP_VALUE);
		json_decref(o);
	}
	/* Non-ASCII is written as UTF-8, quotes as \". */
	expect_line(f->lines[0],
		    "{\"time\":\"%T\",\"event\":\"resolve\","
		    "\"chain\":\"default\",\"provider\":\"anthropic\","
		    "\"user\":\"o\\\"brien\","
		    "\"org\":\"\xef\xbf\xbf\xc2\xa0\",\"result\":\"ok\","
		    "\"backend\":\"vault\",\"fingerprint\":\"" FP_VALUE "\"}");
	expect_file_clean(f);
}

/* Everything JSON escapes, straight to the audit trail. */
static void test_escaping(void **state)
{
	struct fixture *f = *state;
	char all[0x20 + 8], *p = all;
	struct kwi_query_in in = { "c\\h", "p/1", NULL, NULL };
	const kw_actor actor = { sizeof(kw_actor), "tab\there", "nl\nthere",
				 KW_ROLE_ADMIN };
	const kw_store_key k = { KW_SCOPE_USER, "q\"uote\\", "x\x7fy" };
	json_t *o;

	for (int c = 1; c < 0x20; c++)
		*p++ = (char)c;
	memcpy(p, "\"\\/\x7f\xc3\xa9", 7);
	p[7] = '\0';
	in.user = all;
	in.org = "\\";

	open_conf(f, conf_env);
	assert_int_equal(kwi_audit_resolve(f->ctx, &in, KW_ERR_DENIED, NULL),
			 KW_OK);
	assert_int_equal(kwi_audit_change(f->ctx, &actor, "put", "b\"e",
					  &k, KW_OK),
			 KW_OK);
	assert_int_equal(kwi_audit_change(f->ctx, &actor, "rekey", "b",
					  NULL, KW_ERR_IO),
			 KW_OK);
	read_lines(f);
	assert_int_equal(f->nlines, 3);
	expect_line(f->lines[0],
		    "{\"time\":\"%T\",\"event\":\"resolve\","
		    "\"chain\":\"c\\\\h\",\"provider\":\"p/1\","
		    "\"user\":\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006"
		    "\\u0007\\b\\t\\n\\u000B\\f\\r\\u000E\\u000F\\u0010"
		    "\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017"
		    "\\u0018\\u0019\\u001A\\u001B\\u001C\\u001D\\u001E"
		    "\\u001F\\\"\\\\/\x7f\xc3\xa9\","
		    "\"org\":\"\\\\\",\"result\":\"denied\"}");
	o = parse_line(f->lines[0]);
	assert_string_equal(str_member(o, "user"), all);
	json_decref(o);
	expect_line(f->lines[1],
		    "{\"time\":\"%T\",\"event\":\"put\","
		    "\"actor\":{\"user\":\"tab\\there\","
		    "\"org\":\"nl\\nthere\",\"role\":\"admin\"},"
		    "\"backend\":\"b\\\"e\",\"scope\":\"user\","
		    "\"owner\":\"q\\\"uote\\\\\",\"provider\":\"x\x7fy\","
		    "\"result\":\"ok\"}");
	expect_line(f->lines[2],
		    "{\"time\":\"%T\",\"event\":\"rekey\","
		    "\"actor\":{\"user\":\"tab\\there\","
		    "\"org\":\"nl\\nthere\",\"role\":\"admin\"},"
		    "\"backend\":\"b\",\"result\":\"i/o error\"}");
}

/*
 * A name that is not UTF-8 cannot be a JSON string: the line must still be
 * valid JSON (jansson's parser rejects bad UTF-8), with everything else in
 * it, and the bad bytes nowhere in the file.
 */
static void test_not_utf8(void **state)
{
	static const char *const bad[] = {
		"caf\xe9",         /* Latin-1 */
		"\xc3",            /* cut short */
		"\xc0\xaf",        /* overlong '/' */
		"\xed\xa0\x80",    /* a surrogate */
		"\xf4\x90\x80\x80", /* past U+10FFFF */
		"\xff",
	};
	struct fixture *f = *state;
	const size_t n = sizeof(bad) / sizeof(bad[0]);

	open_conf(f, conf_env);
	for (size_t i = 0; i < n; i++) {
		struct kwi_query_in in = { "default", "anthropic", bad[i],
					   "acme" };

		assert_int_equal(kwi_audit_resolve(f->ctx, &in, KW_OK, NULL),
				 KW_OK);
	}
	read_lines(f);
	assert_int_equal(f->nlines, n);
	for (size_t i = 0; i < n; i++) {
		json_t *o = parse_line(f->lines[i]);

		assert_string_equal(str_member(o, "event"), "resolve");
		assert_string_equal(str_member(o, "org"), "acme");
		assert_string_equal(str_member(o, "result"), "ok");
		json_decref(o);
	}
	for (size_t i = 0; i < f->len; i++)
		if ((unsigned char)f->text[i] >= 0x80)
			fail_msg("byte 0x%02x at %zu of the audit file",
				 (unsigned char)f->text[i], i);
}

/* Longer than any buffer a line could be built in: still one whole line. */
static void test_long_lines(void **state)
{
	struct fixture *f = *state;
	const size_t name_len = 6000, user_len = 100000;
	char *backend = malloc(name_len + 1), *chain = malloc(name_len + 1);
	char *conf = NULL, *user = malloc(user_len + 1), *want = NULL;
	struct kwi_query_in in = { NULL, "anthropic", NULL, "acme" };
	json_t *o;

	assert_non_null(backend);
	assert_non_null(chain);
	assert_non_null(user);
	memset(backend, 'b', name_len);
	backend[name_len] = '\0';
	memset(chain, 'c', name_len);
	chain[name_len] = '\0';
	/* Every byte doubles when escaped. */
	memset(user, '"', user_len);
	user[user_len] = '\0';
	assert_true(asprintf(&conf,
			     CONF_HEAD("env")
			     "backends: {\n"
			     "  %s: { module = \"fake\"; answer = \"found\";\n"
			     "        value = \"" VALUE "\"; };\n"
			     "};\n"
			     "chains: {\n"
			     "  default = ( { backend = \"%s\"; "
			     "control = \"required\"; } );\n"
			     "  %s = ( { backend = \"%s\"; "
			     "control = \"required\"; } );\n"
			     "};\n",
			     backend, backend, chain, backend) > 0);
	open_conf(f, conf);
	assert_int_equal(resolve(f->ctx, chain, "alice", NULL, VALUE), KW_OK);
	in.chain = chain;
	in.user = user;
	assert_int_equal(kwi_audit_resolve(f->ctx, &in, KW_OK, NULL), KW_OK);
	assert_int_equal(resolve(f->ctx, NULL, "bob", NULL, VALUE), KW_OK);

	read_lines(f);
	assert_int_equal(f->nlines, 3);
	assert_true(asprintf(&want,
			     "{\"time\":\"%%T\",\"event\":\"resolve\","
			     "\"chain\":\"%s\",\"provider\":\"anthropic\","
			     "\"user\":\"alice\",\"org\":null,"
			     "\"result\":\"ok\",\"backend\":\"%s\","
			     "\"fingerprint\":\"" FP_VALUE "\"}",
			     chain, backend) > 0);
	expect_line(f->lines[0], want);
	assert_true(strlen(f->lines[1]) > 2 * user_len);
	o = parse_line(f->lines[1]);
	expect_members(o, "time event chain provider user org result");
	assert_string_equal(str_member(o, "chain"), chain);
	assert_string_equal(str_member(o, "user"), user);
	assert_string_equal(str_member(o, "org"), "acme");
	json_decref(o);
	o = parse_line(f->lines[2]);
	assert_string_equal(str_member(o, "user"), "bob");
	assert_string_equal(str_member(o, "backend"), backend);
	json_decref(o);
	expect_file_clean(f);
	free(want);
	free(conf);
	free(user);
	free(chain);
	free(backend);
}

/* ---- what the audit path may be ---- */

/*
 * Put something at DIR/audit.jsonl with `make`, open conf_env from DIR and
 * expect it refused with "DIR/keyway.conf:3: keyway.audit: DIR/audit.jsonl
 * " + want, promptly: a FIFO must not hang the open.
 */
static void expect_refused(struct fixture *f, void (*make)(const char *),
			   kw_status status, const char *want)
{
	char *conf, *expect = NULL;
	kw_status st;

	f->dir = tu_tmpdir();
	snprintf(f->audit, sizeof(f->audit), "%s/audit.jsonl", f->dir);
	make(f->audit);
	conf = tu_write(f->dir, "keyway.conf", 0600, "%s", conf_env);
	alarm(10);
	st = kw_open(&f->ctx, conf);
	alarm(0);
	assert_int_equal(st, status);
	assert_null(f->ctx);
	assert_true(asprintf(&expect, "%s:3: keyway.audit: %s %s", conf,
			     f->audit, want) > 0);
	assert_string_equal(kw_last_error(), expect);
	free(expect);
	free(conf);
}

static void make_0644(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0644), 0);
	close(fd);
}

static void make_0640(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0640), 0);
	close(fd);
}

static void make_fifo(const char *path)
{
	assert_int_equal(mkfifo(path, 0600), 0);
}

/* A FIFO with a reader: opening it for writing would succeed. */
static int fifo_reader = -1;

static void make_read_fifo(const char *path)
{
	assert_int_equal(mkfifo(path, 0600), 0);
	fifo_reader = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(fifo_reader >= 0);
}

static void make_dir(const char *path)
{
	assert_int_equal(mkdir(path, 0700), 0);
}

static void make_link(const char *path)
{
	char target[4200];

	snprintf(target, sizeof(target), "%s.real", path);
	make_0640(target);
	assert_int_equal(chmod(target, 0600), 0);
	assert_int_equal(symlink(target, path), 0);
}

/* The rule of every file keyway writes: only its owner may read it. */
static void test_file_mode_refused(void **state)
{
	struct fixture *f = *state;

	expect_refused(f, make_0644, KW_ERR_PERM,
		       "is accessible by group or others (mode 0644); it "
		       "holds the audit trail: chmod 600 it");
	tu_rmrf(f->dir);
	expect_refused(f, make_0640, KW_ERR_PERM,
		       "is accessible by group or others (mode 0640); it "
		       "holds the audit trail: chmod 600 it");
}

static void test_not_a_file_refused(void **state)
{
	struct fixture *f = *state;

	expect_refused(f, make_fifo, KW_ERR_PERM,
		       "is a FIFO, not a regular file");
	tu_rmrf(f->dir);
	expect_refused(f, make_read_fifo, KW_ERR_PERM,
		       "is a FIFO, not a regular file");
	close(fifo_reader);
	tu_rmrf(f->dir);
	expect_refused(f, make_dir, KW_ERR_PERM,
		       "is a directory, not a regular file");
	tu_rmrf(f->dir);
	expect_refused(f, make_link, KW_ERR_PERM,
		       "is a symbolic link; point the setting at the file "
		       "itself");
}

/* ---- a file that cannot grow ---- */

/*
 * The child's report of what went wrong, through a pipe: cmocka's own
 * output may be a file, which the child's size limit would cut short.
 */
static int child_report = -1;

static void child_check(bool ok, const char *what)
{
	if (!ok) {
		ssize_t n = write(child_report, what, strlen(what));

		_exit(n > 0 ? 1 : 2);
	}
}

static bool set_fsize(rlim_t cur)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_FSIZE, &r) != 0)
		return false;
	r.rlim_cur = cur;
	return setrlimit(RLIMIT_FSIZE, &r) == 0;
}

/*
 * Resolve as `user` while the file may grow by `room` bytes at most
 * (RLIM_INFINITY: without a limit), and check what on_failure says: the
 * key handed out when the line was written or "allow" is set, and
 * otherwise an I/O error that names the file and no key.
 */
static void child_resolve(struct fixture *f, bool allow, const char *user,
			  rlim_t room, bool written)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	char prefix[4200];
	struct stat st;
	kw_status rc;

	child_check(stat(f->audit, &st) == 0, "stat of the audit file");
	child_check(set_fsize(room == RLIM_INFINITY
				      ? RLIM_INFINITY
				      : (rlim_t)st.st_size + room),
		    "setrlimit");
	req.provider = "anthropic";
	req.user = user;
	rc = kw_resolve(f->ctx, &req, &s);
	if (written || allow) {
		child_check(rc == KW_OK && s != NULL &&
				    strcmp(kw_secret_value(s), VALUE) == 0,
			    "the key was not handed out");
	} else {
		snprintf(prefix, sizeof(prefix),
			 "keyway.audit: cannot write %s: ", f->audit);
		child_check(rc == KW_ERR_IO && s == NULL,
			    "an event not written did not fail the resolve");
		child_check(strncmp(kw_last_error(), prefix,
				    strlen(prefix)) == 0,
			    "the error does not name the audit file");
	}
	kw_secret_free(s);
	child_check(set_fsize(RLIM_INFINITY), "setrlimit");
}

/*
 * In a child, with SIGXFSZ ignored: a line cut short by the size limit
 * (a short write), then a line that cannot start (EFBIG), then lines
 * written with room to spare.  Every line of the file must be whole JSON,
 * and only the events written are in it.
 */
static void run_file_full(struct fixture *f, const char *conf, bool allow)
{
	const kw_actor actor = { sizeof(kw_actor), "root", NULL,
				 KW_ROLE_SYSADMIN };
	const kw_store_key k = { KW_SCOPE_SYSTEM, NULL, "anthropic" };
	int fds[2], status;
	char why[256] = "";
	ssize_t n;
	pid_t pid;

	open_conf(f, conf);
	assert_int_equal(resolve(f->ctx, NULL, "before", NULL, VALUE), KW_OK);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char path[4200];

		close(fds[0]);
		child_report = fds[1];
		signal(SIGXFSZ, SIG_IGN);
		/* A child may only close the context it inherited. */
		kw_close(f->ctx);
		snprintf(path, sizeof(path), "%s/keyway.conf", f->dir);
		child_check(kw_open(&f->ctx, path) == KW_OK, "kw_open");
		child_resolve(f, allow, "cut1", 40, false);
		child_resolve(f, allow, "cut2", 1, false);
		child_resolve(f, allow, "none", 0, false);
		child_resolve(f, allow, "after1", RLIM_INFINITY, true);
		/* A change that cannot be recorded. */
		{
			struct stat st;

			child_check(stat(f->audit, &st) == 0, "stat");
			child_check(set_fsize((rlim_t)st.st_size + 10),
				    "setrlimit");
			child_check(kwi_audit_change(f->ctx, &actor, "put",
						     "vault", &k, KW_OK) ==
					    (allow ? KW_OK : KW_ERR_IO),
				    "a change not written was not reported "
				    "as on_failure says");
			child_check(set_fsize(RLIM_INFINITY), "setrlimit");
		}
		child_resolve(f, allow, "after2", RLIM_INFINITY, true);
		_exit(0);
	}
	close(fds[1]);
	n = read(fds[0], why, sizeof(why) - 1);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (n > 0)
		fail_msg("child: %s", why);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	read_lines(f);
	assert_int_equal(f->nlines, 3);
	for (size_t i = 0; i < f->nlines; i++) {
		static const char *const users[] = { "before", "after1",
						     "after2" };
		json_t *o = parse_line(f->lines[i]);

		assert_string_equal(str_member(o, "user"), users[i]);
		assert_string_equal(str_member(o, "fingerprint"), FP_VALUE);
		json_decref(o);
	}
	expect_file_clean(f);
}

static void test_file_full_deny(void **state)
{
	run_file_full(*state, conf_env, false);
}

static void test_file_full_allow(void **state)
{
	run_file_full(*state, conf_allow, true);
}

/*
 * A file exactly at the size limit, with SIGXFSZ at its default action
 * (which ends the process): the library must not die of the signal, and
 * the event not written fails as on_failure says.  No SIGXFSZ is left
 * pending or blocked behind.
 */
static void run_file_at_limit(struct fixture *f, const char *conf, bool allow)
{
	int fds[2], status;
	char why[256] = "";
	ssize_t n;
	pid_t pid;

	open_conf(f, conf);
	assert_int_equal(resolve(f->ctx, NULL, "before", NULL, VALUE), KW_OK);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char path[4200];
		sigset_t set;

		close(fds[0]);
		child_report = fds[1];
		signal(SIGXFSZ, SIG_DFL);
		kw_close(f->ctx);
		snprintf(path, sizeof(path), "%s/keyway.conf", f->dir);
		child_check(kw_open(&f->ctx, path) == KW_OK, "kw_open");
		child_resolve(f, allow, "none", 0, false);
		child_check(sigpending(&set) == 0 &&
				    !sigismember(&set, SIGXFSZ),
			    "SIGXFSZ left pending");
		child_check(pthread_sigmask(SIG_BLOCK, NULL, &set) == 0 &&
				    !sigismember(&set, SIGXFSZ),
			    "SIGXFSZ left blocked");
		_exit(0);
	}
	close(fds[1]);
	n = read(fds[0], why, sizeof(why) - 1);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (n > 0)
		fail_msg("child: %s", why);
	if (WIFSIGNALED(status))
		fail_msg("child killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	read_lines(f);
	assert_int_equal(f->nlines, 1);
	expect_file_clean(f);
}

static void test_file_at_limit_deny(void **state)
{
	run_file_at_limit(*state, conf_env, false);
}

static void test_file_at_limit_allow(void **state)
{
	run_file_at_limit(*state, conf_allow, true);
}

/* ---- another process's writer ---- */

struct resolver {
	kw_ctx *ctx;
	kw_status rc;
};

/* No cmocka assertion here: it runs in a thread of its own. */
static void *resolve_once(void *arg)
{
	struct resolver *r = arg;
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;

	req.provider = "anthropic";
	req.user = "waited";
	r->rc = kw_resolve(r->ctx, &req, &s);
	kw_secret_free(s);
	return NULL;
}

static off_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/*
 * Writers in other processes append under a lock on the whole file (an
 * open file description lock, which a descriptor of its own stands in for
 * here): a line waits while another writer holds it, so that a writer
 * taking back a line cut short cannot take a line of ours with it.
 */
static void test_file_lock_waited_for(void **state)
{
	struct fixture *f = *state;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	struct resolver r = { 0 };
	struct timespec pause = { 0, 200 * 1000 * 1000 };
	pthread_t t;
	off_t size;
	int fd;

	if (getenv("KEYWAY_VALGRIND") != NULL) {
		/* Valgrind 3.19 keeps every other thread stopped while one
		 * waits in F_OFD_SETLKW, so the lock is never released. */
		print_message("under valgrind, which stops all threads in "
			      "F_OFD_SETLKW: not run\n");
		return;
	}
	open_conf(f, conf_env);
	fd = open(f->audit, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_OFD_SETLK, &fl), 0);
	size = file_size(f->audit);
	r.ctx = f->ctx;
	assert_int_equal(pthread_create(&t, NULL, resolve_once, &r), 0);
	nanosleep(&pause, NULL);
	if (file_size(f->audit) != size)
		fail_msg("a line was written while another writer held the "
			 "file lock");
	fl.l_type = F_UNLCK;
	assert_int_equal(fcntl(fd, F_OFD_SETLK, &fl), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	close(fd);
	assert_int_equal(r.rc, KW_OK);
	read_lines(f);
	assert_int_equal(f->nlines, 1);
	expect_file_clean(f);
}

/* ---- syslog ---- */

/* A syslog daemon's socket at path, bound by the test. */
static int bind_log(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail_msg("bind %s: %s", path, strerror(errno));
	return fd;
}

/* Open an audit trail to syslog at sock, with `extra` settings. */
static void open_syslog(struct fixture *f, const char *extra,
			const char *sock)
{
	char *path;
	kw_status st;

	path = tu_write(f->dir, "keyway.conf", 0600,
			"keyway: {\n"
			"  master_key = { source = \"env\"; };\n"
			"  audit: { sink = \"syslog\"; socket = \"%s\";%s };\n"
			"};\n" CONF_BODY,
			sock, extra);
	st = kw_open(&f->ctx, path);
	if (st != KW_OK)
		fail_msg("kw_open: %s", kw_last_error());
	free(path);
}

/*
 * The one message waiting on fd: "<86>Mmm dd hh:mm:ss TAG[PID]: " (RFC
 * 3164, authpriv.info) and then the line the jsonl sink would write,
 * without its newline.  Returns the line, parsed.
 */
static json_t *parse_log(const char *buf);

static json_t *recv_log(int fd)
{
	char buf[4096];
	ssize_t len;

	len = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	if (len < 0)
		fail_msg("no message on the log socket: %s", strerror(errno));
	buf[len] = '\0';
	return parse_log(buf);
}

/* One message, NUL-terminated, as recv_log() says it must read. */
static json_t *parse_log(const char *buf)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
					      "May", "Jun", "Jul", "Aug",
					      "Sep", "Oct", "Nov", "Dec" };
	char tag[300];
	int day, hh, mm, ss, n = -1, m;
	bool month = false;

	assert_memory_equal(buf, "<86>", 4);
	for (size_t i = 0; i < 12; i++)
		month |= memcmp(buf + 4, months[i], 3) == 0;
	assert_true(month);
	assert_int_equal(sscanf(buf + 7, " %2d %2d:%2d:%2d %n", &day, &hh,
				&mm, &ss, &n),
			 4);
	assert_int_equal(n, 13); /* " dd hh:mm:ss " */
	assert_true(day >= 1 && day <= 31 && hh < 24 && mm < 60 && ss < 61);
	snprintf(tag, sizeof(tag), "%.32s[%ld]: %n",
		 program_invocation_short_name, (long)getpid(), &m);
	if (strncmp(buf + 20, tag, (size_t)m) != 0)
		fail_msg("not tagged \"%s\": %s", tag, buf);
	assert_null(strchr(buf, '\n'));
	assert_null(strstr(buf, TU_MARK));
	assert_null(strstr(buf, MASTER));
	return parse_line(buf + 20 + m);
}

static void test_syslog_delivered(void **state)
{
	struct fixture *f = *state;
	char sock[4200];
	int fd;
	json_t *o;

	f->dir = tu_tmpdir();
	snprintf(sock, sizeof(sock), "%s/log", f->dir);
	fd = bind_log(sock);
	open_syslog(f, "", sock);
	assert_int_equal(resolve(f->ctx, NULL, "alice", "acme", VALUE), KW_OK);
	o = recv_log(fd);
	expect_members(o, "time event chain provider user org result backend "
			  "fingerprint");
	assert_string_equal(str_member(o, "user"), "alice");
	assert_string_equal(str_member(o, "fingerprint"), FP_VALUE);
	json_decref(o);

	/* The daemon restarts on a new socket: the next event finds it. */
	close(fd);
	assert_int_equal(unlink(sock), 0);
	fd = bind_log(sock);
	assert_int_equal(resolve(f->ctx, NULL, "bob", NULL, VALUE), KW_OK);
	o = recv_log(fd);
	assert_string_equal(str_member(o, "user"), "bob");
	json_decref(o);
	assert_int_equal(recv(fd, sock, 1, MSG_DONTWAIT), -1);
	close(fd);
}

/*
 * A daemon listening on a stream socket (connecting a datagram socket to
 * it fails with EPROTOTYPE): each message goes over one connection, ended
 * by a NUL byte as syslog(3) ends it, so the daemon can split them.
 */
static void test_syslog_stream(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 5, 0 };
	char sock[4200], buf[8192], *msg;
	size_t got = 0;
	int lfd, fd;
	json_t *o;

	f->dir = tu_tmpdir();
	snprintf(sock, sizeof(sock), "%s/log", f->dir);
	assert_true(strlen(sock) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, sock);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 4) != 0)
		fail_msg("bind %s: %s", sock, strerror(errno));
	open_syslog(f, "", sock);
	if (resolve(f->ctx, NULL, "alice", "acme", VALUE) != KW_OK)
		fail_msg("resolve: %s", kw_last_error());
	assert_int_equal(resolve(f->ctx, NULL, "bob", NULL, VALUE), KW_OK);
	fd = accept(lfd, NULL, NULL);
	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
				    sizeof(tv)),
			 0);
	/* Both messages, then the end of the connection: closing the
	 * context closes it. */
	kw_close(f->ctx);
	f->ctx = NULL;
	for (;;) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

		if (n < 0)
			fail_msg("recv: %s", strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
		assert_true(got < sizeof(buf) - 1);
	}
	buf[got] = '\0';
	assert_true(got > 0 && buf[got - 1] == '\0');
	msg = buf;
	o = parse_log(msg);
	assert_string_equal(str_member(o, "user"), "alice");
	assert_string_equal(str_member(o, "fingerprint"), FP_VALUE);
	json_decref(o);
	msg += strlen(msg) + 1;
	assert_true(msg < buf + got);
	o = parse_log(msg);
	assert_string_equal(str_member(o, "user"), "bob");
	json_decref(o);
	assert_true(msg + strlen(msg) + 1 == buf + got);
	close(fd);
	close(lfd);
}

/* Nobody listening: "deny" hands nothing out, whatever the sink. */
static void test_syslog_missing_deny(void **state)
{
	const kw_actor actor = { sizeof(kw_actor), "root", NULL,
				 KW_ROLE_SYSADMIN };
	struct fixture *f = *state;
	kw_request req = KW_REQUEST_INIT;
	static char sentinel;
	kw_secret *s = (kw_secret *)&sentinel;
	char sock[4200], *want = NULL;

	f->dir = tu_tmpdir();
	snprintf(sock, sizeof(sock), "%s/nolog", f->dir);
	open_syslog(f, " on_failure = \"deny\";", sock);
	req.provider = "anthropic";
	req.user = "alice";
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_ERR_IO);
	assert_null(s);
	assert_true(asprintf(&want,
			     "keyway.audit: cannot send to the syslog socket "
			     "%s: No such file or directory",
			     sock) > 0);
	assert_string_equal(kw_last_error(), want);
	assert_int_equal(kwi_audit_change(f->ctx, &actor, "rekey", "vault",
					  NULL, KW_OK),
			 KW_ERR_IO);
	assert_string_equal(kw_last_error(), want);
	free(want);

	/* A bound socket that is no longer read: refused, not lost. */
	assert_int_equal(close(bind_log(sock)), 0);
	s = (kw_secret *)&sentinel;
	assert_int_equal(kw_resolve(f->ctx, &req, &s), KW_ERR_IO);
	assert_null(s);
	assert_true(strstr(kw_last_error(), "Connection refused") != NULL);
}

static void test_syslog_missing_allow(void **state)
{
	struct fixture *f = *state;
	char sock[4200];

	f->dir = tu_tmpdir();
	snprintf(sock, sizeof(sock), "%s/nolog", f->dir);
	open_syslog(f, " on_failure = \"allow\";", sock);
	assert_int_equal(resolve(f->ctx, NULL, "alice", NULL, VALUE), KW_OK);
}

static void keep_line(void *arg, const char *line)
{
	char **out = arg;

	if (*out == NULL)
		*out = strdup(line);
}

/* kw_check(): a logger that takes nothing is a problem when events must
 * reach it, and none when on_failure = "allow". */
static void test_syslog_check(void **state)
{
	struct fixture *f = *state;
	char sock[4200], *path, *line = NULL, *want = NULL;
	int fd;

	f->dir = tu_tmpdir();
	snprintf(sock, sizeof(sock), "%s/nolog", f->dir);
	path = tu_write(f->dir, "keyway.conf", 0600,
			"keyway: {\n"
			"  master_key = { source = \"env\"; };\n"
			"  audit: { sink = \"syslog\"; socket = \"%s\"; };\n"
			"};\n" CONF_BODY,
			sock);
	assert_int_equal(kw_check(path, keep_line, &line), KW_ERR_IO);
	assert_true(asprintf(&want,
			     "%s:3: keyway.audit: cannot send to the syslog "
			     "socket %s: No such file or directory; is the "
			     "system logger running, or is socket the path it "
			     "listens on?",
			     path, sock) > 0);
	assert_non_null(line);
	assert_string_equal(line, want);
	free(line);
	line = NULL;
	free(want);

	fd = bind_log(sock);
	assert_int_equal(kw_check(path, keep_line, &line), KW_OK);
	assert_null(line);
	close(fd);
	free(path);

	unlink(sock);
	path = tu_write(f->dir, "allow.conf", 0600,
			"keyway: {\n"
			"  master_key = { source = \"env\"; };\n"
			"  audit: { sink = \"syslog\"; socket = \"%s\";"
			" on_failure = \"allow\"; };\n"
			"};\n" CONF_BODY,
			sock);
	assert_int_equal(kw_check(path, keep_line, &line), KW_OK);
	assert_null(line);
	free(path);
}

/* The settings of the syslog sink, and what the jsonl sink refuses. */
static void test_syslog_settings(void **state)
{
	struct fixture *f = *state;
	char *want = NULL, *conf = NULL;
	char longname[200];

	(void)state;
	f->dir = tu_tmpdir();
	conf = tu_write(f->dir, "keyway.conf", 0600,
			"keyway: {\n"
			"  master_key = { source = \"env\"; };\n"
			"  audit: { sink = \"jsonl\"; path = \"a.jsonl\";\n"
			"           socket = \"/dev/log\"; };\n"
			"};\n" CONF_BODY);
	assert_int_equal(kw_open(&f->ctx, conf), KW_ERR_CONFIG);
	assert_true(asprintf(&want,
			     "%s:4: keyway.audit: sink \"jsonl\" takes no "
			     "socket",
			     conf) > 0);
	assert_string_equal(kw_last_error(), want);
	free(want);
	free(conf);

	memset(longname, 's', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	conf = tu_write(f->dir, "keyway.conf", 0600,
			"keyway: {\n"
			"  master_key = { source = \"env\"; };\n"
			"  audit: { sink = \"syslog\";\n"
			"           socket = \"/run/%s\"; };\n"
			"};\n" CONF_BODY,
			longname);
	assert_int_equal(kw_open(&f->ctx, conf), KW_ERR_CONFIG);
	assert_true(asprintf(&want,
			     "%s:4: keyway.audit: socket: a path of at most "
			     "%zu bytes",
			     conf,
			     sizeof(((struct sockaddr_un *)0)->sun_path) - 1) >
		    0);
	assert_string_equal(kw_last_error(), want);
	free(want);
	free(conf);
}

/* ---- many threads, one file ---- */

struct worker {
	kw_ctx *ctx;
	int id;
	int failures;
	char first[256];
};

static void *work(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < NCALLS; i++) {
		kw_request req = KW_REQUEST_INIT;
		char user[64];
		kw_secret *s = NULL;
		kw_status st;

		/* Every other name needs escaping. */
		snprintf(user, sizeof(user), "%s-%d-%d",
			 i % 2 ? "q\"t" : "caf\xc3\xa9", w->id, i);
		req.provider = "anthropic";
		req.user = user;
		st = kw_resolve(w->ctx, &req, &s);
		if (st != KW_OK || strcmp(kw_secret_value(s), VALUE) != 0) {
			if (w->failures++ == 0)
				snprintf(w->first, sizeof(w->first),
					 "%s: %s", user,
					 st != KW_OK ? kw_last_error()
						     : "wrong value");
		}
		kw_secret_free(s);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct fixture *f = *state;
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	static bool seen[NTHREADS][NCALLS];

	open_conf(f, conf_env);
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .ctx = f->ctx, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < NTHREADS; i++)
		if (w[i].failures > 0)
			fail_msg("thread %d: %d failures, first %s", i,
				 w[i].failures, w[i].first);

	read_lines(f);
	assert_int_equal(f->nlines, NTHREADS * NCALLS);
	for (size_t i = 0; i < f->nlines; i++) {
		json_t *o = parse_line(f->lines[i]);
		const char *user = str_member(o, "user");
		char prefix[16];
		int id = -1, call = -1, end = 0;

		expect_members(o, "time event chain provider user org result "
				  "backend fingerprint");
		tu_expect_timestamp(str_member(o, "time"));
		assert_string_equal(str_member(o, "fingerprint"), FP_VALUE);
		if (sscanf(user, "%15[^-]-%d-%d%n", prefix, &id, &call,
			   &end) != 3 ||
		    user[end] != '\0' || id < 0 || id >= NTHREADS ||
		    call < 0 || call >= NCALLS ||
		    strcmp(prefix, call % 2 ? "q\"t" : "caf\xc3\xa9") != 0)
			fail_msg("line %zu: user \"%s\"", i, user);
		if (seen[id][call])
			fail_msg("line %zu: \"%s\" twice", i, user);
		seen[id][call] = true;
		json_decref(o);
	}
	expect_file_clean(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fingerprint_pinned,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fingerprint_passphrase,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_resolve_line,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_names_round_trip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_escaping, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_not_utf8, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_long_lines, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_mode_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_not_a_file_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_full_deny, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_full_allow, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_at_limit_deny, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_at_limit_allow,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_lock_waited_for,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_syslog_check, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_syslog_delivered, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_syslog_stream, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_syslog_missing_deny, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_syslog_missing_allow,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_syslog_settings, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusal_line, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
