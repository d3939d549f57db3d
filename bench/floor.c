/*
 * floor.c - the least a resolve of a stored key can cost: one prepared
 * SQLite point lookup and one AES-256-GCM open of a 108-byte key, written
 * plainly against SQLite and OpenSSL, on the very store the resolve
 * benchmark reads.
 *
 *     floor -s STORE -n USERS [-k OPS] [-r REPS] [-t THREADS] [-S SEED]
 *           [-m MODE] [-M MMAP_BYTES] [-A ACTIVE] [-c sodium]
 *
 * Per operation: bind (scope, owner, provider) to a statement prepared
 * once, step it, take the sealed blob, open it with a cipher context kept
 * per thread (key and nonce set for each open, associated data as the
 * store binds it: lib/seal.c's format), reset the statement.  What
 * libkeyway adds on top of this (the chain, the org entry's miss, the reply
 * buffer in guarded memory, usage counting) is what bench/resolve
 * measures against it.
 *
 * MODE "user" (the default) is the floor itself.  Two more say what the
 * org -> user chain costs at the least: "org" first looks up the key of
 * org "acme", which the store does not hold, as its own statement (its own
 * read transaction, as each chain entry has today); "org1" does both
 * lookups inside one read transaction (BEGIN ... COMMIT).
 *
 * -c sodium opens with libsodium's AES-256-GCM and a key expanded once
 * (crypto_aead_aes256gcm_beforenm), as libkeyway does on CPUs with AES-NI,
 * instead of OpenSSL's EVP interface: the floor of the same work done the
 * way keyway does it.
 *
 * -M sets PRAGMA mmap_size on every connection (default: SQLite's, no
 * mmap), to see what reading pages with pread() into SQLite's page cache
 * costs as the store grows.
 *
 * Each thread has a connection of its own.  Users are drawn uniformly from
 * the store in the same order as bench/resolve draws them; with -A, from
 * ACTIVE users spread evenly over the store (a working set that stays the
 * same size as the store grows).  Every value opened is checked for
 * length, and one in 1024 against the value stored.  Prints one JSON line:
 * ns per operation for each rep (wall time over all threads' operations).
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>
#include <sqlite3.h>

#include "benchutil.h"

#define SEAL_VERSION 1
#define ID_LEN 8
#define NONCE_LEN 12
#define TAG_LEN 16
#define HEADER_LEN (1 + ID_LEN + NONCE_LEN)
#define SEALED_LEN (HEADER_LEN + BU_KEY_LEN + TAG_LEN)
#define STORE_ID_LEN 32

static const char *prog = "floor";

static const char lookup_sql[] =
	"SELECT sealed, active FROM keys"
	" WHERE scope = ?1 AND owner = ?2 AND provider = ?3";

enum mode { MODE_USER, MODE_ORG, MODE_ORG1 };

struct shared {
	const char *path;
	enum mode mode;
	uint64_t mmap_size;        /* 0: SQLite's default */
	const char *names;      /* user name table */
	struct bu_run run;
	unsigned char key[32];
	char store_id[STORE_ID_LEN + 1];
	EVP_CIPHER *cipher;
	bool sodium;            /* -c sodium */
	crypto_aead_aes256gcm_state *expanded;
	bool failed;
};

struct worker {
	struct shared *sh;
	unsigned index;
	pthread_t thread;
	sqlite3 *db;
	sqlite3_stmt *lookup;
	sqlite3_stmt *org;          /* MODE_ORG, MODE_ORG1 */
	sqlite3_stmt *begin, *commit; /* MODE_ORG1 */
	EVP_CIPHER_CTX *gcm;
	uint64_t errors;
	char why[256];
};

/* The associated data lib/seal.c binds a user key's seal to. */
static size_t put_field(unsigned char *p, const char *s)
{
	size_t n = strlen(s);

	p[0] = (unsigned char)(n >> 24);
	p[1] = (unsigned char)(n >> 16);
	p[2] = (unsigned char)(n >> 8);
	p[3] = (unsigned char)n;
	memcpy(p + 4, s, n);
	return n + 4;
}

