/*
 * store.c - the sqlite module as a key store: a store of sealed API keys
 * in a SQLite database, one key per (scope, owner, provider).  This file
 * opens, checks and closes a store and keeps its schema; store_read.c
 * answers lookups and lists, store_write.c changes keys.
 *
 * Values are sealed by the host (AES-256-GCM under the master key, bound to
 * the store's id and the record), so the database only ever holds
 * ciphertext; a plaintext exists only in a reply buffer or in guarded
 * memory, for as long as it takes to hand it out or mask it.
 *
 * Several backends may share one file, each with its own scope: the scope
 * is part of every row's key.  The stores of this process on one file
 * share a pool of connections (pool.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "pool.h"
#include "store.h"

/*
 * Migration N brings a store from schema version N - 1 to N; they run in
 * order, in one transaction, when a store is opened.  Only ever append.
 */
static const char *const sq_migrations[] = {
	/* 1: the first schema */
	"CREATE TABLE meta ("
	"  k TEXT PRIMARY KEY,"
	"  v BLOB NOT NULL"
	");"
	"CREATE TABLE keys ("
	"  scope TEXT NOT NULL,"
	"  owner TEXT NOT NULL,"
	"  provider TEXT NOT NULL,"
	"  name TEXT NOT NULL DEFAULT '',"
	"  active INTEGER NOT NULL DEFAULT 1,"
	"  sealed BLOB NOT NULL,"
	"  key_id TEXT NOT NULL,"
	"  usage_count INTEGER NOT NULL DEFAULT 0,"
	"  last_used INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL,"
	"  rotated INTEGER NOT NULL,"
	"  PRIMARY KEY (scope, owner, provider)"
	") WITHOUT ROWID;"
	"CREATE INDEX keys_key_id ON keys (key_id);",
};

#define SQ_SCHEMA_VERSION \
	((int)(sizeof(sq_migrations) / sizeof(sq_migrations[0])))

/* ?1 scope, ?2 owner ('' for system keys), ?3 provider throughout. */
static const char *const sq_sql[SQ_NSTMTS] = {
	[SQ_LOOKUP] = "SELECT sealed, active FROM keys"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_INSERT] = "INSERT INTO keys (scope, owner, provider, name, sealed,"
		      " key_id, created, rotated)"
		      " VALUES (?1, ?2, ?3, coalesce(?4, ''), ?5, ?6, ?7, ?7)",
	[SQ_ROTATE] = "UPDATE keys SET sealed = ?5, key_id = ?6, rotated = ?7,"
		      " name = coalesce(?4, name)"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_ACTIVE] = "UPDATE keys SET active = ?4"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_DELETE] = "DELETE FROM keys"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_LIST] = "SELECT owner, provider, name, active, sealed, key_id,"
		    " usage_count, last_used, created, rotated FROM keys"
		    " WHERE scope = ?1 ORDER BY owner, provider",
	[SQ_LIST_OWNER] = "SELECT owner, provider, name, active, sealed,"
			  " key_id, usage_count, last_used, created, rotated"
			  " FROM keys WHERE scope = ?1 AND owner = ?2"
			  " ORDER BY owner, provider",
	[SQ_STALE] = "SELECT owner, provider FROM keys"
		     " WHERE scope = ?1 AND key_id <> ?2"
		     " ORDER BY owner, provider",
	[SQ_RESEAL] = "UPDATE keys SET sealed = ?4, key_id = ?5"
		      " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	[SQ_COUNT] = "SELECT count(*) FROM keys WHERE scope = ?1",
	[SQ_USED] = "UPDATE keys SET usage_count = usage_count + ?4,"
		    " last_used = max(last_used, ?5)"
		    " WHERE scope = ?1 AND owner = ?2 AND provider = ?3",
	/* Every row a request could be answered from, one seek each, so
	 * that a walk's lookups in the file read one snapshot: the user's
	 * and the org's key, and with FETCH_ALL the system key too. */
	[SQ_FETCH] = "SELECT 1, sealed, active FROM keys"
		     " WHERE scope = 'user' AND owner = ?1 AND provider = ?3"
		     " UNION ALL SELECT 2, sealed, active FROM keys"
		     " WHERE scope = 'org' AND owner = ?2 AND provider = ?3",
	[SQ_FETCH_ALL] = "SELECT 1, sealed, active FROM keys"
			 " WHERE scope = 'user' AND owner = ?1"
			 " AND provider = ?3"
			 " UNION ALL SELECT 2, sealed, active FROM keys"
			 " WHERE scope = 'org' AND owner = ?2 AND provider = ?3"
			 " UNION ALL SELECT 3, sealed, active FROM keys"
			 " WHERE scope = 'system' AND owner = ''"
			 " AND provider = ?3",
	[SQ_BEGIN_WRITE] = "BEGIN IMMEDIATE",
	[SQ_COMMIT] = "COMMIT",
};

