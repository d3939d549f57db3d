/*
 * kv.c - keys in a KV secrets engine: the paths, the engine's version,
 * a key read (shared with kv_write.c and kv_list.c), and lookup.
 *
 * KV v2: a key is the field `field` of the latest version at
 * {mount}/data/{path}; a latest version that is deleted or destroyed is
 * no key.  Writes carry options.cas (the version read, 0 for a new
 * secret), so that two writers cannot silently overwrite each other.
 * Whether a key is enabled, and its name, live in the secret's
 * custom_metadata (keyway_active = "false", keyway_name); rm deletes the
 * metadata and with it every version.
 *
 * KV v1: {mount}/{path} holds the field, and keyway_active and
 * keyway_name beside it.  KV v1 has no check-and-set: the last writer
 * wins.
 *
 * The values pass through jansson, which copies strings into memory it
 * frees without wiping; each parsed answer is freed as soon as what is
 * needed is copied into host secure memory.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vault.h"

const char *vault_describe(char *buf, kw_scope scope, const char *owner,
			   const char *provider)
{
	size_t len = 0;

	buf[0] = '\0';
	kw_key_describe(buf, VAULT_DESC_MAX, &len, scope, owner, provider);
	return buf;
}

int64_t vault_deadline(const struct vault_state *st)
{
	return vault_now_ms() + st->timeout_ms;
}

/* "{mount}/data/{rel}", "{mount}/metadata/{rel}" or "{mount}/{rel}". */
char *vault_kv_path(const struct vault_state *st, const char *what,
		    const char *rel)
{
	char *p;

	if (asprintf(&p, "%s/%s%s%s", st->mount, what, what[0] ? "/" : "",
		     rel) < 0)
		return NULL;
	return p;
}

char *vault_data_path(const struct vault_state *st, const char *rel)
{
	return vault_kv_path(st, st->kv_version == 2 ? "data" : "", rel);
}

kw_status vault_mount_version(struct vault_state *st, int64_t deadline_ms,
			      int *version, char *why, size_t whylen)
{
	struct vault_resp resp = { 0 };
	json_t *data, *opt;
	const char *v;
	char *path;
	kw_status rc;

	if (asprintf(&path, "sys/internal/ui/mounts/%s", st->mount) < 0) {
		snprintf(why, whylen, "out of memory");
		return KW_ERR_NOMEM;
	}
	rc = vault_request(st, "GET", path, NULL, 0, deadline_ms, &resp, why,
			   whylen);
	if (rc == KW_ERR_NOTFOUND ||
	    (rc == KW_ERR_BACKEND && resp.status == 400)) {
		snprintf(why, whylen, "Vault GET %s: HTTP %ld: no mount \"%s\" "
			 "(kv_version = \"auto\")",
			 path, resp.status, st->mount_raw);
		rc = KW_ERR_CONFIG;
	}
	if (rc != KW_OK)
		goto out;
	data = json_object_get(resp.json, "data");
	opt = json_object_get(json_object_get(data, "options"), "version");
	v = json_string_value(json_object_get(data, "type"));
	if (v != NULL && strcmp(v, "kv") != 0 && strcmp(v, "generic") != 0) {
		snprintf(why, whylen, "Vault GET %s: mount \"%s\" is a %s "
			 "engine, not kv",
			 path, st->mount_raw, v);
		rc = KW_ERR_CONFIG;
		goto out;
	}
	*version = json_is_string(opt) &&
				   strcmp(json_string_value(opt), "2") == 0
			   ? 2
			   : 1;
out:
	vault_resp_free(st->host, &resp);
	free(path);
	return rc;
}

kw_status vault_kv_version(struct vault_state *st, int64_t deadline_ms,
			   int *version, char *why, size_t whylen)
{
	kw_status rc;

	*version = st->kv_version;
	if (*version != 0)
		return KW_OK;
	rc = vault_mount_version(st, deadline_ms, version, why, whylen);
	if (rc == KW_OK)
		st->kv_version = *version;
	return rc;
}


static bool is_false(const json_t *v)
{
	return json_is_false(v) ||
	       (json_is_string(v) && strcmp(json_string_value(v), "false") == 0);
}

int64_t vault_rfc3339(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
		return 0;
	return (int64_t)timegm(&tm);
}

/* A version neither destroyed nor deleted (a deletion_time still to
 * come, from delete_version_after, leaves it readable). */
static bool live_version(const json_t *meta)
{
	const char *del =
		json_string_value(json_object_get(meta, "deletion_time"));

	return !json_is_true(json_object_get(meta, "destroyed")) &&
	       (del == NULL || del[0] == '\0' ||
		vault_rfc3339(del) > time(NULL));
}

