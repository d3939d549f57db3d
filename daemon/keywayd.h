/*
 * keywayd.h - what the parts of keywayd(8) share: the daemon's own
 * settings, the generation of configuration requests run against, and the
 * leases of the keys it handed out.
 */
#ifndef KEYWAYD_H
#define KEYWAYD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <keyway/keyway.h>

/* One entry of daemon.clients: a user or a group, and its chains. */
struct kwd_client {
	bool is_group;
	uid_t uid;
	gid_t gid;
	char **chains;
	size_t nchains;
};

/* The `daemon` section of keyway.conf. */
struct kwd_conf {
	char *socket;		/* NULL: the default, or --socket */
	mode_t socket_mode;
	gid_t socket_gid;	/* (gid_t)-1: leave the group as created */
	unsigned lease_ttl;	/* seconds */
	unsigned rate_limit;	/* requests a second per caller; 0: none */
	bool have_clients;
	struct kwd_client *clients;
	size_t nclients;
};

/* Read the `daemon` section of path into *dc (zeroed first, defaults
 * set).  On failure returns false with a one-line reason in err. */
bool kwd_conf_load(const char *path, struct kwd_conf *dc, char *err,
		   size_t errsz);
void kwd_conf_free(struct kwd_conf *dc);

/* May the caller (uid, its groups) use chain?  Without clients: only
 * root and the daemon's own user. */
bool kwd_conf_allows(const struct kwd_conf *dc, uid_t uid, const gid_t *groups,
		     int ngroups, const char *chain);

/* A configuration in use: a context and the daemon's settings, released
 * when the last request or lease holding it lets go. */
struct kwd_gen {
	kw_ctx *ctx;
	struct kwd_conf conf;
	unsigned refs;
	bool retired;
};

struct kwd_gen *kwd_gen_get(void);
void kwd_gen_put(struct kwd_gen *g);

/* Leases: a resolved secret held until it is reported or expires. */
#define KWD_LEASE_ID_LEN 32

enum kwd_report {
	KWD_REPORT_OK,
	KWD_REPORT_UNKNOWN,	/* never handed out, or long forgotten */
	KWD_REPORT_GONE,	/* already reported, or expired (counted used) */
	KWD_REPORT_FAILED	/* the library refused: kw_last_error() */
};

/* Hold s (and a reference to g) for the caller uid under a new id written
 * to id (NUL terminated, KWD_LEASE_ID_LEN + 1 bytes).  False without
 * memory. */
bool kwd_lease_add(kw_secret *s, struct kwd_gen *g, uid_t uid, unsigned ttl,
		   char *id);
/* Report lease id for the caller uid: another user's lease is unknown. */
enum kwd_report kwd_lease_report(const char *id, uid_t uid,
				 kw_outcome outcome, kw_status *st);
/* Count as used every lease past its time; forget old tombstones. */
void kwd_lease_sweep(void);
/* Report every lease still held as used (at exit). */
void kwd_lease_drain(void);
size_t kwd_lease_count(void);

/* May uid make one more request at rate a second?  Always with rate 0. */
bool kwd_rate_take(uid_t uid, unsigned rate);
void kwd_rate_free(void);

void kwd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
