/*
 * host.h - the host side of the module ABI (the kw_host every module is
 * given), the answers modules build, and opening and closing backends.
 * Never installed.
 */
#ifndef KEYWAY_HOST_H
#define KEYWAY_HOST_H

#include <stdbool.h>
#include <stddef.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

struct kw_ctx;
struct kw_secret;
struct kwi_charged;
struct kwi_diag;

extern const kw_host kwi_host;

/* The answer a module is building. */
struct kw_reply {
	struct kw_secret *secret; /* NULL until the module replies */
	struct kwi_charged *charged; /* quotas charged for this answer */
	const char *backend;
	size_t backend_len;
	const char *owner;        /* of the key asked for, or NULL */
	const char *provider;
	char detail[256];
};

/* An empty answer from backend (which must outlive r). */
void kwi_reply_init(struct kw_reply *r, const char *backend);
/* Free a secret the chain did not take. */
void kwi_reply_clear(struct kw_reply *r);

/* Open every backend and the ledger, problems to d; without keep_going,
 * close those opened at the first failure.  Returns d->first. */
kw_status kwi_backends_open(struct kw_ctx *ctx, struct kwi_diag *d,
			    bool keep_going);
void kwi_backends_close(struct kw_ctx *ctx);

#endif /* KEYWAY_HOST_H */
