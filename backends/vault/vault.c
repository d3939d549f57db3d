/*
 * vault.c - the vault module: API keys in HashiCorp Vault's KV secrets
 * engine (v2 or v1), over HTTPS with libcurl.
 *
 * Everything is checked when the configuration loads (fail closed: a
 * configuration that loads is one that works); Vault itself is first
 * asked at the first lookup or write, so that a program starts while
 * Vault is down, and its lookups then answer "unavail".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vault.h"

static const kw_setting_spec vault_settings[] = {
	{ "address", KW_SETTING_STRING, KW_SETTING_REQUIRED },
	{ "namespace", KW_SETTING_STRING, 0 },
	{ "mount", KW_SETTING_STRING, 0 },
	{ "kv_version", KW_SETTING_INT_OR_STRING, 0 },
	{ "path", KW_SETTING_STRING, 0 },
	{ "field", KW_SETTING_STRING, 0 },
	{ "auth", KW_SETTING_STRMAP, 0 },
	{ "ca_file", KW_SETTING_PATH, 0 },
	{ "ca_path", KW_SETTING_PATH, 0 },
	{ "client_cert", KW_SETTING_PATH, 0 },
	{ "client_key", KW_SETTING_PATH, 0 },
	{ "tls_skip_verify", KW_SETTING_BOOL, 0 },
	{ "timeout_ms", KW_SETTING_INT, 0 },
	{ "connect_timeout_ms", KW_SETTING_INT, 0 },
	{ "retries", KW_SETTING_INT, 0 },
	{ "cache_ttl", KW_SETTING_INT, 0 },
	{ NULL, 0, 0 },
};

static void vault_close(void *state)
{
	struct vault_state *st = state;

	if (st == NULL)
		return;
	vault_pool_free(st);
	vault_cache_free(st->host, &st->cache);
	vault_auth_free(st);
	if (st->client_key != NULL) {
		st->host->wipe(st->client_key, st->client_key_len);
		st->host->secure_free(st->client_key, st->client_key_len);
	}
	vault_tpl_free(&st->tpl);
	pthread_mutex_destroy(&st->auth.lock);
	pthread_cond_destroy(&st->auth.done);
	pthread_mutex_destroy(&st->pool_lock);
	free(st->mount);
	free(st->base);
	free(st);
}

static const char *opt_string(struct vault_state *st, const char *name,
			      const char *dflt)
{
	const char *v;

	return st->host->setting_string(st->inst, name, &v) == KW_OK ? v : dflt;
}

/* An integer setting within [lo, hi], or dflt when absent. */
static kw_status opt_int(struct vault_state *st, const char *name,
			 int64_t dflt, int64_t lo, int64_t hi, int64_t *out)
{
	if (st->host->setting_int(st->inst, name, out) != KW_OK) {
		*out = dflt;
		return KW_OK;
	}
	if (*out < lo || *out > hi) {
		st->host->error(st->inst, name, "%s must be between %lld and "
				"%lld, not %lld", name, (long long)lo,
				(long long)hi, (long long)*out);
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* Whether host (as libcurl's URL parser gives it) is this machine:
 * "localhost", an address of 127.0.0.0/8, or [::1].  A name is never
 * taken on its looks ("127.example.com" is not loopback). */
static bool is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (host[0] == '[') {
		char bare[INET6_ADDRSTRLEN];
		size_t n = strlen(host);

		if (n < 3 || n - 2 >= sizeof(bare) || host[n - 1] != ']')
			return false;
		memcpy(bare, host + 1, n - 2);
		bare[n - 2] = '\0';
		return inet_pton(AF_INET6, bare, &a6) == 1 &&
		       IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return false;
}

/* address: "https://host[:port]" (a trailing '/' is fine), or http://
 * on loopback only; st->base is "ADDRESS/v1/".  libcurl's URL parser
 * says what the host is, as it is the one that will connect. */
static kw_status load_address(struct vault_state *st)
{
	const kw_host *host = st->host;
	const char *a = opt_string(st, "address", ""), *h;
	char *uhost = NULL, *user = NULL;
	size_t len = strlen(a);
	bool plain, ok;
	CURLU *u;

	while (len > 0 && a[len - 1] == '/')
		len--;
	if (strncmp(a, "https://", 8) == 0) {
		h = a + 8;
		plain = false;
	} else if (strncmp(a, "http://", 7) == 0) {
		h = a + 7;
		plain = true;
	} else {
		host->error(st->inst, "address", "address must be a URL such "
			    "as \"https://vault.internal:8200\", not \"%s\"",
			    a);
		return KW_ERR_CONFIG;
	}
	if (*h == '\0' || *h == '/' || memchr(a, '?', len) ||
	    memchr(a, '#', len) || memchr(h, '/', (size_t)(a + len - h)) ||
	    memchr(h, '@', (size_t)(a + len - h))) {
		host->error(st->inst, "address", "address must be scheme, host "
			    "and port only, such as "
			    "\"https://vault.internal:8200\"");
		return KW_ERR_CONFIG;
	}
	if (asprintf(&st->base, "%.*s/v1/", (int)len, a) < 0) {
		st->base = NULL;
		host->error(st->inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	u = curl_url();
	ok = u != NULL &&
	     curl_url_set(u, CURLUPART_URL, st->base, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_HOST, &uhost, 0) == CURLUE_OK;
	if (ok && curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
		ok = false;
	curl_free(user);
	curl_url_cleanup(u);
	if (!ok) {
		curl_free(uhost);
		host->error(st->inst, "address", "address \"%s\" is not a "
			    "valid URL of scheme, host and port", a);
		return KW_ERR_CONFIG;
	}
	if (plain && !is_loopback(uhost)) {
		curl_free(uhost);
		host->error(st->inst, "address", "address must be https://: "
			    "plain http would send the token in clear "
			    "(http:// is taken for localhost, 127.0.0.0/8 and "
			    "[::1] only)");
		return KW_ERR_CONFIG;
	}
	curl_free(uhost);
	st->address = a;
	return KW_OK;
}

/* mount: escaped segment by segment. */
static kw_status load_mount(struct vault_state *st)
{
	const char *m = opt_string(st, "mount", "secret");
	size_t len = strlen(m);
	char *esc, *out = NULL, *grown;
	size_t olen = 0;

	while (len > 0 && m[len - 1] == '/')
		len--;
	if (len == 0 || m[0] == '/' || strstr(m, "//") != NULL) {
		st->host->error(st->inst, "mount", "mount must name a secrets "
				"engine, such as \"secret\"");
		return KW_ERR_CONFIG;
	}
	for (const char *p = m; p < m + len;) {
		size_t n = strcspn(p, "/");

		if (n > (size_t)(m + len - p))
			n = (size_t)(m + len - p);
		if ((n == 1 && p[0] == '.') ||
		    (n == 2 && memcmp(p, "..", 2) == 0)) {
			st->host->error(st->inst, "mount", "mount may not hold "
					"\".\" or \"..\"");
			free(out);
			return KW_ERR_CONFIG;
		}
		esc = vault_escape(p, n);
		grown = esc != NULL ? realloc(out, olen + strlen(esc) + 2)
				    : NULL;
		if (grown == NULL) {
			free(esc);
			free(out);
			st->host->error(st->inst, NULL, "out of memory");
			return KW_ERR_NOMEM;
		}
		out = grown;
		if (olen > 0)
			out[olen++] = '/';
		strcpy(out + olen, esc);
		olen += strlen(esc);
		free(esc);
		p += n;
		if (*p == '/')
			p++;
	}
	st->mount = out;
	st->mount_raw = m;
	return KW_OK;
}

static kw_status load_kv(struct vault_state *st)
{
	const char *word;
	int64_t v;

	if (st->host->setting_int(st->inst, "kv_version", &v) == KW_OK) {
		if (v != 1 && v != 2) {
			st->host->error(st->inst, "kv_version", "kv_version "
					"must be 1, 2 or \"auto\", not %lld",
					(long long)v);
			return KW_ERR_CONFIG;
		}
		st->kv_version = (int)v;
		return KW_OK;
	}
	if (st->host->setting_string(st->inst, "kv_version", &word) != KW_OK) {
		st->kv_version = 2;
		return KW_OK;
	}
	if (strcmp(word, "auto") == 0) {
		st->kv_auto = true;
		return KW_OK; /* asked of Vault on first use */
	}
	if (strcmp(word, "1") == 0 || strcmp(word, "2") == 0) {
		st->kv_version = word[0] - '0';
		return KW_OK;
	}
	st->host->error(st->inst, "kv_version", "kv_version must be 1, 2 or "
			"\"auto\", not \"%s\"", word);
	return KW_ERR_CONFIG;
}

/* A file curl reads itself must be there and readable now. */
static kw_status readable(struct vault_state *st, const char *setting,
			  const char *path, bool dir)
{
	struct stat sb;

	if (stat(path, &sb) != 0 || access(path, R_OK) != 0) {
		st->host->error(st->inst, setting, "%s %s: %s", setting, path,
				strerror(errno));
		return KW_ERR_CONFIG;
	}
	if (dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)) {
		st->host->error(st->inst, setting, "%s %s is not a %s", setting,
				path, dir ? "directory" : "regular file");
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* The client key, read privately into secure memory. */
static kw_status load_client_key(struct vault_state *st, const char *path)
{
	const kw_host *host = st->host;
	struct stat sb;
	size_t got = 0;
	kw_status rc;
	ssize_t n;
	int fd = -1;

	rc = host->open_private(st->inst, "client_key", path, &fd);
	if (rc == KW_ERR_NOTFOUND) {
		host->error(st->inst, "client_key", "client_key %s does not "
			    "exist", path);
		return KW_ERR_CONFIG;
	}
	if (rc != KW_OK)
		return rc;
	if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || sb.st_size > 65536) {
		host->error(st->inst, "client_key", "client_key %s must be a "
			    "PEM private key of at most 64 KiB", path);
		close(fd);
		return KW_ERR_CONFIG;
	}
	st->client_key_len = (size_t)sb.st_size;
	st->client_key = host->secure_alloc(st->client_key_len);
	if (st->client_key == NULL) {
		close(fd);
		host->error(st->inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	while (got < st->client_key_len) {
		n = read(fd, st->client_key + got, st->client_key_len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got != st->client_key_len) {
		host->error(st->inst, "client_key", "cannot read client_key "
			    "%s", path);
		return KW_ERR_IO;
	}
	return KW_OK;
}

static kw_status load_tls(struct vault_state *st)
{
	const char *key;
	kw_status rc = KW_OK;

	st->ca_file = opt_string(st, "ca_file", NULL);
	st->ca_path = opt_string(st, "ca_path", NULL);
	st->client_cert = opt_string(st, "client_cert", NULL);
	key = opt_string(st, "client_key", NULL);
	if (st->host->setting_bool(st->inst, "tls_skip_verify",
				   &st->skip_verify) != KW_OK)
		st->skip_verify = false;
	if ((st->client_cert == NULL) != (key == NULL)) {
		st->host->error(st->inst, st->client_cert ? "client_cert"
							  : "client_key",
				"client_cert and client_key go together");
		return KW_ERR_CONFIG;
	}
	if (st->ca_file != NULL)
		rc = readable(st, "ca_file", st->ca_file, false);
	if (rc == KW_OK && st->ca_path != NULL)
		rc = readable(st, "ca_path", st->ca_path, true);
	if (rc == KW_OK && st->client_cert != NULL)
		rc = readable(st, "client_cert", st->client_cert, false);
	if (rc == KW_OK && key != NULL)
		rc = load_client_key(st, key);
	if (rc == KW_OK && st->skip_verify)
		st->host->log(st->inst, KW_LOG_WARNING, "tls_skip_verify = "
			      "true: Vault's certificate is not checked, and "
			      "anyone on the path can read the token and the "
			      "keys");
	return rc;
}

static kw_status load_timing(struct vault_state *st)
{
	int64_t v;
	kw_status rc;

	rc = opt_int(st, "timeout_ms", 2000, 10, 600000, &st->timeout_ms);
	if (rc == KW_OK)
		rc = opt_int(st, "connect_timeout_ms",
			     st->timeout_ms < 1000 ? st->timeout_ms : 1000, 1,
			     st->timeout_ms, &st->connect_timeout_ms);
	if (rc == KW_OK)
		rc = opt_int(st, "retries", 2, 0, 10, &v);
	if (rc != KW_OK)
		return rc;
	st->retries = (int)v;
	rc = opt_int(st, "cache_ttl", 30, 0, 86400, &v);
	if (rc != KW_OK)
		return rc;
	if (vault_cache_init(&st->cache, v * 1000) != KW_OK) {
		st->host->error(st->inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	return KW_OK;
}

static kw_status load_names(struct vault_state *st)
{
	const char *path = opt_string(st, "path",
				      "keyway/{scope}/{owner}/{provider}");
	char why[VAULT_WHY];
	kw_status rc;

	st->namespace = opt_string(st, "namespace", NULL);
	if (st->namespace != NULL &&
	    (st->namespace[0] == '\0' ||
	     strpbrk(st->namespace, "\r\n") != NULL)) {
		st->host->error(st->inst, "namespace", "namespace must be one "
				"line, such as \"team-a\"");
		return KW_ERR_CONFIG;
	}
	st->field = opt_string(st, "field", "api_key");
	if (st->field[0] == '\0' || strncmp(st->field, "keyway_", 7) == 0) {
		st->host->error(st->inst, "field", "field must name the "
				"secret's field that holds the key (not empty, "
				"not starting with keyway_)");
		return KW_ERR_CONFIG;
	}
	rc = vault_tpl_parse(&st->tpl, path, st->scope, why, sizeof(why));
	if (rc != KW_OK)
		st->host->error(st->inst, "path", "%s", why);
	return rc;
}

static kw_status vault_open(const kw_host *host, kw_instance *inst,
			    void **state)
{
	struct vault_state *st;
	kw_status rc;

	*state = NULL;
	if (!KW_HOST_HAS(host, reopen_private)) {
		host->error(inst, NULL, "this libkeyway cannot open files "
			    "privately (it has no reopen_private service); "
			    "the vault module needs a newer libkeyway");
		return KW_ERR_MODULE;
	}
	if (KW_HOST_HAS(host, instance_role) &&
	    host->instance_role(inst) != KW_INSTANCE_BACKEND) {
		host->error(inst, NULL, "the vault module is a key store, not "
			    "a quota ledger");
		return KW_ERR_MODULE;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	st->host = host;
	st->inst = inst;
	pthread_mutex_init(&st->pool_lock, NULL);
	pthread_mutex_init(&st->auth.lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&st->auth.done, &ca);
		pthread_condattr_destroy(&ca);
	}
	st->scope = host->instance_scope(inst);
	if (st->scope != KW_SCOPE_USER && st->scope != KW_SCOPE_ORG &&
	    st->scope != KW_SCOPE_SYSTEM) {
		host->error(inst, NULL,
			    "missing scope (\"user\", \"org\" or \"system\")");
		rc = KW_ERR_CONFIG;
		goto out;
	}
	rc = load_address(st);
	if (rc == KW_OK)
		rc = load_mount(st);
	if (rc == KW_OK)
		rc = load_kv(st);
	if (rc == KW_OK)
		rc = load_names(st);
	if (rc == KW_OK)
		rc = load_timing(st);
	if (rc == KW_OK)
		rc = load_tls(st);
	if (rc == KW_OK)
		rc = vault_auth_open(st);
	if (rc != KW_OK)
		goto out;
	*state = st;
	st = NULL;
out:
	vault_close(st);
	return rc;
}

/* sys/health: is Vault there, initialized and unsealed? */
static kw_status check_health(struct vault_state *st, int64_t dl, char *why,
			      size_t whylen, char *what, size_t whatlen)
{
	struct vault_resp resp = { 0 };
	const char *path = "sys/health?standbyok=true&perfstandbyok=true";
	kw_status rc;

	rc = vault_http(st, "GET", path, NULL, 0, NULL, dl, &resp, why, whylen);
	if (resp.status == 503 ||
	    json_is_true(json_object_get(resp.json, "sealed"))) {
		snprintf(why, whylen, "Vault GET sys/health: HTTP %ld: Vault "
			 "at %s is sealed", resp.status, st->address);
		rc = KW_ERR_UNAVAIL;
	} else if (resp.status == 501) {
		snprintf(why, whylen, "Vault GET sys/health: HTTP 501: Vault at "
			 "%s is not initialized", st->address);
		rc = KW_ERR_BACKEND;
	} else if (rc == KW_OK) {
		const char *v = json_string_value(json_object_get(resp.json,
								  "version"));

		snprintf(what, whatlen, "Vault%s%s at %s unsealed", v ? " " : "",
			 v ? v : "", st->address);
	}
	vault_resp_free(st->host, &resp);
	return rc;
}

static kw_status vault_check(void *state, kw_reply *r)
{
	struct vault_state *st = state;
	char why[VAULT_WHY], what[300] = "";
	int64_t dl = vault_now_ms() + st->timeout_ms;
	kw_status rc;
	int v = 0, configured;

	if (st->skip_verify)
		st->host->log(st->inst, KW_LOG_WARNING, "tls_skip_verify = "
			      "true: Vault's certificate is not checked");
	rc = check_health(st, dl, why, sizeof(why), what, sizeof(what));
	if (rc != KW_OK)
		goto out;
	/* Whether the token can read the mount, and which KV it is. */
	configured = st->kv_auto ? 0 : st->kv_version;
	rc = vault_mount_version(st, dl, &v, why, sizeof(why));
	if (rc == KW_OK && configured == 0)
		st->kv_version = v;
	if (rc == KW_OK && configured != 0 && configured != v) {
		snprintf(why, sizeof(why), "mount \"%s\" is KV v%d, but "
			 "kv_version = %d", st->mount_raw, v, configured);
		rc = KW_ERR_CONFIG;
	}
	if (rc == KW_ERR_PERM)
		snprintf(why + strlen(why), sizeof(why) - strlen(why),
			 "; the token cannot read mount \"%s\"", st->mount_raw);
out:
	if (rc != KW_OK)
		st->host->reply_detail(r, "%s%s", why,
				       st->skip_verify ? " (and tls_skip_verify "
							 "= true)" : "");
	else
		st->host->reply_detail(r, "%s; mount \"%s\" KV v%d readable%s",
				       what, st->mount_raw, v,
				       st->skip_verify ? "; WARNING: "
							 "tls_skip_verify = true"
						       : "");
	return rc;
}

/*
 * VAULT_TOKEN opens Vault to whoever holds it, every key there included:
 * `keyway exec` must not hand it to the programs it runs, whether or not
 * this backend's token came from it.
 */
static bool vault_reads_env(void *state, const char *name, size_t len)
{
	(void)state;
	return len == sizeof("VAULT_TOKEN") - 1 &&
	       memcmp(name, "VAULT_TOKEN", len) == 0;
}

static const struct kw_module vault_module = {
	KW_MODULE_HEADER,
	.name = "vault",
	.description = "keys in HashiCorp Vault's KV secrets engine",
	.caps = KW_CAP_LOOKUP | KW_CAP_STORE | KW_CAP_LIST | KW_CAP_SCOPED,
	.settings = vault_settings,
	.open = vault_open,
	.close = vault_close,
	.check = vault_check,
	.lookup = vault_lookup,
	.put = vault_put,
	.set_active = vault_set_active,
	.remove = vault_remove,
	.list = vault_list,
	.reads_env = vault_reads_env,
};

KW_MODULE_EXPORT(vault_module)
