/*
 * file.c - the file module: a store of API keys in one encrypted flat
 * file, for hosts with no database.  This file holds the descriptor and
 * the operations; snap.c the copy of the file a process keeps, write.c
 * the locked, crash-safe writes, format.c the bytes of the format
 * (docs/file-format.md).
 *
 * The whole file is one AES-256-GCM envelope sealed by the host under the
 * master key, and each key inside it is sealed again, bound to its record,
 * so that a value moved to another owner does not open.
 *
 * Several backends may share one file, each with its own scope; each
 * rewrites the file with the other scopes' records as they are.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strndup() */
#endif
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyway/module.h>

#include "file.h"

/* keyway's name for a key: "org key of "acme" for anthropic". */
static const char *file_describe(char *buf, size_t size, kw_scope scope,
				 const char *owner, const char *provider)
{
	size_t len = 0;

	buf[0] = '\0';
	kw_key_describe(buf, size, &len, scope, owner, provider);
	return buf;
}


/* ---- keys ---- */

/* Refuse, through r, a key this store cannot hold (KW_ERR_INVAL). */
static kw_status check_key(const struct file_state *st, const kw_store_key *k,
			   kw_reply *r)
{
	const char *word = kw_key_scope_word(k->scope);

	if (k->scope != st->scope) {
		st->host->reply_detail(r, "this backend holds %s keys, not %s "
				       "keys", st->scope_word,
				       word != NULL ? word : "unscoped");
		return KW_ERR_INVAL;
	}
	if (k->provider == NULL || k->provider[0] == '\0') {
		st->host->reply_detail(r, "no provider given");
		return KW_ERR_INVAL;
	}
	if (k->scope != KW_SCOPE_SYSTEM &&
	    (k->owner == NULL || k->owner[0] == '\0')) {
		st->host->reply_detail(r, "a %s key needs an owner", word);
		return KW_ERR_INVAL;
	}
	if (k->scope == KW_SCOPE_SYSTEM && k->owner != NULL &&
	    k->owner[0] != '\0') {
		st->host->reply_detail(r, "a system key has no owner");
		return KW_ERR_INVAL;
	}
	return KW_OK;
}

static const char *key_owner(const kw_store_key *k)
{
	return k->scope == KW_SCOPE_SYSTEM ? NULL : k->owner;
}

/* What a record's value is bound to (docs/file-format.md). */
static void rec_aad(const char *file_id_hex, kw_scope scope,
		    const char *owner, const char *provider, kw_seal_aad *aad)
{
	aad->store_id = file_id_hex;
	aad->scope = scope;
	aad->owner = owner;
	aad->provider = provider;
}

static kw_status file_lookup(void *state, const kw_query *q)
{
	struct file_state *st = state;
	const kw_host *host = st->host;
	const char *owner = st->scope == KW_SCOPE_SYSTEM ? NULL : q->owner;
	char desc[FILE_DESC_MAX], why[200], *buf;
	struct file_snap *snap = NULL;
	struct file_err e;
	const struct file_rec *rec;
	kw_seal_aad aad;
	kw_status rc;
	bool found;

	rc = file_current(st, false, &snap, &e);
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "%s", e.msg);
		return rc;
	}
	file_describe(desc, sizeof(desc), st->scope, owner, q->provider);
	rec = NULL;
	if (st->scope == KW_SCOPE_SYSTEM || owner != NULL) {
		size_t at = file_find(snap->recs, snap->n, st->scope, owner,
				      q->provider, &found);

		if (found)
			rec = &snap->recs[at];
	}
	if (rec == NULL) {
		host->reply_detail(q->reply, "no %s in %s", desc, st->path);
		rc = KW_ERR_NOTFOUND;
		goto out;
	}
	if (!rec->active) {
		host->reply_detail(q->reply, "the %s is disabled", desc);
		rc = KW_ERR_DENIED;
		goto out;
	}
	if (rec->sealed_len < KW_SEAL_OVERHEAD) {
		host->reply_detail(q->reply, "the %s in %s: sealed value is "
				   "too short (%zu bytes)",
				   desc, st->path, rec->sealed_len);
		rc = KW_ERR_CRYPTO;
		goto out;
	}
	rc = host->reply_buffer(q->reply, rec->sealed_len - KW_SEAL_OVERHEAD,
				&buf);
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "the %s: no room for it", desc);
		goto out;
	}
	rec_aad(snap->file_id_hex, st->scope, owner, q->provider, &aad);
	why[0] = '\0';
	rc = host->unseal(st->kr, &aad, rec->sealed, rec->sealed_len, buf,
			  why, sizeof(why));
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "the %s in %s: %s", desc,
				   st->path,
				   why[0] != '\0' ? why : "cannot open it");
		goto out;
	}
	if (!KW_QUERY_HAS(q, flags) || (q->flags & KW_QUERY_EXPLAIN) != 0)
		host->reply_detail(q->reply, "%s in %s", desc, st->path);
