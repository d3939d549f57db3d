/*
 * http.c - requests to Vault over libcurl.
 *
 * Each request takes an idle easy handle from a small pool (or makes
 * one), so that a miss costs one request on a kept-alive TLS connection,
 * and puts it back afterwards; no lock is held while it talks to Vault.
 * Every call has a deadline: each attempt gets what is left of it as its
 * total timeout, and a backoff that would cross it is not waited for.
 *
 * Secrets pass through here in both directions: the token in a header,
 * the key in a request or response body.  The response is written into
 * host secure memory by our own write callback and wiped when freed; the
 * header list is wiped before curl frees it.  What cannot be wiped:
 * libcurl's and OpenSSL's own transfer buffers, and the strings jansson
 * copies out of a parsed body (they are freed as soon as the caller has
 * copied what it needs).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "vault.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

/* libcurl's global state is made once per process, before any thread
 * uses a handle. */
static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int64_t vault_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000),
			       (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void vault_resp_free(const kw_host *host, struct vault_resp *resp)
{
	if (resp->json != NULL)
		json_decref(resp->json);
	if (resp->body != NULL) {
		host->wipe(resp->body, resp->cap);
		host->secure_free(resp->body, resp->cap);
	}
	memset(resp, 0, sizeof(*resp));
}

struct sink {
	const kw_host *host;
	struct vault_resp *resp;
};

/* Into secure memory: a buffer that grows is copied and the old one
 * wiped, never realloc()ed. */
static size_t write_body(char *data, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	struct vault_resp *resp = s->resp;
	size_t add = size * n, cap;
	char *grown;

	if (add > VAULT_BODY_MAX || resp->len + add > VAULT_BODY_MAX) {
		resp->body_rc = KW_ERR_BACKEND;
		return 0;
	}
	if (resp->len + add + 1 > resp->cap) {
		/* A one-key answer is under 1 KiB: starting at 1 KiB keeps
		 * it in the host's pool of locked memory, where a larger
		 * first buffer costs a dozen system calls a request. */
		cap = resp->cap != 0 ? resp->cap : 1024;
		while (cap < resp->len + add + 1)
			cap *= 2;
		grown = s->host->secure_alloc(cap);
		if (grown == NULL) {
			resp->body_rc = KW_ERR_NOMEM;
			return 0;
		}
		if (resp->body != NULL) {
			memcpy(grown, resp->body, resp->len);
			s->host->wipe(resp->body, resp->cap);
			s->host->secure_free(resp->body, resp->cap);
		}
		resp->body = grown;
		resp->cap = cap;
	}
	memcpy(resp->body + resp->len, data, add);
	resp->len += add;
	resp->body[resp->len] = '\0';
	return add;
}

/* ---- the pool ---- */

/* Sockets close-on-exec: a program run with the context open (keyway
 * exec) must not inherit Vault's connection.  (libcurl 7.88 makes its
 * own wake-up socketpair without it; that one leads nowhere.) */
static curl_socket_t open_socket(void *arg, curlsocktype purpose,
				 struct curl_sockaddr *a)
{
	(void)arg;
	(void)purpose;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static CURL *make_handle(struct vault_state *st)
{
	CURL *h = curl_easy_init();

	if (h == NULL)
		return NULL;
	/* No signals: a timeout in one thread must not interrupt another. */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	/* Only the address's scheme; TLS 1.2 at least.  A plain http://
	 * address (loopback only) goes through no proxy: http_proxy would
	 * get the token in clear. */
	if (strncmp(st->base, "http://", 7) == 0) {
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
		curl_easy_setopt(h, CURLOPT_PROXY, "");
		curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	} else {
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	}
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	if (st->skip_verify) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	}
	if (st->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, st->ca_file);
	if (st->ca_path != NULL)
		curl_easy_setopt(h, CURLOPT_CAPATH, st->ca_path);
	if (st->client_cert != NULL)
		curl_easy_setopt(h, CURLOPT_SSLCERT, st->client_cert);
	if (st->client_key != NULL) {
		/* Not copied: curl reads our secure memory, which lives
		 * as long as the state. */
		struct curl_blob blob = { st->client_key, st->client_key_len,
					  CURL_BLOB_NOCOPY };

		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	}
	return h;
}

static CURL *pool_take(struct vault_state *st)
{
	CURL *h = NULL;

	pthread_mutex_lock(&st->pool_lock);
	if (st->nidle > 0)
		h = st->idle[--st->nidle];
	pthread_mutex_unlock(&st->pool_lock);
	return h != NULL ? h : make_handle(st);
}

static void pool_give(struct vault_state *st, CURL *h)
{
	pthread_mutex_lock(&st->pool_lock);
	if (st->nidle < VAULT_POOL_MAX) {
		st->idle[st->nidle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&st->pool_lock);
	if (h != NULL)
		curl_easy_cleanup(h);
}

void vault_pool_free(struct vault_state *st)
{
	for (size_t i = 0; i < st->nidle; i++)
		curl_easy_cleanup(st->idle[i]);
	st->nidle = 0;
}

/* ---- bodies ---- */

kw_status vault_body(const kw_host *host, const json_t *j, char **out,
		     size_t *len)
{
	size_t need = json_dumpb(j, NULL, 0, JSON_COMPACT), got;
	char *buf;

	*out = NULL;
	*len = 0;
	if (need == 0)
		return KW_ERR_NOMEM;
	buf = host->secure_alloc(need + 1);
	if (buf == NULL)
		return KW_ERR_NOMEM;
	got = json_dumpb(j, buf, need, JSON_COMPACT);
	if (got != need) {
		host->wipe(buf, need + 1);
		host->secure_free(buf, need + 1);
		/* What dumped a moment ago fails again only for want of
		 * the memory jansson takes to write it. */
		return got == 0 ? KW_ERR_NOMEM : KW_ERR_INTERNAL;
	}
	buf[need] = '\0';
	*out = buf;
	*len = need;
	return KW_OK;
}

void vault_body_free(const kw_host *host, char *body, size_t len)
{
	if (body == NULL)
		return;
	host->wipe(body, len + 1);
	host->secure_free(body, len + 1);
}

bool vault_resp_says(const struct vault_resp *resp, const char *text)
{
	json_t *errs = resp->json != NULL ? json_object_get(resp->json, "errors")
					  : NULL;
	size_t i;
	json_t *e;

	json_array_foreach(errs, i, e)
		if (json_is_string(e) && strstr(json_string_value(e), text))
			return true;
	return false;
}

/* Vault's first error, made one short printable line, into buf. */
static void first_error(const struct vault_resp *resp, char *buf, size_t size)
{
	json_t *errs = resp->json != NULL ? json_object_get(resp->json, "errors")
					  : NULL;
	json_t *e = json_array_get(errs, 0);
	const char *s = json_is_string(e) ? json_string_value(e) : "";
	static const char multi[] = "1 error occurred: * ";
	size_t n = 0;

	/* One line: controls made spaces, runs of them one. */
	for (; *s != '\0' && n + 1 < size && n < 160; s++) {
		char c = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;

		if (c == ' ' && (n == 0 || buf[n - 1] == ' '))
			continue;
		buf[n++] = c;
	}
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
	/* Vault's wrapping of a single error says nothing. */
	if (strncmp(buf, multi, sizeof(multi) - 1) == 0)
		memmove(buf, buf + sizeof(multi) - 1,
			n - (sizeof(multi) - 1) + 1);
}

/* Whether an answer is worth asking again: Vault's advice (429, 412 for
 * a standby not yet caught up, 5xx but 501 "not initialized"). */
static bool retryable(long status)
{
	return status == 412 || status == 429 ||
	       (status >= 500 && status != 501);
}

static kw_status meaning(long status)
{
	if (status >= 200 && status < 300)
		return KW_OK;
	if (status == 404)
		return KW_ERR_NOTFOUND;
	if (status == 401 || status == 403)
		return KW_ERR_PERM;
	if (retryable(status))
		return KW_ERR_UNAVAIL;
	return KW_ERR_BACKEND;
}

static const char *status_words(long status)
{
	switch (status) {
	case 400: return "bad request";
	case 401: case 403: return "permission denied: the token is wrong, "
				   "expired or lacks a policy for this path";
	case 404: return "not found";
	case 405: return "method not allowed";
	case 412: return "standby not caught up";
	case 429: return "rate limited or standby";
	case 500: return "internal error";
	case 501: return "Vault is not initialized";
	case 502: return "bad gateway";
	case 503: return "Vault is sealed or in maintenance";
	}
	return "unexpected status";
}

/* A transport error that asking again cannot mend: the certificate
 * does not verify, or a file curl reads is wrong.  An error, not
 * "unavail": it is a misconfiguration, or someone in the middle. */
static bool config_error(CURLcode cc)
{
	return cc == CURLE_PEER_FAILED_VERIFICATION ||
	       cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CERTPROBLEM ||
	       cc == CURLE_SSL_ISSUER_ERROR || cc == CURLE_SSL_CRL_BADFILE ||
	       cc == CURLE_SSL_PINNEDPUBKEYNOTMATCH ||
	       cc == CURLE_UNSUPPORTED_PROTOCOL || cc == CURLE_URL_MALFORMAT;
}

/* One attempt.  CURLE_OK and resp->status, or a transport error. */
static CURLcode attempt(struct vault_state *st, CURL *h, const char *method,
			const char *url, const char *body, size_t len,
			struct curl_slist *headers, int64_t left,
			struct vault_resp *resp, char *errbuf)
{
	struct sink s = { st->host, resp };
	CURLcode cc;

	if (resp->body != NULL) {
		st->host->wipe(resp->body, resp->cap);
		resp->len = 0;
	}
	resp->status = 0;
	resp->body_rc = KW_OK;
	errbuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(st->connect_timeout_ms < left
					? st->connect_timeout_ms
					: left));
	if (body != NULL) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
				 strcmp(method, "POST") == 0 ? NULL : method);
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
				 strcmp(method, "GET") == 0 ? NULL : method);
	}
	cc = curl_easy_perform(h);
	/* The body must not stay reachable from the handle. */
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	if (cc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	return cc;
}

