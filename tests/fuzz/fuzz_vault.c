/*
 * fuzz_vault.c - a fuzz target for Vault's answers as the vault module
 * reads them (backends/vault/): KV v1 and v2 reads, v2 metadata, the
 * mount's engine and version (sys/internal/ui/mounts), an AppRole login
 * (auth/approle/login), auth/token/lookup-self, sys/health, LIST and the
 * answers to writes, and Vault's errors.
 *
 * The module is compiled into the target but for http.c: this file
 * stands for the transport, and answers each request the module makes
 * with the next answer of the input, through answer.c as http.c does
 * (with retries = 0: an answer worth asking again is the last).  A fake
 * host serves the settings, the private files and the replies.
 *
 * The first input byte picks the backend and what is asked of it:
 *
 *   bits 0-1  kv_version: "auto", 1, 2, 2 with cache_ttl = 0
 *   bit 2     auth: a token ($VAULT_TOKEN), or an AppRole login
 *   bits 3-5  lookup, lookup for explain, check, ls, put (create),
 *             put (rotate), disable, rm
 *
 * and the rest is the answers, separated by NUL bytes, each an HTTP
 * status in three digits and the body ("200{...}"); without the three
 * digits, a 200 with the whole as body.  A request past the last answer
 * gets no answer (a connection refused).  What must hold, else abort():
 *
 *   - no message (an error of open(), a log line, a reply's detail)
 *     holds the token, the AppRole role and secret ids or the key being
 *     stored (unless an answer holds them too: Vault's words, which the
 *     module may quote), a client_token of any answer, or the value of the
 *     key's field in any answer (unless that value is also Vault's words
 *     elsewhere in an answer); an error of open() is one line (the host
 *     makes the others one line);
 *   - a found key is the field's value in an answer;
 *   - guarded memory is released with the size it was asked for, and
 *     everything is released (LeakSanitizer sees what is not).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <keyway/keyway.h>

#include "fuzz.h"
#include "fuzzutil.h"
#include "vault.h"

/* vault.c's descriptor. */
const struct kw_module *kw_module_entry(void);

#define FZ_TOKEN "hvs.fuzz-TOKEN-planted-31b7"
#define FZ_ROLE "role-fuzz-ROLEID-planted-9e02"
#define FZ_SECRET_ID "sid-fuzz-SECRETID-planted-44fa"
#define FZ_VALUE "sk-fuzz-STORED-planted-0c5d"
#define FZ_MAX_MSG 64
#define FZ_MAX_ANSWERS 64

struct kw_reply {
	char detail[1024];
	char *secret;
	size_t len;
};

static bool fz_verbose;
static char fz_dir[512], fz_role_path[600], fz_sid_path[600];
static const struct kw_module *fz_mod;
static kw_host fz_host;

/* The input of the run under way. */
static struct {
	unsigned kv;          /* 0: auto, 1, 2, 3: 2 without cache */
	bool approle;
	const uint8_t *ans[FZ_MAX_ANSWERS];
	size_t ans_len[FZ_MAX_ANSWERS];
	size_t nans, next;
	char *msgs[FZ_MAX_MSG];
	bool from_error[FZ_MAX_MSG];
	size_t nmsgs;
} fz;

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_vault: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

static void note(bool from_error, const char *fmt, va_list ap)
{
	char line[2048];

	vsnprintf(line, sizeof(line), fmt, ap);
	if (fz_verbose)
		fprintf(stderr, "#   %s\n", line);
	if (fz.nmsgs < FZ_MAX_MSG) {
		fz.msgs[fz.nmsgs] = strdup(line);
		if (fz.msgs[fz.nmsgs] == NULL)
			die("out of memory", NULL);
		fz.from_error[fz.nmsgs++] = from_error;
	}
}

/* ---- the host ---- */

static const char *fz_instance_name(const kw_instance *inst)
{
	(void)inst;
	return "vault";
}

