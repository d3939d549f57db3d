/*
 * store_read.c - the key store's answers: lookups, alone or for a whole
 * walk through the stores on one file, and the listing of keys with their
 * values masked.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "pool.h"
#include "store.h"

/* ---- walks ---- */

/*
 * A chain often asks several backends on one file for the same request:
 * the org's key, else the user's.  The first lookup of a walk in a file
 * that more than one scope uses fetches the rows of every scope in one
 * statement (one read transaction, one snapshot), and the walk's other
 * lookups in that file answer from them, until walk_end().  The rows hold
 * sealed values only.  One file at a time per thread.
 */
#define SQ_ROW_INLINE 320 /* a sealed value this long needs no malloc() */

struct sq_row {
	bool found;
	bool active;
	size_t len;
	unsigned char *sealed;  /* inline, or malloc'd when longer */
	unsigned char inline_buf[SQ_ROW_INLINE];
};

struct sq_walk {
	const struct sq_pool *pool; /* NULL: nothing fetched */
	const char *provider, *user, *org;
	struct sq_row rows[3];      /* by scope, KW_SCOPE_USER first */
};

static __thread struct sq_walk sq_walk;

_Static_assert(KW_SCOPE_USER == 1 && KW_SCOPE_ORG == 2 &&
		       KW_SCOPE_SYSTEM == 3,
	       "SQ_FETCH answers scopes 1, 2 and 3 in that order");

static void sq_walk_clear(struct sq_walk *w)
{
	for (int i = 0; i < 3; i++) {
		struct sq_row *r = &w->rows[i];

		if (r->sealed != r->inline_buf)
			free(r->sealed);
		r->sealed = NULL;
		r->found = false;
	}
	w->pool = NULL;
}

void sq_store_walk_end(struct sq_store *st)
{

	if (sq_walk.pool == st->sq.pool)
		sq_walk_clear(&sq_walk);
}