out:
	file_snap_release(st, snap);
	return rc;
}

/* Seal value for the record of k, into rec's own memory. */
static kw_status seal_into(struct file_state *st, const char *file_id_hex,
			   const kw_store_key *k, const char *value,
			   size_t len, struct file_rec *rec)
{
	unsigned char *sealed = NULL;
	size_t n = 0;
	kw_seal_aad aad;
	kw_status rc;

	rec_aad(file_id_hex, k->scope, key_owner(k), k->provider, &aad);
	rc = st->host->seal(st->kr, &aad, value, len, &sealed, &n);
	if (rc != KW_OK)
		return rc;
	free(rec->own_sealed);
	rec->own_sealed = sealed;
	rec->sealed = sealed;
	rec->sealed_len = n;
	return KW_OK;
}

static char *dup_or_null(const char *s, bool *nomem)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*nomem = true;
	return d;
}

static kw_status change_put(struct file_state *st, struct file_edit *ed,
			    void *arg, kw_reply *r)
{
	const kw_store_put *p = arg;
	const kw_host *host = st->host;
	const bool create = p->mode == KW_PUT_CREATE;
	const char *owner = key_owner(&p->key);
	char desc[FILE_DESC_MAX], idhex[2 * FILE_ID_LEN + 1];
	struct file_rec *rec;
	bool found, nomem = false;
	size_t at;
	kw_status rc;

	file_describe(desc, sizeof(desc), p->key.scope, owner,
		      p->key.provider);
	at = file_find(ed->recs, ed->n, p->key.scope, owner, p->key.provider, &found);
	if (create && found) {
		host->reply_detail(r, "%s %s already exists; rotate it instead",
				   p->key.scope == KW_SCOPE_ORG ? "an" : "a",
				   desc);
		return KW_ERR_EXISTS;
	}
	if (!create && !found) {
		host->reply_detail(r, "no %s in %s", desc, st->path);
		return KW_ERR_NOTFOUND;
	}
	if (create) {
		memmove(&ed->recs[at + 1], &ed->recs[at],
			(ed->n - at) * sizeof(ed->recs[0]));
		ed->n++;
		rec = &ed->recs[at];
		memset(rec, 0, sizeof(*rec));
		rec->scope = p->key.scope;
		rec->active = true;
		rec->own_owner = dup_or_null(owner, &nomem);
		rec->own_provider = dup_or_null(p->key.provider, &nomem);
		rec->owner = rec->own_owner;
		rec->provider = rec->own_provider;
		rec->name = "";
		rec->created = host->now();
	} else {
		rec = &ed->recs[at];
	}
	rec->rotated = host->now();
	if (p->name != NULL) {
		rec->own_name = dup_or_null(p->name, &nomem);
		rec->name = rec->own_name;
	}
	if (nomem) {
		host->reply_detail(r, "out of memory");
		return KW_ERR_NOMEM;
	}
	file_hex(ed->h.file_id, FILE_ID_LEN, idhex);
	rc = seal_into(st, idhex, &p->key, p->value, p->len, rec);
	if (rc != KW_OK) {
		host->reply_detail(r, "cannot seal the %s", desc);
		return rc;
	}
	host->reply_detail(r, "%s the %s in %s", create ? "stored" : "rotated",
			   desc, st->path);
	return KW_OK;
}

static kw_status file_put(void *state, const kw_store_put *p, kw_reply *r)
{
	struct file_state *st = state;
	kw_status rc = check_key(st, &p->key, r);

	if (rc != KW_OK)
		return rc;
	if (p->mode != KW_PUT_CREATE && p->mode != KW_PUT_ROTATE) {
		st->host->reply_detail(r, "unknown put mode %d", (int)p->mode);
		return KW_ERR_INVAL;
	}
	return file_write(st, FILE_WAIT_MANAGE, change_put, (void *)p, r);
}

struct active_arg {
	const kw_store_key *k;
	bool active;
};