/* Header "NAME: value" appended; the copy curl makes is wiped later. */
static bool add_header(struct curl_slist **list, const char *name,
		       const char *value, const kw_host *host)
{
	size_t n = strlen(name) + strlen(value) + 3;
	char *line = host->secure_alloc(n);
	struct curl_slist *grown;

	if (line == NULL)
		return false;
	snprintf(line, n, "%s: %s", name, value);
	grown = curl_slist_append(*list, line);
	host->wipe(line, n);
	host->secure_free(line, n);
	if (grown == NULL)
		return false;
	*list = grown;
	return true;
}

static void free_headers(const kw_host *host, struct curl_slist *list)
{
	for (struct curl_slist *p = list; p != NULL; p = p->next)
		host->wipe(p->data, strlen(p->data));
	curl_slist_free_all(list);
}

/* Jitter: between half and all of 100 ms << n, at most 2 s. */
static int64_t backoff_ms(const kw_host *host, int n)
{
	int64_t full = (int64_t)100 << (n < 5 ? n : 5);
	uint32_t r;

	if (full > 2000)
		full = 2000;
	host->random(&r, sizeof(r));
	return full / 2 + (int64_t)(r % (uint32_t)(full / 2 + 1));
}

kw_status vault_http(struct vault_state *st, const char *method,
		     const char *path, const char *body, size_t len,
		     const char *token, int64_t deadline_ms,
		     struct vault_resp *resp, char *why, size_t whylen)
{
	const kw_host *host = st->host;
	struct curl_slist *headers = NULL;
	char errbuf[CURL_ERROR_SIZE] = "", verr[200], *url = NULL;
	CURLcode cc = CURLE_OK;
	kw_status rc;
	CURL *h = NULL;
	int64_t left;

