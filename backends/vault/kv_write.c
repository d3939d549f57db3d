/*
 * kv_write.c - put (create and rotate), enable, disable and rm of keys in
 * a KV engine (kv.c reads them).  KV v2 writes carry check-and-set; the
 * enabled flag and the name live in the secret's custom_metadata (v2) or
 * beside the key in the secret (v1).  Each drops the key from this
 * process's cache.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vault.h"

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
	char *path = vault_kv_path(st, "metadata", rel);
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
	char why[VAULT_WHY], desc[VAULT_DESC_MAX], *rel = NULL, *path = NULL;
	json_t *data = NULL, *body = NULL, *custom = NULL, *val = NULL;
	struct vault_kv_rec rec;
	int64_t dl = vault_deadline(st);
	kw_status rc;

	vault_describe(desc, p->key.scope, p->key.owner, p->key.provider);
	rc = vault_key_rel(st, p->key.scope, p->key.owner, p->key.provider,
			   &rel, r, KW_ERR_INVAL);
	if (rc == KW_OK)
		rc = vault_need_version(st, dl, r);
	if (rc != KW_OK)
		goto out;
	rc = vault_kv_read(st, rel, dl, &resp, &rec, why, sizeof(why));
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
	if (data == NULL || val == NULL) {
		json_decref(val);
		val = NULL;
		rc = KW_ERR_NOMEM;
		host->reply_detail(r, "out of memory");
		goto out;
	}
	if (json_object_set_new(data, st->field, val) != 0) {
		val = NULL;
		rc = KW_ERR_NOMEM;
		host->reply_detail(r, "out of memory");
		goto out;
	}
	val = NULL;
	custom = copy_of(st->kv_version == 2 ? rec.custom : data);
	/* A key created over a deleted secret does not inherit its name. */
	if (custom != NULL && create && p->name == NULL)
		json_object_del(custom, "keyway_name");
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
	path = vault_data_path(st, rel);
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

kw_status vault_set_active(void *state, const kw_store_key *k, bool active,
			   kw_reply *r)
{
	struct vault_state *st = state;
	const kw_host *host = st->host;
	struct vault_resp resp = { 0 }, wresp = { 0 };
	char why[VAULT_WHY], desc[VAULT_DESC_MAX], *rel = NULL, *path = NULL;
	json_t *meta = NULL, *copy = NULL;
	struct vault_kv_rec rec;
	int64_t dl = vault_deadline(st);
	kw_status rc;
	bool v2;

	vault_describe(desc, k->scope, k->owner, k->provider);
	rc = vault_key_rel(st, k->scope, k->owner, k->provider, &rel, r,
			   KW_ERR_NOTFOUND);
	if (rc == KW_OK)
		rc = vault_need_version(st, dl, r);
	if (rc != KW_OK)
		goto out;
	/* Read once: what was fetched decides what is copied. */
	v2 = st->kv_version == 2;
	if (v2)
		rc = vault_kv_meta(st, rel, dl, &resp, &meta, why, sizeof(why));
	else
		rc = vault_kv_read(st, rel, dl, &resp, &rec, why, sizeof(why));
	if (rc != KW_OK) {
		reply_failure(host, r, rc, desc, why);
		goto out;
	}
	copy = copy_of(v2 ? json_object_get(meta, "custom_metadata") : rec.data);
	if (copy == NULL ||
	    json_object_set_new(copy, "keyway_active",
				json_string(active ? "true" : "false")) != 0) {
		rc = KW_ERR_NOMEM;
		host->reply_detail(r, "out of memory");
		goto out;
	}
	if (v2) {
		rc = set_custom(st, rel, copy, dl, why, sizeof(why));
	} else {
		path = vault_data_path(st, rel);
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
	char why[VAULT_WHY], desc[VAULT_DESC_MAX], *rel = NULL, *path = NULL;
	json_t *meta = NULL;
	struct vault_kv_rec rec;
	int64_t dl = vault_deadline(st);
	kw_status rc;

	vault_describe(desc, k->scope, k->owner, k->provider);
	rc = vault_key_rel(st, k->scope, k->owner, k->provider, &rel, r,
			   KW_ERR_NOTFOUND);
	if (rc == KW_OK)
		rc = vault_need_version(st, dl, r);
	if (rc != KW_OK)
		goto out;
	/* Metadata with only deleted versions is still removed. */
	if (st->kv_version == 2)
		rc = vault_kv_meta(st, rel, dl, &resp, &meta, why, sizeof(why));
	else
		rc = vault_kv_read(st, rel, dl, &resp, &rec, why, sizeof(why));
	vault_resp_free(host, &resp);
	if (rc == KW_ERR_NOTFOUND && st->kv_version == 2 && meta != NULL)
		rc = KW_OK;
	if (rc != KW_OK) {
		reply_failure(host, r, rc, desc, why);
		goto out;
	}
	path = st->kv_version == 2 ? vault_kv_path(st, "metadata", rel)
				   : vault_data_path(st, rel);
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