_Static_assert(SQ_NSTMTS <= SQ_STMTS_MAX, "raise SQ_STMTS_MAX");

/* Append s to buf (size bytes, *len used), truncating. */
void sq_append(char *buf, size_t size, size_t *len, const char *s)
{
	size_t n = strlen(s);

	if (n > size - 1 - *len)
		n = size - 1 - *len;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
}

/* keyway's name for a key (kw_key_describe()), after what buf holds. */
void sq_describe_to(char *buf, size_t size, size_t *len, kw_scope scope,
		    const char *owner, const char *provider)
{
	kw_key_describe(buf, size, len, scope, owner, provider);
}

const char *sq_describe(char *buf, size_t size, kw_scope scope,
			const char *owner, const char *provider)
{
	size_t len = 0;

	buf[0] = '\0';
	sq_describe_to(buf, size, &len, scope, owner, provider);
	return buf;
}

/* The owner column: '' stands for "no owner" (system keys). */
static const char *sq_owner_col(const char *owner)
{
	return owner != NULL ? owner : "";
}

int sq_bind_key(sqlite3_stmt *s, const char *scope_word, const char *owner,
		const char *provider)
{
	int rc;

	rc = sqlite3_bind_text(s, 1, scope_word, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, sq_owner_col(owner), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK && provider != NULL)
		rc = sqlite3_bind_text(s, 3, provider, -1, SQLITE_STATIC);
	return rc;
}

/* ---- the schema ---- */

/* Read meta's store_id and kdf_salt. */
static kw_status sq_read_meta(struct sq_store *st, kw_instance *inst,
			      sqlite3 *db, unsigned char salt[KW_SALT_SIZE])
{
	const kw_host *host = st->sq.host;
	sqlite3_stmt *s = NULL;
	const unsigned char *v;
	bool have_id = false, have_salt = false;
	kw_status ret = KW_OK;
	int rc, n;

	rc = sqlite3_prepare_v2(db,
				"SELECT k, v FROM meta"
				" WHERE k IN ('store_id', 'kdf_salt')",
				-1, &s, NULL);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		if ((rc = sqlite3_step(s)) != SQLITE_ROW)
			break;
		const char *k = (const char *)sqlite3_column_text(s, 0);
		bool hex = true;

		v = sqlite3_column_blob(s, 1);
		n = sqlite3_column_bytes(s, 1);
		if (k != NULL && strcmp(k, "kdf_salt") == 0) {
			if (v == NULL || n != KW_SALT_SIZE)
				goto damaged;
			memcpy(salt, v, KW_SALT_SIZE);
			have_salt = true;
			continue;
		}
		if (v == NULL || n != SQ_STORE_ID_LEN)
			goto damaged;
		for (int i = 0; i < n; i++)
			hex = hex && ((v[i] >= '0' && v[i] <= '9') ||
				      (v[i] >= 'a' && v[i] <= 'f'));
		if (!hex)
			goto damaged;
		memcpy(st->store_id, v, SQ_STORE_ID_LEN);
		st->store_id[SQ_STORE_ID_LEN] = '\0';
		have_id = true;
	}
	if (rc != SQLITE_DONE) {
		host->error(inst, "path", "cannot read store %s: %s",
			    st->sq.path, sqlite3_errmsg(db));
		ret = sq_status(rc);
		goto out;
	}
	if (!have_id || !have_salt) {
		host->error(inst, "path",
			    "store %s is damaged: its meta table has no %s",
			    st->sq.path, !have_id ? "store_id" : "kdf_salt");
		ret = KW_ERR_BACKEND;
	}
	goto out;

