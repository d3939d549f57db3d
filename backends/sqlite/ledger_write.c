/*
 * ledger_write.c - the ledger's writes: charges and refunds, committed in
 * batches (group commit; ledger.c says why), and the sweep of expired
 * counters.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include <keyway/module.h>

#include "ledger.h"
#include "pool.h"

/* Sweep expired counters after this many charges, or this many seconds... */
#define LD_SWEEP_CHARGES 4096
#define LD_SWEEP_SECONDS 60
/* ...this many at a time: the sweep holds the write lock, and every
 * process's charges wait for it. */
#define LD_SWEEP_ROWS 1000
/* Batches one leader writes before it hands over and returns. */
#define LD_LEAD_MAX 8

enum ld_kind { LD_REQ_CHARGE, LD_REQ_REFUND };

enum ld_req_state {
	LD_QUEUED, /* in st->queue */
	LD_TAKEN,  /* in a leader's batch */
	LD_DONE    /* ret is final */
};

/*
 * A write waiting for a leader.  It lives on its caller's stack; the
 * caller waits until it is LD_DONE (or takes it out of the queue while it
 * is still LD_QUEUED), so a leader may write into it until then.
 */
struct ld_req {
	struct ld_req *next;
	enum ld_kind kind;
	enum ld_req_state state;
	kw_charge *ch;             /* LD_REQ_CHARGE: in and out */
	const kw_charge *refund;   /* LD_REQ_REFUND */
	kw_reply *r;
	kw_status ret;
	int64_t id;                /* the usage row written, once committed */
	pthread_cond_t wake;       /* done, or next to lead */
};

/* Step a statement that answers no row, and make it ready again. */
static int ld_exec(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sq_done(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Step s, whose binding answered rc, unless that failed; make it ready
 * again either way. */
static int ld_exec_bound(sqlite3_stmt *s, int rc)
{
	if (rc == SQLITE_OK)
		return ld_exec(s);
	sq_done(s);
	return rc;
}

static void ld_rollback(struct sq_conn *c)
{
	if (!sqlite3_get_autocommit(c->db))
		(void)ld_exec(c->stmt[LD_ROLLBACK]);
}

/* SQLite stores signed integers; no limit a config can say comes near. */
static int64_t ld_int(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static const char *ld_text(const char *s)
{
	return s != NULL ? s : "";
}

/* ---- one batch ---- */

static kw_status ld_check_charge(const struct sq_ledger *st,
				 const kw_charge *c, kw_reply *r)
{
	if (c->nslots > 0 && c->slots == NULL) {
		st->sq.host->reply_detail(r, "charge of %zu slots without "
					  "slots", c->nslots);
		return KW_ERR_INVAL;
	}
	for (size_t i = 0; i < c->nslots; i++)
		if (c->slots[i].counter == NULL) {
			st->sq.host->reply_detail(r, "quota slot %zu has no "
						  "counter", i);
			return KW_ERR_INVAL;
		}
	return KW_OK;
}

static int ld_bind_slot(sqlite3_stmt *s, const kw_quota_slot *slot)
{
	int rc = sqlite3_bind_text(s, 1, slot->counter, -1, SQLITE_STATIC);

	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 2, slot->window);
	return rc;
}

/* Count one more in slot; *counted is false when it is at its limit. */
static int ld_count_up(struct sq_conn *c, const kw_quota_slot *slot,
		       bool *counted)
{
	sqlite3_stmt *s = c->stmt[LD_CHARGE];
	int rc;

	*counted = false;
	/* The upsert would create the counter at 1 whatever the limit. */
	if (slot->limit == 0)
		return SQLITE_OK;
	rc = ld_bind_slot(s, slot);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 3, slot->expires);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 4, ld_int(slot->limit));
	rc = ld_exec_bound(s, rc);
	if (rc == SQLITE_OK)
		*counted = sqlite3_changes(c->db) > 0;
	return rc;
}

/* The count of slot (0 when it has none yet). */
static int ld_count(struct sq_conn *c, const kw_quota_slot *slot,
		    uint64_t *count)
{
	sqlite3_stmt *s = c->stmt[LD_COUNT];
	int rc;

	*count = 0;
	rc = ld_bind_slot(s, slot);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int64_t n = sqlite3_column_int64(s, 0);

		*count = n > 0 ? (uint64_t)n : 0;
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sq_done(s);
	return rc;
}

