/*
 * answer.c - Vault's answers, apart from how they came: the body read
 * into secure memory, parsed, and told as a status and one line of why;
 * Vault's own errors; request bodies serialized into secure memory.
 * http.c hands each answer here; tests/fuzz/fuzz_vault.c does too,
 * without libcurl.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vault.h"

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

/* Into secure memory: a buffer that grows is copied and the old one
 * wiped, never realloc()ed. */
bool vault_resp_append(const kw_host *host, struct vault_resp *resp,
		       const char *data, size_t add)
{
	size_t cap;
	char *grown;

	if (add > VAULT_BODY_MAX || resp->len + add > VAULT_BODY_MAX) {
		resp->body_rc = KW_ERR_BACKEND;
		return false;
	}
	if (resp->len + add + 1 > resp->cap) {
		/* A one-key answer is under 1 KiB: starting at 1 KiB keeps
		 * it in the host's pool of locked memory, where a larger
		 * first buffer costs a dozen system calls a request. */
		cap = resp->cap != 0 ? resp->cap : 1024;
		while (cap < resp->len + add + 1)
			cap *= 2;
		grown = host->secure_alloc(cap);
		if (grown == NULL) {
			resp->body_rc = KW_ERR_NOMEM;
			return false;
		}
		if (resp->body != NULL) {
			memcpy(grown, resp->body, resp->len);
			host->wipe(resp->body, resp->cap);
			host->secure_free(resp->body, resp->cap);
		}
		resp->body = grown;
		resp->cap = cap;
	}
	memcpy(resp->body + resp->len, data, add);
	resp->len += add;
	resp->body[resp->len] = '\0';
	return true;
}

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

/* ---- what an answer says ---- */

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
bool vault_retryable(long status)
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
	if (vault_retryable(status))
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

kw_status vault_answer(struct vault_resp *resp, const char *method,
		       const char *path, char *why, size_t whylen)
{
	char verr[200];
	kw_status rc;

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
	return rc;
}

void vault_answer_refused(struct vault_resp *resp, const char *method,
			  const char *path, char *why, size_t whylen)
{
	char verr[200];

	if (resp->len > 0)
		resp->json = json_loadb(resp->body, resp->len, 0, NULL);
	first_error(resp, verr, sizeof(verr));
	snprintf(why, whylen, "Vault %s %s: HTTP %ld (%s)%s%s (after %d "
		 "attempt%s)",
		 method, path, resp->status, status_words(resp->status),
		 verr[0] != '\0' ? ": " : "", verr, resp->attempts,
		 resp->attempts == 1 ? "" : "s");
}
