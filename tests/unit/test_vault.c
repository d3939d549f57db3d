/*
 * test_vault.c - the vault backend through the public API, against the
 * Vault API stand-in tests/vault/vault_double.py: answers kept in the
 * cache (a hit asks nothing, an entry runs out, cache_ttl = 0 keeps
 * none, a miss is never kept) and dropped at once when keyway disables,
 * enables, rotates or deletes the key, even under a lookup already asking
 * Vault; an answer too large to hold; a key created over a deleted one;
 * an AppRole token renewed before it runs out, and replaced by a fresh
 * login (the old one revoked) when renewal fails or Vault says it
 * expired, but not when a policy denies the path; a slow or failing
 * renewal that leaves the lookup its time; threads sharing a backend
 * over kept-alive connections.  Every key here contains "SECRET", and no
 * message may.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include <keyway/keyway.h>

#include "testutil.h"

#define ROOT "hvs.unit-root-SECRET-token-01"
#define K_ACME "sk-ant-SECRET-vault-acme-00001"
#define K_ACME2 "sk-ant-SECRET-vault-acme-00002"
#define K_LATE "sk-ant-SECRET-vault-late-00003"
#define ROLE_ID "role-SECRET-id-0001"
#define SECRET_ID "secret-SECRET-id-0001"

static char *dir;      /* certificates, token files */
static char *addr;     /* https://127.0.0.1:PORT */
static char *ca;
static pid_t double_pid;

/* ---- the stand-in ---- */

struct buf {
	char *p;
	size_t len;
};

static size_t take(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	char *grown = realloc(b->p, b->len + size * n + 1);

	if (grown == NULL)
		return 0;
	b->p = grown;
	memcpy(b->p + b->len, data, size * n);
	b->len += size * n;
	b->p[b->len] = '\0';
	return size * n;
}

/* METHOD ADDR/PATH with body (or NULL): the answer, kept. */
static char *call(const char *method, const char *path, const char *body,
		  const char *token)
{
	struct buf b = { NULL, 0 };
	struct curl_slist *h = NULL;
	char *url = tu_fmt("%s/%s", addr, path);
	CURL *c = curl_easy_init();
	char *tok = token != NULL ? tu_fmt("X-Vault-Token: %s", token) : NULL;

	assert_non_null(c);
	h = curl_slist_append(h, "Content-Type: application/json");
	if (tok != NULL)
		h = curl_slist_append(h, tok);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (body != NULL)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	return tu_keep(b.p != NULL ? b.p : strdup(""));
}

static void ctl(const char *what, const char *json)
{
	call("POST", tu_fmt("__double/%s", what), json, NULL);
}

static void forget(void)
{
	call("DELETE", "__double/requests", NULL, NULL);
}

static void no_faults(void)
{
	ctl("fault", "{\"sealed\": false, \"delay_ms\": 0, \"renew_fail\": null, "
	    "\"clear_rules\": true}");
}

/* Requests of the log whose method is method and whose path matches the
 * extended regular expression re. */
static int count(const char *method, const char *re)
{
	json_t *log = json_loads(call("GET", "__double/requests", NULL, NULL),
				 0, NULL);
	json_t *r;
	regex_t rx;
	size_t i;
	int n = 0;

	assert_non_null(log);
	assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
	json_array_foreach(json_object_get(log, "requests"), i, r) {
		const char *m = json_string_value(json_object_get(r, "method"));
		const char *p = json_string_value(json_object_get(r, "path"));

		if (m != NULL && p != NULL && strcmp(m, method) == 0 &&
		    regexec(&rx, p, 0, NULL, 0) == 0)
			n++;
	}
	regfree(&rx);
	json_decref(log);
	return n;
}

static int connections(void)
{
	json_t *log = json_loads(call("GET", "__double/requests", NULL, NULL),
				 0, NULL);
	int n = (int)json_integer_value(json_object_get(log, "connections"));

	json_decref(log);
	return n;
}

static void seed(const char *owner, const char *value)
{
	ctl("seed", tu_fmt("{\"mount\": \"secret\", \"path\": "
			   "\"keyway/org/%s/anthropic\", \"data\": "
			   "{\"api_key\": \"%s\"}}", owner, value));
}