/*
 * Read the secret at rel: KW_OK with rec filled (the latest version
 * live), KW_ERR_NOTFOUND (rec->version and rec->deleted still say what
 * was seen), or a failure, with why.
 */
kw_status vault_kv_read(struct vault_state *st, const char *rel,
			int64_t deadline_ms, struct vault_resp *resp,
			struct vault_kv_rec *rec, char *why, size_t whylen)
{
	char *path = vault_data_path(st, rel);
	json_t *data, *meta = NULL;
	kw_status rc;

	memset(rec, 0, sizeof(*rec));
	if (path == NULL) {
		snprintf(why, whylen, "out of memory");
		return KW_ERR_NOMEM;
	}
	rc = vault_request(st, "GET", path, NULL, 0, deadline_ms, resp, why,
			   whylen);
	data = json_object_get(resp->json, "data");
	if (st->kv_version == 2) {
		meta = json_object_get(data, "metadata");
		data = json_object_get(data, "data");
		rec->version = json_integer_value(json_object_get(meta,
								  "version"));
		rec->custom = json_object_get(meta, "custom_metadata");
		if (!json_is_object(rec->custom))
			rec->custom = NULL;
	}
	if (rc == KW_OK && !json_is_object(data)) {
		snprintf(why, whylen, "Vault GET %s: HTTP %ld without the "
			 "secret's data", path, resp->status);
		rc = KW_ERR_BACKEND;
	}
	if (rc == KW_ERR_NOTFOUND && meta != NULL && rec->version > 0) {
		rec->deleted = true;
		snprintf(why, whylen, "Vault GET %s: HTTP %ld: its latest "
			 "version (%lld) is %s",
			 path, resp->status, (long long)rec->version,
			 json_is_true(json_object_get(meta, "destroyed"))
				 ? "destroyed"
				 : "deleted");
	}
	if (rc == KW_OK) {
		const json_t *flags = st->kv_version == 2 ? rec->custom : data;

		rec->data = data;
		rec->active = !is_false(json_object_get(flags, "keyway_active"));
		rec->name = json_string_value(json_object_get(flags,
							      "keyway_name"));
	}
	free(path);
	return rc;
}

/* The value of the field, or NULL with why. */
static const json_t *field_of(const struct vault_state *st,
			      const struct vault_kv_rec *rec, const char *rel,
			      char *why, size_t whylen)
{
	const json_t *v = json_object_get(rec->data, st->field);

	if (json_is_string(v) && json_string_length(v) > 0)
		return v;
	snprintf(why, whylen, "Vault GET %s/%s%s: HTTP 200, but the secret "
		 "at %s/%s has no %sfield \"%s\"",
		 st->mount, st->kv_version == 2 ? "data/" : "", rel, st->mount,
		 rel, v != NULL ? "non-empty string " : "", st->field);
	return NULL;
}

/* The key's path, or a status with the reason replied. */
kw_status vault_key_rel(struct vault_state *st, kw_scope scope,
			const char *owner, const char *provider, char **rel,
			kw_reply *r, kw_status bad)
{
	char why[VAULT_WHY];
	kw_status rc;

	*rel = NULL;
	if (scope != st->scope) {
		st->host->reply_detail(r, "this backend holds %s keys, not %s "
				       "keys", kw_scope_name(st->scope),
				       kw_scope_name(scope));
		return KW_ERR_INVAL;
	}
	if (scope != KW_SCOPE_SYSTEM && (owner == NULL || owner[0] == '\0')) {
		st->host->reply_detail(r, "no %s named: a %s key has an owner",
				       kw_scope_name(scope),
				       kw_scope_name(scope));
		return bad;
	}
	rc = vault_tpl_expand(&st->tpl, scope, owner, provider, rel, why,
			      sizeof(why));
	if (rc == KW_ERR_INVAL)
		rc = bad;
	if (rc != KW_OK)
		st->host->reply_detail(r, "%s", why);
	return rc;
}

kw_status vault_need_version(struct vault_state *st, int64_t dl, kw_reply *r)
{
	char why[VAULT_WHY];
	int v;
	kw_status rc = vault_kv_version(st, dl, &v, why, sizeof(why));

	if (rc != KW_OK)
		st->host->reply_detail(r, "%s", why);
	return rc;
}