static kw_status fz_setting_string(const kw_instance *inst, const char *name,
				   const char **value)
{
	(void)inst;
	if (strcmp(name, "address") == 0)
		*value = "https://vault.fuzz:8200";
	else if (strcmp(name, "mount") == 0)
		*value = "secret";
	else if (strcmp(name, "path") == 0)
		*value = "keyway/{scope}/{owner}/{provider}";
	else if (strcmp(name, "field") == 0)
		*value = "api_key";
	else if (strcmp(name, "kv_version") == 0 && fz.kv == 0)
		*value = "auto";
	else
		return KW_ERR_NOTFOUND;
	return KW_OK;
}

static kw_status fz_setting_int(const kw_instance *inst, const char *name,
				int64_t *value)
{
	(void)inst;
	if (strcmp(name, "kv_version") == 0 && fz.kv != 0)
		*value = fz.kv == 1 ? 1 : 2;
	else if (strcmp(name, "retries") == 0)
		*value = 0;
	else if (strcmp(name, "cache_ttl") == 0 && fz.kv == 3)
		*value = 0;
	else
		return KW_ERR_NOTFOUND;
	return KW_OK;
}

static kw_status fz_setting_bool(const kw_instance *inst, const char *name,
				 bool *value)
{
	(void)inst;
	(void)name;
	(void)value;
	return KW_ERR_NOTFOUND;
}

static kw_status fz_setting_map(const kw_instance *inst, const char *name,
				size_t index, const char **key,
				const char **value)
{
	(void)inst;
	if (strcmp(name, "auth") != 0 || !fz.approle || index > 2)
		return KW_ERR_NOTFOUND;
	*key = index == 0 ? "method" : index == 1 ? "role_id_file"
						  : "secret_id_file";
	*value = index == 0 ? "approle" : index == 1 ? fz_role_path
						     : fz_sid_path;
	return KW_OK;
}

static void fz_error(kw_instance *inst, const char *setting, const char *fmt,
		     ...)
{
	va_list ap;

	(void)inst;
	(void)setting;
	va_start(ap, fmt);
	note(true, fmt, ap);
	va_end(ap);
}

static void fz_log(const kw_instance *inst, int level, const char *fmt, ...)
{
	va_list ap;

	(void)inst;
	(void)level;
	va_start(ap, fmt);
	note(false, fmt, ap);
	va_end(ap);
}

static kw_status fz_reply_secret(kw_reply *r, const char *value, size_t len)
{
	free(r->secret);
	r->secret = malloc(len + 1);
	if (r->secret == NULL)
		return KW_ERR_NOMEM;
	memcpy(r->secret, value, len);
	r->secret[len] = '\0';
	r->len = len;
	return KW_OK;
}

static void fz_reply_detail(kw_reply *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
	va_end(ap);
	va_start(ap, fmt);
	note(false, fmt, ap);
	va_end(ap);
}

static int64_t fz_now(void)
{
	return (int64_t)time(NULL);
}

static kw_status fz_open_private(kw_instance *inst, const char *setting,
				 const char *path, int *fd)
{
	(void)inst;
	(void)setting;
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return errno == ENOENT ? KW_ERR_NOTFOUND : KW_ERR_IO;
	return KW_OK;
}

static kw_status fz_reopen_private(const char *path, int *fd, char *why,
				   size_t whylen)
{
	kw_status rc = fz_open_private(NULL, NULL, path, fd);

	if (rc != KW_OK)
		snprintf(why, whylen, "cannot open %s", path);
	return rc;
}

static kw_scope fz_instance_scope(const kw_instance *inst)
{
	(void)inst;
	return KW_SCOPE_ORG;
}

static kw_instance_role fz_instance_role(const kw_instance *inst)
{
	(void)inst;
	return KW_INSTANCE_BACKEND;
}

static void fz_random(void *buf, size_t len)
{
	memset(buf, 0x5a, len);
}

static void fz_mask(const char *value, size_t len, char *buf, size_t size)
{
	(void)value;
	snprintf(buf, size, "****(%zu)", len);
}