/* Write the usage row with `outcome`; *id gets its id. */
static int ld_log(struct sq_conn *c, const kw_usage_row *u,
		  const char *outcome, int64_t *id)
{
	sqlite3_stmt *s = c->stmt[LD_LOG];
	int rc;

	*id = 0;
	rc = sqlite3_bind_int64(s, 1, u->time);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, ld_text(u->chain), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 3, ld_text(u->backend), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 4, ld_text(u->provider), -1,
				       SQLITE_STATIC);
	if (rc == SQLITE_OK && u->user != NULL)
		rc = sqlite3_bind_text(s, 5, u->user, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && u->org != NULL)
		rc = sqlite3_bind_text(s, 6, u->org, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 7, outcome, -1, SQLITE_STATIC);
	rc = ld_exec_bound(s, rc);
	if (rc == SQLITE_OK)
		*id = sqlite3_last_insert_rowid(c->db);
	return rc;
}

/*
 * One charge inside the batch's transaction.  A slot at its limit undoes
 * the slots before it (its savepoint; with one slot nothing changed) and
 * the row is logged "denied".  Returns a SQLite code: anything but
 * SQLITE_OK fails the whole batch.
 */
static int ld_do_charge(struct sq_conn *c, struct ld_req *q,
			const char **what)
{
	kw_charge *ch = q->ch;
	const bool multi = ch->nslots > 1;
	size_t full = ch->nslots;
	bool counted;
	int rc = SQLITE_OK;

	*what = "count in";
	if (multi)
		rc = ld_exec(c->stmt[LD_SAVEPOINT]);
	for (size_t i = 0; rc == SQLITE_OK && i < ch->nslots; i++) {
		rc = ld_count_up(c, &ch->slots[i], &counted);
		if (rc == SQLITE_OK && !counted)
			full = i;
		if (full < ch->nslots)
			break;
	}
	if (rc != SQLITE_OK)
		return rc;
	if (full < ch->nslots) {
		*what = "read";
		rc = ld_count(c, &ch->slots[full], &ch->count);
		if (rc == SQLITE_OK && multi && full > 0)
			rc = ld_exec(c->stmt[LD_ROLLBACK_TO]);
		if (rc != SQLITE_OK)
			return rc;
		/* Final even if the row cannot be logged: answering
		 * anything else could let on_unavailable = "allow" admit a
		 * request over its limit. */
		ch->full = full;
		q->ret = KW_ERR_DENIED;
	} else {
		q->ret = KW_OK;
	}
	*what = "log usage in";
	if (ch->usage != NULL)
		rc = ld_log(c, ch->usage,
			    q->ret == KW_OK ? "admitted" : "denied", &q->id);
	if (rc == SQLITE_OK && multi)
		rc = ld_exec(c->stmt[LD_RELEASE]);
	return rc;
}

/*
 * The row of a refund was not "admitted": say why nothing is counted down.
 * A row that is gone (*uncount stays true) does not stop the counts from
 * going back.
 */
static int ld_not_admitted(const struct sq_ledger *st, struct sq_conn *c,
			   struct ld_req *q, bool *uncount)
{
	sqlite3_stmt *s = c->stmt[LD_OUTCOME];
	const int64_t id = q->refund->usage_id;
	const char *outcome;
	int rc;

