/*
 * auth.c - the token sent to Vault.
 *
 * method "token": from token_file (opened as a private file, as OpenSSH
 * opens a key) or, without one, from VAULT_TOKEN.  A token refused with
 * 403 is read again from its file, in case an agent replaced it.
 *
 * method "approle": a login with role_id and secret_id (each from a
 * private file) on first use; the token is renewed through
 * auth/token/renew-self once two thirds of its TTL have passed, and a
 * fresh login replaces it when renewal fails or Vault refuses it.  No
 * lock is held while Vault is asked: one thread renews (`busy`) while the
 * others go on with the token, which is still valid.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* secure_getenv() */
#endif
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vault.h"

/* Tokens, role and secret ids are visible ASCII: they go into a header
 * or a JSON string, and a newline would split the header. */
static bool printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return len > 0;
}

/*
 * Read a private file of one line into buf (VAULT_TOKEN_MAX bytes of
 * secure memory), without its trailing newline.  During open() (inst
 * set) refusals go through host->error() on `setting`; later, into why.
 */
static kw_status read_secret_file(struct vault_state *st, const char *setting,
				  const char *path, char *buf, bool at_open,
				  char *why, size_t whylen)
{
	const kw_host *host = st->host;
	size_t len = 0;
	kw_status rc;
	ssize_t n;
	int fd = -1;

	why[0] = '\0';
	if (at_open) {
		rc = host->open_private(st->inst, setting, path, &fd);
		if (rc == KW_ERR_NOTFOUND)
			snprintf(why, whylen, "%s does not exist", path);
		else if (rc != KW_OK)
			return rc; /* reported */
	} else {
		rc = host->reopen_private(path, &fd, why, whylen);
	}
	if (rc != KW_OK)
		goto out;
	while (len < VAULT_TOKEN_MAX) {
		n = read(fd, buf + len, VAULT_TOKEN_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, whylen, "cannot read %s: %s", path,
				 strerror(errno));
			rc = KW_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
			   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	if (len >= VAULT_TOKEN_MAX) {
		snprintf(why, whylen, "%s is longer than %d bytes: it must "
			 "hold one line", path, VAULT_TOKEN_MAX - 1);
		rc = KW_ERR_CONFIG;
	} else if (!printable(buf, len)) {
		snprintf(why, whylen, "%s must hold one line of visible "
			 "ASCII characters, and nothing else", path);
		rc = KW_ERR_CONFIG;
	}
out:
	if (rc != KW_OK)
		host->wipe(buf, VAULT_TOKEN_MAX);
	else
		buf[len] = '\0';
	if (fd >= 0)
		close(fd);
	if (rc != KW_OK && at_open && why[0] != '\0')
		host->error(st->inst, "auth", "%s: %s", setting, why);
	return rc == KW_ERR_NOTFOUND ? KW_ERR_CONFIG : rc;
}

static char *secret_buf(const kw_host *host)
{
	char *p = host->secure_alloc(VAULT_TOKEN_MAX);

	if (p != NULL)
		p[0] = '\0';
	return p;
}

static void free_buf(const kw_host *host, char *p)
{
	if (p == NULL)
		return;
	host->wipe(p, VAULT_TOKEN_MAX);
	host->secure_free(p, VAULT_TOKEN_MAX);
}

/* auth.NAME, which must be an absolute path (the host makes only
 * top-level paths absolute). */
static kw_status auth_path(struct vault_state *st, const char *name,
			   const char *value, const char **out)
{
	if (value[0] != '/') {
		st->host->error(st->inst, "auth", "auth.%s must be an absolute "
				"path, not \"%s\"", name, value);
		return KW_ERR_CONFIG;
	}
	*out = value;
	return KW_OK;
}

kw_status vault_auth_open(struct vault_state *st)
{
	const kw_host *host = st->host;
	struct vault_auth *a = &st->auth;
	const char *name, *value, *method = "token";
	char why[VAULT_WHY];
	kw_status rc;

	a->approle_mount = "approle";
	a->token = secret_buf(host);
	if (a->token == NULL) {
		host->error(st->inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	for (size_t i = 0;; i++) {
		rc = host->setting_map(st->inst, "auth", i, &name, &value);
		if (rc == KW_ERR_NOTFOUND)
			break;
		if (rc != KW_OK) {
			host->error(st->inst, "auth", "cannot read the setting");
			return rc;
		}
		if (strcmp(name, "method") == 0)
			method = value;
		else if (strcmp(name, "token_file") == 0)
			rc = auth_path(st, name, value, &a->token_file);
		else if (strcmp(name, "role_id_file") == 0)
			rc = auth_path(st, name, value, &a->role_id_file);
		else if (strcmp(name, "secret_id_file") == 0)
			rc = auth_path(st, name, value, &a->secret_id_file);
		else if (strcmp(name, "mount") == 0)
			a->approle_mount = value;
		else {
			host->error(st->inst, "auth", "unknown setting auth.%s "
				    "(auth takes method, token_file, "
				    "role_id_file, secret_id_file, mount)",
				    name);
			rc = KW_ERR_CONFIG;
		}
		if (rc != KW_OK)
			return rc;
	}
	if (strcmp(method, "token") == 0) {
		a->method = VAULT_AUTH_TOKEN;
		if (a->role_id_file != NULL || a->secret_id_file != NULL) {
			host->error(st->inst, "auth", "role_id_file and "
				    "secret_id_file belong to method = "
				    "\"approle\"");
			return KW_ERR_CONFIG;
		}
		if (a->token_file != NULL)
			return read_secret_file(st, "auth.token_file",
						a->token_file, a->token, true,
						why, sizeof(why));
		value = secure_getenv("VAULT_TOKEN");
		if (value == NULL || value[0] == '\0') {
			host->error(st->inst, "auth", "no Vault token: set "
				    "auth.token_file, or VAULT_TOKEN in the "
				    "environment");
			return KW_ERR_CONFIG;
		}
		if (strlen(value) >= VAULT_TOKEN_MAX ||
		    !printable(value, strlen(value))) {
			host->error(st->inst, "auth", "VAULT_TOKEN must be one "
				    "line of visible ASCII characters");
			return KW_ERR_CONFIG;
		}
		strcpy(a->token, value);
		return KW_OK;
	}
	if (strcmp(method, "approle") != 0) {
		host->error(st->inst, "auth", "auth.method must be \"token\" "
			    "or \"approle\", not \"%s\"", method);
		return KW_ERR_CONFIG;
	}
	a->method = VAULT_AUTH_APPROLE;
	if (a->token_file != NULL) {
		host->error(st->inst, "auth", "token_file belongs to method = "
			    "\"token\"; an AppRole login makes its own token");
		return KW_ERR_CONFIG;
	}
	if (a->role_id_file == NULL || a->secret_id_file == NULL) {
		host->error(st->inst, "auth", "method = \"approle\" needs "
			    "role_id_file and secret_id_file");
		return KW_ERR_CONFIG;
	}
	if (a->approle_mount[0] == '\0' || strlen(a->approle_mount) > 64 ||
	    strchr(a->approle_mount, '/') ||
	    strcmp(a->approle_mount, ".") == 0 ||
	    strcmp(a->approle_mount, "..") == 0 ||
	    !printable(a->approle_mount, strlen(a->approle_mount))) {
		host->error(st->inst, "auth", "auth.mount must be the name of "
			    "an auth mount, such as \"approle\"");
		return KW_ERR_CONFIG;
	}
	a->role_id = secret_buf(host);
	a->secret_id = secret_buf(host);
	a->approle_mount_esc = vault_escape(a->approle_mount,
					    strlen(a->approle_mount));
	if (a->role_id == NULL || a->secret_id == NULL ||
	    a->approle_mount_esc == NULL) {
		host->error(st->inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	rc = read_secret_file(st, "auth.role_id_file", a->role_id_file,
			      a->role_id, true, why, sizeof(why));
	if (rc == KW_OK)
		rc = read_secret_file(st, "auth.secret_id_file",
				      a->secret_id_file, a->secret_id, true,
				      why, sizeof(why));
	return rc;
}

void vault_auth_free(struct vault_state *st)
{
	struct vault_auth *a = &st->auth;

	free_buf(st->host, a->token);
	free_buf(st->host, a->role_id);
	free_buf(st->host, a->secret_id);
	free(a->approle_mount_esc);
	a->token = a->role_id = a->secret_id = a->approle_mount_esc = NULL;
}

/* Take the token out of an auth answer: copied into buf; *ttl seconds. */
static kw_status token_of(const struct vault_resp *resp, char *buf,
			  int64_t *ttl, bool *renewable)
{
	json_t *auth = json_object_get(resp->json, "auth");
	json_t *tok = json_object_get(auth, "client_token");
	json_t *dur = json_object_get(auth, "lease_duration");

	if (!json_is_string(tok) ||
	    json_string_length(tok) >= VAULT_TOKEN_MAX ||
	    !printable(json_string_value(tok), json_string_length(tok)))
		return KW_ERR_BACKEND;
	memcpy(buf, json_string_value(tok), json_string_length(tok) + 1);
	*ttl = json_is_integer(dur) ? json_integer_value(dur) : 0;
	*renewable = json_is_true(json_object_get(auth, "renewable"));
	return KW_OK;
}

static void set_times(struct vault_auth *a, int64_t ttl, bool renewable)
{
	int64_t now = vault_now_ms();

	a->renewable = renewable;
	if (ttl <= 0) {
		a->renew_at_ms = a->expires_ms = 0;
		return;
	}
	if (ttl > VAULT_TTL_MAX)
		ttl = VAULT_TTL_MAX;
	a->expires_ms = now + ttl * 1000;
	a->renew_at_ms = now + ttl * 1000 * 2 / 3;
}

/* AppRole login; the new token installed. */
static kw_status login(struct vault_state *st, int64_t deadline_ms, char *why,
		       size_t whylen)
{
	const kw_host *host = st->host;
	struct vault_auth *a = &st->auth;
	struct vault_resp resp = { 0 };
	char path[300], *body = NULL, *fresh = secret_buf(host);
	size_t len = 0;
	bool renewable = false;
	int64_t ttl = 0;
	json_t *req;
	kw_status rc;

	snprintf(path, sizeof(path), "auth/%s/login", a->approle_mount_esc);
	/* jansson copies role_id and secret_id: freed at once, not
	 * wiped. */
	req = json_pack("{s:s, s:s}", "role_id", a->role_id, "secret_id",
			a->secret_id);
	if (req == NULL || fresh == NULL) {
		json_decref(req);
		rc = KW_ERR_NOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	rc = vault_body(host, req, &body, &len);
	json_decref(req);
	if (rc != KW_OK) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	rc = vault_http(st, "POST", path, body, len, NULL, deadline_ms, &resp,
			why, whylen);
	if (rc == KW_ERR_NOTFOUND)
		rc = KW_ERR_CONFIG; /* no such auth mount */
	if (rc != KW_OK)
		goto out;
	rc = token_of(&resp, fresh, &ttl, &renewable);
	if (rc != KW_OK) {
		snprintf(why, whylen, "Vault POST %s: HTTP %ld without a "
			 "usable auth.client_token", path, resp.status);
		goto out;
	}
	pthread_mutex_lock(&a->lock);
	memcpy(a->token, fresh, VAULT_TOKEN_MAX);
	a->gen++;
	set_times(a, ttl, renewable);
	pthread_mutex_unlock(&a->lock);
	host->log(st->inst, KW_LOG_DEBUG, "logged in to Vault through %s "
		  "(token TTL %llds)", path, (long long)ttl);
out:
	vault_resp_free(host, &resp);
	vault_body_free(host, body, len);
	free_buf(host, fresh);
	return rc;
}

/* renew-self with token (of generation gen). */
static kw_status renew(struct vault_state *st, const char *token, uint64_t gen,
		       int64_t deadline_ms, char *why, size_t whylen)
{
	const kw_host *host = st->host;
	struct vault_auth *a = &st->auth;
	struct vault_resp resp = { 0 };
	char *fresh = secret_buf(host);
	bool renewable = false;
	int64_t ttl = 0;
	kw_status rc;

	if (fresh == NULL) {
		snprintf(why, whylen, "out of memory");
		return KW_ERR_NOMEM;
	}
	rc = vault_http(st, "POST", "auth/token/renew-self", "{}", 2, token,
			deadline_ms, &resp, why, whylen);
	if (rc == KW_OK)
		rc = token_of(&resp, fresh, &ttl, &renewable);
	/* Renewed no further: the token is at its max TTL, and a login
	 * makes a new one. */
	if (rc == KW_OK && ttl <= 1) {
		snprintf(why, whylen, "the token is at its max TTL (%llds "
			 "left)", (long long)ttl);
		rc = KW_ERR_BACKEND;
	}
	if (rc == KW_OK) {
		pthread_mutex_lock(&a->lock);
		if (a->gen == gen) {
			memcpy(a->token, fresh, VAULT_TOKEN_MAX);
			set_times(a, ttl, renewable);
		}
		pthread_mutex_unlock(&a->lock);
		host->log(st->inst, KW_LOG_DEBUG, "renewed the Vault token "
			  "(TTL %llds)", (long long)ttl);
	}
	vault_resp_free(host, &resp);
	free_buf(host, fresh);
	return rc;
}

/* A token a login replaced while it was still valid: revoked, so that
 * it does not outlive its use (when that fails, it runs out). */
static void revoke_old(struct vault_state *st, const char *token,
		       int64_t deadline_ms)
{
	struct vault_resp resp = { 0 };
	char why[VAULT_WHY];

	if (vault_http(st, "POST", "auth/token/revoke-self", "{}", 2, token,
		       deadline_ms, &resp, why, sizeof(why)) != KW_OK)
		st->host->log(st->inst, KW_LOG_DEBUG, "cannot revoke the "
			      "Vault token a login replaced: %s", why);
	vault_resp_free(st->host, &resp);
}

kw_status vault_auth_token(struct vault_state *st, int64_t deadline_ms,
			   char *buf, uint64_t *gen, char *why, size_t whylen)
{
	struct vault_auth *a = &st->auth;
	bool need_login, need_renew, mine = false, valid, renewable;
	int64_t now = vault_now_ms(), aux_dl;
	char rwhy[VAULT_WHY];
	kw_status rc;

	pthread_mutex_lock(&a->lock);
	if (a->method == VAULT_AUTH_TOKEN) {
		memcpy(buf, a->token, VAULT_TOKEN_MAX);
		*gen = a->gen;
		pthread_mutex_unlock(&a->lock);
		return KW_OK;
	}
	for (;;) {
		valid = a->token[0] != '\0' &&
			(a->expires_ms == 0 || now + 500 < a->expires_ms);
		need_login = !valid;
		need_renew = valid && a->renew_at_ms != 0 &&
			     now >= a->renew_at_ms;
		if (need_login && a->failed_ms != 0 &&
		    now < a->failed_ms + VAULT_LOGIN_HOLDOFF_MS) {
			rc = a->failed_rc;
			snprintf(why, whylen, "%s (a login failed %lld ms ago; "
				 "not tried again yet)", a->failed_why,
				 (long long)(now - a->failed_ms));
			pthread_mutex_unlock(&a->lock);
			return rc;
		}
		if (!need_login || !a->busy)
			break;
		/* No token, and another thread is logging in: wait for its
		 * token rather than log in too (a hundred threads starting
		 * at once make one login).  The lock is not held meanwhile. */
		if (now >= deadline_ms ||
		    pthread_cond_timedwait(&a->done, &a->lock,
					   &(struct timespec){
						   (time_t)(deadline_ms / 1000),
						   (long)(deadline_ms % 1000) *
							   1000000 }) != 0) {
			if (a->busy && vault_now_ms() >= deadline_ms) {
				pthread_mutex_unlock(&a->lock);
				snprintf(why, whylen, "no Vault token within "
					 "timeout_ms = %lld: a login under way "
					 "did not end",
					 (long long)st->timeout_ms);
				return KW_ERR_UNAVAIL;
			}
		}
		now = vault_now_ms();
	}
	if ((need_login || need_renew) && !a->busy)
		a->busy = mine = true;
	renewable = a->renewable;
	memcpy(buf, a->token, VAULT_TOKEN_MAX);
	*gen = a->gen;
	pthread_mutex_unlock(&a->lock);
	/* Another thread renews: this one goes on with a valid token. */
	if (!need_login && !mine)
		return KW_OK;
	/* A token still valid leaves the request it is wanted for most of
	 * the time: renewal and a login have a share of it. */
	aux_dl = deadline_ms;
	if (valid && deadline_ms - now > 0)
		aux_dl = now + (deadline_ms - now) * VAULT_RENEW_SHARE / 100;
	rc = KW_ERR_UNAVAIL;
	if (need_renew && renewable)
		rc = renew(st, buf, *gen, aux_dl, rwhy, sizeof(rwhy));
	if (need_renew && rc != KW_OK)
		st->host->log(st->inst, KW_LOG_INFO, "cannot renew the Vault "
			      "token (%s): logging in again",
			      renewable ? rwhy : "it is not renewable");
	if (rc != KW_OK) {
		rc = login(st, aux_dl, why, whylen);
		if (rc == KW_OK && valid)
			revoke_old(st, buf, aux_dl);
	}
	pthread_mutex_lock(&a->lock);
	if (mine) {
		a->busy = false;
		pthread_cond_broadcast(&a->done);
	}
	/* Remembered for a moment, so that a program with bad
	 * credentials does not send Vault a login per lookup. */
	if (rc != KW_OK && !valid && rc != KW_ERR_UNAVAIL) {
		a->failed_ms = vault_now_ms();
		a->failed_rc = rc;
		snprintf(a->failed_why, sizeof(a->failed_why), "%s", why);
	} else if (rc == KW_OK) {
		a->failed_ms = 0;
	}
	/* A failed login leaves a token that has not run out usable, and
	 * the next try waits till half its time is gone, so that lookups
	 * do not each renew and log in again. */
	if (rc != KW_OK && valid) {
		now = vault_now_ms();
		if (a->gen == *gen && a->expires_ms > now)
			a->renew_at_ms = now + (a->expires_ms - now) / 2;
		st->host->log(st->inst, KW_LOG_WARNING, "%s; the current "
			      "token is used until it expires", why);
		rc = KW_OK;
	}
	memcpy(buf, a->token, VAULT_TOKEN_MAX);
	*gen = a->gen;
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/*
 * Whether token gen is one Vault still takes: auth/token/lookup-self
 * answers 200 (remembered for VAULT_CHECK_MS, so that lookups of a path
 * the policy denies do not each ask).
 */
static bool token_good(struct vault_state *st, uint64_t gen,
		       int64_t deadline_ms)
{
	const kw_host *host = st->host;
	struct vault_auth *a = &st->auth;
	struct vault_resp resp = { 0 };
	char why[VAULT_WHY], *tok;
	int64_t now = vault_now_ms();
	kw_status rc;

	pthread_mutex_lock(&a->lock);
	if (a->gen != gen) {
		/* Already replaced: the new token is worth a try. */
		pthread_mutex_unlock(&a->lock);
		return false;
	}
	if (a->checked_ms != 0 && a->checked_gen == gen &&
	    now < a->checked_ms + VAULT_CHECK_MS) {
		pthread_mutex_unlock(&a->lock);
		return true;
	}
	tok = secret_buf(host);
	if (tok != NULL)
		memcpy(tok, a->token, VAULT_TOKEN_MAX);
	pthread_mutex_unlock(&a->lock);
	if (tok == NULL)
		return false;
	rc = vault_http(st, "GET", "auth/token/lookup-self", NULL, 0, tok,
			deadline_ms, &resp, why, sizeof(why));
	vault_resp_free(host, &resp);
	free_buf(host, tok);
	if (rc != KW_OK)
		return false;
	pthread_mutex_lock(&a->lock);
	if (a->gen == gen) {
		a->checked_gen = gen;
		a->checked_ms = vault_now_ms();
	}
	pthread_mutex_unlock(&a->lock);
	return true;
}

bool vault_auth_refused(struct vault_state *st, uint64_t gen,
			int64_t deadline_ms)
{
	struct vault_auth *a = &st->auth;
	char why[VAULT_WHY], *fresh;
	bool again = false;

	if (a->method == VAULT_AUTH_APPROLE) {
		if (token_good(st, gen, deadline_ms))
			return false;
		pthread_mutex_lock(&a->lock);
		if (a->gen == gen) {
			st->host->wipe(a->token, VAULT_TOKEN_MAX);
			a->gen++;
		}
		pthread_mutex_unlock(&a->lock);
		return true;
	}
	if (a->token_file == NULL)
		return false;
	/* A token file an agent rewrote since we read it. */
	fresh = secret_buf(st->host);
	if (fresh == NULL)
		return false;
	if (read_secret_file(st, "auth.token_file", a->token_file, fresh,
			     false, why, sizeof(why)) == KW_OK) {
		pthread_mutex_lock(&a->lock);
		if (strcmp(fresh, a->token) != 0) {
			memcpy(a->token, fresh, VAULT_TOKEN_MAX);
			a->gen++;
			again = true;
		} else if (a->gen != gen) {
			again = true;
		}
		pthread_mutex_unlock(&a->lock);
	}
	free_buf(st->host, fresh);
	return again;
}

kw_status vault_request(struct vault_state *st, const char *method,
			const char *path, const char *body, size_t len,
			int64_t deadline_ms, struct vault_resp *resp,
			char *why, size_t whylen)
{
	const kw_host *host = st->host;
	char *token = host->secure_alloc(VAULT_TOKEN_MAX);
	uint64_t gen = 0;
	kw_status rc;

	if (token == NULL) {
		snprintf(why, whylen, "out of memory");
		return KW_ERR_NOMEM;
	}
	for (int pass = 0;; pass++) {
		rc = vault_auth_token(st, deadline_ms, token, &gen, why,
				      whylen);
		if (rc != KW_OK)
			break;
		rc = vault_http(st, method, path, body, len, token,
				deadline_ms, resp, why, whylen);
		/* An AppRole token that expired under us: log in afresh,
		 * once. */
		if (rc != KW_ERR_PERM || pass > 0 ||
		    !vault_auth_refused(st, gen, deadline_ms))
			break;
		host->log(st->inst, KW_LOG_INFO,
			  "Vault refused the token (HTTP %ld on %s): logging "
			  "in again",
			  resp->status, path);
	}
	host->wipe(token, VAULT_TOKEN_MAX);
	host->secure_free(token, VAULT_TOKEN_MAX);
	return rc;
}