static int start_double(void **state)
{
	const char *src = getenv("KEYWAY_SRCDIR");
	char *port_file, *cmd, *port;

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (src == NULL)
		return -1;
	dir = tu_tmpdir();
	cmd = tu_fmt("sh %s/tests/vault/mkcerts.sh %s/certs", src, dir);
	if (system(cmd) != 0)
		return -1;
	ca = strdup(tu_join(dir, "certs/ca.pem"));
	port_file = strdup(tu_join(dir, "port"));
	double_pid = fork();
	if (double_pid == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(127);
		execl("/usr/bin/python3", "python3",
		      tu_fmt("%s/tests/vault/vault_double.py", src), "--cert",
		      tu_join(dir, "certs/server.pem"), "--key",
		      tu_join(dir, "certs/server.key"), "--port-file",
		      port_file, "--root-token", ROOT, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		port = tu_slurp(port_file, NULL);
		if (port != NULL && port[0] != '\0') {
			addr = strdup(tu_fmt("https://127.0.0.1:%d", atoi(port)));
			break;
		}
		usleep(100000);
	}
	free(port_file);
	free(tu_write(dir, "token", 0600, "%s\n", ROOT));
	free(tu_write(dir, "role_id", 0600, "%s\n", ROLE_ID));
	free(tu_write(dir, "secret_id", 0600, "%s\n", SECRET_ID));
	tu_release(0);
	return addr != NULL ? 0 : -1;
}

static int stop_double(void **state)
{
	(void)state;
	if (double_pid > 0) {
		kill(double_pid, SIGTERM);
		waitpid(double_pid, NULL, 0);
	}
	free(addr);
	free(ca);
	tu_rmrf(dir);
	curl_global_cleanup();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_release(0);
	return 0;
}

/* ---- configurations ---- */

/* A vault backend "v" for org keys, with `extra` settings, token auth
 * unless extra has an auth group. */
static kw_ctx *open_vault(const char *extra, char **cdir)
{
	kw_ctx *ctx = NULL;
	const char *text = tu_fmt(
		"backends: {\n"
		"  v: { module = \"vault\"; address = \"%s\"; scope = \"org\";\n"
		"       ca_file = \"%s\"; timeout_ms = 3000; %s %s };\n"
		"};\n"
		"chains: { default = ( { backend = \"v\"; "
		"control = \"required\"; } ); };\n",
		addr, ca, strstr(extra, "auth") != NULL ? "" :
		tu_fmt("auth = { method = \"token\"; token_file = \"%s\"; };",
		       tu_join(dir, "token")), extra);
	kw_status rc = tu_open(&ctx, text, cdir);

	if (rc != KW_OK)
		print_error("kw_open: %s\n", kw_last_error());
	assert_int_equal(rc, KW_OK);
	return ctx;
}

static kw_status get(kw_ctx *ctx, const char *org, char *value, size_t len)
{
	kw_status rc = tu_resolve(ctx, NULL, "anthropic", NULL, org, value, len,
				  NULL, 0);

	tu_assert_no_secret(kw_last_error());
	return rc;
}

static void expect_key(kw_ctx *ctx, const char *org, const char *want)
{
	char value[128] = "";

	assert_int_equal(get(ctx, org, value, sizeof(value)), KW_OK);
	assert_string_equal(value, want);
}

static void expect_status(kw_ctx *ctx, const char *org, kw_status want)
{
	char value[128] = "";

	assert_int_equal(get(ctx, org, value, sizeof(value)), want);
}

static const char *data_re(const char *owner)
{
	return tu_fmt("secret/data/keyway/org/%s/anthropic$", owner);
}

/* ---- the cache ---- */

static void test_cache_hit(void **state)
{
	char *cdir = NULL, value[128];
	struct timespec a, b;
	kw_ctx *ctx;
	double us;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	ctx = open_vault("cache_ttl = 30;", &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("GET", data_re("acme")), 1);
	/* A hot key costs microseconds, not a round trip. */
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(get(ctx, "acme", value, sizeof(value)), KW_OK);
	clock_gettime(CLOCK_MONOTONIC, &b);
	us = ((double)(b.tv_sec - a.tv_sec) * 1e9 +
	      (double)(b.tv_nsec - a.tv_nsec)) / 1e3 / 2000;
	print_message("# a cached lookup: %.1f us\n", us);
	assert_true(us < 500);
	assert_int_equal(count("GET", data_re("acme")), 1);
	kw_close(ctx);
	tu_rmrf(cdir);
}

static void test_cache_expiry(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	ctx = open_vault("cache_ttl = 1;", &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("GET", data_re("acme")), 1);
	/* Changed behind keyway's back: seen once the entry runs out. */
	seed("acme", K_ACME2);
	expect_key(ctx, "acme", K_ACME);
	usleep(1200 * 1000);
	expect_key(ctx, "acme", K_ACME2);
	assert_int_equal(count("GET", data_re("acme")), 2);
	kw_close(ctx);
	tu_rmrf(cdir);
}

static void test_cache_off(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;
	int before;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	ctx = open_vault("cache_ttl = 0;", &cdir);
	forget();
	before = connections();
	for (int i = 0; i < 3; i++)
		expect_key(ctx, "acme", K_ACME);
	/* ... over one kept-alive connection (and one for asking). */
	assert_int_equal(connections() - before, 1 + 1);
	assert_int_equal(count("GET", data_re("acme")), 3);
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* A kept-alive connection the server dropped after answering (its idle
 * timeout struck): the next lookup makes a new one. */
static void test_dropped_connection(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	ctx = open_vault("cache_ttl = 0; retries = 0;", &cdir);
	ctl("fault", tu_fmt("{\"rules\": [{\"path\": \"%s\", \"method\": "
			    "\"GET\", \"close_after\": true, \"count\": -1}]}",
			    data_re("acme")));
	for (int i = 0; i < 3; i++)
		expect_key(ctx, "acme", K_ACME);
	no_faults();
	kw_close(ctx);
	tu_rmrf(cdir);
}

/*
 * The kept-alive connection to Vault is not inherited by programs the
 * application runs.  (libcurl 7.88's own wake-up socketpair is not
 * close-on-exec; it leads nowhere, and is not looked at here.)
 */
static void test_socket_cloexec(void **state)
{
	char *cdir = NULL;
	int sockets = 0;
	kw_ctx *ctx;
	DIR *d;
	struct dirent *e;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	ctx = open_vault("cache_ttl = 0;", &cdir);
	expect_key(ctx, "acme", K_ACME);
	d = opendir("/proc/self/fd");
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name), domain = 0;
		socklen_t len = sizeof(domain);

		if (e->d_name[0] == '.' || fd == dirfd(d) ||
		    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 ||
		    (domain != AF_INET && domain != AF_INET6))
			continue;
		sockets++;
		assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	}
	closedir(d);
	assert_true(sockets >= 1);
	kw_close(ctx);
	tu_rmrf(cdir);
}