kw_status vault_lookup(void *state, const kw_query *q)
{
	struct vault_state *st = state;
	const kw_host *host = st->host;
	bool explain = (q->flags & KW_QUERY_EXPLAIN) != 0;
	struct vault_resp resp = { 0 };
	char why[VAULT_WHY], desc[VAULT_DESC_MAX];
	const json_t *v;
	struct vault_kv_rec rec;
	char *rel = NULL;
	uint64_t gen;
	int64_t dl;
	kw_status rc;

	rc = vault_key_rel(st, st->scope, q->owner, q->provider, &rel,
			   q->reply, KW_ERR_NOTFOUND);
	if (rc != KW_OK)
		return rc;
	rc = vault_cache_get(host, &st->cache, rel, q->reply, &gen);
	if (rc == KW_OK) {
		if (explain)
			host->reply_detail(q->reply, "%s/%s field \"%s\" "
					   "(cached)", st->mount, rel,
					   st->field);
		goto out;
	}
	if (rc == KW_ERR_DENIED) {
		host->reply_detail(q->reply, "the %s is disabled in Vault "
				   "(keyway_active = \"false\" at %s/%s, "
				   "cached)",
				   vault_describe(desc, q->scope, q->owner,
						  q->provider),
				   st->mount, rel);
		goto out;
	}
	dl = vault_deadline(st);
	rc = vault_need_version(st, dl, q->reply);
	if (rc != KW_OK)
		goto out;
	rc = vault_kv_read(st, rel, dl, &resp, &rec, why, sizeof(why));
	if (rc == KW_ERR_NOTFOUND) {
		host->reply_detail(q->reply, "no %s in Vault: %s",
				   vault_describe(desc, q->scope, q->owner,
						  q->provider),
				   why);
		goto out;
	}
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "%s", why);
		goto out;
	}
	if (!rec.active) {
		vault_cache_put(host, &st->cache, rel, "", 0, false, gen);
		host->reply_detail(q->reply, "the %s is disabled in Vault "
				   "(keyway_active = \"false\" at %s/%s; "
				   "HTTP 200)",
				   vault_describe(desc, q->scope, q->owner,
						  q->provider),
				   st->mount, rel);
		rc = KW_ERR_DENIED;
		goto out;
	}
	v = field_of(st, &rec, rel, why, sizeof(why));
	if (v == NULL) {
		host->reply_detail(q->reply, "%s", why);
		rc = KW_ERR_BACKEND;
		goto out;
	}
	rc = host->reply_secret(q->reply, json_string_value(v),
				json_string_length(v));
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "cannot hold the key: %s",
				   rc == KW_ERR_NOMEM ? "out of memory"
						      : "too large");
		goto out;
	}
	vault_cache_put(host, &st->cache, rel, json_string_value(v),
			json_string_length(v), true, gen);
	if (explain && st->kv_version == 2)
		host->reply_detail(q->reply, "%s/%s field \"%s\", version %lld",
				   st->mount, rel, st->field,
				   (long long)rec.version);
	else if (explain)
		host->reply_detail(q->reply, "%s/%s field \"%s\"", st->mount,
				   rel, st->field);
out:
	vault_resp_free(host, &resp);
	free(rel);
	return rc;
}

/* GET the v2 metadata of rel: KW_OK when its latest version is live. */
kw_status vault_kv_meta(struct vault_state *st, const char *rel, int64_t dl,
			struct vault_resp *resp, json_t **meta, char *why,
			size_t whylen)
{
	char *path = vault_kv_path(st, "metadata", rel);
	json_t *data, *versions, *cur;
	char num[32];
	kw_status rc;

	*meta = NULL;
	if (path == NULL) {
		snprintf(why, whylen, "out of memory");
		return KW_ERR_NOMEM;
	}
	rc = vault_request(st, "GET", path, NULL, 0, dl, resp, why, whylen);
	data = json_object_get(resp->json, "data");
	if (rc == KW_OK && !json_is_object(data)) {
		snprintf(why, whylen, "Vault GET %s: HTTP %ld without metadata",
			 path, resp->status);
		rc = KW_ERR_BACKEND;
	}
	if (rc == KW_OK) {
		versions = json_object_get(data, "versions");
		snprintf(num, sizeof(num), "%lld",
			 (long long)json_integer_value(
				 json_object_get(data, "current_version")));
		cur = json_object_get(versions, num);
		*meta = data;
		if (cur != NULL && !live_version(cur)) {
			snprintf(why, whylen, "Vault GET %s: its latest version "
				 "(%s) is deleted", path, num);
			rc = KW_ERR_NOTFOUND;
		}
	}
	free(path);
	return rc;
}