	vault_resp_free(host, resp);
	why[0] = '\0';
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		snprintf(why, whylen, "libcurl cannot start: %s",
			 curl_easy_strerror(curl_init_rc));
		return KW_ERR_INTERNAL;
	}
	if (asprintf(&url, "%s%s", st->base, path) < 0) {
		url = NULL;
		rc = KW_ERR_NOMEM;
		goto nomem;
	}
	if (!add_header(&headers, "X-Vault-Request", "true", host) ||
	    (st->namespace != NULL &&
	     !add_header(&headers, "X-Vault-Namespace", st->namespace,
			 host)) ||
	    (token != NULL && token[0] != '\0' &&
	     !add_header(&headers, "X-Vault-Token", token, host)) ||
	    (body != NULL &&
	     !add_header(&headers, "Content-Type", "application/json",
			 host))) {
		rc = KW_ERR_NOMEM;
		goto nomem;
	}
	h = pool_take(st);
	if (h == NULL) {
		rc = KW_ERR_NOMEM;
		goto nomem;
	}
	for (resp->attempts = 0;;) {
		left = deadline_ms - vault_now_ms();
		if (left <= 0 && resp->attempts == 0) {
			snprintf(why, whylen, "Vault %s %s: not sent: the "
				 "time it had (of timeout_ms = %lld) went to "
				 "the requests before it",
				 method, path, (long long)st->timeout_ms);
			rc = KW_ERR_UNAVAIL;
			break;
		}
		if (left <= 0) {
			snprintf(why, whylen, "Vault %s %s: no answer within "
				 "timeout_ms = %lld (after %d attempt%s)",
				 method, path, (long long)st->timeout_ms,
				 resp->attempts,
				 resp->attempts == 1 ? "" : "s");
			rc = KW_ERR_UNAVAIL;
			break;
		}
		resp->attempts++;
		cc = attempt(st, h, method, url, body, len, headers, left, resp,
			     errbuf);
		if (cc == CURLE_OK && !retryable(resp->status))
			break;
		/* An answer too large to hold is no passing trouble. */
		if (cc == CURLE_WRITE_ERROR && resp->body_rc != KW_OK) {
			rc = resp->body_rc;
			goto failed;
		}
		if (config_error(cc)) {
			rc = KW_ERR_BACKEND;
			goto failed;
		}
		if (resp->attempts > st->retries ||
		    vault_now_ms() + 1 >= deadline_ms) {
			rc = KW_ERR_UNAVAIL;
			goto failed;
		}
		{
			int64_t pause = backoff_ms(host, resp->attempts - 1);

			left = deadline_ms - vault_now_ms();
			if (pause >= left) {
				rc = KW_ERR_UNAVAIL;
				goto failed;
			}
			sleep_ms(pause);
		}
	}
	if (why[0] != '\0')
		goto out;
	if (resp->len > 0)
		resp->json = json_loadb(resp->body, resp->len, 0, NULL);
	rc = meaning(resp->status);
	/* A proxy's page, or an answer cut short, is not Vault's. */
	if (rc == KW_OK && resp->len > 0 && !json_is_object(resp->json)) {
		snprintf(why, whylen, "Vault %s %s: HTTP %ld with a body that "
			 "is not a JSON object (a proxy in the way?)",
			 method, path, resp->status);
		rc = KW_ERR_BACKEND;
	} else if (rc != KW_OK && rc != KW_ERR_NOTFOUND) {
		first_error(resp, verr, sizeof(verr));
		snprintf(why, whylen, "Vault %s %s: HTTP %ld (%s)%s%s", method,
			 path, resp->status, status_words(resp->status),
			 verr[0] != '\0' ? ": " : "", verr);
	} else if (rc == KW_ERR_NOTFOUND) {
		snprintf(why, whylen, "Vault %s %s: HTTP 404 (not found)",
			 method, path);
	}
	goto out;