/* ---- the transport: http.c's two calls, answered from the input ---- */

int64_t vault_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vault_pool_free(struct vault_state *st)
{
	st->nidle = 0;
}

kw_status vault_http(struct vault_state *st, const char *method,
		     const char *path, const char *body, size_t len,
		     const char *token, int64_t deadline_ms,
		     struct vault_resp *resp, char *why, size_t whylen)
{
	const uint8_t *a;
	size_t alen;
	long status = 200;

	(void)body;
	(void)len;
	(void)token;
	(void)deadline_ms;
	vault_resp_free(st->host, resp);
	why[0] = '\0';
	if (fz_verbose)
		fprintf(stderr, "#  %s %s\n", method, path);
	if (fz.next >= fz.nans) {
		snprintf(why, whylen, "Vault %s %s: Couldn't connect to server "
			 "(after 1 attempt)", method, path);
		return KW_ERR_UNAVAIL;
	}
	a = fz.ans[fz.next];
	alen = fz.ans_len[fz.next++];
	if (alen >= 3 && a[0] >= '1' && a[0] <= '5' && a[1] >= '0' &&
	    a[1] <= '9' && a[2] >= '0' && a[2] <= '9') {
		status = (a[0] - '0') * 100 + (a[1] - '0') * 10 + (a[2] - '0');
		a += 3;
		alen -= 3;
	}
	resp->status = status;
	resp->attempts = 1;
	if (alen > 0 &&
	    !vault_resp_append(st->host, resp, (const char *)a, alen)) {
		snprintf(why, whylen, "Vault %s %s: the answer is too large",
			 method, path);
		return resp->body_rc;
	}
	if (vault_retryable(status)) {
		vault_answer_refused(resp, method, path, why, whylen);
		return KW_ERR_UNAVAIL;
	}
	return vault_answer(resp, method, path, why, whylen);
}

/* ---- what must hold ---- */

/* Is needle in any string of j (keys too) but at the places of the key? */
static bool said_elsewhere(const json_t *j, const char *needle,
			   const json_t *skip)
{
	const char *k;
	json_t *v;
	size_t i;

	if (j == skip)
		return false;
	if (json_is_string(j))
		return strstr(json_string_value(j), needle) != NULL;
	if (json_is_object(j)) {
		json_object_foreach((json_t *)j, k, v)
			if (strstr(k, needle) != NULL ||
			    said_elsewhere(v, needle, skip))
				return true;
	}
	if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			if (said_elsewhere(v, needle, skip))
				return true;
	}
	return false;
}

/* The secrets in one answer: the key's field and a login's token. */
static void secrets_of(const json_t *j, const char **out, const json_t **at,
		       size_t *n)
{
	const json_t *data = json_object_get(j, "data");
	const json_t *cand[3] = {
		json_object_get(data, "api_key"),
		json_object_get(json_object_get(data, "data"), "api_key"),
		json_object_get(json_object_get(j, "auth"), "client_token"),
	};

	for (size_t i = 0; i < 3; i++)
		if (json_is_string(cand[i]) &&
		    json_string_length(cand[i]) >= 8 &&
		    strlen(json_string_value(cand[i])) ==
			    json_string_length(cand[i])) {
			out[*n] = json_string_value(cand[i]);
			at[(*n)++] = cand[i];
		}
}

static bool found_in_answers(const char *value, size_t len)
{
	for (size_t i = 0; i < fz.nans; i++) {
		const uint8_t *a = fz.ans[i];
		size_t alen = fz.ans_len[i];
		json_t *j;
		bool hit = false;

		if (alen >= 3 && a[0] >= '1' && a[0] <= '5')
			a += 3, alen -= 3;
		j = json_loadb((const char *)a, alen, 0, NULL);
		if (j == NULL)
			continue;
		{
			const json_t *data = json_object_get(j, "data");
			const json_t *c[2] = {
				json_object_get(data, "api_key"),
				json_object_get(json_object_get(data, "data"),
						"api_key"),
			};

			for (int k = 0; k < 2; k++)
				if (json_is_string(c[k]) &&
				    json_string_length(c[k]) == len &&
				    memcmp(json_string_value(c[k]), value,
					   len) == 0)
					hit = true;
		}
		json_decref(j);
		if (hit)
			return true;
	}
	return false;
}

