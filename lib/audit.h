/*
 * audit.h - the audit trail: one JSON object per resolve and per change,
 * to a file or to syslog (audit.c, audit_sink.c).  Never installed.
 */
#ifndef KEYWAY_AUDIT_H
#define KEYWAY_AUDIT_H

#include <stdbool.h>

#include <sys/un.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

struct kw_ctx;
struct kwi_diag;
struct kwi_query_in;

enum kwi_audit_to { KWI_AUDIT_JSONL = 1, KWI_AUDIT_SYSLOG };

/* keyway.audit, parsed (config_audit.c). */
struct kwi_audit_conf {
	enum kwi_audit_to to;
	bool allow;          /* on_failure = "allow" */
	char path[1024];     /* "jsonl": the file, absolute */
	const char *file;    /* where path is set, for messages */
	int line;
	/* "syslog": the daemon's socket, absolute */
	char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct kwi_audit;

/* Give ctx an audit trail as c says (copied); opens nothing.  KW_OK, or
 * KW_ERR_NOMEM (ctx->audit then stays NULL). */
kw_status kwi_audit_new(struct kw_ctx *ctx, const struct kwi_audit_conf *c);
/* Open the sink; after the master keys are loaded.  KW_OK without an
 * audit trail; else a failure said to d. */
kw_status kwi_audit_open(struct kw_ctx *ctx, struct kwi_diag *d);
/* Close and free ctx's audit trail; none is a no-op. */
void kwi_audit_free(struct kw_ctx *ctx);
/* The file of a "jsonl" sink (owned by ctx), else NULL. */
const char *kwi_audit_path(const struct kw_ctx *ctx);
/* Record a resolve (s: the secret handed out, or NULL).  A failure to
 * write is KW_ERR_IO unless keyway.audit.on_failure = "allow". */
kw_status kwi_audit_resolve(struct kw_ctx *ctx, const struct kwi_query_in *in,
			    kw_status result, const kw_secret *s);
/* Record a change by actor to backend (op: "put", "rekey", ...; k: the key,
 * or NULL); fails as kwi_audit_resolve() does. */
kw_status kwi_audit_change(struct kw_ctx *ctx, const kw_actor *actor,
			   const char *op, const char *backend,
			   const kw_store_key *k, kw_status result);

#endif /* KEYWAY_AUDIT_H */