static size_t make_aad(unsigned char *aad, const unsigned char *header,
		       const char *store_id, const char *owner)
{
	static const char label[] = "keyway seal v1";
	size_t n = sizeof(label) - 1;

	memcpy(aad, label, n);
	memcpy(aad + n, header, HEADER_LEN);
	n += HEADER_LEN;
	n += put_field(aad + n, store_id);
	n += put_field(aad + n, "user");
	n += put_field(aad + n, owner);
	n += put_field(aad + n, BU_PROVIDER);
	return n;
}

/* The floor's one operation.  Returns 0, or -1 with w->why set. */
static int one(struct worker *w, const char *owner, uint64_t i, bool check)
{
	const struct shared *sh = w->sh;
	unsigned char aad[192], plain[BU_KEY_LEN];
	const unsigned char *sealed;
	char want[BU_KEY_LEN];
	int rc, n, len, ret = -1;

	if (sh->mode == MODE_ORG1 && sqlite3_step(w->begin) != SQLITE_DONE) {
		snprintf(w->why, sizeof(w->why), "cannot begin: %s",
			 sqlite3_errmsg(w->db));
		return -1;
	}
	if (sh->mode != MODE_USER) {
		sqlite3_bind_text(w->org, 1, "org", 3, SQLITE_STATIC);
		sqlite3_bind_text(w->org, 2, "acme", 4, SQLITE_STATIC);
		sqlite3_bind_text(w->org, 3, BU_PROVIDER, -1, SQLITE_STATIC);
		rc = sqlite3_step(w->org);
		sqlite3_reset(w->org);
		if (rc != SQLITE_DONE) {
			snprintf(w->why, sizeof(w->why), "org lookup: %s",
				 rc == SQLITE_ROW ? "a row" : sqlite3_errstr(rc));
			goto out;
		}
	}
	sqlite3_bind_text(w->lookup, 1, "user", 4, SQLITE_STATIC);
	sqlite3_bind_text(w->lookup, 2, owner, -1, SQLITE_STATIC);
	sqlite3_bind_text(w->lookup, 3, BU_PROVIDER, -1, SQLITE_STATIC);
	rc = sqlite3_step(w->lookup);
	if (rc != SQLITE_ROW) {
		snprintf(w->why, sizeof(w->why), "lookup of %s: %s", owner,
			 rc == SQLITE_DONE ? "no row" : sqlite3_errstr(rc));
		goto out;
	}
	sealed = sqlite3_column_blob(w->lookup, 0);
	n = sqlite3_column_bytes(w->lookup, 0);
	if (sealed == NULL || n != SEALED_LEN || sealed[0] != SEAL_VERSION ||
	    sqlite3_column_int(w->lookup, 1) != 1) {
		snprintf(w->why, sizeof(w->why), "%s: unexpected row", owner);
		goto out;
	}
	if (sh->sodium) {
		unsigned long long plen;

		if (crypto_aead_aes256gcm_decrypt_afternm(
			    plain, &plen, NULL, sealed + HEADER_LEN,
			    BU_KEY_LEN + TAG_LEN, aad,
			    make_aad(aad, sealed, sh->store_id, owner),
			    sealed + 1 + ID_LEN, sh->expanded) != 0 ||
		    plen != BU_KEY_LEN) {
			snprintf(w->why, sizeof(w->why), "%s: does not open",
				 owner);
			goto out;
		}
	} else if (EVP_DecryptInit_ex2(w->gcm, sh->cipher, sh->key,
				sealed + 1 + ID_LEN, NULL) != 1 ||
	    EVP_DecryptUpdate(w->gcm, NULL, &len, aad,
			      (int)make_aad(aad, sealed, sh->store_id,
					    owner)) != 1 ||
	    EVP_DecryptUpdate(w->gcm, plain, &len, sealed + HEADER_LEN,
			      BU_KEY_LEN) != 1 ||
	    EVP_CIPHER_CTX_ctrl(w->gcm, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
				(void *)(sealed + HEADER_LEN + BU_KEY_LEN)) !=
		    1 ||
	    EVP_DecryptFinal_ex(w->gcm, plain + len, &len) != 1) {
		snprintf(w->why, sizeof(w->why), "%s: does not open", owner);
		goto out;
	}
	if (check) {
		bu_key_value(i, want);
		if (memcmp(want, plain, BU_KEY_LEN) != 0) {
			snprintf(w->why, sizeof(w->why),
				 "%s: opened to the wrong value", owner);
			goto out;
		}
	}
	ret = 0;
out:
	explicit_bzero(plain, sizeof(plain));
	sqlite3_reset(w->lookup);
	if (sh->mode == MODE_ORG1) {
		sqlite3_step(w->commit);
		sqlite3_reset(w->commit);
		sqlite3_reset(w->begin);
	}
	return ret;
}

