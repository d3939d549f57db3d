/*
 * kv_list.c - ls: the path template walked with LIST requests (on
 * {mount}/metadata/ for KV v2), each segment with a placeholder matched
 * against the names Vault lists, and each key found read for its masked
 * value, name, state and times.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vault.h"

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
	struct vault_kv_rec rec;
	kw_status rc;

	rc = vault_kv_read(st, rel, w->dl, &resp, &rec, why, sizeof(why));
	if (rc == KW_ERR_NOTFOUND) { /* deleted, or gone since the LIST */
		rc = KW_OK;
		goto out;
	}
	if (rc == KW_OK && st->kv_version == 2)
		rc = vault_kv_meta(st, rel, w->dl, &mresp, &meta, why,
				   sizeof(why));
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
		.created = vault_rfc3339(json_string_value(
			json_object_get(meta, "created_time"))),
		.rotated = vault_rfc3339(json_string_value(
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

		const char *v = p->kind == VP_SCOPE ? kw_scope_name(scope)
				: p->kind == VP_OWNER ? owner
						      : provider;

		if (p->kind == VP_TEXT)
			strncat(out, p->text, p->len);
		else if (v != NULL) /* as the first loop made sure */
			strcat(out, v);
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
	path = vault_kv_path(st, st->kv_version == 2 ? "metadata" : "", prefix);
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
	rc = vault_need_version(st, w.dl, r);
	if (rc != KW_OK)
		return rc;
	/* A system key's {owner} is empty, as vault_tpl_expand() makes
	 * it. */
	return walk(&w, 0, "", st->scope == KW_SCOPE_SYSTEM ? "" : owner,
		    NULL);
}
