/*
 * store_write.c - the key store's changes: storing and rotating a key,
 * enabling, disabling and deleting it, re-sealing every key under a new
 * master key, and the usage counts of lookups.  A change that leaves a
 * key's old sealed bytes behind erases them.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "pool.h"
#include "store.h"

#define SQ_CHECKPOINT_TRIES 4

/*
 * Move everything the WAL holds into the database file and empty the WAL,
 * so that no older frame still holds bytes the database no longer does.  A
 * reader holding an old snapshot keeps it from finishing; try a few times.
 */
static int sq_checkpoint(sqlite3 *db)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	int rc = SQLITE_OK;

	for (int i = 0; i < SQ_CHECKPOINT_TRIES; i++) {
		if (i > 0) {
			nanosleep(&ts, NULL);
			ts.tv_nsec *= 2;
		}
		rc = sqlite3_wal_checkpoint_v2(db, "main",
					       SQLITE_CHECKPOINT_TRUNCATE,
					       NULL, NULL);
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			break;
	}
	return rc;
}

/*
 * Erase what a deleted row leaves behind.  secure_delete zeroes the cell
 * and freed pages, but b-tree balancing copies live cells between pages
 * and leaves the old copies in the unallocated gap of pages that stay in
 * use, where no later delete reaches them.  VACUUM rebuilds every page
 * from the live rows (in memory: temp_store), and the checkpoint writes the
 * rebuilt file and empties the WAL.  It costs a pass over the store, which
 * a delete (a rare, deliberate act) can afford.
 */
static int sq_erase(sqlite3 *db)
{
	int rc = sqlite3_exec(db, "VACUUM", NULL, NULL, NULL);

	return rc == SQLITE_OK ? sq_checkpoint(db) : rc;
}

