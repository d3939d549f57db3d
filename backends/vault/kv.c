/*
 * kv.c - keys in a KV secrets engine: lookup, and put, rotate, enable,
 * disable, rm and ls for keyway's management commands.
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

#define DESC_MAX 300

static const char *describe(char *buf, kw_scope scope, const char *owner,
			    const char *provider)
{
	size_t len = 0;

	buf[0] = '\0';
	kw_key_describe(buf, DESC_MAX, &len, scope, owner, provider);
	return buf;
}

static int64_t deadline(const struct vault_state *st)
{
	return vault_now_ms() + st->timeout_ms;
}

/* "{mount}/data/{rel}", "{mount}/metadata/{rel}" or "{mount}/{rel}". */
static char *kv_path(const struct vault_state *st, const char *what,
		     const char *rel)
{
	char *p;

	if (asprintf(&p, "%s/%s%s%s", st->mount, what, what[0] ? "/" : "",
		     rel) < 0)
		return NULL;
	return p;
}

static char *data_path(const struct vault_state *st, const char *rel)
{
	return kv_path(st, st->kv_version == 2 ? "data" : "", rel);
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

/* A key as read: pointers into resp->json. */
struct kv_rec {
	json_t *data;     /* the secret's fields */
	json_t *custom;   /* v2 custom_metadata, or NULL */
	int64_t version;  /* v2: the latest version, 0 when none */
	bool active;
	const char *name;
	bool deleted;     /* v2: the latest version is deleted/destroyed */
};

static bool is_false(const json_t *v)
{
	return json_is_false(v) ||
	       (json_is_string(v) && strcmp(json_string_value(v), "false") == 0);
}

static int64_t rfc3339(const char *s)
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
	       (del == NULL || del[0] == '\0' || rfc3339(del) > time(NULL));
}

/*
 * Read the secret at rel: KW_OK with rec filled (the latest version
 * live), KW_ERR_NOTFOUND (rec->version and rec->deleted still say what
 * was seen), or a failure, with why.
 */
static kw_status kv_read(struct vault_state *st, const char *rel,
			 int64_t deadline_ms, struct vault_resp *resp,
			 struct kv_rec *rec, char *why, size_t whylen)
{
	char *path = data_path(st, rel);
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
			      const struct kv_rec *rec, const char *rel,
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
static kw_status key_rel(struct vault_state *st, kw_scope scope,
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

static kw_status need_version(struct vault_state *st, int64_t dl, kw_reply *r)
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
	char why[VAULT_WHY], desc[DESC_MAX];
	const json_t *v;
	struct kv_rec rec;
	char *rel = NULL;
	int64_t dl;
	kw_status rc;

	describe(desc, q->scope, q->owner, q->provider);
	rc = key_rel(st, st->scope, q->owner, q->provider, &rel, q->reply,
		     KW_ERR_NOTFOUND);
	if (rc != KW_OK)
		return rc;
	rc = vault_cache_get(host, &st->cache, rel, q->reply);
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
				   "cached)", desc, st->mount, rel);
		goto out;
	}
	dl = deadline(st);
	rc = need_version(st, dl, q->reply);
	if (rc != KW_OK)
		goto out;
	rc = kv_read(st, rel, dl, &resp, &rec, why, sizeof(why));
	if (rc == KW_ERR_NOTFOUND) {
		host->reply_detail(q->reply, "no %s in Vault: %s", desc, why);
		goto out;
	}
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "%s", why);
		goto out;
	}
	if (!rec.active) {
		vault_cache_put(host, &st->cache, rel, "", 0, false);
		host->reply_detail(q->reply, "the %s is disabled in Vault "
				   "(keyway_active = \"false\" at %s/%s; "
				   "HTTP 200)",
				   desc, st->mount, rel);
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
			json_string_length(v), true);
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

/* A shallow copy of obj (NULL, or JSON null as Vault writes a
 * custom_metadata never set: an empty object); its values shared. */