failed:
	if (cc == CURLE_WRITE_ERROR && resp->body_rc == KW_ERR_BACKEND) {
		snprintf(why, whylen, "Vault %s %s: the answer is larger than "
			 "%u bytes, more than a key and its metadata need "
			 "(is address a Vault server?)",
			 method, path, VAULT_BODY_MAX);
	} else if (cc == CURLE_WRITE_ERROR && resp->body_rc == KW_ERR_NOMEM) {
		snprintf(why, whylen, "Vault %s %s: out of memory for the "
			 "answer (locked memory exhausted?)", method, path);
	} else if (cc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(why, whylen, "Vault %s %s: no answer within "
			 "timeout_ms = %lld (after %d attempt%s)",
			 method, path, (long long)st->timeout_ms,
			 resp->attempts, resp->attempts == 1 ? "" : "s");
	} else if (cc != CURLE_OK) {
		snprintf(why, whylen, "Vault %s %s: %s%s%s (after %d attempt%s)",
			 method, path, curl_easy_strerror(cc),
			 errbuf[0] != '\0' ? ": " : "", errbuf, resp->attempts,
			 resp->attempts == 1 ? "" : "s");
	} else {
		if (resp->len > 0)
			resp->json = json_loadb(resp->body, resp->len, 0, NULL);
		first_error(resp, verr, sizeof(verr));
		snprintf(why, whylen, "Vault %s %s: HTTP %ld (%s)%s%s (after %d "
			 "attempt%s)",
			 method, path, resp->status,
			 status_words(resp->status),
			 verr[0] != '\0' ? ": " : "", verr, resp->attempts,
			 resp->attempts == 1 ? "" : "s");
	}
	goto out;
nomem:
	snprintf(why, whylen, "Vault %s %s: out of memory", method, path);
out:
	if (h != NULL) {
		/* A handle whose transfer failed may hold a broken
		 * connection: curl closes it itself; the handle is fine. */
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		pool_give(st, h);
	}
	free_headers(host, headers);
	free(url);
	return rc;
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