/* Step a statement that returns no row, and make it ready again. */
static int sq_run(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* ---- storing ---- */

/* Seal put's value for the row; *sealed is malloc'd, also on a failure
 * said through r. */
static kw_status sq_seal_put(const struct sq_store *st,
			     const kw_seal_aad *aad, const kw_store_put *p,
			     const char *desc, unsigned char **sealed,
			     size_t *sealed_len, kw_reply *r)
{
	const kw_host *host = st->sq.host;
	kw_status ret;

	ret = host->seal(st->kr, aad, p->value, p->len, sealed, sealed_len);
	if (ret != KW_OK) {
		host->reply_detail(r, "cannot seal the %s", desc);
		return ret;
	}
	if (*sealed_len > (size_t)INT32_MAX) {
		host->reply_detail(r, "the %s is too large", desc);
		return KW_ERR_INVAL;
	}
	return KW_OK;
}

/* Bind and step put's INSERT or UPDATE, s. */
static int sq_put_row(const struct sq_store *st, sqlite3_stmt *s,
		      const kw_store_put *p, const unsigned char *sealed,
		      size_t sealed_len)
{
	const kw_host *host = st->sq.host;
	int rc;

	rc = sq_bind_key(s, st->scope_word, sq_key_owner(&p->key),
			 p->key.provider);
	if (rc == SQLITE_OK && p->name != NULL)
		rc = sqlite3_bind_text(s, 4, p->name, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 5, sealed, (int)sealed_len,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 6, host->keyring_id(st->kr), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 7, host->now());
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	return rc;
}

/* Say through r what put's statement did on c (rc, its step). */
static kw_status sq_put_said(const struct sq_store *st, struct sq_conn *c,
			     const kw_store_put *p, int rc, const char *desc,
			     kw_reply *r)
{
	const kw_host *host = st->sq.host;
	const bool create = p->mode == KW_PUT_CREATE;

	if (create && (rc & 0xff) == SQLITE_CONSTRAINT) {
		host->reply_detail(r, "%s %s already exists; rotate it instead",
				   p->key.scope == KW_SCOPE_ORG ? "an" : "a",
				   desc);
		return KW_ERR_EXISTS;
	}
	if (rc != SQLITE_DONE)
		return sq_fail_own(&st->sq, r, "write", rc);
	if (!create && sqlite3_changes(c->db) == 0) {
		host->reply_detail(r, "no %s in %s", desc, st->sq.path);
		return KW_ERR_NOTFOUND;
	}
	host->reply_detail(r, "%s the %s in %s", create ? "stored" : "rotated",
			   desc, st->sq.path);
	return KW_OK;
}


kw_status sq_store_put(struct sq_store *st, const kw_store_put *p,
		       kw_reply *r)
{
	const kw_host *host = st->sq.host;
	const char *owner = sq_key_owner(&p->key);
	const kw_seal_aad aad = {
		.store_id = st->store_id,
		.scope = p->key.scope,
		.owner = owner,
		.provider = p->key.provider,
	};
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	unsigned char *sealed = NULL;
	size_t sealed_len = 0;
	char desc[SQ_DESC_MAX];
	kw_status ret;

	ret = sq_check_key(st, &p->key, r);
	if (ret != KW_OK)
		return ret;
	if (p->mode != KW_PUT_CREATE && p->mode != KW_PUT_ROTATE) {
		host->reply_detail(r, "unknown put mode %d", (int)p->mode);
		return KW_ERR_INVAL;
	}
	sq_describe(desc, sizeof(desc), p->key.scope, owner, p->key.provider);
	ret = sq_seal_put(st, &aad, p, desc, &sealed, &sealed_len, r);
	if (ret == KW_OK)
		ret = sq_acquire_all(&st->sq, &c, r);
	if (ret != KW_OK)
		goto out;
	s = c->stmt[p->mode == KW_PUT_CREATE ? SQ_INSERT : SQ_ROTATE];
	ret = sq_put_said(st, c, p, sq_put_row(st, s, p, sealed, sealed_len),
			  desc, r);
out:
	if (s != NULL)
		sq_done(s);
	if (ret == KW_OK)
		atomic_store(&st->sq.pool->changed, true);
	sq_release(&st->sq, c);
	free(sealed);
	return ret;
}

/* Run one of the UPDATE or DELETE statements on a key; NOTFOUND when it
 * touched no row. */
static kw_status sq_change(struct sq_store *st, struct sq_conn *c,
			   enum sq_stmt which, const kw_store_key *k,
			   int active, const char *desc, kw_reply *r)
{
	sqlite3_stmt *s = c->stmt[which];
	kw_status ret = KW_OK;
	int rc;

	rc = sq_bind_key(s, st->scope_word, sq_key_owner(k), k->provider);
	if (rc == SQLITE_OK && which == SQ_ACTIVE)
		rc = sqlite3_bind_int(s, 4, active);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		ret = sq_fail_own(&st->sq, r, "write", rc);
	} else if (sqlite3_changes(c->db) == 0) {
		st->sq.host->reply_detail(r, "no %s in %s", desc, st->sq.path);
		ret = KW_ERR_NOTFOUND;
	}
	sq_done(s);
	return ret;
}

/* What a change of one key starts with: refuse a key the store cannot
 * hold, describe it into desc, and take a connection (*c). */
static kw_status sq_change_begin(struct sq_store *st, const kw_store_key *k,
				 char desc[SQ_DESC_MAX], struct sq_conn **c,
				 kw_reply *r)
{
	kw_status ret;

	ret = sq_check_key(st, k, r);
	if (ret != KW_OK)
		return ret;
	sq_describe(desc, SQ_DESC_MAX, k->scope, sq_key_owner(k),
		    k->provider);
	return sq_acquire_all(&st->sq, c, r);
}