/* Did Vault say it?  Then the module may quote it. */
static bool in_answers(const char *s)
{
	for (size_t i = 0; i < fz.nans; i++)
		if (memmem(fz.ans[i], fz.ans_len[i], s, strlen(s)) != NULL)
			return true;
	return false;
}

static void check_messages(void)
{
	const char *fixed[] = { FZ_TOKEN, FZ_ROLE, FZ_SECRET_ID, FZ_VALUE };
	json_t *parsed[FZ_MAX_ANSWERS] = { 0 };
	const char *secret[3 * FZ_MAX_ANSWERS];
	const json_t *at[3 * FZ_MAX_ANSWERS];
	size_t nsecret = 0, owner[3 * FZ_MAX_ANSWERS];

	for (size_t i = 0; i < fz.nans; i++) {
		const uint8_t *a = fz.ans[i];
		size_t alen = fz.ans_len[i], before = nsecret;

		if (alen >= 3 && a[0] >= '1' && a[0] <= '5')
			a += 3, alen -= 3;
		parsed[i] = json_loadb((const char *)a, alen, 0, NULL);
		if (parsed[i] != NULL)
			secrets_of(parsed[i], secret, at, &nsecret);
		for (size_t k = before; k < nsecret; k++)
			owner[k] = i;
	}
	for (size_t m = 0; m < fz.nmsgs; m++) {
		const char *msg = fz.msgs[m];

		/* The host makes a log line and a detail one line (and
		 * blanks what a terminal would run); error() is the
		 * module's to keep to one line. */
		if (fz.from_error[m] && strpbrk(msg, "\r\n") != NULL)
			die("an error that is not one line", msg);
		for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++)
			if (strstr(msg, fixed[k]) != NULL &&
			    !in_answers(fixed[k]))
				die("a message holds a secret", msg);
		for (size_t k = 0; k < nsecret; k++) {
			bool echo = false;

			if (strstr(msg, secret[k]) == NULL)
				continue;
			/* Vault's own words elsewhere, which the module
			 * may quote, are not the key. */
			for (size_t i = 0; i < fz.nans && !echo; i++)
				echo = parsed[i] != NULL &&
				       said_elsewhere(parsed[i], secret[k],
						      i == owner[k] ? at[k]
								    : NULL);
			if (!echo)
				die("a message holds a key or token Vault "
				    "answered", msg);
		}
	}
	for (size_t i = 0; i < fz.nans; i++)
		json_decref(parsed[i]);
}

/* ---- running one input ---- */

static void put_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    close(fd) != 0)
		die("cannot write", path);
}

static void clean(void)
{
	unlink(fz_role_path);
	unlink(fz_sid_path);
	rmdir(fz_dir);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	fz_verbose = getenv("KWFUZZ_VERBOSE") != NULL;
	snprintf(fz_dir, sizeof(fz_dir), "%s/kwfuzz-vault.XXXXXX",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(fz_dir) == NULL)
		die("cannot make a directory under $TMPDIR", fz_dir);
	snprintf(fz_role_path, sizeof(fz_role_path), "%s/role-id", fz_dir);
	snprintf(fz_sid_path, sizeof(fz_sid_path), "%s/secret-id", fz_dir);
	put_file(fz_role_path, FZ_ROLE "\n");
	put_file(fz_sid_path, FZ_SECRET_ID "\n");
	atexit(clean);
	setenv("VAULT_TOKEN", FZ_TOKEN, 1);

	fz_host.abi = KW_MODULE_ABI;
	fz_host.size = sizeof(fz_host);
	fz_host.instance_name = fz_instance_name;
	fz_host.setting_string = fz_setting_string;
	fz_host.setting_int = fz_setting_int;
	fz_host.setting_bool = fz_setting_bool;
	fz_host.setting_map = fz_setting_map;
	fz_host.error = fz_error;
	fz_host.log = fz_log;
	fz_host.reply_secret = fz_reply_secret;
	fz_host.reply_detail = fz_reply_detail;
	fz_host.secure_alloc = fz_secure_alloc;
	fz_host.secure_free = fz_secure_free;
	fz_host.wipe = fz_wipe;
	fz_host.now = fz_now;
	fz_host.open_private = fz_open_private;
	fz_host.instance_scope = fz_instance_scope;
	fz_host.random = fz_random;
	fz_host.mask = fz_mask;
	fz_host.instance_role = fz_instance_role;
	fz_host.reopen_private = fz_reopen_private;
	fz_mod = kw_module_entry();
}

