/*
 * fuzz_env.c - a fuzz target for the dotenv files of the env backend
 * (backends/env/env.c: env_parse_dotenv(), the parser under the `dotenv`
 * setting).  The module is compiled into the target, so that its static
 * parser can be called as open() calls it.
 *
 * The first input byte says what the rest is (its value modulo 2):
 *
 *   0  a dotenv file, parsed as it is;
 *   1  as 0, with a made-up secret (FZ_MARK) written over the text from
 *      the offset the next byte picks (into a value, in the corpus).
 *
 * What must hold, else abort():
 *
 *   - a refusal is KW_ERR_CONFIG with "PATH:LINE: reason", one printable
 *     line without FZ_MARK;
 *   - a file that parses gives variables sorted by name, once each, each
 *     a valid name, with every name and value NUL-terminated in the one
 *     block of guarded memory, whose size is theirs, and each found by
 *     the lookup's binary search;
 *   - guarded memory is released with the size it was asked for, and
 *     everything is released.
 */
#include "config.h"

/* The module itself: its parser is static. */
#include "env.c"

#include <stdint.h>

#include <keyway/keyway.h>

#include "fuzz.h"
#include "fuzzutil.h"

#define FZ_MARK "sk-fuzz-SECRET-planted-7d1c"
#define FZ_PATH "/fuzz/.env"

static bool fz_verbose;
static bool fz_ready;

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_env: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

static kw_host fz_host;

static void check_refusal(kw_status rc, const char *err)
{
	static const char *const secrets[] = { FZ_MARK, NULL };
	const char *bad;

	if (rc != KW_ERR_CONFIG)
		die("a refusal that is not KW_ERR_CONFIG", kw_status_str(rc));
	if (strncmp(err, FZ_PATH ":", strlen(FZ_PATH ":")) != 0)
		die("a refusal that does not say where", err);
	bad = fz_bad_message(err, secrets);
	if (bad != NULL)
		die("a bad refusal", bad);
}

static void check_vars(const struct env_state *st)
{
	size_t room = 0;

	for (size_t i = 0; i < st->nvars; i++) {
		const struct env_entry *e = &st->vars[i];

		if (!env_is_name(e->name, e->name_len) ||
		    strlen(e->name) != e->name_len)
			die("a variable with an invalid name", NULL);
		if (e->value[e->value_len] != '\0')
			die("a value that is not NUL-terminated", e->name);
		if (e->name < st->store || e->value < st->store ||
		    e->value + e->value_len >= st->store + st->store_len)
			die("a variable outside the guarded block", e->name);
		if (i > 0 && env_name_cmp(st->vars[i - 1].name,
					  st->vars[i - 1].name_len, e->name,
					  e->name_len) >= 0)
			die("variables out of order, or one twice", e->name);
		if (bsearch(e->name, st->vars, st->nvars, sizeof(*st->vars),
			    env_entry_find) != e)
			die("a variable the lookup does not find", e->name);
		room += e->name_len + e->value_len + 2;
	}
	if (room != st->store_len)
		die("the guarded block is not the size of what it holds",
		    NULL);
}

static void parse(const char *text, size_t len)
{
	struct env_state *st = calloc(1, sizeof(*st));
	char *buf, err[4200] = "";
	kw_status rc;

	if (st == NULL)
		die("out of memory", NULL);
	st->host = &fz_host;
	/* Exactly its size, so that a read past it is seen. */
	buf = malloc(len > 0 ? len : 1);
	if (buf == NULL)
		die("out of memory", NULL);
	memcpy(buf, text, len);
	rc = env_parse_dotenv(st, FZ_PATH, buf, len, err, sizeof(err));
	if (fz_verbose)
		fprintf(stderr, "# %zu bytes: %s\n", len,
			rc == KW_OK ? "read" : err);
	if (rc == KW_OK)
		check_vars(st);
	else
		check_refusal(rc, err);
	free(buf);
	env_free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *text;
	size_t len;

	if (!fz_ready) {
		fz_verbose = getenv("KWFUZZ_VERBOSE") != NULL;
		fz_host.abi = KW_MODULE_ABI;
		fz_host.size = sizeof(fz_host);
		fz_host.secure_alloc = fz_secure_alloc;
		fz_host.secure_free = fz_secure_free;
		fz_host.wipe = fz_wipe;
		fz_ready = true;
	}
	if (size == 0)
		return 0;
	if (data[0] % 2 == 0) {
		parse((const char *)data + 1, size - 1);
		return 0;
	}
	if (size < 2)
		return 0;
	text = fz_plant(data + 1, size - 1, FZ_MARK, &len);
	if (text == NULL)
		die("out of memory", NULL);
	parse((const char *)text, len);
	free(text);
	return 0;
}