static int worker_open(struct worker *w)
{
	int rc;

	rc = sqlite3_open_v2(w->sh->path, &w->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK && w->sh->mmap_size > 0) {
		char sql[64];

		snprintf(sql, sizeof(sql), "PRAGMA mmap_size = %" PRIu64,
			 w->sh->mmap_size);
		rc = sqlite3_exec(w->db, sql, NULL, NULL, NULL);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v3(w->db, lookup_sql, -1,
					SQLITE_PREPARE_PERSISTENT, &w->lookup,
					NULL);
	if (rc == SQLITE_OK && w->sh->mode != MODE_USER)
		rc = sqlite3_prepare_v3(w->db, lookup_sql, -1,
					SQLITE_PREPARE_PERSISTENT, &w->org,
					NULL);
	if (rc == SQLITE_OK && w->sh->mode == MODE_ORG1)
		rc = sqlite3_prepare_v3(w->db, "BEGIN", -1,
					SQLITE_PREPARE_PERSISTENT, &w->begin,
					NULL);
	if (rc == SQLITE_OK && w->sh->mode == MODE_ORG1)
		rc = sqlite3_prepare_v3(w->db, "COMMIT", -1,
					SQLITE_PREPARE_PERSISTENT, &w->commit,
					NULL);
	if (rc != SQLITE_OK) {
		snprintf(w->why, sizeof(w->why), "cannot open %s: %s",
			 w->sh->path, sqlite3_errstr(rc));
		return -1;
	}
	w->gcm = EVP_CIPHER_CTX_new();
	if (w->gcm == NULL) {
		snprintf(w->why, sizeof(w->why), "out of memory");
		return -1;
	}
	return 0;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct bu_rng rng;

	/* A thread's order of users is the same in bench/resolve. */
	bu_rng_seed(&rng, sh->run.seed + w->index);
	for (int rep = -1; rep < sh->run.reps; rep++) {
		uint64_t n = bu_run_share(&sh->run, rep);

		pthread_barrier_wait(&sh->run.start);
		for (uint64_t k = 0; k < n && w->errors == 0; k++) {
			uint64_t i = bu_draw(&rng, sh->run.users,
					     sh->run.active);

			if (one(w, sh->names + i * BU_NAME_SIZE, i,
				(k & 1023) == 0) != 0)
				w->errors++;
		}
		pthread_barrier_wait(&sh->run.done);
	}
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s -s STORE -n USERS [-k OPS] [-r REPS] "
		"[-t THREADS] [-S SEED] [-A ACTIVE] [-m user|org|org1] "
		"[-M MMAP_BYTES] [-c openssl|sodium]\n", prog);
	exit(2);
}

static int read_store_id(struct shared *sh)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	const unsigned char *v;
	int rc, ret = -1;

	rc = sqlite3_open_v2(sh->path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db,
					"SELECT v FROM meta WHERE k = 'store_id'",
					-1, &s, NULL);
	if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
	    (v = sqlite3_column_blob(s, 0)) != NULL &&
	    sqlite3_column_bytes(s, 0) == STORE_ID_LEN) {
		memcpy(sh->store_id, v, STORE_ID_LEN);
		sh->store_id[STORE_ID_LEN] = '\0';
		ret = 0;
	} else {
		fprintf(stderr, "%s: cannot read the store id of %s: %s\n",
			prog, sh->path, db != NULL ? sqlite3_errmsg(db)
						   : "out of memory");
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return ret;
}