static kw_status change_active(struct file_state *st, struct file_edit *ed,
			       void *arg, kw_reply *r)
{
	const struct active_arg *a = arg;
	const char *owner = key_owner(a->k);
	char desc[FILE_DESC_MAX];
	bool found;
	size_t at;

	file_describe(desc, sizeof(desc), a->k->scope, owner, a->k->provider);
	at = file_find(ed->recs, ed->n, a->k->scope, owner, a->k->provider, &found);
	if (!found) {
		st->host->reply_detail(r, "no %s in %s", desc, st->path);
		return KW_ERR_NOTFOUND;
	}
	ed->recs[at].active = a->active;
	st->host->reply_detail(r, "%s the %s",
			       a->active ? "enabled" : "disabled", desc);
	return KW_OK;
}

static kw_status file_set_active(void *state, const kw_store_key *k,
				 bool active, kw_reply *r)
{
	struct file_state *st = state;
	struct active_arg a = { k, active };
	kw_status rc = check_key(st, k, r);

	if (rc != KW_OK)
		return rc;
	return file_write(st, FILE_WAIT_MANAGE, change_active, &a, r);
}

static kw_status change_remove(struct file_state *st, struct file_edit *ed,
			       void *arg, kw_reply *r)
{
	const kw_store_key *k = arg;
	const char *owner = key_owner(k);
	char desc[FILE_DESC_MAX];
	struct file_rec gone;
	bool found;
	size_t at;

	file_describe(desc, sizeof(desc), k->scope, owner, k->provider);
	at = file_find(ed->recs, ed->n, k->scope, owner, k->provider, &found);
	if (!found) {
		st->host->reply_detail(r, "no %s in %s", desc, st->path);
		return KW_ERR_NOTFOUND;
	}
	gone = ed->recs[at];
	memmove(&ed->recs[at], &ed->recs[at + 1],
		(ed->n - at - 1) * sizeof(ed->recs[0]));
	ed->n--;
	free(gone.own_owner);
	free(gone.own_provider);
	free(gone.own_name);
	free(gone.own_sealed);
	/* The new file does not hold it; the old one is unlinked by the
	 * rename, its blocks freed with it. */
	st->host->reply_detail(r, "deleted the %s from %s", desc, st->path);
	return KW_OK;
}

static kw_status file_remove(void *state, const kw_store_key *k, kw_reply *r)
{
	struct file_state *st = state;
	kw_status rc = check_key(st, k, r);

	if (rc != KW_OK)
		return rc;
	return file_write(st, FILE_WAIT_MANAGE, change_remove, (void *)k, r);
}

static kw_status file_list(void *state, kw_scope scope, const char *owner,
			   kw_store_list_fn *fn, void *arg, kw_reply *r)
{
	struct file_state *st = state;
	const kw_host *host = st->host;
	struct file_snap *snap = NULL;
	struct file_err e;
	kw_status rc;

	if (scope != KW_SCOPE_NONE && scope != st->scope)
		return KW_OK;
	rc = file_current(st, false, &snap, &e);
	if (rc != KW_OK) {
		host->reply_detail(r, "%s", e.msg);
		return rc;
	}
	for (size_t i = 0; i < snap->n && rc == KW_OK; i++) {
		const struct file_rec *rec = &snap->recs[i];
		char masked[KW_MASK_SIZE], key_id[KW_KEY_ID_SIZE], why[200];
		size_t plen;
		kw_store_record out;
		kw_seal_aad aad;
		char *plain;

		if (rec->scope != st->scope ||
		    (owner != NULL &&
		     strcmp(owner, rec->owner != NULL ? rec->owner : "") != 0))
			continue;
		if (rec->sealed_len < KW_SEAL_OVERHEAD ||
		    host->sealed_key_id(rec->sealed, rec->sealed_len,
					key_id) != KW_OK)
			key_id[0] = '\0';
		plen = rec->sealed_len >= KW_SEAL_OVERHEAD
			       ? rec->sealed_len - KW_SEAL_OVERHEAD
			       : 0;
		plain = host->secure_alloc(plen + 1);
		if (plain == NULL) {
			host->reply_detail(r, "out of memory");
			rc = KW_ERR_NOMEM;
			break;
		}
		rec_aad(snap->file_id_hex, rec->scope, rec->owner,
			rec->provider, &aad);
		if (key_id[0] != '\0' &&
		    host->unseal(st->kr, &aad, rec->sealed, rec->sealed_len,
				 plain, why, sizeof(why)) == KW_OK)
			host->mask(plain, plen, masked, sizeof(masked));
		else
			snprintf(masked, sizeof(masked), "(cannot open)");
		host->secure_free(plain, plen + 1);
		out = (kw_store_record){
			.scope = rec->scope,
			.owner = rec->owner,
			.provider = rec->provider,
			.name = rec->name,
			.active = rec->active,
			.masked = masked,
			.usage_count = rec->usage_count,
			.last_used = rec->last_used,
			.created = rec->created,
			.rotated = rec->rotated,
			.key_id = key_id,
		};
		rc = fn(arg, &out);
	}
	file_snap_release(st, snap);
	return rc;
}