kw_status sq_store_set_active(struct sq_store *st, const kw_store_key *k,
			      bool active, kw_reply *r)
{
	struct sq_conn *c = NULL;
	char desc[SQ_DESC_MAX];
	kw_status ret;

	ret = sq_change_begin(st, k, desc, &c, r);
	if (ret != KW_OK)
		return ret;
	ret = sq_change(st, c, SQ_ACTIVE, k, active ? 1 : 0, desc, r);
	if (ret == KW_OK) {
		atomic_store(&st->sq.pool->changed, true);
		st->sq.host->reply_detail(r, "%s the %s",
					  active ? "enabled" : "disabled",
					  desc);
	}
	sq_release(&st->sq, c);
	return ret;
}

kw_status sq_store_remove(struct sq_store *st, const kw_store_key *k,
			  kw_reply *r)
{
	const kw_host *host = st->sq.host;
	struct sq_conn *c = NULL;
	char desc[SQ_DESC_MAX];
	kw_status ret;
	int rc;

	ret = sq_change_begin(st, k, desc, &c, r);
	if (ret != KW_OK)
		return ret;
	/* The last close empties the WAL, should the erase not manage to. */
	atomic_store(&st->sq.pool->changed, true);
	ret = sq_change(st, c, SQ_DELETE, k, 0, desc, r);
	if (ret != KW_OK)
		goto out;
	rc = sq_erase(c->db);
	if (rc != SQLITE_OK) {
		/* The record is gone, which is what the caller asked; say
		 * that its bytes are not yet. */
		host->log(st->sq.inst, KW_LOG_WARNING,
			  "%s: deleted the %s, but its sealed bytes may stay "
			  "in the file until the next delete succeeds in "
			  "erasing them: %s",
			  st->sq.path, desc, sqlite3_errstr(rc));
		host->reply_detail(r,
				   "deleted the %s from %s, but could not yet "
				   "erase its sealed bytes (%s)",
				   desc, st->sq.path, sqlite3_errstr(rc));
		goto out;
	}
	host->reply_detail(r, "deleted the %s from %s", desc, st->sq.path);
out:
	sq_release(&st->sq, c);
	return ret;
}

/* ---- re-sealing ---- */

struct sq_ref {
	char *owner;
	char *provider;
};

static void sq_refs_free(struct sq_ref *refs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(refs[i].owner);
		free(refs[i].provider);
	}
	free(refs);
}

/* The records of our scope sealed under another master key.  Collected
 * first: updating key_id while stepping over it would disturb the scan. */
static int sq_stale(struct sq_store *st, struct sq_conn *c,
		    struct sq_ref **out, size_t *count)
{
	sqlite3_stmt *s = c->stmt[SQ_STALE];
	struct sq_ref *refs = NULL, *grown;
	size_t n = 0, cap = 0;
	int rc;

	*out = NULL;
	*count = 0;
	rc = sqlite3_bind_text(s, 1, st->scope_word, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, st->sq.host->keyring_id(st->kr),
				       -1, SQLITE_STATIC);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *owner = (const char *)sqlite3_column_text(s, 0);
		const char *provider = (const char *)sqlite3_column_text(s, 1);

		rc = SQLITE_NOMEM;
		if (owner == NULL || provider == NULL)
			break;
		if (n == cap) {
			cap = cap != 0 ? 2 * cap : 16;
			grown = realloc(refs, cap * sizeof(*refs));
			if (grown == NULL)
				break;
			refs = grown;
		}
		refs[n].owner = strdup(owner);
		refs[n].provider = strdup(provider);
		n++;
		if (refs[n - 1].owner == NULL || refs[n - 1].provider == NULL)
			break;
		rc = SQLITE_OK;
	}
	sq_done(s);
	if (rc != SQLITE_DONE) {
		sq_refs_free(refs, n);
		return rc;
	}
	*out = refs;
	*count = n;
	return SQLITE_OK;
}

/* Open a sealed value (n bytes) into guarded memory and seal it again
 * under the current master key; *out is malloc'd, also on a failure
 * said through r. */