int main(int argc, char **argv)
{
	struct shared sh = { .run = { .ops = 200000, .threads = 1,
				      .seed = 1, .reps = 5 } };
	struct worker *w = NULL;
	double *ns = NULL;
	char *names = NULL;
	int c, ret = 1;

	while ((c = getopt(argc, argv, "s:n:k:r:t:S:m:M:A:c:")) != -1) {
		switch (c) {
		case 'c':
			if (strcmp(optarg, "sodium") == 0)
				sh.sodium = true;
			else if (strcmp(optarg, "openssl") != 0)
				usage();
			break;
		case 'M':
			sh.mmap_size = bu_count(prog, "-M", optarg);
			break;
		case 'm':
			if (strcmp(optarg, "user") == 0)
				sh.mode = MODE_USER;
			else if (strcmp(optarg, "org") == 0)
				sh.mode = MODE_ORG;
			else if (strcmp(optarg, "org1") == 0)
				sh.mode = MODE_ORG1;
			else
				usage();
			break;
		case 's':
			sh.path = optarg;
			break;
		default:
			if (!bu_run_opt(&sh.run, prog, c, optarg))
				usage();
		}
	}
	if (sh.path == NULL || optind != argc ||
	    !bu_run_ready(&sh.run))
		usage();
	if (bu_master_key(sh.key) != 0) {
		fprintf(stderr, "%s: KEYWAY_MASTER_KEY must be 64 hex digits\n",
			prog);
		return 1;
	}
	if (read_store_id(&sh) != 0)
		goto out;
	sh.cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (sh.sodium) {
		if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available()) {
			fprintf(stderr, "%s: libsodium's AES-256-GCM needs "
				"AES-NI and PCLMUL\n", prog);
			goto out;
		}
		sh.expanded = sodium_malloc(sizeof(*sh.expanded));
		if (sh.expanded == NULL) {
			fprintf(stderr, "%s: out of memory\n", prog);
			goto out;
		}
		crypto_aead_aes256gcm_beforenm(sh.expanded, sh.key);
	}
	names = bu_name_table(sh.run.users);
	w = calloc(sh.run.threads, sizeof(*w));
	ns = calloc((size_t)sh.run.reps, sizeof(*ns));
	if (sh.cipher == NULL || names == NULL || w == NULL || ns == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out;
	}
	sh.names = names;
	for (unsigned t = 0; t < sh.run.threads; t++) {
		w[t].sh = &sh;
		w[t].index = t;
		if (worker_open(&w[t]) != 0) {
			fprintf(stderr, "%s: %s\n", prog, w[t].why);
			goto out;
		}
	}
	for (unsigned t = 0; t < sh.run.threads; t++)
		pthread_create(&w[t].thread, NULL, work, &w[t]);
	bu_run_time(&sh.run, ns);
	for (unsigned t = 0; t < sh.run.threads; t++) {
		pthread_join(w[t].thread, NULL);
		if (w[t].errors != 0) {
			fprintf(stderr, "%s: %s\n", prog, w[t].why);
			sh.failed = true;
		}
	}
	if (sh.failed)
		goto out;
	printf("{\"bench\": \"floor\", \"mode\": \"%s\", \"cipher\": \"%s\", "
	       "\"mmap_size\": %" PRIu64 ", \"users\": %" PRIu64
	       ", \"threads\": %u, \"active\": %" PRIu64 ", \"ops\": %" PRIu64 ", ",
	       sh.mode == MODE_USER ? "user" : sh.mode == MODE_ORG ? "org"
								 : "org1",
	       sh.sodium ? "sodium" : "openssl", sh.mmap_size, sh.run.users,
	       sh.run.threads, sh.run.active, sh.run.ops);
	bu_json_list(stdout, "ns_per_op", ns, (size_t)sh.run.reps);
	printf("}\n");
	ret = 0;
out:
	for (unsigned t = 0; w != NULL && t < sh.run.threads; t++) {
		EVP_CIPHER_CTX_free(w[t].gcm);
		sqlite3_finalize(w[t].lookup);
		sqlite3_finalize(w[t].org);
		sqlite3_finalize(w[t].begin);
		sqlite3_finalize(w[t].commit);
		sqlite3_close(w[t].db);
	}
	explicit_bzero(sh.key, sizeof(sh.key));
	EVP_CIPHER_free(sh.cipher);
	sodium_free(sh.expanded);
	free(w);
	free(ns);
	free(names);
	return ret;
}
