/*
 * store.h - the sqlite module's key store role: what the module's dispatch
 * (sqlite.c) calls, and what the store's files (store.c, store_read.c,
 * store_write.c) share.  Built on pool.h; knows nothing of the ledger.
 *
 * Not installed; nothing here is exported.
 */
#ifndef KW_SQLITE_STORE_H
#define KW_SQLITE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "pool.h"

#define SQ_STORE_ID_LEN 32      /* hex digits */
#define SQ_DESC_MAX 320         /* "org key of \"OWNER\" for PROVIDER" */

/* A key store.  Immutable after open(), but for the pool. */
struct sq_store {
	struct sq_state sq;        /* first: the dispatch reads the role */
	kw_scope scope;
	const char *scope_word;    /* "user", "org", "system" */
	char store_id[SQ_STORE_ID_LEN + 1];
	kw_keyring *kr;
};

/* ---- the role, for the module's dispatch ---- */

/*
 * Open a key store (the host's role KW_INSTANCE_BACKEND), reporting through
 * host->error(); on KW_OK *out is the store, which sq_store_close() frees.
 */
kw_status sq_store_open(const kw_host *host, kw_instance *inst,
			struct sq_store **out);
/* Close st; NULL is a no-op. */
void sq_store_close(struct sq_store *st);
/* The module's operations on a key store (struct kw_module says what each
 * does); each answers through its reply. */
kw_status sq_store_check(struct sq_store *st, kw_reply *r);
kw_status sq_store_lookup(struct sq_store *st, const kw_query *q);
void sq_store_walk_end(struct sq_store *st);
kw_status sq_store_put(struct sq_store *st, const kw_store_put *p,
		       kw_reply *r);
kw_status sq_store_set_active(struct sq_store *st, const kw_store_key *k,
			      bool active, kw_reply *r);
kw_status sq_store_remove(struct sq_store *st, const kw_store_key *k,
			  kw_reply *r);
kw_status sq_store_list(struct sq_store *st, kw_scope scope,
			const char *owner, kw_store_list_fn *fn, void *arg,
			kw_reply *r);
kw_status sq_store_rekey(struct sq_store *st, uint64_t *count, kw_reply *r);
kw_status sq_store_used_batch(struct sq_store *st, const kw_store_use *u,
			      size_t n, kw_reply *r);

/* ---- between the store's files ---- */

/* Statements every connection prepares once. */
enum sq_stmt {
	SQ_LOOKUP,
	SQ_INSERT,
	SQ_ROTATE,
	SQ_ACTIVE,
	SQ_DELETE,
	SQ_LIST,
	SQ_LIST_OWNER,
	SQ_STALE,
	SQ_RESEAL,
	SQ_COUNT,
	SQ_USED,
	SQ_FETCH,
	SQ_FETCH_ALL,
	SQ_BEGIN_WRITE,
	SQ_COMMIT,
	SQ_NSTMTS
};

/* Append s to buf (size bytes, *len used), truncating. */
void sq_append(char *buf, size_t size, size_t *len, const char *s);
/* Append "org key of "acme" for anthropic", "system key for anthropic". */
void sq_describe_to(char *buf, size_t size, size_t *len, kw_scope scope,
		    const char *owner, const char *provider);
/* The same into buf alone; returns buf. */
const char *sq_describe(char *buf, size_t size, kw_scope scope,
			const char *owner, const char *provider);
/* Bind ?1 scope, ?2 owner ('' for none) and, unless NULL, ?3 provider. */
int sq_bind_key(sqlite3_stmt *s, const char *scope_word, const char *owner,
		const char *provider);
/* Refuse, through r, a key this store cannot hold (KW_ERR_INVAL). */
kw_status sq_check_key(const struct sq_store *st, const kw_store_key *k,
		       kw_reply *r);
/* The owner a key is sealed and stored under: none for a system key. */
const char *sq_key_owner(const kw_store_key *k);

#endif /* KW_SQLITE_STORE_H */