static void test_miss_not_cached(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	ctx = open_vault("cache_ttl = 30;", &cdir);
	expect_status(ctx, "late", KW_ERR_NOTFOUND);
	seed("late", K_LATE);
	expect_key(ctx, "late", K_LATE);
	kw_close(ctx);
	tu_rmrf(cdir);
}

static void test_cache_dropped_by_keyway(void **state)
{
	kw_key_ref r = KW_KEY_REF_INIT;
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("drop", K_ACME);
	ctx = open_vault("cache_ttl = 300;", &cdir);
	r.backend = "v";
	r.owner = "drop";
	r.provider = "anthropic";
	expect_key(ctx, "drop", K_ACME);
	assert_int_equal(kw_key_set_active(ctx, tu_sysadmin(), &r, 0), KW_OK);
	expect_status(ctx, "drop", KW_ERR_DENIED);
	assert_int_equal(kw_key_set_active(ctx, tu_sysadmin(), &r, 1), KW_OK);
	expect_key(ctx, "drop", K_ACME);
	assert_int_equal(kw_key_put(ctx, tu_sysadmin(), &r, K_ACME2,
				    strlen(K_ACME2), NULL, KW_PUT_ROTATE),
			 KW_OK);
	expect_key(ctx, "drop", K_ACME2);
	assert_int_equal(kw_key_delete(ctx, tu_sysadmin(), &r), KW_OK);
	expect_status(ctx, "drop", KW_ERR_NOTFOUND);
	kw_close(ctx);
	tu_rmrf(cdir);
}

struct racer {
	kw_ctx *ctx;
	kw_status rc;
};