	*uncount = true;
	rc = sqlite3_bind_int64(s, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*uncount = false;
		outcome = (const char *)sqlite3_column_text(s, 0);
		if (outcome == NULL)
			outcome = "";
		if (strcmp(outcome, "refunded") == 0) {
			st->sq.host->reply_detail(q->r, "usage row %" PRId64
						  " was refunded already", id);
		} else {
			st->sq.host->reply_detail(q->r, "usage row %" PRId64
						  " is %s, not admitted: "
						  "nothing to refund", id,
						  outcome);
			q->ret = KW_ERR_INVAL;
		}
		rc = SQLITE_DONE;
	}
	sq_done(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Mark the row refunded first: only the refund that does so counts down,
 * so a refund repeated (by a retry, say) takes nothing twice.
 */
static int ld_do_refund(const struct sq_ledger *st, struct sq_conn *c,
			struct ld_req *q, const char **what)
{
	const kw_charge *ch = q->refund;
	sqlite3_stmt *s;
	bool uncount = true;
	int rc = SQLITE_OK;

	q->ret = KW_OK;
	if (ch->usage_id > 0) {
		*what = "write to";
		s = c->stmt[LD_REFUNDED];
		rc = sqlite3_bind_int64(s, 1, ch->usage_id);
		rc = ld_exec_bound(s, rc);
		if (rc == SQLITE_OK && sqlite3_changes(c->db) == 0) {
			*what = "read";
			rc = ld_not_admitted(st, c, q, &uncount);
		}
	}
	if (rc != SQLITE_OK || !uncount)
		return rc;
	*what = "count down in";
	for (size_t i = 0; rc == SQLITE_OK && i < ch->nslots; i++) {
		s = c->stmt[LD_UNCOUNT];
		rc = ld_bind_slot(s, &ch->slots[i]);
		rc = ld_exec_bound(s, rc);
	}
	return rc;
}

/*
 * Drop counters whose window is over, now and then, after a commit; a
 * failure only means a later one sweeps.  `now` is a charge's own time,
 * the clock its windows were cut by.  When a window ends for many counters
 * at once (every user's day at midnight), they go LD_SWEEP_ROWS at a time,
 * one sweep after each batch, rather than in one long transaction.
 */
static void ld_sweep(struct sq_ledger *st, struct sq_conn *c, int64_t now,
		     uint32_t charged)
{
	sqlite3_stmt *s = c->stmt[LD_SWEEP];
	int rc;

	st->charges += charged;
	if (st->charges < LD_SWEEP_CHARGES && now < st->next_sweep)
		return;
	st->charges = 0;
	st->next_sweep = now + LD_SWEEP_SECONDS;
	rc = sqlite3_bind_int64(s, 1, now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(s, 2, LD_SWEEP_ROWS);
	rc = ld_exec_bound(s, rc);
	if (rc != SQLITE_OK)
		st->sq.host->log(st->sq.inst, KW_LOG_DEBUG,
				 "%s: cannot drop expired counters yet: %s",
				 st->sq.path, sqlite3_errstr(rc));
	else if (sqlite3_changes(c->db) >= LD_SWEEP_ROWS)
		st->next_sweep = 0; /* more to drop: after the next batch */
}

/*
 * Write a batch in one transaction.  A SQLite failure undoes the whole
 * batch and is every request's answer, except that a charge found over
 * its limit stays denied.
 */
static void ld_write_batch(struct sq_ledger *st, struct sq_conn *c,
			   struct ld_req *batch)
{
	const char *what = "lock";
	uint32_t charged = 0;
	int64_t now = 0;
	struct ld_req *q;
	int rc;

	for (q = batch; q != NULL; q = q->next)
		q->ret = KW_ERR_UNAVAIL;
	rc = ld_exec(c->stmt[LD_BEGIN]);
	for (q = batch; rc == SQLITE_OK && q != NULL; q = q->next)
		rc = q->kind == LD_REQ_CHARGE ? ld_do_charge(c, q, &what)
					      : ld_do_refund(st, c, q, &what);
	if (rc == SQLITE_OK) {
		what = "commit to";
		rc = ld_exec(c->stmt[LD_COMMIT]);
	}
	if (rc != SQLITE_OK) {
		ld_rollback(c);
		for (q = batch; q != NULL; q = q->next) {
			if (q->kind == LD_REQ_CHARGE &&
			    q->ret == KW_ERR_DENIED) {
				st->sq.host->log(st->sq.inst, KW_LOG_WARNING,
						 "%s: cannot log a denied "
						 "request: %s", st->sq.path,
						 sqlite3_errstr(rc));
				continue;
			}
			q->ret = sq_fail_own(&st->sq, q->r, what, rc);
		}
		return;
	}
	for (q = batch; q != NULL; q = q->next) {
		if (q->kind != LD_REQ_CHARGE)
			continue;
		if (q->ret == KW_OK) {
			q->ch->usage_id = q->id;
			charged++;
		}
		if (q->ch->usage != NULL)
			now = q->ch->usage->time;
	}
	if (charged > 0)
		ld_sweep(st, c, now != 0 ? now : st->sq.host->now(), charged);
}

static void ld_deadline(const struct sq_ledger *st, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += st->sq.busy_ms / 1000;
	ts->tv_nsec += (long)(st->sq.busy_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Take q out of the queue, where it still is. */
static void ld_unqueue(struct sq_ledger *st, struct ld_req *q)
{
	struct ld_req **p = &st->queue;

	while (*p != q)
		p = &(*p)->next;
	*p = q->next;
	if (st->queue_tail == &q->next)
		st->queue_tail = p;
}

/*
 * Wait, with write_lock held, while another thread leads and q is not
 * done.  False: q was still queued when the busy timeout passed, and is
 * answered and taken out of the queue.
 */
static bool ld_wait(struct sq_ledger *st, struct ld_req *q,
		    const struct timespec *deadline)
{
	bool timed_out = false;
	int err;

	while (q->state != LD_DONE && st->leader) {
		if (q->state == LD_QUEUED && timed_out) {
			ld_unqueue(st, q);
			st->sq.host->reply_detail(q->r, "cannot write to %s: "
						  "still busy after "
						  "busy_timeout_ms",
						  st->sq.path);
			q->ret = KW_ERR_UNAVAIL;
			return false;
		}
		if (q->state == LD_QUEUED) {
			err = pthread_cond_timedwait(&q->wake, &st->write_lock,
						     deadline);
			timed_out = err == ETIMEDOUT;
		} else {
			pthread_cond_wait(&q->wake, &st->write_lock);
		}
	}
	return true;
}

/*
 * Lead, with write_lock held: write what is queued, a batch at a time,
 * for up to LD_LEAD_MAX batches, then wake the next leader.  q is the
 * leader's own request, which it does not need woken.
 */
static void ld_lead(struct sq_ledger *st, const struct ld_req *q)
{
	struct ld_req *batch, *next;

	st->leader = true;
	for (int n = 0; st->queue != NULL && n < LD_LEAD_MAX; n++) {
		batch = st->queue;
		st->queue = NULL;
		st->queue_tail = &st->queue;
		for (struct ld_req *b = batch; b != NULL; b = b->next)
			b->state = LD_TAKEN;
		pthread_mutex_unlock(&st->write_lock);
		ld_write_batch(st, st->writer, batch);
		pthread_mutex_lock(&st->write_lock);
		/* An owner may return as soon as it sees LD_DONE, which it
		 * cannot before the lock is let go. */
		for (; batch != NULL; batch = next) {
			next = batch->next;
			batch->state = LD_DONE;
			if (batch != q)
				pthread_cond_signal(&batch->wake);
		}
	}
	st->leader = false;
	if (st->queue != NULL)
		pthread_cond_signal(&st->queue->wake);
}

/*
 * Queue q and wait for it to be written.  The thread that finds no leader
 * becomes one: it writes everything queued on the writer connection,
 * wakes the owners of what it wrote, and goes on with what was queued
 * meanwhile, for a few batches; then it wakes the first request still
 * queued, whose owner leads next.  A thread is woken only when it has
 * something to do.  A request still queued when the busy timeout has
 * passed gives up; one being written waits for its batch, which SQLite's
 * busy timeout bounds.
 */
static kw_status ld_submit(struct sq_ledger *st, struct ld_req *q)
{
	struct timespec deadline;

	if (pthread_cond_init(&q->wake, &st->wait_attr) != 0) {
		st->sq.host->reply_detail(q->r, "cannot create a condition "
					  "variable");
		return KW_ERR_NOMEM;
	}
	ld_deadline(st, &deadline);
	q->next = NULL;
	q->state = LD_QUEUED;
	pthread_mutex_lock(&st->write_lock);
	*st->queue_tail = q;
	st->queue_tail = &q->next;
	/* With no leader, q is still queued: its batch is the first. */
	if (ld_wait(st, q, &deadline) && q->state != LD_DONE)
		ld_lead(st, q);
	pthread_mutex_unlock(&st->write_lock);
	pthread_cond_destroy(&q->wake);
	return q->ret;
}

/* The dry run: read the counts, write nothing. */
static kw_status ld_peek(struct sq_ledger *st, struct sq_conn *c,
			 kw_charge *ch, kw_reply *r)
{
	kw_status ret = KW_OK;
	uint64_t count;
	int rc;

	/* One snapshot for all the slots. */
	if (ch->nslots > 1) {
		rc = ld_exec(c->stmt[LD_BEGIN_READ]);
		if (rc != SQLITE_OK)
			return sq_fail_own(&st->sq, r, "read", rc);
	}
	for (size_t i = 0; i < ch->nslots; i++) {
		rc = ld_count(c, &ch->slots[i], &count);
		if (rc != SQLITE_OK) {
			ret = sq_fail_own(&st->sq, r, "read", rc);
			break;
		}
		if (count >= ch->slots[i].limit) {
			ch->full = i;
			ch->count = count;
			ret = KW_ERR_DENIED;
			break;
		}
	}
	ld_rollback(c);
	return ret;
}

kw_status sq_ledger_charge(struct sq_ledger *st, kw_charge *c, bool dry_run,
			   kw_reply *r)
{
	struct sq_conn *conn = NULL;
	struct ld_req q = { .kind = LD_REQ_CHARGE, .ch = c, .r = r };
	kw_status ret;

	ret = ld_check_charge(st, c, r);
	if (ret != KW_OK || !dry_run)
		return ret != KW_OK ? ret : ld_submit(st, &q);
	ret = sq_acquire(&st->sq, &conn, r);
	if (ret != KW_OK)
		return ret;
	ret = ld_peek(st, conn, c, r);
	sq_release(&st->sq, conn);
	return ret;
}

kw_status sq_ledger_refund(struct sq_ledger *st, const kw_charge *c,
			   kw_reply *r)
{
	struct ld_req q = { .kind = LD_REQ_REFUND, .refund = c, .r = r };
	kw_status ret;

	ret = ld_check_charge(st, c, r);
	return ret != KW_OK ? ret : ld_submit(st, &q);
}