static bool sq_same(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Is what the walk fetched the answer to q? */
static const struct sq_row *sq_walk_row(const struct sq_store *st,
					const kw_query *q)
{
	const struct sq_walk *w = &sq_walk;

	if (w->pool != st->sq.pool || !sq_same(w->provider, q->provider) ||
	    !sq_same(w->user, q->user) || !sq_same(w->org, q->org))
		return NULL;
	return &w->rows[st->scope - 1];
}

/* Fetch the rows of every scope the file's stores hold (`scopes`) for q's
 * request into the walk: a seek each. */
static int sq_walk_fetch(struct sq_store *st, struct sq_conn *c,
			 const kw_query *q, unsigned scopes)
{
	struct sq_walk *w = &sq_walk;
	sqlite3_stmt *s;
	int rc;

	sq_walk_clear(w);
	rc = sq_stmt(&st->sq, c,
		     scopes & (1u << KW_SCOPE_SYSTEM) ? SQ_FETCH_ALL : SQ_FETCH,
		     &s);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_bind_text(s, 1, q->user, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, q->org, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 3, q->provider, -1, SQLITE_STATIC);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t i = sqlite3_column_int64(s, 0);
		const void *v = sqlite3_column_blob(s, 1);
		int n = sqlite3_column_bytes(s, 1);
		struct sq_row *r;

		if (i < 1 || i > 3)
			continue;
		r = &w->rows[i - 1];
		r->sealed = (size_t)n <= sizeof(r->inline_buf)
				    ? r->inline_buf
				    : malloc((size_t)n);
		if (r->sealed == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		if (n > 0)
			memcpy(r->sealed, v, (size_t)n);
		r->len = (size_t)n;
		r->active = sqlite3_column_int64(s, 2) != 0;
		r->found = true;
		rc = SQLITE_OK;
	}
	sq_done(s);
	if (rc != SQLITE_DONE) {
		sq_walk_clear(w);
		return rc;
	}
	w->pool = st->sq.pool;
	w->provider = q->provider;
	w->user = q->user;
	w->org = q->org;
	return SQLITE_OK;
}
/* ---- answering ---- */

/* What a lookup's detail calls the key it looked for. */
static const char *sq_lookup_desc(const struct sq_store *st,
				  const kw_seal_aad *aad, char *buf)
{
	return sq_describe(buf, SQ_DESC_MAX, st->scope, aad->owner,
			   aad->provider);
}

/* "no org key of "acme" for anthropic in PATH", "no system key for ...". */
static void sq_miss_detail(const struct sq_store *st, const kw_seal_aad *aad,
			   char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	sq_append(buf, size, &len, "no ");
	sq_describe_to(buf, size, &len, st->scope, aad->owner, aad->provider);
	sq_append(buf, size, &len, " in ");
	sq_append(buf, size, &len, st->sq.path);
}

/* Answer a lookup from the row it found (NULL: none). */
static kw_status sq_answer(const struct sq_store *st, const kw_query *q,
			   const kw_seal_aad *aad, const unsigned char *sealed,
			   size_t n, bool found, bool active)
{
	const kw_host *host = st->sq.host;
	char desc[SQ_DESC_MAX], why[160], *buf;
	kw_status ret;

	if (!found) {
		sq_miss_detail(st, aad, desc, sizeof(desc));
		host->reply_detail(q->reply, "%s", desc);
		return KW_ERR_NOTFOUND;
	}
	if (!active) {
		host->reply_detail(q->reply, "the %s is disabled",
				   sq_lookup_desc(st, aad, desc));
		return KW_ERR_DENIED;
	}
	if (sealed == NULL || n < KW_SEAL_OVERHEAD) {
		host->reply_detail(q->reply,
				   "the %s: sealed value is too short (%zu "
				   "bytes)",
				   sq_lookup_desc(st, aad, desc), n);
		return KW_ERR_CRYPTO;
	}
	ret = host->reply_buffer(q->reply, n - KW_SEAL_OVERHEAD, &buf);
	if (ret != KW_OK) {
		host->reply_detail(q->reply, "the %s: no room for it",
				   sq_lookup_desc(st, aad, desc));
		return ret;
	}
	why[0] = '\0';
	ret = host->unseal(st->kr, aad, sealed, n, buf, why, sizeof(why));
	if (ret != KW_OK) {
		host->reply_detail(q->reply, "the %s: %s",
				   sq_lookup_desc(st, aad, desc),
				   why[0] != '\0' ? why : "cannot open it");
		return ret;
	}
	/* Only `keyway explain` shows where a key was found. */
	if (!KW_QUERY_HAS(q, flags) || (q->flags & KW_QUERY_EXPLAIN) != 0)
		host->reply_detail(q->reply, "%s in %s",
				   sq_lookup_desc(st, aad, desc), st->sq.path);
	return KW_OK;
}

kw_status sq_store_lookup(struct sq_store *st, const kw_query *q)
{
	const kw_seal_aad aad = {
		.store_id = st->store_id,
		.scope = st->scope,
		.owner = st->scope == KW_SCOPE_SYSTEM ? NULL : q->owner,
		.provider = q->provider,
	};
	const bool walk = KW_QUERY_HAS(q, flags) &&
			  (q->flags & KW_QUERY_WALK) != 0;
	const unsigned scopes = atomic_load_explicit(&st->sq.pool->scopes,
						     memory_order_relaxed);
	const struct sq_row *row;
	struct sq_conn *c = NULL;
	sqlite3_stmt *s = NULL;
	kw_status ret;
	int rc;

	if (walk && (row = sq_walk_row(st, q)) != NULL)
		return sq_answer(st, q, &aad, row->sealed, row->len,
				 row->found, row->active);
	ret = sq_acquire(&st->sq, &c, q->reply);
	if (ret != KW_OK)
		return ret;
	/* More than one scope in the file: fetch for the whole walk. */
	if (walk && (scopes & (scopes - 1)) != 0) {
		rc = sq_walk_fetch(st, c, q, scopes);
		if (rc != SQLITE_OK)
			ret = sq_fail_conn(&st->sq, c, q->reply, rc);
		sq_release(&st->sq, c);
		if (rc != SQLITE_OK)
			return ret;
		row = sq_walk_row(st, q);
		return sq_answer(st, q, &aad, row->sealed, row->len,
				 row->found, row->active);
	}
	rc = sq_stmt(&st->sq, c, SQ_LOOKUP, &s);
	if (rc == SQLITE_OK)
		rc = sq_bind_key(s, st->scope_word, aad.owner, q->provider);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		ret = sq_answer(st, q, &aad, sqlite3_column_blob(s, 0),
				(size_t)sqlite3_column_bytes(s, 0), true,
				sqlite3_column_int64(s, 1) != 0);
	else if (rc == SQLITE_DONE)
		ret = sq_answer(st, q, &aad, NULL, 0, false, false);
	else
		ret = sq_fail_conn(&st->sq, c, q->reply, rc);
	if (s != NULL)
		sq_done(s);
	sq_release(&st->sq, c);
	return ret;
}

/* ---- listing ---- */

/*
 * Mask a sealed value: open it into guarded memory, mask, wipe.  A value
 * that does not open is listed as "(cannot open)" so that one damaged row
 * does not hide the others.
 */
static kw_status sq_mask_sealed(const struct sq_store *st,
				const kw_seal_aad *aad,
				const unsigned char *sealed, int n, char *buf,
				size_t size)
{
	const kw_host *host = st->sq.host;
	size_t len, alloc;
	char *plain, why[160];

	snprintf(buf, size, "(cannot open)");
	if (sealed == NULL || n < KW_SEAL_OVERHEAD)
		return KW_OK;
	len = (size_t)n - KW_SEAL_OVERHEAD;
	alloc = len > 0 ? len : 1;
	plain = host->secure_alloc(alloc);
	if (plain == NULL)
		return KW_ERR_NOMEM;
	if (host->unseal(st->kr, aad, sealed, (size_t)n, plain, why,
			 sizeof(why)) == KW_OK)
		host->mask(plain, len, buf, size);
	host->wipe(plain, alloc);
	host->secure_free(plain, alloc);
	return KW_OK;
}

/* The record of the row s is on, but for its masked value: SQLITE_OK, or
 * SQLITE_NOMEM for a column SQLite had no memory for. */
static int sq_list_row(const struct sq_store *st, sqlite3_stmt *s,
		       kw_store_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->scope = st->scope;
	rec->owner = (const char *)sqlite3_column_text(s, 0);
	rec->provider = (const char *)sqlite3_column_text(s, 1);
	rec->name = (const char *)sqlite3_column_text(s, 2);
	rec->active = sqlite3_column_int64(s, 3) != 0;
	rec->key_id = (const char *)sqlite3_column_text(s, 5);
	rec->usage_count = (uint64_t)sqlite3_column_int64(s, 6);
	rec->last_used = sqlite3_column_int64(s, 7);
	rec->created = sqlite3_column_int64(s, 8);
	rec->rotated = sqlite3_column_int64(s, 9);
	if (rec->owner == NULL || rec->provider == NULL ||
	    rec->name == NULL || rec->key_id == NULL)
		return SQLITE_NOMEM;
	if (st->scope == KW_SCOPE_SYSTEM)
		rec->owner = NULL;
	return SQLITE_OK;
}

kw_status sq_store_list(struct sq_store *st, kw_scope scope,
			const char *owner, kw_store_list_fn *fn, void *arg,
			kw_reply *r)
{
	struct sq_conn *c = NULL;
	sqlite3_stmt *s;
	char masked[KW_MASK_SIZE];
	kw_store_record rec;
	kw_seal_aad aad;
	kw_status ret;
	int rc;

	/* This backend holds the keys of its own scope only. */
	if (scope != KW_SCOPE_NONE && scope != st->scope)
		return KW_OK;
	ret = sq_acquire_all(&st->sq, &c, r);
	if (ret != KW_OK)
		return ret;
	s = c->stmt[owner != NULL ? SQ_LIST_OWNER : SQ_LIST];
	rc = sqlite3_bind_text(s, 1, st->scope_word, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && owner != NULL)
		rc = sqlite3_bind_text(s, 2, owner, -1, SQLITE_STATIC);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		rc = sq_list_row(st, s, &rec);
		if (rc != SQLITE_OK)
			break;
		aad.store_id = st->store_id;
		aad.scope = st->scope;
		aad.owner = rec.owner;
		aad.provider = rec.provider;
		ret = sq_mask_sealed(st, &aad, sqlite3_column_blob(s, 4),
				     sqlite3_column_bytes(s, 4), masked,
				     sizeof(masked));
		if (ret != KW_OK) {
			st->sq.host->reply_detail(r, "out of memory");
			goto out;
		}
		rec.masked = masked;
		ret = fn(arg, &rec);
		if (ret != KW_OK)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = sq_fail(&st->sq, r, "read", rc);
out:
	sq_done(s);
	sq_release(&st->sq, c);
	return ret;
}