static void *race_lookup(void *arg)
{
	struct racer *x = arg;
	char value[128];

	x->rc = tu_resolve(x->ctx, NULL, "anthropic", NULL, "race", value,
			   sizeof(value), NULL, 0);
	return NULL;
}

/* A lookup that asked Vault before a disable and got its answer after
 * does not keep the old answer in the cache. */
static void test_cache_race_disable(void **state)
{
	kw_key_ref r = KW_KEY_REF_INIT;
	struct racer x;
	pthread_t t;
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("race", K_ACME);
	ctx = open_vault("cache_ttl = 300;", &cdir);
	r.backend = "v";
	r.owner = "race";
	r.provider = "anthropic";
	ctl("fault", tu_fmt("{\"rules\": [{\"path\": \"%s\", \"method\": "
			    "\"GET\", \"delay_after_ms\": 800}]}",
			    data_re("race")));
	x = (struct racer){ ctx, KW_ERR_INTERNAL };
	assert_int_equal(pthread_create(&t, NULL, race_lookup, &x), 0);
	usleep(300 * 1000);
	assert_int_equal(kw_key_set_active(ctx, tu_sysadmin(), &r, 0), KW_OK);
	pthread_join(t, NULL);
	/* It started before the disable: either answer is right for it. */
	assert_true(x.rc == KW_OK || x.rc == KW_ERR_DENIED);
	expect_status(ctx, "race", KW_ERR_DENIED);
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* An answer larger than the module reads (VAULT_BODY_MAX, 8 MiB) is an
 * error said in one line, not a passing trouble asked again. */
static void test_answer_too_large(void **state)
{
	size_t n = (9u << 20) + 100;
	char *rule = malloc(n + 200), *p;
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	assert_non_null(rule);
	no_faults();
	seed("huge", K_ACME);
	p = rule + sprintf(rule, "{\"rules\": [{\"path\": \"%s\", "
			   "\"status\": 200, \"raw\": \"", data_re("huge"));
	memset(p, 'a', 9u << 20);
	strcpy(p + (9u << 20), "\"}]}");
	ctl("fault", rule);
	free(rule);
	ctx = open_vault("cache_ttl = 0; retries = 2;", &cdir);
	forget();
	expect_status(ctx, "huge", KW_ERR_BACKEND);
	assert_non_null(strstr(kw_last_error(), "larger than"));
	assert_int_equal(count("GET", data_re("huge")), 1);
	no_faults();
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* A key created where a KV v2 secret was deleted (its metadata kept)
 * does not take the deleted key's name. */
static void test_create_over_deleted(void **state)
{
	kw_key_ref r = KW_KEY_REF_INIT;
	char *cdir = NULL, *meta;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	ctx = open_vault("cache_ttl = 0;", &cdir);
	r.backend = "v";
	r.owner = "reborn";
	r.provider = "anthropic";
	assert_int_equal(kw_key_put(ctx, tu_sysadmin(), &r, K_ACME,
				    strlen(K_ACME), "old-name", KW_PUT_CREATE),
			 KW_OK);
	call("DELETE", "v1/secret/data/keyway/org/reborn/anthropic", NULL,
	     ROOT);
	assert_int_equal(kw_key_put(ctx, tu_sysadmin(), &r, K_ACME2,
				    strlen(K_ACME2), NULL, KW_PUT_CREATE),
			 KW_OK);
	expect_key(ctx, "reborn", K_ACME2);
	meta = call("GET", "v1/secret/metadata/keyway/org/reborn/anthropic",
		    NULL, ROOT);
	assert_non_null(strstr(meta, "keyway_active"));
	assert_null(strstr(meta, "old-name"));
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* ---- AppRole ---- */

static const char *approle_conf(void)
{
	return tu_fmt("cache_ttl = 0; auth = { method = \"approle\"; "
		      "role_id_file = \"%s\"; secret_id_file = \"%s\"; };",
		      tu_join(dir, "role_id"), tu_join(dir, "secret_id"));
}

static void make_role_max(int ttl, int max_ttl)
{
	ctl("policy", "{\"name\": \"kw\", \"policy\": {\"path\": {"
		      "\"secret/*\": {\"capabilities\": [\"create\", \"read\", "
		      "\"update\", \"delete\", \"list\"]}}}}");
	ctl("approle", tu_fmt("{\"name\": \"kw\", \"role_id\": \"%s\", "
			      "\"secret_id\": \"%s\", \"policies\": [\"kw\"], "
			      "\"token_ttl\": %d, \"token_max_ttl\": %d}",
			      ROLE_ID, SECRET_ID, ttl, max_ttl));
}

static void make_role(int ttl)
{
	make_role_max(ttl, 3600);
}

static void test_approle_renewal(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	if (getenv("KEYWAY_VALGRIND") != NULL) {
		/* Its steps are timed against a TTL of 3 s, which a program
		 * 20 times slower misses. */
		print_message("under valgrind, too slow for its timed steps: "
			      "not run\n");
		return;
	}
	no_faults();
	seed("acme", K_ACME);
	make_role(3);
	ctx = open_vault(approle_conf(), &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/approle/login$"), 1);
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/token/renew-self$"), 0);
	/* Two thirds of the TTL gone: renewed, not logged in again. */
	usleep(2200 * 1000);
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/token/renew-self$"), 1);
	assert_int_equal(count("POST", "auth/approle/login$"), 1);
	/* Past the token's first TTL: the renewed token still serves. */
	usleep(1500 * 1000);
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/approle/login$"), 1);
	kw_close(ctx);
	tu_rmrf(cdir);
}

static void test_approle_renewal_fails(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	make_role(3);
	ctx = open_vault(approle_conf(), &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	ctl("fault", "{\"renew_fail\": {\"status\": 403}}");
	usleep(2200 * 1000);
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/token/renew-self$"), 1);
	assert_int_equal(count("POST", "auth/approle/login$"), 2);
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* A renewal that hangs takes a share of the lookup's time, not all of
 * it: the token is still valid, and the lookup is served with it. */
static void test_approle_renewal_slow(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	make_role(6);
	ctx = open_vault(approle_conf(), &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	usleep(4100 * 1000);
	ctl("fault", "{\"rules\": [{\"path\": \"auth/token/renew-self$\", "
		     "\"delay_ms\": 3300}]}");
	expect_key(ctx, "acme", K_ACME);
	/* The stand-in logs the renewal once it answers. */
	usleep(2500 * 1000);
	assert_int_equal(count("POST", "auth/token/renew-self$"), 1);
	assert_int_equal(count("POST", "auth/approle/login$"), 1);
	no_faults();
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* Renewal and login both fail while the token is valid: the token
 * serves, and the next lookups do not try again at once. */
static void test_approle_renewal_fails_backoff(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	make_role(3);
	ctx = open_vault(approle_conf(), &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	ctl("fault", "{\"renew_fail\": {\"status\": 403}, \"rules\": [{"
		     "\"path\": \"auth/approle/login$\", \"status\": 400, "
		     "\"count\": -1}]}");
	usleep(2100 * 1000);
	for (int i = 0; i < 5; i++)
		expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/token/renew-self$"), 1);
	assert_int_equal(count("POST", "auth/approle/login$"), 2);
	no_faults();
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* A token with a TTL past any reckoning (2^62 s) is kept, not taken as
 * expired at once. */
static void test_approle_huge_ttl(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	make_role(600);
	ctl("approle", tu_fmt("{\"name\": \"kw\", \"role_id\": \"%s\", "
			      "\"secret_id\": \"%s\", \"policies\": [\"kw\"], "
			      "\"token_ttl\": 4611686018427387904, "
			      "\"token_max_ttl\": 4611686018427387904}",
			      ROLE_ID, SECRET_ID));
	ctx = open_vault(approle_conf(), &cdir);
	forget();
	for (int i = 0; i < 3; i++)
		expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/approle/login$"), 1);
	assert_int_equal(count("POST", "auth/token/renew-self$"), 0);
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* A token renewed up to its max TTL is replaced by a fresh login. */
static void test_approle_max_ttl(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	make_role_max(3, 4);
	ctx = open_vault(approle_conf(), &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	usleep(2300 * 1000);
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/token/renew-self$"), 1);
	assert_int_equal(count("POST", "auth/approle/login$"), 2);
	/* The replaced token, still valid for a moment, is revoked. */
	assert_int_equal(count("POST", "auth/token/revoke-self$"), 1);
	kw_close(ctx);
	tu_rmrf(cdir);
}

static void test_approle_expired_during_run(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	make_role(600);
	ctx = open_vault(approle_conf(), &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	/* Vault says the token is no good (revoked, expired early), and
	 * lookup-self says so too. */
	ctl("fault", tu_fmt("{\"rules\": [{\"path\": \"%s\", \"method\": "
			    "\"GET\", \"status\": 403, \"count\": 1}, "
			    "{\"path\": \"auth/token/lookup-self$\", "
			    "\"status\": 403, \"count\": 1}]}",
			    data_re("acme")));
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/approle/login$"), 2);
	assert_int_equal(count("GET", data_re("acme")), 3);
	/* A token method does not log in: a refused token is an error. */
	kw_close(ctx);
	tu_rmrf(cdir);
	ctx = open_vault("cache_ttl = 0;", &cdir);
	ctl("fault", tu_fmt("{\"rules\": [{\"path\": \"%s\", \"method\": "
			    "\"GET\", \"status\": 403, \"count\": 1}]}",
			    data_re("acme")));
	expect_status(ctx, "acme", KW_ERR_PERM);
	assert_non_null(strstr(kw_last_error(), "HTTP 403"));
	no_faults();
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* A 403 because the policy denies the path is not a bad token: no new
 * login for it. */
static void test_approle_policy_denies(void **state)
{
	char *cdir = NULL;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	seed("other", K_ACME2);
	ctl("policy", "{\"name\": \"acme-only\", \"policy\": {\"path\": {"
		      "\"secret/data/keyway/org/acme/*\": {\"capabilities\": "
		      "[\"read\"]}}}}");
	ctl("approle", tu_fmt("{\"name\": \"kw\", \"role_id\": \"%s\", "
			      "\"secret_id\": \"%s\", \"policies\": "
			      "[\"acme-only\"], \"token_ttl\": 600, "
			      "\"token_max_ttl\": 3600}", ROLE_ID, SECRET_ID));
	ctx = open_vault(tu_fmt("%s kv_version = 2;", approle_conf()), &cdir);
	forget();
	expect_key(ctx, "acme", K_ACME);
	for (int i = 0; i < 5; i++) {
		expect_status(ctx, "other", KW_ERR_PERM);
		assert_non_null(strstr(kw_last_error(), "HTTP 403"));
	}
	expect_key(ctx, "acme", K_ACME);
	assert_int_equal(count("POST", "auth/approle/login$"), 1);
	assert_int_equal(count("GET", "auth/token/lookup-self$"), 1);
	kw_close(ctx);
	tu_rmrf(cdir);
}

/* Credentials Vault refuses: one login a second at most, not one per
 * lookup. */
static void test_approle_bad_secret(void **state)
{
	char *cdir = NULL, *bad;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	make_role(600);
	bad = tu_write(dir, "bad_secret_id", 0600, "wrong-SECRET-id\n");
	ctx = open_vault(tu_fmt("cache_ttl = 0; auth = { method = "
				"\"approle\"; role_id_file = \"%s\"; "
				"secret_id_file = \"%s\"; };",
				tu_join(dir, "role_id"), bad), &cdir);
	forget();
	for (int i = 0; i < 5; i++)
		expect_status(ctx, "acme", KW_ERR_BACKEND);
	assert_non_null(strstr(kw_last_error(), "auth/approle/login: HTTP 400"));
	assert_int_equal(count("POST", "auth/approle/login$"), 1);
	usleep(1100 * 1000);
	expect_status(ctx, "acme", KW_ERR_BACKEND);
	assert_int_equal(count("POST", "auth/approle/login$"), 2);
	kw_close(ctx);
	tu_rmrf(cdir);
	free(bad);
}

/* A token file an agent rewrote while the program ran: read again when
 * Vault refuses the old token. */
static void test_token_file_replaced(void **state)
{
	char *cdir = NULL, *tok;
	kw_ctx *ctx;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	tok = tu_write(dir, "rotating-token", 0600, "hvs.unit-SECRET-stale\n");
	ctx = open_vault(tu_fmt("cache_ttl = 0; auth = { method = \"token\"; "
				"token_file = \"%s\"; };", tok), &cdir);
	expect_status(ctx, "acme", KW_ERR_PERM);
	free(tu_write(dir, "rotating-token", 0600, "%s\n", ROOT));
	expect_key(ctx, "acme", K_ACME);
	kw_close(ctx);
	tu_rmrf(cdir);
	free(tok);
}

/* ---- threads ---- */

struct worker {
	kw_ctx *ctx;
	int bad;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char value[128];

	for (int i = 0; i < 50; i++) {
		if (tu_resolve(w->ctx, NULL, "anthropic", NULL, "acme", value,
			       sizeof(value), NULL, 0) != KW_OK ||
		    strcmp(value, K_ACME) != 0)
			w->bad++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct worker w[6];
	pthread_t t[6];
	char *cdir = NULL;
	kw_ctx *ctx;
	int before, after;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	ctx = open_vault("cache_ttl = 0;", &cdir);
	before = connections();
	for (int i = 0; i < 6; i++) {
		w[i] = (struct worker){ ctx, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	/* 300 lookups over at most a handful of connections. */
	after = connections() - 1; /* this question's own */
	print_message("# 300 lookups from 6 threads: %d connections\n",
		      after - before);
	assert_true(after - before <= 6);
	kw_close(ctx);
	tu_rmrf(cdir);
}

struct timed {
	kw_ctx *ctx;
	int64_t until_ms;
	int bad, done;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *work_until(void *arg)
{
	struct timed *w = arg;
	char value[128];

	while (now_ms() < w->until_ms) {
		if (tu_resolve(w->ctx, NULL, "anthropic", NULL, "acme", value,
			       sizeof(value), NULL, 0) != KW_OK ||
		    strcmp(value, K_ACME) != 0)
			w->bad++;
		w->done++;
	}
	return NULL;
}

/* Threads resolving while the AppRole token is renewed under them, and
 * once refused: every lookup finds the key. */
static void test_threads_approle(void **state)
{
	struct timed w[4];
	pthread_t t[4];
	char *cdir = NULL;
	kw_ctx *ctx;
	int done = 0;

	(void)state;
	no_faults();
	seed("acme", K_ACME);
	make_role(2);
	ctx = open_vault(approle_conf(), &cdir);
	forget();
	for (int i = 0; i < 4; i++) {
		w[i] = (struct timed){ ctx, now_ms() + 2600, 0, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, work_until, &w[i]),
				 0);
	}
	usleep(300 * 1000);
	ctl("fault", tu_fmt("{\"rules\": [{\"path\": \"%s\", \"method\": "
			    "\"GET\", \"status\": 403, \"count\": 1}, "
			    "{\"path\": \"auth/token/lookup-self$\", "
			    "\"status\": 403, \"count\": 1}]}",
			    data_re("acme")));
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
		done += w[i].done;
	}
	print_message("# %d lookups from 4 threads, %d logins, %d renewals\n",
		      done, count("POST", "auth/approle/login$"),
		      count("POST", "auth/token/renew-self$"));
	assert_true(count("POST", "auth/token/renew-self$") >= 1);
	/* One login at the start, one after the refusal: the other threads
	 * wait for them. */
	assert_int_equal(count("POST", "auth/approle/login$"), 2);
	kw_close(ctx);
	tu_rmrf(cdir);
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_cache_hit),
		T(test_cache_expiry),
		T(test_cache_off),
		T(test_dropped_connection),
		T(test_socket_cloexec),
		T(test_miss_not_cached),
		T(test_cache_dropped_by_keyway),
		T(test_cache_race_disable),
		T(test_answer_too_large),
		T(test_create_over_deleted),
		T(test_approle_renewal),
		T(test_approle_renewal_fails),
		T(test_approle_max_ttl),
		T(test_approle_huge_ttl),
		T(test_approle_renewal_slow),
		T(test_approle_renewal_fails_backoff),
		T(test_approle_expired_during_run),
		T(test_approle_policy_denies),
		T(test_token_file_replaced),
		T(test_approle_bad_secret),
		T(test_threads),
		T(test_threads_approle),
	};

	if (access("/usr/bin/python3", X_OK) != 0) {
		printf("1..0 # SKIP /usr/bin/python3 runs the Vault stand-in\n");
		return 0;
	}
	return cmocka_run_group_tests(tests, start_double, stop_double);
}