static json_t *copy_of(json_t *obj)
{
	json_t *out = json_object();

	if (out != NULL && json_is_object(obj) &&
	    json_object_update(out, obj) != 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* POST body to path; KW_OK or the reason replied. */
static kw_status post(struct vault_state *st, const char *path, json_t *body,
		      int64_t dl, struct vault_resp *resp, char *why,
		      size_t whylen)
{
	char *text = NULL;
	size_t len = 0;
	kw_status rc = body != NULL ? vault_body(st->host, body, &text, &len)
				    : KW_ERR_NOMEM;

	if (rc != KW_OK) {
		snprintf(why, whylen, "out of memory");
		return rc;
	}
	rc = vault_request(st, "POST", path, text, len, dl, resp, why, whylen);
	vault_body_free(st->host, text, len);
	return rc;
}

/* custom_metadata of a v2 secret made `custom`. */
static kw_status set_custom(struct vault_state *st, const char *rel,
			    json_t *custom, int64_t dl, char *why,
			    size_t whylen)
{
	struct vault_resp resp = { 0 };
	char *path = kv_path(st, "metadata", rel);
	json_t *body = path != NULL ? json_pack("{s:O}", "custom_metadata",
						custom)
				    : NULL;
	kw_status rc = post(st, path != NULL ? path : "", body, dl, &resp, why,
			    whylen);

	json_decref(body);
	vault_resp_free(st->host, &resp);
	free(path);
	return rc;
}

kw_status vault_put(void *state, const kw_store_put *p, kw_reply *r)
{
	struct vault_state *st = state;
	const kw_host *host = st->host;
	bool create = p->mode == KW_PUT_CREATE;
	struct vault_resp resp = { 0 }, wresp = { 0 };
	char why[VAULT_WHY], desc[DESC_MAX], *rel = NULL, *path = NULL;
	json_t *data = NULL, *body = NULL, *custom = NULL, *val = NULL;
	struct kv_rec rec;
	int64_t dl = deadline(st);
	kw_status rc;

	describe(desc, p->key.scope, p->key.owner, p->key.provider);
	rc = key_rel(st, p->key.scope, p->key.owner, p->key.provider, &rel, r,
		     KW_ERR_INVAL);
	if (rc == KW_OK)
		rc = need_version(st, dl, r);
	if (rc != KW_OK)
		goto out;
	rc = kv_read(st, rel, dl, &resp, &rec, why, sizeof(why));
	if (rc == KW_OK && create) {
		host->reply_detail(r, "the %s already exists in Vault at %s/%s",
				   desc, st->mount, rel);
		rc = KW_ERR_EXISTS;
		goto out;
	}
	if (rc == KW_ERR_NOTFOUND && !create) {
		host->reply_detail(r, "no %s in Vault: %s", desc, why);
		goto out;
	}
	if (rc != KW_OK && rc != KW_ERR_NOTFOUND) {
		host->reply_detail(r, "%s", why);
		goto out;
	}
	/* Rotate keeps the secret's other fields; the key is a fresh
	 * string, which jansson copies (and frees unwiped). */
	data = copy_of(rc == KW_OK ? rec.data : NULL);
	val = json_stringn_nocheck(p->value, p->len);
	if (data == NULL || val == NULL ||
	    json_object_set_new(data, st->field, val) != 0) {
		val = NULL;
		rc = KW_ERR_NOMEM;
		host->reply_detail(r, "out of memory");
		goto out;
	}
	val = NULL;
	custom = copy_of(st->kv_version == 2 ? rec.custom : data);
	if (custom == NULL ||
	    (create && json_object_set_new(custom, "keyway_active",
					   json_string("true")) != 0) ||
	    (p->name != NULL &&
	     json_object_set_new(custom, "keyway_name",
				 json_string(p->name)) != 0)) {
		rc = KW_ERR_NOMEM;
		host->reply_detail(r, "out of memory");
		goto out;
	}
	if (st->kv_version == 1) {
		/* v1 keeps the flags in the secret itself. */
		json_decref(data);
		data = custom;
		custom = NULL;
		body = json_incref(data);
	} else {
		body = json_pack("{s:{s:I}, s:O}", "options", "cas",
				 (json_int_t)rec.version, "data", data);
	}
	path = data_path(st, rel);
	if (path == NULL || body == NULL) {
		rc = KW_ERR_NOMEM;
		host->reply_detail(r, "out of memory");
		goto out;
	}
	vault_resp_free(host, &resp);
	rc = post(st, path, body, dl, &wresp, why, sizeof(why));
	vault_cache_drop(host, &st->cache, rel);
	if (rc == KW_ERR_BACKEND && wresp.status == 400 &&
	    vault_resp_says(&wresp, "check-and-set")) {
		if (create) {
			host->reply_detail(r, "the %s was just created in Vault "
					   "at %s/%s by another writer "
					   "(check-and-set, HTTP 400)",
					   desc, st->mount, rel);
			rc = KW_ERR_EXISTS;
		} else {
			host->reply_detail(r, "the %s changed in Vault at %s/%s "
					   "while it was rotated (check-and-set "
					   "on version %lld, HTTP 400); nothing "
					   "was written: run it again",
					   desc, st->mount, rel,
					   (long long)rec.version);
			rc = KW_ERR_UNAVAIL;
		}
		goto out;
	}
	if (rc != KW_OK) {
		host->reply_detail(r, "%s", why);
		goto out;
	}
	if (st->kv_version == 2 && (create || p->name != NULL)) {
		rc = set_custom(st, rel, custom, dl, why, sizeof(why));
		if (rc != KW_OK) {
			host->reply_detail(r, "the %s was stored, but its "
					   "custom_metadata was not: %s",
					   desc, why);
			goto out;
		}
	}
	host->reply_detail(r, "%s the %s in Vault at %s/%s",
			   create ? "stored" : "rotated", desc, st->mount, rel);
out:
	json_decref(body);
	json_decref(data);
	json_decref(custom);
	vault_resp_free(host, &resp);
	vault_resp_free(host, &wresp);
	free(path);
	free(rel);
	return rc;
}

/* Why a management call failed: "no KEY in Vault: ..." for a miss. */
static void reply_failure(const kw_host *host, kw_reply *r, kw_status rc,
			  const char *desc, const char *why)
{
	if (rc == KW_ERR_NOTFOUND)
		host->reply_detail(r, "no %s in Vault: %s", desc, why);
	else
		host->reply_detail(r, "%s", why);
}

/* GET the v2 metadata of rel: KW_OK when its latest version is live. */
static kw_status read_meta(struct vault_state *st, const char *rel, int64_t dl,
			   struct vault_resp *resp, json_t **meta, char *why,
			   size_t whylen)
{
	char *path = kv_path(st, "metadata", rel);
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

kw_status vault_set_active(void *state, const kw_store_key *k, bool active,
			   kw_reply *r)
{
	struct vault_state *st = state;
	const kw_host *host = st->host;
	struct vault_resp resp = { 0 }, wresp = { 0 };
	char why[VAULT_WHY], desc[DESC_MAX], *rel = NULL, *path = NULL;
	json_t *meta = NULL, *copy = NULL;
	struct kv_rec rec;
	int64_t dl = deadline(st);
	kw_status rc;

	describe(desc, k->scope, k->owner, k->provider);
	rc = key_rel(st, k->scope, k->owner, k->provider, &rel, r,
		     KW_ERR_NOTFOUND);
	if (rc == KW_OK)
		rc = need_version(st, dl, r);
	if (rc != KW_OK)
		goto out;
	if (st->kv_version == 2)
		rc = read_meta(st, rel, dl, &resp, &meta, why, sizeof(why));
	else
		rc = kv_read(st, rel, dl, &resp, &rec, why, sizeof(why));
	if (rc != KW_OK) {
		reply_failure(host, r, rc, desc, why);
		goto out;
	}
	copy = copy_of(st->kv_version == 2
			       ? json_object_get(meta, "custom_metadata")
			       : rec.data);
	if (copy == NULL ||
	    json_object_set_new(copy, "keyway_active",
				json_string(active ? "true" : "false")) != 0) {
		rc = KW_ERR_NOMEM;
		host->reply_detail(r, "out of memory");
		goto out;
	}
	if (st->kv_version == 2) {
		rc = set_custom(st, rel, copy, dl, why, sizeof(why));
	} else {
		path = data_path(st, rel);
		rc = path != NULL ? post(st, path, copy, dl, &wresp, why,
					 sizeof(why))
				  : KW_ERR_NOMEM;
	}
	vault_cache_drop(host, &st->cache, rel);
	if (rc != KW_OK) {
		host->reply_detail(r, "%s", why);
		goto out;
	}
	host->reply_detail(r, "%s the %s in Vault at %s/%s",
			   active ? "enabled" : "disabled", desc, st->mount,
			   rel);
out:
	json_decref(copy);
	vault_resp_free(host, &resp);
	vault_resp_free(host, &wresp);
	free(path);
	free(rel);
	return rc;
}

kw_status vault_remove(void *state, const kw_store_key *k, kw_reply *r)
{
	struct vault_state *st = state;
	const kw_host *host = st->host;
	struct vault_resp resp = { 0 };
	char why[VAULT_WHY], desc[DESC_MAX], *rel = NULL, *path = NULL;
	json_t *meta = NULL;
	struct kv_rec rec;
	int64_t dl = deadline(st);
	kw_status rc;

	describe(desc, k->scope, k->owner, k->provider);
	rc = key_rel(st, k->scope, k->owner, k->provider, &rel, r,
		     KW_ERR_NOTFOUND);
	if (rc == KW_OK)
		rc = need_version(st, dl, r);
	if (rc != KW_OK)
		goto out;
	/* Metadata with only deleted versions is still removed. */
	if (st->kv_version == 2)
		rc = read_meta(st, rel, dl, &resp, &meta, why, sizeof(why));
	else
		rc = kv_read(st, rel, dl, &resp, &rec, why, sizeof(why));
	vault_resp_free(host, &resp);
	if (rc == KW_ERR_NOTFOUND && st->kv_version == 2 && meta != NULL)
		rc = KW_OK;
	if (rc != KW_OK) {
		reply_failure(host, r, rc, desc, why);
		goto out;
	}
	path = st->kv_version == 2 ? kv_path(st, "metadata", rel)
				   : data_path(st, rel);
	rc = path != NULL ? vault_request(st, "DELETE", path, NULL, 0, dl,
					  &resp, why, sizeof(why))
			  : KW_ERR_NOMEM;
	vault_cache_drop(host, &st->cache, rel);
	if (rc != KW_OK) {
		host->reply_detail(r, "%s", rc == KW_ERR_NOMEM ? "out of memory"
							       : why);
		goto out;
	}
	host->reply_detail(r, "deleted the %s from Vault at %s/%s%s", desc,
			   st->mount, rel,
			   st->kv_version == 2 ? " (every version)" : "");
out:
	vault_resp_free(host, &resp);
	free(path);
	free(rel);
	return rc;
}

/* ---- ls ---- */

struct walk {
	struct vault_state *st;
	kw_scope scope;
	kw_store_list_fn *fn;
	void *arg;
	kw_reply *r;
	int64_t dl;
};

/* One key found by the walk: read and reported. */
static kw_status emit(struct walk *w, const char *rel, const char *owner,
		      const char *provider)
{
	struct vault_state *st = w->st;
	const kw_host *host = st->host;
	struct vault_resp resp = { 0 }, mresp = { 0 };
	char why[VAULT_WHY], masked[KW_MASK_SIZE] = "";
	json_t *meta = NULL;
	const json_t *v;
	kw_store_record out;
	struct kv_rec rec;
	kw_status rc;

	rc = kv_read(st, rel, w->dl, &resp, &rec, why, sizeof(why));
	if (rc == KW_ERR_NOTFOUND) { /* deleted, or gone since the LIST */
		rc = KW_OK;
		goto out;
	}
	if (rc == KW_OK && st->kv_version == 2)
		rc = read_meta(st, rel, w->dl, &mresp, &meta, why, sizeof(why));
	if (rc == KW_ERR_NOTFOUND) {
		rc = KW_OK;
		goto out;
	}
	if (rc != KW_OK) {
		host->reply_detail(w->r, "%s", why);
		goto out;
	}
	v = json_object_get(rec.data, st->field);
	if (json_is_string(v))
		host->mask(json_string_value(v), json_string_length(v), masked,
			   sizeof(masked));
	else
		snprintf(masked, sizeof(masked), "(no %s)", "field");
	out = (kw_store_record){
		.scope = w->scope,
		.owner = w->scope == KW_SCOPE_SYSTEM ? NULL : owner,
		.provider = provider,
		.name = rec.name != NULL ? rec.name : "",
		.active = rec.active,
		.masked = masked,
		.created = rfc3339(json_string_value(
			json_object_get(meta, "created_time"))),
		.rotated = rfc3339(json_string_value(
			json_object_get(meta, "updated_time"))),
		.key_id = "",
	};
	rc = w->fn(w->arg, &out);
out:
	vault_resp_free(host, &resp);
	vault_resp_free(host, &mresp);
	return rc;
}

static char *join(const char *prefix, const char *esc)
{
	char *p;

	if (asprintf(&p, "%s%s%s", prefix, prefix[0] ? "/" : "", esc) < 0)
		return NULL;
	return p;
}

/* Segment seg's text when nothing in it is left to find, else NULL
 * (*nomem on failure). */
static char *known_seg(const struct vault_seg *seg, kw_scope scope,
		       const char *owner, const char *provider)
{
	size_t len = 1;
	char *out;

	for (size_t i = 0; i < seg->nparts; i++) {
		const struct vault_part *p = &seg->parts[i];

		if ((p->kind == VP_OWNER && owner == NULL) ||
		    (p->kind == VP_PROVIDER && provider == NULL))
			return NULL;
		len += p->kind == VP_TEXT ? p->len
					  : 8 + strlen(owner ? owner : "") +
						strlen(provider ? provider : "");
	}
	out = malloc(len);
	if (out == NULL)
		return NULL;
	out[0] = '\0';
	for (size_t i = 0; i < seg->nparts; i++) {
		const struct vault_part *p = &seg->parts[i];

		if (p->kind == VP_TEXT)
			strncat(out, p->text, p->len);
		else
			strcat(out, p->kind == VP_SCOPE ? kw_scope_name(scope)
				    : p->kind == VP_OWNER ? owner
							  : provider);
	}
	return out;
}

static kw_status walk(struct walk *w, size_t i, const char *prefix,
		      const char *owner, const char *provider);

static kw_status walk_into(struct walk *w, size_t i, const char *prefix,
			   const char *text, const char *owner,
			   const char *provider)
{
	char *esc = vault_escape(text, strlen(text));
	char *next = esc != NULL ? join(prefix, esc) : NULL;
	kw_status rc = next != NULL ? walk(w, i + 1, next, owner, provider)
				    : KW_ERR_NOMEM;

	if (rc == KW_ERR_NOMEM)
		w->st->host->reply_detail(w->r, "out of memory");
	free(esc);
	free(next);
	return rc;
}

static kw_status walk(struct walk *w, size_t i, const char *prefix,
		      const char *owner, const char *provider)
{
	struct vault_state *st = w->st;
	const struct vault_seg *seg;
	struct vault_resp resp = { 0 };
	char why[VAULT_WHY], *path = NULL, *text;
	bool last;
	json_t *keys, *k;
	size_t n;
	kw_status rc;

	if (i == st->tpl.nsegs)
		return emit(w, prefix, owner, provider);
	seg = &st->tpl.segs[i];
	last = i + 1 == st->tpl.nsegs;
	if (seg->owner_only && w->scope == KW_SCOPE_SYSTEM)
		return walk(w, i + 1, prefix, owner, provider);
	text = known_seg(seg, w->scope, owner, provider);
	if (text != NULL) {
		rc = walk_into(w, i, prefix, text, owner, provider);
		free(text);
		return rc;
	}
	path = kv_path(st, st->kv_version == 2 ? "metadata" : "", prefix);
	if (path == NULL) {
		st->host->reply_detail(w->r, "out of memory");
		return KW_ERR_NOMEM;
	}
	rc = vault_request(st, "LIST", path, NULL, 0, w->dl, &resp, why,
			   sizeof(why));
	if (rc == KW_ERR_NOTFOUND) {
		rc = KW_OK;
		goto out;
	}
	if (rc != KW_OK) {
		st->host->reply_detail(w->r, "%s", why);
		goto out;
	}
	keys = json_object_get(json_object_get(resp.json, "data"), "keys");
	json_array_foreach(keys, n, k) {
		const char *name = json_string_value(k);
		char *o = owner != NULL ? strdup(owner) : NULL;
		char *p = provider != NULL ? strdup(provider) : NULL;
		char *bare;
		size_t len;

		if (name == NULL)
			goto next;
		len = strlen(name);
		/* Folders end with '/'; the last segment names secrets. */
		if (last == (len > 0 && name[len - 1] == '/'))
			goto next;
		bare = strndup(name, last ? len : len - 1);
		if (bare != NULL &&
		    vault_seg_match(seg, w->scope, bare, &o, &p))
			rc = walk_into(w, i, prefix, bare, o, p);
		free(bare);
next:
		free(o);
		free(p);
		if (rc != KW_OK)
			break;
	}
out:
	vault_resp_free(st->host, &resp);
	free(path);
	return rc;
}

kw_status vault_list(void *state, kw_scope scope, const char *owner,
		     kw_store_list_fn *fn, void *arg, kw_reply *r)
{
	struct vault_state *st = state;
	struct walk w = { st, st->scope, fn, arg, r, 0 };
	kw_status rc;

	if (scope != KW_SCOPE_NONE && scope != st->scope)
		return KW_OK;
	/* A listing asks once per folder and twice per key: it gets
	 * retries + 1 times the timeout of one call for the whole. */
	w.dl = vault_now_ms() + st->timeout_ms * (st->retries + 1) * 4;
	rc = need_version(st, w.dl, r);
	if (rc != KW_OK)
		return rc;
	/* A system key's {owner} is empty, as vault_tpl_expand() makes
	 * it. */
	return walk(&w, 0, "", st->scope == KW_SCOPE_SYSTEM ? "" : owner,
		    NULL);
}
