/*
 * usecount.h - use counts and last-used times of stored keys, added up in
 * memory and written by a thread in batches (usecount.c).  Not the ledger's
 * usage log (kw_usage).  Never installed.
 */
#ifndef KEYWAY_USECOUNT_H
#define KEYWAY_USECOUNT_H

#include <stdint.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

struct kw_ctx;
struct kw_instance;
/* A context's counts; secrets hold a reference to it, not to the
 * context. */
struct kwi_usecount;

/* Start the thread that writes use counts: before anything secret is
 * read (see usecount.c).  KW_OK or KW_ERR_NOMEM. */
kw_status kwi_usecount_start(struct kw_ctx *ctx);
/* Once the backends are open: stop it when none records uses. */
void kwi_usecount_settle(struct kw_ctx *ctx);
/* Write what is pending and stop; later uses are dropped. */
void kwi_usecount_stop(struct kw_ctx *ctx);
/* In a child of the process that started it: let go of it without a
 * lock, a write or a wait (what is pending is the parent's). */
void kwi_usecount_abandon(struct kw_ctx *ctx);
/* A reference to ctx's counts, or NULL; let go of it with
 * kwi_usecount_release() (NULL is a no-op). */
struct kwi_usecount *kwi_usecount_ref(struct kw_ctx *ctx);
void kwi_usecount_release(struct kwi_usecount *s);
/* Around fork(): wait for the counts being written to a module, and
 * start no write until kwi_usecount_fork_done() (parent and child). */
void kwi_usecount_fork_prepare(void);
void kwi_usecount_fork_done(void);
/* Count one use of a key of store at `when` (s not NULL); dropped once s
 * is stopped, or in a process that inherited s.  Strings are copied. */
void kwi_usecount_note(struct kwi_usecount *s, struct kw_instance *store,
		       kw_scope scope, const char *owner, const char *provider,
		       int64_t when);

#endif /* KEYWAY_USECOUNT_H */
