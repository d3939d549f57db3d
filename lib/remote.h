/*
 * remote.h - libkeyway as a client of keywayd(8): a configuration whose
 * keyway section names the daemon's socket (keyway.daemon) resolves,
 * explains and reports through it, and holds no master key, store or
 * ledger of its own (remote.c).  Never installed.
 */
#ifndef KEYWAY_REMOTE_H
#define KEYWAY_REMOTE_H

#include <keyway/keyway.h>

struct kw_ctx;
struct kw_secret;
struct kwi_diag;
struct kwi_query_in;
struct kwi_remote;

/* What keyway.daemon holds. */
struct kwi_remote_conf {
	const char *socket;  /* absolute path of the daemon's socket */
	long timeout_ms;     /* for each request, connection included */
	const char *file;    /* where keyway.daemon is written */
	int line;
};

/* The default of keyway.daemon.timeout_ms. */
#define KWI_REMOTE_TIMEOUT_MS 10000

/*
 * The client of the daemon c names (*out; one reference, released with
 * kwi_remote_put()).  Connects to nothing yet, but loads libcurl
 * (curl_dl.h).  KW_OK, KW_ERR_NOMEM, or KW_ERR_INTERNAL without libcurl.
 */
kw_status kwi_remote_new(const struct kwi_remote_conf *c,
			 struct kwi_remote **out);
/* Release a reference; the last closes the connections.  NULL is a
 * no-op.  In a child of fork(), the connections are the parent's and are
 * left alone. */
void kwi_remote_put(struct kwi_remote *r);

/* kw_resolve(), kw_explain() of a checked request in, through the
 * daemon. */
kw_status kwi_remote_resolve(struct kwi_remote *r,
			     const struct kwi_query_in *in, kw_secret **out);
kw_status kwi_remote_explain(struct kwi_remote *r,
			     const struct kwi_query_in *in, kw_trace **out);

/* kw_secret_report() of a secret the daemon handed out (its lease
 * reported), the checks of secret.c done. */
kw_status kwi_remote_report(struct kw_secret *s, kw_outcome outcome);
/* A secret of the daemon's freed: its lease reported used unless it was
 * reported (or inherited across fork()), its reference released. */
void kwi_remote_secret_end(struct kw_secret *s);

/* GET /v1/health: KW_OK, or the failure with kw_last_error() saying
 * why. */
kw_status kwi_remote_health(struct kwi_remote *r);

/* kw_check() of a client: the daemon's health, a problem said to d at
 * keyway.daemon's line when it is not well or cannot be asked. */
void kwi_remote_check(struct kwi_remote *r, struct kwi_diag *d);

/* KW_ERR_UNSUPPORTED, saying that key management is not served through
 * the daemon (a management call on a client context). */
kw_status kwi_remote_no_management(const struct kwi_remote *r);
#ifdef __clang_analyzer__
/* As kwi_error() in error.h: the status is KW_ERR_UNSUPPORTED, always. */
#define kwi_remote_no_management(r) \
	(kwi_remote_no_management(r), KW_ERR_UNSUPPORTED)
#endif

#endif /* KEYWAY_REMOTE_H */