struct rekey_arg {
	uint64_t count;
};

/*
 * Re-seal under the current master key every key in the file sealed
 * under another, whatever its scope: the file is one envelope, sealed
 * anew at every write, and it opens only when every key in it is under a
 * master key the configuration holds.  Moving some keys and not others
 * would leave a file that the old master key must keep opening.
 */
static kw_status change_rekey(struct file_state *st, struct file_edit *ed,
			      void *arg, kw_reply *r)
{
	struct rekey_arg *a = arg;
	const kw_host *host = st->host;
	const char *cur = host->keyring_id(st->kr);
	char idhex[2 * FILE_ID_LEN + 1];

	file_hex(ed->h.file_id, FILE_ID_LEN, idhex);
	for (size_t i = 0; i < ed->n; i++) {
		struct file_rec *rec = &ed->recs[i];
		char id[KW_KEY_ID_SIZE], desc[FILE_DESC_MAX], why[200];
		kw_store_key k = { rec->scope, rec->owner, rec->provider };
		size_t plen;
		kw_seal_aad aad;
		kw_status rc;
		char *plain;

		file_describe(desc, sizeof(desc), rec->scope, rec->owner,
			      rec->provider);
		if (host->sealed_key_id(rec->sealed, rec->sealed_len, id) !=
		    KW_OK) {
			host->reply_detail(r, "the %s in %s is damaged", desc,
					   st->path);
			return KW_ERR_CRYPTO;
		}
		if (strcmp(id, cur) == 0)
			continue;
		plen = rec->sealed_len - KW_SEAL_OVERHEAD;
		plain = host->secure_alloc(plen + 1);
		if (plain == NULL) {
			host->reply_detail(r, "out of memory");
			return KW_ERR_NOMEM;
		}
		rec_aad(idhex, rec->scope, rec->owner, rec->provider,
			&aad);
		why[0] = '\0';
		rc = host->unseal(st->kr, &aad, rec->sealed, rec->sealed_len,
				  plain, why, sizeof(why));
		if (rc == KW_OK)
			rc = seal_into(st, idhex, &k, plain, plen, rec);
		host->secure_free(plain, plen + 1);
		if (rc != KW_OK) {
			host->reply_detail(r, "the %s: %s", desc,
					   why[0] != '\0' ? why
							  : "cannot seal it");
			return rc;
		}
		a->count++;
	}
	host->reply_detail(r, "re-sealed %" PRIu64 " key%s in %s under "
			   "master key %s", a->count, a->count == 1 ? "" : "s",
			   st->path, cur);
	return KW_OK;
}

static kw_status file_rekey(void *state, uint64_t *count, kw_reply *r)
{
	struct file_state *st = state;
	struct rekey_arg a = { 0 };
	kw_status rc = file_write(st, FILE_WAIT_MANAGE, change_rekey, &a, r);

	if (count != NULL)
		*count = rc == KW_OK ? a.count : 0;
	return rc;
}

static kw_status file_check(void *state, kw_reply *r)
{
	struct file_state *st = state;
	struct file_snap *snap = NULL;
	struct file_err e;
	size_t nkeys = 0;
	kw_status rc;

	rc = file_current(st, false, &snap, &e);
	if (rc != KW_OK) {
		st->host->reply_detail(r, "%s", e.msg);
		return rc;
	}
	for (size_t i = 0; i < snap->n; i++)
		nkeys += snap->recs[i].scope == st->scope;
	st->host->reply_detail(r, "%s: %zu %s key%s, format v%u, generation "
			       "%" PRIu64,
			       st->path, nkeys, st->scope_word,
			       nkeys == 1 ? "" : "s",
			       (unsigned)snap->h.version, snap->h.generation);
	file_snap_release(st, snap);
	return KW_OK;
}

/* ---- opening ---- */

static void file_close(void *state)
{
	struct file_state *st = state;

	if (st == NULL)
		return;
	file_uses_close(st);
	if (st->snap != NULL && --st->snap->refs == 0)
		file_snap_free(st->host, st->snap);
	if (st->kr != NULL)
		st->host->keyring_close(st->kr);
	pthread_mutex_destroy(&st->lock);
	free(st->lock_path);
	free(st->dir);
	free(st);
}
/* Read the file for the first time: its header's salt binds the keyring
 * (made already when this open created the file). */