static kw_status sq_reseal_value(const struct sq_store *st,
				 const kw_seal_aad *aad,
				 const unsigned char *sealed, int n,
				 const char *desc, unsigned char **out,
				 size_t *outlen, kw_reply *r)
{
	const kw_host *host = st->sq.host;
	size_t len, alloc;
	char *plain, why[160];
	kw_status ret;

	if (sealed == NULL || n < KW_SEAL_OVERHEAD) {
		host->reply_detail(r, "the %s: sealed value is too short (%d "
				   "bytes)", desc, n);
		return KW_ERR_CRYPTO;
	}
	len = (size_t)n - KW_SEAL_OVERHEAD;
	alloc = len > 0 ? len : 1;
	plain = host->secure_alloc(alloc);
	if (plain == NULL) {
		host->reply_detail(r, "out of memory");
		return KW_ERR_NOMEM;
	}
	why[0] = '\0';
	ret = host->unseal(st->kr, aad, sealed, (size_t)n, plain, why,
			   sizeof(why));
	if (ret != KW_OK) {
		host->reply_detail(r, "the %s: %s", desc,
				   why[0] != '\0' ? why : "cannot open it");
	} else {
		ret = host->seal(st->kr, aad, plain, len, out, outlen);
		if (ret != KW_OK)
			host->reply_detail(r, "cannot seal the %s", desc);
	}
	host->wipe(plain, alloc);
	host->secure_free(plain, alloc);
	return ret;
}

/* Re-seal one record under the current master key, inside rekey's
 * transaction. */
static kw_status sq_reseal(struct sq_store *st, struct sq_conn *c,
			   const struct sq_ref *ref, kw_reply *r)
{
	const kw_host *host = st->sq.host;
	const char *owner = st->scope == KW_SCOPE_SYSTEM ? NULL : ref->owner;
	const kw_seal_aad aad = {
		.store_id = st->store_id,
		.scope = st->scope,
		.owner = owner,
		.provider = ref->provider,
	};
	sqlite3_stmt *s = c->stmt[SQ_LOOKUP];
	unsigned char *resealed = NULL;
	size_t resealed_len = 0;
	char desc[SQ_DESC_MAX];
	kw_status ret;
	int rc;

	sq_describe(desc, sizeof(desc), st->scope, owner, ref->provider);
	rc = sq_bind_key(s, st->scope_word, owner, ref->provider);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		/* Impossible under the write lock, unless the file changed
		 * under SQLite's feet. */
		host->reply_detail(r, "the %s vanished from %s during rekey",
				   desc, st->sq.path);
		ret = KW_ERR_BACKEND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		ret = sq_fail(&st->sq, r, "read", rc);
		goto out;
	}
	ret = sq_reseal_value(st, &aad, sqlite3_column_blob(s, 0),
			      sqlite3_column_bytes(s, 0), desc, &resealed,
			      &resealed_len, r);
	if (ret != KW_OK)
		goto out;
	sq_done(s);
	s = c->stmt[SQ_RESEAL];
	rc = sq_bind_key(s, st->scope_word, owner, ref->provider);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 4, resealed, (int)resealed_len,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 5, host->keyring_id(st->kr), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		ret = sq_fail_own(&st->sq, r, "write", rc);
out:
	sq_done(s);
	free(resealed);
	return ret;
}