damaged:
	host->error(inst, "path", "store %s is damaged: meta %s is malformed",
		    st->sq.path, (const char *)sqlite3_column_text(s, 0));
	ret = KW_ERR_BACKEND;
out:
	sqlite3_finalize(s);
	return ret;
}

/*
 * Refuse the key_id s answers (after `id`, the one before it) unless it is
 * the id of a master key we have.
 */
static kw_status sq_check_key_id(const struct sq_store *st,
				 kw_instance *inst, sqlite3_stmt *s,
				 const char *id, size_t idsize)
{
	const kw_host *host = st->sq.host;
	/* An id is hex text: anything else would not move the seek on, and
	 * no master key has it. */
	const char *v = (const char *)sqlite3_column_text(s, 0);
	int n = sqlite3_column_bytes(s, 0);

	if (sqlite3_column_type(s, 0) != SQLITE_TEXT || v == NULL ||
	    (size_t)n != strlen(v) || (size_t)n >= idsize ||
	    strcmp(v, id) <= 0) {
		host->error(inst, "path",
			    "store %s is damaged: a key_id is not a master key "
			    "id",
			    st->sq.path);
		return KW_ERR_BACKEND;
	}
	if (!host->keyring_knows(st->kr, v)) {
		host->error(inst, "path",
			    "%s holds keys sealed under master key %s, which "
			    "neither keyway.master_key nor "
			    "keyway.old_master_keys holds",
			    st->sq.path, v);
		return KW_ERR_CRYPTO;
	}
	return KW_OK;
}

/*
 * Refuse a store that holds keys sealed under a master key we do not have:
 * they could never be handed out, and rekey could not move them.
 */
static kw_status sq_check_key_ids(struct sq_store *st, kw_instance *inst,
				  sqlite3 *db)
{
	const kw_host *host = st->sq.host;
	sqlite3_stmt *first = NULL, *next = NULL, *s;
	char id[KW_KEY_ID_SIZE] = "";
	kw_status ret = KW_OK;
	int rc;

	/* One seek in keys_key_id per distinct id: a store of a million keys
	 * opens as fast as an empty one. */
	rc = sqlite3_prepare_v2(db, "SELECT min(key_id) FROM keys", -1,
				&first, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT min(key_id) FROM keys"
					    " WHERE key_id > ?1",
					-1, &next, NULL);
	for (s = first; rc == SQLITE_OK; s = next) {
		if (s == next)
			rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		if (sqlite3_column_type(s, 0) == SQLITE_NULL) {
			rc = SQLITE_DONE;
			break;
		}
		ret = sq_check_key_id(st, inst, s, id, sizeof(id));
		if (ret != KW_OK)
			goto out;
		memcpy(id, sqlite3_column_text(s, 0),
		       (size_t)sqlite3_column_bytes(s, 0) + 1);
		rc = sqlite3_reset(s);
	}
	if (rc != SQLITE_DONE) {
		host->error(inst, "path", "cannot read store %s: %s",
			    st->sq.path, sqlite3_errmsg(db));
		ret = sq_status(rc);
	}
out:
	sqlite3_finalize(first);
	sqlite3_finalize(next);
	return ret;
}

/* A new store's identity (salt: its salt), in the transaction that
 * creates its schema. */
