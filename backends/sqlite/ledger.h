/*
 * ledger.h - the sqlite module's quota ledger role: what the module's
 * dispatch (sqlite.c) calls, and what the ledger's files (ledger.c,
 * ledger_write.c) share.  Built on pool.h; knows nothing of the key store.
 *
 * Not installed; nothing here is exported.
 */
#ifndef KW_SQLITE_LEDGER_H
#define KW_SQLITE_LEDGER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <keyway/module.h>

#include "pool.h"

struct ld_req; /* a queued write (ledger_write.c) */

/*
 * The quota ledger.  Threads of this process queue their writes, and one
 * at a time (the leader) commits all that are waiting in one transaction
 * on the writer connection: a commit costs more than the charges in it,
 * and threads meeting at the file's lock would wait for each other in
 * sleeps.  write_lock guards the queue; the writer (out of the pool, so
 * that its page cache stays warm) and the sweep's bookkeeping belong to
 * the leader.  Everything else is immutable after open().
 */
struct sq_ledger {
	struct sq_state sq;         /* first: the dispatch reads the role */
	struct sq_conn *writer;
	pthread_mutex_t write_lock;
	pthread_condattr_t wait_attr; /* for each request's condition */
	bool write_ready;           /* write_lock and wait_attr exist */
	struct ld_req *queue;       /* waiting, oldest first */
	struct ld_req **queue_tail;
	bool leader;                /* a batch is being written */
	uint32_t charges;           /* since the last sweep */
	int64_t next_sweep;         /* sweep at the first charge after it */
};

/* ---- the role, for the module's dispatch ---- */

/*
 * Open the ledger (the host's role KW_INSTANCE_LEDGER), reporting through
 * host->error(); on KW_OK *out is the ledger, which sq_ledger_close()
 * frees.
 */
kw_status sq_ledger_open(const kw_host *host, kw_instance *inst,
			 struct sq_ledger **out);
/* Close st; NULL is a no-op. */
void sq_ledger_close(struct sq_ledger *st);
/* The module's operations on the ledger (struct kw_module says what each
 * does); each answers through its reply.  sq_ledger_charge() and
 * sq_ledger_refund() wait for their batch's commit (ledger_write.c). */
kw_status sq_ledger_check(struct sq_ledger *st, kw_reply *r);
kw_status sq_ledger_charge(struct sq_ledger *st, kw_charge *c, bool dry_run,
			   kw_reply *r);
kw_status sq_ledger_refund(struct sq_ledger *st, const kw_charge *c,
			   kw_reply *r);
kw_status sq_ledger_usage(struct sq_ledger *st, const kw_usage_filter *f,
			  kw_usage_fn *fn, void *arg, kw_reply *r);

/* ---- between the ledger's files ---- */

/* Statements every ledger connection prepares once. */
enum ld_stmt {
	LD_BEGIN,
	LD_BEGIN_READ,
	LD_COMMIT,
	LD_ROLLBACK,
	LD_SAVEPOINT,
	LD_RELEASE,
	LD_ROLLBACK_TO,
	LD_CHARGE,
	LD_COUNT,
	LD_LOG,
	LD_UNCOUNT,
	LD_REFUNDED,
	LD_OUTCOME,
	LD_SWEEP,
	LD_NSTMTS
};


#endif /* KW_SQLITE_LEDGER_H */
