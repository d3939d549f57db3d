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

struct sink {
	const kw_host *host;
	struct vault_resp *resp;
};

static size_t write_body(char *data, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;

	return vault_resp_append(s->host, s->resp, data, size * n) ? size * n
								   : 0;
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
	char errbuf[CURL_ERROR_SIZE] = "", *url = NULL;
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
		if (cc == CURLE_OK && !vault_retryable(resp->status))
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
	rc = vault_answer(resp, method, path, why, whylen);
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
		vault_answer_refused(resp, method, path, why, whylen);
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