static kw_status first_read(struct file_state *st, bool checking)
{
	const kw_host *host = st->host;
	struct file_snap *snap = NULL;
	struct file_err e = { KW_OK, "" };
	bool made = false;
	kw_status rc;
	int fd = -1;

	rc = host->open_private(st->inst, "path", st->path, &fd);
	if (rc == KW_ERR_NOTFOUND) {
		if (checking) {
			host->error(st->inst, "path",
				    "%s does not exist: create it with keyway "
				    "init (or a first keyway put)",
				    st->path);
			return KW_ERR_NOTFOUND;
		}
		rc = file_create(st, &made);
		if (rc != KW_OK)
			return rc;
		rc = host->open_private(st->inst, "path", st->path, &fd);
		if (rc == KW_ERR_NOTFOUND)
			host->error(st->inst, "path", "%s vanished as it was "
				    "created", st->path);
	}
	if (rc != KW_OK)
		return rc;
	rc = file_read_snap(st, fd, NULL, &snap, &e);
	if (rc != KW_OK) {
		if (e.msg[0] != '\0')
			host->error(st->inst, "path", "%s", e.msg);
		goto out;
	}
	snap->refs = 1;
	st->snap = snap;
out:
	close(fd);
	return rc;
}

static const kw_setting_spec file_settings[] = {
	{ "path", KW_SETTING_PATH, KW_SETTING_REQUIRED },
	{ NULL, 0, 0 },
};

static kw_status file_open(const kw_host *host, kw_instance *inst,
			   void **state)
{
	struct file_state *st = NULL;
	const char *slash;
	kw_status rc;
	bool checking = false;

	*state = NULL;
	if (!KW_HOST_HAS(host, reopen_private)) {
		host->error(inst, NULL, "this libkeyway cannot open files "
			    "privately (it has no reopen_private service); "
			    "the file module needs a newer libkeyway");
		return KW_ERR_MODULE;
	}
	if (KW_HOST_HAS(host, instance_role) &&
	    host->instance_role(inst) != KW_INSTANCE_BACKEND) {
		host->error(inst, NULL, "the file module is a key store, not "
			    "a quota ledger");
		return KW_ERR_MODULE;
	}
	if (KW_HOST_HAS(host, open_flags))
		checking = (host->open_flags(inst) & KW_OPEN_CHECK) != 0;
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	pthread_mutex_init(&st->lock, NULL);
	file_uses_init(st);
	st->host = host;
	st->inst = inst;
	st->scope = host->instance_scope(inst);
	st->scope_word = kw_key_scope_word(st->scope);
	if (st->scope_word == NULL) {
		host->error(inst, NULL,
			    "missing scope (\"user\", \"org\" or \"system\")");
		rc = KW_ERR_CONFIG;
		goto out;
	}
	rc = host->setting_string(inst, "path", &st->path);
	if (rc != KW_OK || st->path == NULL || st->path[0] != '/') {
		host->error(inst, "path", "path must name a file");
		rc = KW_ERR_CONFIG;
		goto out;
	}
	slash = strrchr(st->path, '/');
	st->dir = slash == st->path ? strdup("/")
				    : strndup(st->path,
					      (size_t)(slash - st->path));
	st->lock_path = malloc(strlen(st->path) + sizeof(".lock"));
	if (st->dir == NULL || st->lock_path == NULL) {
		host->error(inst, NULL, "out of memory");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	strcpy(st->lock_path, st->path);
	strcat(st->lock_path, ".lock");
	rc = first_read(st, checking);
	if (rc != KW_OK)
		goto out;
	*state = st;
	st = NULL;
out:
	file_close(st);
	return rc;
}

static const struct kw_module file_module = {
	KW_MODULE_HEADER,
	.name = "file",
	.description = "keys in one encrypted file",
	.caps = KW_CAP_LOOKUP | KW_CAP_STORE | KW_CAP_LIST | KW_CAP_SCOPED,
	.settings = file_settings,
	.open = file_open,
	.close = file_close,
	.check = file_check,
	.lookup = file_lookup,
	.put = file_put,
	.set_active = file_set_active,
	.remove = file_remove,
	.list = file_list,
	.rekey = file_rekey,
	.used = file_used,
	.used_batch = file_used_batch,
};

KW_MODULE_EXPORT(file_module)