static int sq_write_meta(const struct sq_state *sq, sqlite3 *db,
			 const void *salt)
{
	const struct sq_store *st = (const struct sq_store *)sq;
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db,
				"INSERT INTO meta (k, v) VALUES"
				" ('store_id', ?1), ('kdf_salt', ?2)",
				-1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 1, st->store_id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(s, 2, salt, KW_SALT_SIZE, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Bring the schema up to date in one transaction.  Another process may be
 * doing the same: the version is read again under the write lock, and
 * meta is only filled in when this process creates the schema.  A failure
 * says "update" until the new store's own records are written.
 */
static kw_status sq_migrate(struct sq_store *st, sqlite3 *db,
			    const unsigned char *salt)
{
	bool initialising = false;
	int64_t version;
	int rc;

	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sq_int(db, "PRAGMA user_version", &version);
	if (rc != SQLITE_OK)
		return sq_schema_failed(&st->sq, db, "update", rc);
	if (version > SQ_SCHEMA_VERSION)
		return sq_schema_newer(&st->sq, db, version);
	/* At SQ_SCHEMA_VERSION, another process got there first: nothing
	 * to do but commit. */
	rc = sq_schema_steps(&st->sq, db, version, sq_write_meta, salt,
			     &initialising);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return sq_schema_failed(&st->sq, db,
					initialising ? "initialise" : "update",
					rc);
	return KW_OK;
}

const struct sq_kind sq_store_kind = {
	.app_id = SQ_APP_ID,
	.other_app_id = SQ_LEDGER_APP_ID,
	.schema = SQ_SCHEMA_VERSION,
	.noun = "store",
	.other = "is a keyway quota ledger, not a key store: give the backend "
		 "a file of its own",
	.holds = "secrets",
	.init_hint = " (or a first keyway put)",
	.migrations = sq_migrations,
	.sql = sq_sql,
	.nsql = SQ_NSTMTS,
	.secrets = true,
	.prepare_all = false,
};

/* ---- opening and closing ---- */

/*
 * The store's identity (its id and the salt of its master key) and a
 * keyring bound to it: read from a file that has a schema (version > 0),
 * whose keys' master key ids are then checked; else made here, for
 * sq_migrate() to write.
 */
static kw_status sq_identity(struct sq_store *st, kw_instance *inst,
			     sqlite3 *db, int64_t version,
			     unsigned char salt[KW_SALT_SIZE])
{
	const kw_host *host = st->sq.host;
	kw_status ret = KW_OK;

	if (version > 0) {
		ret = sq_read_meta(st, inst, db, salt);
	} else {
		/* A new store: its identity is made here, written below. */
		unsigned char id[SQ_STORE_ID_LEN / 2];

		host->random(id, sizeof(id));
		for (size_t i = 0; i < sizeof(id); i++)
			snprintf(st->store_id + 2 * i, 3, "%02x", id[i]);
		host->random(salt, KW_SALT_SIZE);
	}
	if (ret != KW_OK)
		return ret;
	/* It says itself what is wrong (no master key configured, ...). */
	ret = host->keyring_open(inst, salt, &st->kr);
	if (ret == KW_OK && version > 0)
		ret = sq_check_key_ids(st, inst, db);
	return ret;
}

/* After creating the schema: another process may have created it first,
 * and its identity is the store's. */
static kw_status sq_adopt_identity(struct sq_store *st, kw_instance *inst,
				   sqlite3 *db,
				   unsigned char salt[KW_SALT_SIZE])
{
	const kw_host *host = st->sq.host;
	unsigned char fresh[KW_SALT_SIZE];
	kw_status ret;

	memcpy(fresh, salt, sizeof(fresh));
	ret = sq_read_meta(st, inst, db, salt);
	if (ret != KW_OK)
		return ret;
	if (memcmp(fresh, salt, sizeof(fresh)) != 0) {
		host->keyring_close(st->kr);
		st->kr = NULL;
		ret = host->keyring_open(inst, salt, &st->kr);
		if (ret != KW_OK)
			return ret;
	}
	return sq_check_key_ids(st, inst, db);
}

/*
 * Open the store on a first connection: look at what the file holds, bind
 * the keyring to it and check its keys, and only then write to it (WAL
 * mode, schema).  The connection becomes the first of the pool.
 */
static kw_status sq_open_store(struct sq_store *st, kw_instance *inst)
{
	unsigned char salt[KW_SALT_SIZE];
	struct sq_conn *c = NULL;
	int64_t version;
	kw_status ret;

	ret = sq_open_checked(&st->sq, &c, &version);
	if (ret == KW_OK)
		ret = sq_identity(st, inst, c->db, version, salt);
	if (ret != KW_OK)
		goto out;

	/* Checked: from here on the file may be written, but not in a
	 * check, where sq_open_checked() refused any version but the
	 * current one. */
	ret = sq_checking(&st->sq) ? KW_OK : sq_wal(&st->sq, c->db);
	if (ret != KW_OK)
		goto out;
	if (version < SQ_SCHEMA_VERSION) {
		ret = sq_migrate(st, c->db, salt);
		atomic_store(&st->sq.pool->changed, true);
		if (ret != KW_OK)
			goto out;
	}
	if (version == 0) {
		ret = sq_adopt_identity(st, inst, c->db, salt);
		if (ret != KW_OK)
			goto out;
	}

	/* The statement lookups need proves the table is what it should be;
	 * the others are prepared when first used. */
	_Static_assert(SQ_LOOKUP == 0, "sq_prepare_first() prepares it");
	ret = sq_prepare_first(&st->sq, c, 1);
	if (ret != KW_OK)
		goto out;
	st->sq.pool->idle = c;
	st->sq.pool->nconns = 1;
	c = NULL;
out:
	sq_conn_close(c);
	return ret;
}

/*
 * Another backend of this process opened the file: it is checked and up
 * to date.  This one needs the store's identity, a keyring of its own and
 * the check of the keys' master key ids against that keyring.
 */
static kw_status sq_join_store(struct sq_store *st, kw_instance *inst)
{
	unsigned char salt[KW_SALT_SIZE];
	struct sq_conn *c = NULL;
	kw_status ret;
	int rc;

	rc = sq_take(&st->sq, &c);
	if (rc != SQLITE_OK) {
		st->sq.host->error(inst, "path", "cannot open store %s: %s",
				   st->sq.path, sqlite3_errstr(rc));
		return sq_status(rc);
	}
	ret = sq_read_meta(st, inst, c->db, salt);
	if (ret == KW_OK)
		ret = st->sq.host->keyring_open(inst, salt, &st->kr);
	if (ret == KW_OK)
		ret = sq_check_key_ids(st, inst, c->db);
	sq_release(&st->sq, c);
	return ret;
}

/*
 * Open a key store on the pool of its file: join the pool another backend
 * of this process opened, or open the file on a new one and offer it to
 * the next (sq_pool_share()).
 */
static kw_status sq_open_shared(struct sq_store *st, kw_instance *inst)
{
	struct sq_pool *p;
	struct stat sb;
	kw_status ret;

	if (stat(st->sq.path, &sb) != 0) {
		int e = errno;

		st->sq.host->error(inst, "path", "%s: %s", st->sq.path,
				   strerror(e));
		return e == EACCES ? KW_ERR_PERM : KW_ERR_IO;
	}
	p = sq_pool_join(&st->sq, &sb);
	if (p != NULL) {
		ret = sq_join_store(st, inst);
		if (ret == KW_OK)
			atomic_fetch_or(&p->scopes, 1u << st->scope);
		return ret;
	}
	ret = sq_pool_new(&st->sq);
	if (ret == KW_OK)
		ret = sq_open_store(st, inst);
	if (ret != KW_OK)
		return ret;
	atomic_fetch_or(&st->sq.pool->scopes, 1u << st->scope);
	sq_pool_share(&st->sq, &sb);
	return KW_OK;
}

void sq_store_close(struct sq_store *st)
{
	if (st == NULL)
		return;
	if (st->kr != NULL)
		st->sq.host->keyring_close(st->kr);
	sq_pool_put(&st->sq);
	free(st);
}

/* A key store has a scope and a master key. */
kw_status sq_store_open(const kw_host *host, kw_instance *inst,
			struct sq_store **out)
{
	struct sq_store *st;
	kw_status rc;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	st->scope = host->instance_scope(inst);
	st->scope_word = kw_key_scope_word(st->scope);
	if (st->scope_word == NULL) {
		host->error(inst, NULL,
			    "missing scope (\"user\", \"org\" or \"system\")");
		rc = KW_ERR_CONFIG;
		goto out;
	}
	rc = sq_open_common(&st->sq, host, inst, KW_INSTANCE_BACKEND,
			    &sq_store_kind);
	if (rc == KW_OK)
		rc = sq_prepare_file(&st->sq);
	if (rc == KW_OK)
		rc = sq_open_shared(st, inst);
	if (rc != KW_OK)
		goto out;
	*out = st;
	st = NULL;
out:
	sq_store_close(st);
	return rc;
}

kw_status sq_store_check(struct sq_store *st, kw_reply *r)
{
	const kw_host *host = st->sq.host;
	struct sq_conn *c = NULL;
	int64_t nkeys = 0;
	kw_status ret;
	int rc;

	ret = sq_health(&st->sq, &c, r);
	if (ret != KW_OK)
		return ret;
	rc = sqlite3_bind_text(c->stmt[SQ_COUNT], 1, st->scope_word, -1,
			       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(c->stmt[SQ_COUNT]);
	if (rc == SQLITE_ROW)
		nkeys = sqlite3_column_int64(c->stmt[SQ_COUNT], 0);
	sq_done(c->stmt[SQ_COUNT]);
	if (rc != SQLITE_ROW)
		ret = sq_fail(&st->sq, r, "read", rc);
	else
		host->reply_detail(r, "%s: %" PRId64 " %s key%s, schema v%d",
				   st->sq.path, nkeys, st->scope_word,
				   nkeys == 1 ? "" : "s", SQ_SCHEMA_VERSION);
	sq_release(&st->sq, c);
	return ret;
}

/* ---- keys ---- */

/* The host checks keys against the backend; refuse what would still make
 * a record no lookup can reach. */
kw_status sq_check_key(const struct sq_store *st, const kw_store_key *k,
		       kw_reply *r)
{
	const char *word = kw_key_scope_word(k->scope);

	if (k->scope != st->scope) {
		st->sq.host->reply_detail(r, "this backend holds %s keys, "
					  "not %s keys", st->scope_word,
					  word != NULL ? word : "unscoped");
		return KW_ERR_INVAL;
	}
	if (k->provider == NULL || k->provider[0] == '\0') {
		st->sq.host->reply_detail(r, "no provider given");
		return KW_ERR_INVAL;
	}
	if (k->scope != KW_SCOPE_SYSTEM &&
	    (k->owner == NULL || k->owner[0] == '\0')) {
		st->sq.host->reply_detail(r, "%s %s key needs an owner",
					  word[0] == 'o' ? "an" : "a", word);
		return KW_ERR_INVAL;
	}
	if (k->scope == KW_SCOPE_SYSTEM && k->owner != NULL &&
	    k->owner[0] != '\0') {
		st->sq.host->reply_detail(r, "a system key has no owner");
		return KW_ERR_INVAL;
	}
	return KW_OK;
}

const char *sq_key_owner(const kw_store_key *k)
{
	return k->scope == KW_SCOPE_SYSTEM ? NULL : k->owner;
}