static kw_status list_one(void *arg, const kw_store_record *rec)
{
	(void)arg;
	if (rec->provider == NULL || rec->name == NULL || rec->masked == NULL)
		die("ls reports a record without a provider, name or mask",
		    NULL);
	return KW_OK;
}

static void run(void *state, unsigned op)
{
	struct kw_reply r = { "", NULL, 0 };
	kw_query q = {
		.size = sizeof(q),
		.scope = KW_SCOPE_ORG,
		.owner = "acme",
		.provider = "anthropic",
		.chain = "default",
		.reply = &r,
		.flags = op == 1 ? KW_QUERY_EXPLAIN : 0,
	};
	kw_store_put p = {
		.key = { KW_SCOPE_ORG, "acme", "anthropic" },
		.value = FZ_VALUE,
		.len = strlen(FZ_VALUE),
		.name = "prod",
		.mode = op == 4 ? KW_PUT_CREATE : KW_PUT_ROTATE,
	};
	kw_status rc;

	switch (op) {
	case 0:
	case 1:
		rc = fz_mod->lookup(state, &q);
		if (rc == KW_OK &&
		    (r.secret == NULL || !found_in_answers(r.secret, r.len)))
			die("a key found that is no answer's field", NULL);
		/* Again: from the cache, or asked anew. */
		if (rc == KW_OK)
			(void)fz_mod->lookup(state, &q);
		break;
	case 2:
		rc = fz_mod->check(state, &r);
		break;
	case 3:
		rc = fz_mod->list(state, KW_SCOPE_ORG, NULL, list_one, NULL,
				  &r);
		break;
	case 4:
	case 5:
		rc = fz_mod->put(state, &p, &r);
		break;
	case 6:
		rc = fz_mod->set_active(state, &p.key, false, &r);
		break;
	default:
		rc = fz_mod->remove(state, &p.key, &r);
		break;
	}
	if (fz_verbose)
		fprintf(stderr, "#   -> %s\n", kw_status_str(rc));
	free(r.secret);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	const uint8_t *p, *end, *nul;
	void *state = NULL;

	if (!ready) {
		setup();
		ready = true;
	}
	if (size == 0)
		return 0;
	memset(&fz, 0, sizeof(fz));
	fz.kv = data[0] & 3;
	fz.approle = (data[0] & 4) != 0;
	for (p = data + 1, end = data + size;
	     p < end && fz.nans < FZ_MAX_ANSWERS; p = nul + 1) {
		nul = memchr(p, '\0', (size_t)(end - p));
		if (nul == NULL)
			nul = end;
		fz.ans[fz.nans] = p;
		fz.ans_len[fz.nans++] = (size_t)(nul - p);
	}
	if (fz_mod->open(&fz_host, NULL, &state) == KW_OK) {
		run(state, (data[0] >> 3) & 7);
		fz_mod->close(state);
	} else if (state != NULL) {
		die("open() failed but left a state", NULL);
	}
	check_messages();
	for (size_t i = 0; i < fz.nmsgs; i++)
		free(fz.msgs[i]);
	return 0;
}