kw_status sq_store_rekey(struct sq_store *st, uint64_t *count, kw_reply *r)
{
	const kw_host *host = st->sq.host;
	struct sq_conn *c = NULL;
	struct sq_ref *refs = NULL;
	size_t n = 0;
	kw_status ret;
	int rc;

	if (count != NULL)
		*count = 0;
	ret = sq_acquire_all(&st->sq, &c, r);
	if (ret != KW_OK)
		return ret;
	atomic_store(&st->sq.pool->changed, true);
	/* The write lock up front: readers go on reading the old values
	 * (WAL) until the commit shows them every new one at once. */
	rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		ret = sq_fail(&st->sq, r, "lock", rc);
		goto out;
	}
	rc = sq_stale(st, c, &refs, &n);
	if (rc != SQLITE_OK) {
		ret = sq_fail(&st->sq, r, "read", rc);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ret = sq_reseal(st, c, &refs[i], r);
		if (ret != KW_OK)
			goto out;
	}
	rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		ret = sq_fail_own(&st->sq, r, "commit to", rc);
		goto out;
	}
	if (count != NULL)
		*count = n;
	host->reply_detail(r, "re-sealed %zu %s key%s in %s under master key "
			   "%s", n, st->scope_word, n == 1 ? "" : "s",
			   st->sq.path, host->keyring_id(st->kr));
	/* A store is rekeyed when the old master key may be known to
	 * someone: copies sealed under it must not stay in the file. */
	if (n > 0 && (rc = sq_erase(c->db)) != SQLITE_OK)
		host->log(st->sq.inst, KW_LOG_WARNING,
			  "%s: re-sealed %zu key%s, but copies sealed under "
			  "the old master key may stay in the file until the "
			  "next delete or rekey erases them: %s",
			  st->sq.path, n, n == 1 ? "" : "s",
			  sqlite3_errstr(rc));
out:
	if (ret != KW_OK && !sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	sq_refs_free(refs, n);
	sq_release(&st->sq, c);
	return ret;
}

/* ---- usage counts ---- */

/*
 * The host adds uses up and writes them in batches, after the fact: the key
 * may have been deleted meanwhile, which is not an error.
 */
static kw_status sq_used_one(struct sq_store *st, struct sq_conn *c,
			     const kw_store_key *k, uint64_t count,
			     int64_t when, kw_reply *r)
{
	sqlite3_stmt *s = c->stmt[SQ_USED];
	kw_status ret;
	int rc;

	ret = sq_check_key(st, k, r);
	if (ret != KW_OK || count == 0)
		return ret;
	rc = sq_bind_key(s, st->scope_word, sq_key_owner(k), k->provider);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 4, count > (uint64_t)INT64_MAX
						      ? INT64_MAX
						      : (int64_t)count);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 5, when);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		ret = sq_fail_own(&st->sq, r, "write", rc);
	sq_done(s);
	return ret;
}

/*
 * A flush of usage counts in one transaction: one commit, and one write of
 * each page however many of its keys were used.
 */
kw_status sq_store_used_batch(struct sq_store *st, const kw_store_use *u,
			      size_t n, kw_reply *r)
{
	struct sq_conn *c = NULL;
	sqlite3_stmt *s;
	kw_status ret, first = KW_OK;
	int rc;

	/* Only its three statements: a keyway get flushes one count. */
	ret = sq_acquire(&st->sq, &c, r);
	if (ret != KW_OK)
		return ret;
	rc = sq_stmt(&st->sq, c, SQ_USED, &s);
	if (rc == SQLITE_OK)
		rc = sq_stmt(&st->sq, c, SQ_COMMIT, &s);
	if (rc == SQLITE_OK)
		rc = sq_stmt(&st->sq, c, SQ_BEGIN_WRITE, &s);
	if (rc == SQLITE_OK)
		rc = sq_run(s);
	if (rc != SQLITE_OK) {
		ret = sq_fail_conn(&st->sq, c, r, rc);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ret = sq_used_one(st, c, &u[i].key, u[i].count, u[i].when, r);
		if (first == KW_OK)
			first = ret;
		/* A failed write may have ended the transaction. */
		if (ret != KW_OK && sqlite3_get_autocommit(c->db))
			goto out;
	}
	rc = sq_run(c->stmt[SQ_COMMIT]);
	if (rc != SQLITE_OK)
		ret = sq_fail(&st->sq, r, "write", rc);
	else
		ret = first;
out:
	/* Rolls back what did not commit. */
	sq_release(&st->sq, c);
	return ret != KW_OK ? ret : first;
}
