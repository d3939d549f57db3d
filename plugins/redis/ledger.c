/*
 * ledger.c - the redis ledger's operations: charge and refund, each one
 * Lua script that Redis runs atomically, the usage log read back, and the
 * health check.
 *
 * Keys, under `prefix` ("keyway:" by default):
 *   q:COUNTER:WINDOW  a quota's count in one window (the host names the
 *                     counter and computes the window, as for every
 *                     ledger); it expires RD_GRACE seconds after the
 *                     window ends
 *   seq               the last charge id
 *   c:ID              an admitted charge not yet refunded (a refund
 *                     deletes it, so it counts down once), kept until its
 *                     window ends, a day at most
 *   t:TOKEN           the answer to the charge a request's random token
 *                     named, for RD_GRACE seconds, so that a charge sent
 *                     again after a lost answer is not counted twice
 *   usage             the usage log: a stream, one entry per charge (and
 *                     one per refund, naming the charge), trimmed to
 *                     usage_days
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf(), strndup() */
#endif
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include <keyway/module.h>

#include "redis.h"

/*
 * KEYS: token, seq, usage, then the slots' counters.  ARGV: dry run ("1"),
 * the charge keys' prefix, in how many seconds the charge's key expires,
 * the usage log's MINID, then the row (time, chain, backend, provider,
 * user, org; "" for none), how many seconds the token is kept, then each
 * slot's limit and in how many seconds its counter expires.  Answers
 * {admitted, id, full slot (from 1), its count}; the token keeps the
 * answer, so that the charge sent again gets it again.
 *
 * Lifetimes are relative, so that a host whose clock differs from
 * Redis's keeps its counters for the rest of its window all the same.
 * Redis does not undo a script that fails halfway: what can fail (the
 * XADD, which needs Redis 6.2) comes before the counters move.
 */
static const char rd_charge_lua[] =
	"local n = #KEYS - 3\n"
	"local function row(outcome, id)\n"
	"  local f = {'t', ARGV[5], 'chain', ARGV[6], 'backend', ARGV[7],\n"
	"             'provider', ARGV[8], 'outcome', outcome}\n"
	"  if ARGV[9] ~= '' then f[#f + 1] = 'user'; f[#f + 1] = ARGV[9] end\n"
	"  if ARGV[10] ~= '' then f[#f + 1] = 'org'; f[#f + 1] = ARGV[10] end\n"
	"  if id then f[#f + 1] = 'id'; f[#f + 1] = id end\n"
	"  redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[4], '*', unpack(f))\n"
	"end\n"
	"local done = redis.call('GET', KEYS[1])\n"
	"if done then\n"
	"  local i, c = string.match(done, '^d(%d+):(%d+)$')\n"
	"  if i then return {0, 0, tonumber(i), tonumber(c)} end\n"
	"  return {1, tonumber(done), 0, 0}\n"
	"end\n"
	"for i = 1, n do\n"
	"  local c = tonumber(redis.call('GET', KEYS[3 + i]) or '0')\n"
	"  if c >= tonumber(ARGV[10 + 2 * i]) then\n"
	"    if ARGV[1] ~= '1' then\n"
	"      row('denied')\n"
	"      redis.call('SET', KEYS[1], 'd' .. i .. ':' .. c, 'EX', ARGV[11])\n"
	"    end\n"
	"    return {0, 0, i, c}\n"
	"  end\n"
	"end\n"
	"if ARGV[1] == '1' then return {1, 0, 0, 0} end\n"
	"local id = redis.call('INCR', KEYS[2])\n"
	"row('admitted', id)\n"
	"for i = 1, n do\n"
	"  if redis.call('INCR', KEYS[3 + i]) == 1 then\n"
	"    redis.call('EXPIRE', KEYS[3 + i], ARGV[11 + 2 * i])\n"
	"  end\n"
	"end\n"
	"redis.call('SET', KEYS[1], id, 'EX', ARGV[11])\n"
	"redis.call('SET', ARGV[2] .. id, '1', 'EX', ARGV[3])\n"
	"return {1, id, 0, 0}\n";

/*
 * KEYS: the charge, usage, then the slots' counters.  ARGV: the charge's
 * id, the time, the usage log's MINID.  Answers 1 when it counted down, 0
 * when the charge was refunded already (or is gone with its window).
 */
static const char rd_refund_lua[] =
	"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
	"redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*',\n"
	"           't', ARGV[2], 'refund', ARGV[1])\n"
	"redis.call('DEL', KEYS[1])\n"
	"for i = 3, #KEYS do\n"
	"  local c = tonumber(redis.call('GET', KEYS[i]) or '0')\n"
	"  if c > 0 then redis.call('DECR', KEYS[i]) end\n"
	"end\n"
	"return 1\n";

const char *const rd_script_text[RD_NSCRIPTS] = {
	[RD_CHARGE] = rd_charge_lua,
	[RD_REFUND] = rd_refund_lua,
};

/* How long after its charge a refund still gives the slot back. */
#define RD_REFUND_DAYS 1

/* Rows read from the log at a time. */
#define RD_BATCH "500"

/* ---- running a script ---- */

/*
 * Run script s with argv[3...] (argv[0..2] are filled here: EVALSHA, the
 * script, the number of keys), on a connection of the pool.  A connection
 * that was used before and breaks (Redis restarted, a connection closed
 * while idle) is closed with the other idle ones, and the script sent
 * again once on a new connection: both scripts may safely run twice (the
 * charge's token answers a charge sent again as the first time, a refund
 * deletes its charge).  A timeout is not sent again: Redis may still be
 * running the first.  A script Redis has forgotten (NOSCRIPT) is sent
 * whole.  NULL with *rc and r set on failure; an error reply is a failure
 * too.
 */
static redisReply *rd_eval(struct rd_state *st, enum rd_script s, int argc,
			   const char **argv, size_t *argvlen, kw_reply *r,
			   kw_status *rc)
{
	const char *what = s == RD_CHARGE ? "the charge" : "the refund";
	redisReply *rep = NULL;

	for (int attempt = 0; attempt < 2; attempt++) {
		struct rd_conn *cn = rd_conn_get(st, attempt > 0, r, rc);
		bool reused;

		if (cn == NULL)
			return NULL;
		reused = cn->used;
		argv[0] = "EVALSHA";
		argvlen[0] = 7;
		argv[1] = cn->sha[s];
		argvlen[1] = 40;
		rep = rd_command(cn, argc, argv, argvlen, r, rc);
		if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
		    strncmp(rep->str, "NOSCRIPT", 8) == 0) {
			freeReplyObject(rep);
			argv[0] = "EVAL";
			argvlen[0] = 4;
			argv[1] = rd_script_text[s];
			argvlen[1] = strlen(rd_script_text[s]);
			rep = rd_command(cn, argc, argv, argvlen, r, rc);
		}
		if (rep == NULL) {
			bool again = reused && !rd_timed_out(cn);

			rd_conn_drop(cn);
			if (again) {
				rd_conn_flush(st);
				continue;
			}
			return NULL;
		}
		if (rep->type == REDIS_REPLY_ERROR &&
		    (strncmp(rep->str, "NOPERM", 6) == 0 ||
		     strstr(rep->str, "can't run this command") != NULL)) {
			rd_conn_put(cn);
			*rc = KW_ERR_PERM;
			st->host->reply_detail(r,
					       "redis %s: the ACL of user "
					       "\"%s\" does not allow a command "
					       "of %s script: allow it what "
					       "keyway.conf(5) lists",
					       st->address,
					       st->username != NULL
						       ? st->username
						       : "default",
					       what);
			freeReplyObject(rep);
			return NULL;
		}
		if (rep->type == REDIS_REPLY_ERROR) {
			bool transient = rd_err_transient(rep);

			*rc = transient ? KW_ERR_UNAVAIL : KW_ERR_BACKEND;
			st->host->reply_detail(r, "redis %s: %s failed: %.200s",
					       st->address, what, rep->str);
			freeReplyObject(rep);
			/* A replica, or a Redis loading its data: the next
			 * request connects afresh, maybe to a new master. */
			if (transient) {
				rd_conn_drop(cn);
				rd_conn_flush(st);
			} else {
				rd_conn_put(cn);
			}
			return NULL;
		}
		rd_conn_put(cn);
		*rc = KW_OK;
		return rep;
	}
	return NULL;
}

/* The integer element i of an array reply, or -1. */
static long long rd_elem(const redisReply *rep, size_t i)
{
	if (rep->type != REDIS_REPLY_ARRAY || i >= rep->elements ||
	    rep->element[i]->type != REDIS_REPLY_INTEGER)
		return -1;
	return rep->element[i]->integer;
}

/* A malloc'd key: prefix, then parts. */
static char *rd_key(const struct rd_state *st, const char *a, const char *b,
		    int64_t n, bool with_n)
{
	char *k;
	int len;

	if (with_n)
		len = asprintf(&k, "%s%s%s:%" PRId64, st->prefix, a, b, n);
	else
		len = asprintf(&k, "%s%s%s", st->prefix, a, b);
	return len < 0 ? NULL : k;
}

/* MINID of the usage log for a row written at `when`. */
static void rd_minid(const struct rd_state *st, int64_t when, char *buf,
		     size_t size)
{
	int64_t keep = when - st->usage_days * 86400;

	snprintf(buf, size, "%" PRId64, keep > 0 ? keep * 1000 : 0);
}

/* ---- charge ---- */

/* Strings of one charge's command, freed together. */
struct rd_args {
	const char **argv;
	size_t *len;
	char **own;  /* what was malloc'd */
	int n, nown, cap;
};

static bool rd_args_init(struct rd_args *a, int cap)
{
	memset(a, 0, sizeof(*a));
	a->argv = calloc((size_t)cap, sizeof(*a->argv));
	a->len = calloc((size_t)cap, sizeof(*a->len));
	a->own = calloc((size_t)cap, sizeof(*a->own));
	a->cap = cap;
	a->n = 3; /* EVALSHA, the script, the number of keys */
	return a->argv != NULL && a->len != NULL && a->own != NULL;
}

static void rd_args_free(struct rd_args *a)
{
	for (int i = 0; i < a->nown; i++)
		free(a->own[i]);
	free(a->argv);
	free(a->len);
	free(a->own);
}

/* Add s (not copied); false when s is NULL (out of memory). */
static bool rd_arg(struct rd_args *a, const char *s)
{
	if (s == NULL || a->n >= a->cap)
		return false;
	a->argv[a->n] = s;
	a->len[a->n++] = strlen(s);
	return true;
}

/* Add s, which the arguments now own. */
static bool rd_arg_own(struct rd_args *a, char *s)
{
	if (s == NULL || a->nown >= a->cap) {
		free(s);
		return false;
	}
	a->own[a->nown++] = s;
	return rd_arg(a, s);
}

static bool rd_arg_int(struct rd_args *a, int64_t v)
{
	char *s;

	return asprintf(&s, "%" PRId64, v) >= 0 && rd_arg_own(a, s);
}

kw_status rd_charge(void *state, kw_charge *c, bool dry_run, kw_reply *r)
{
	struct rd_state *st = state;
	const kw_usage_row *u = c->usage;
	unsigned char tok[16];
	char hex[33], minid[24], nkeys[24];
	struct rd_args a;
	redisReply *rep;
	int64_t keep = 0;
	kw_status rc = KW_ERR_NOMEM;
	bool ok;

	c->usage_id = 0;
	if (!rd_args_init(&a, 20 + 3 * (int)c->nslots))
		goto out;
	st->host->random(tok, sizeof(tok));
	for (size_t i = 0; i < sizeof(tok); i++)
		snprintf(hex + 2 * i, 3, "%02x", tok[i]);
	for (size_t i = 0; i < c->nslots; i++)
		if (c->slots[i].expires > keep)
			keep = c->slots[i].expires;
	/* A refund comes soon after its charge, if at all: a charge is
	 * remembered for a day at most, not for a month's window. */
	if (keep > u->time + RD_REFUND_DAYS * 86400)
		keep = u->time + RD_REFUND_DAYS * 86400;
	if (keep < u->time)
		keep = u->time;
	rd_minid(st, u->time, minid, sizeof(minid));
	snprintf(nkeys, sizeof(nkeys), "%zu", 3 + c->nslots);

	ok = rd_arg_own(&a, rd_key(st, "t:", hex, 0, false)) &&
	     rd_arg_own(&a, rd_key(st, "seq", "", 0, false)) &&
	     rd_arg_own(&a, rd_key(st, "usage", "", 0, false));
	for (size_t i = 0; ok && i < c->nslots; i++)
		ok = rd_arg_own(&a, rd_key(st, "q:", c->slots[i].counter,
					   c->slots[i].window, true));
	ok = ok && rd_arg(&a, dry_run ? "1" : "0") &&
	     rd_arg_own(&a, rd_key(st, "c:", "", 0, false)) &&
	     rd_arg_int(&a, keep + RD_GRACE - u->time) && rd_arg(&a, minid) &&
	     rd_arg_int(&a, u->time) &&
	     rd_arg(&a, u->chain != NULL ? u->chain : "") &&
	     rd_arg(&a, u->backend != NULL ? u->backend : "") &&
	     rd_arg(&a, u->provider != NULL ? u->provider : "") &&
	     rd_arg(&a, u->user != NULL ? u->user : "") &&
	     rd_arg(&a, u->org != NULL ? u->org : "") &&
	     rd_arg_int(&a, RD_GRACE);
	for (size_t i = 0; ok && i < c->nslots; i++)
		ok = rd_arg_int(&a, (int64_t)c->slots[i].limit) &&
		     rd_arg_int(&a, c->slots[i].expires + RD_GRACE - u->time);
	if (!ok)
		goto out;
	a.argv[2] = nkeys;
	a.len[2] = strlen(nkeys);

	rep = rd_eval(st, RD_CHARGE, a.n, a.argv, a.len, r, &rc);
	if (rep == NULL)
		goto out;
	if (rd_elem(rep, 0) == 1) {
		c->usage_id = rd_elem(rep, 1);
		rc = KW_OK;
	} else if (rd_elem(rep, 0) == 0 && rd_elem(rep, 2) >= 1 &&
		   (size_t)rd_elem(rep, 2) <= c->nslots) {
		c->full = (size_t)rd_elem(rep, 2) - 1;
		c->count = (uint64_t)rd_elem(rep, 3);
		rc = KW_ERR_DENIED;
	} else {
		st->host->reply_detail(r,
				       "redis %s: the charge script answered "
				       "something unexpected",
				       st->address);
		rc = KW_ERR_BACKEND;
	}
	freeReplyObject(rep);
out:
	if (rc == KW_ERR_NOMEM)
		st->host->reply_detail(r, "out of memory");
	rd_args_free(&a);
	return rc;
}

/* ---- refund ---- */

kw_status rd_refund(void *state, const kw_charge *c, kw_reply *r)
{
	struct rd_state *st = state;
	char minid[24], nkeys[24];
	struct rd_args a;
	redisReply *rep;
	kw_status rc = KW_ERR_NOMEM;
	int64_t now = st->host->now();
	char *ckey = NULL;
	bool ok;

	if (c->usage_id <= 0)
		return KW_OK;
	if (!rd_args_init(&a, 12 + (int)c->nslots))
		goto out;
	rd_minid(st, now, minid, sizeof(minid));
	snprintf(nkeys, sizeof(nkeys), "%zu", 2 + c->nslots);
	ok = asprintf(&ckey, "%sc:%" PRId64, st->prefix, c->usage_id) >= 0 &&
	     rd_arg_own(&a, ckey) &&
	     rd_arg_own(&a, rd_key(st, "usage", "", 0, false));
	for (size_t i = 0; ok && i < c->nslots; i++)
		ok = rd_arg_own(&a, rd_key(st, "q:", c->slots[i].counter,
					   c->slots[i].window, true));
	ok = ok && rd_arg_int(&a, c->usage_id) && rd_arg_int(&a, now) &&
	     rd_arg(&a, minid);
	if (!ok)
		goto out;
	a.argv[2] = nkeys;
	a.len[2] = strlen(nkeys);
	rep = rd_eval(st, RD_REFUND, a.n, a.argv, a.len, r, &rc);
	if (rep == NULL)
		goto out;
	freeReplyObject(rep);
	rc = KW_OK;
out:
	if (rc == KW_ERR_NOMEM)
		st->host->reply_detail(r, "out of memory");
	rd_args_free(&a);
	return rc;
}

/* ---- the usage log ---- */

struct rd_row {
	int64_t time;
	int64_t id;          /* of an admitted charge; 0 otherwise */
	char *chain, *backend, *provider, *user, *org;
	const char *outcome;
};

struct rd_rows {
	struct rd_row *v;
	size_t n, cap;
	int64_t *refunded;   /* ids of refunded charges */
	size_t nref, capref;
};

static void rd_rows_free(struct rd_rows *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->v[i].chain);
		free(rs->v[i].backend);
		free(rs->v[i].provider);
		free(rs->v[i].user);
		free(rs->v[i].org);
	}
	free(rs->v);
	free(rs->refunded);
}

static int rd_cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* The value of field `name` of an entry's field list, or NULL. */
static const redisReply *rd_field(const redisReply *fields, const char *name)
{
	for (size_t i = 0; i + 1 < fields->elements; i += 2)
		if (fields->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(fields->element[i]->str, name) == 0 &&
		    fields->element[i + 1]->type == REDIS_REPLY_STRING)
			return fields->element[i + 1];
	return NULL;
}

static char *rd_dup(const redisReply *v)
{
	return v != NULL ? strndup(v->str, v->len) : NULL;
}

static bool rd_matches(const kw_usage_filter *f, const struct rd_row *row)
{
	return row->time >= f->since &&
	       (f->until == 0 || row->time < f->until) &&
	       (f->user == NULL ||
		(row->user != NULL && strcmp(f->user, row->user) == 0)) &&
	       (f->org == NULL ||
		(row->org != NULL && strcmp(f->org, row->org) == 0)) &&
	       (f->backend == NULL || strcmp(f->backend, row->backend) == 0);
}

/* Take one entry of the log: a row f asks for, or a refund. */
static kw_status rd_take(struct rd_rows *rs, const kw_usage_filter *f,
			 const redisReply *fields)
{
	const redisReply *t = rd_field(fields, "t"), *v;
	struct rd_row row;
	kw_status rc = KW_OK;

	if (t == NULL)
		return KW_OK;
	v = rd_field(fields, "refund");
	if (v != NULL) {
		if (rs->nref == rs->capref) {
			size_t cap = rs->capref ? 2 * rs->capref : 64;
			int64_t *p = realloc(rs->refunded, cap * sizeof(*p));

			if (p == NULL)
				return KW_ERR_NOMEM;
			rs->refunded = p;
			rs->capref = cap;
		}
		rs->refunded[rs->nref++] = strtoll(v->str, NULL, 10);
		return KW_OK;
	}
	memset(&row, 0, sizeof(row));
	row.time = strtoll(t->str, NULL, 10);
	v = rd_field(fields, "outcome");
	if (v == NULL)
		return KW_OK;
	row.outcome = strcmp(v->str, "admitted") == 0 ? "admitted" : "denied";
	v = rd_field(fields, "id");
	row.id = v != NULL ? strtoll(v->str, NULL, 10) : 0;
	row.chain = rd_dup(rd_field(fields, "chain"));
	row.backend = rd_dup(rd_field(fields, "backend"));
	row.provider = rd_dup(rd_field(fields, "provider"));
	row.user = rd_dup(rd_field(fields, "user"));
	row.org = rd_dup(rd_field(fields, "org"));
	if (row.chain == NULL || row.backend == NULL || row.provider == NULL ||
	    !rd_matches(f, &row))
		goto drop;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? 2 * rs->cap : 256;
		struct rd_row *p = realloc(rs->v, cap * sizeof(*p));

		if (p == NULL) {
			rc = KW_ERR_NOMEM;
			goto drop;
		}
		rs->v = p;
		rs->cap = cap;
	}
	rs->v[rs->n++] = row;
	return KW_OK;
drop:
	free(row.chain);
	free(row.backend);
	free(row.provider);
	free(row.user);
	free(row.org);
	return rc;
}

/*
 * Read the log from a little before f->since to its end: a charge's
 * refund comes after it, at any time later, and the entries' ids are
 * Redis's clock, which may differ a little from the hosts'.  The rows are
 * held until the end, when the refunds are known.
 */
static kw_status rd_read_log(struct rd_state *st, const kw_usage_filter *f,
			     struct rd_rows *rs, kw_reply *r)
{
	char start[48], count[] = RD_BATCH;
	char *key = rd_key(st, "usage", "", 0, false);
	const char *argv[6];
	size_t argvlen[6];
	kw_status rc = KW_OK;
	bool first = true;

	if (key == NULL)
		return KW_ERR_NOMEM;
	if (f->since > RD_GRACE)
		snprintf(start, sizeof(start), "%" PRId64,
			 (f->since - RD_GRACE) * 1000);
	else
		snprintf(start, sizeof(start), "-");
	for (bool fresh = false, retried = false;;) {
		struct rd_conn *cn = rd_conn_get(st, fresh, r, &rc);
		redisReply *rep;
		size_t n;
		bool reused;

		if (cn == NULL)
			break;
		reused = cn->used;
		argv[0] = "XRANGE";
		argv[1] = key;
		argv[2] = start;
		argv[3] = "+";
		argv[4] = "COUNT";
		argv[5] = count;
		for (int i = 0; i < 6; i++)
			argvlen[i] = strlen(argv[i]);
		rep = rd_command(cn, 6, argv, argvlen, r, &rc);
		if (rep == NULL) {
			/* Broken while idle: a read, sent again once. */
			bool again = reused && !retried && !rd_timed_out(cn);

			rd_conn_drop(cn);
			if (!again)
				break;
			rd_conn_flush(st);
			fresh = retried = true;
			continue;
		}
		rd_conn_put(cn);
		fresh = false;
		if (rep->type != REDIS_REPLY_ARRAY) {
			st->host->reply_detail(r,
					       "redis %s: XRANGE %s failed: "
					       "%.200s",
					       st->address, key,
					       rep->type == REDIS_REPLY_ERROR
						       ? rep->str
						       : "not a stream");
			freeReplyObject(rep);
			rc = KW_ERR_BACKEND;
			break;
		}
		n = rep->elements;
		for (size_t i = 0; i < n && rc == KW_OK; i++) {
			const redisReply *e = rep->element[i];

			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
			    e->element[0]->type != REDIS_REPLY_STRING ||
			    e->element[1]->type != REDIS_REPLY_ARRAY)
				continue;
			rc = rd_take(rs, f, e->element[1]);
			if (i == n - 1)
				snprintf(start, sizeof(start), "(%.40s",
					 e->element[0]->str);
		}
		freeReplyObject(rep);
		first = false;
		if (rc != KW_OK || n < (size_t)atoi(RD_BATCH))
			break;
	}
	(void)first;
	free(key);
	return rc;
}

kw_status rd_usage(void *state, const kw_usage_filter *f, kw_usage_fn *fn,
		   void *arg, kw_reply *r)
{
	static const kw_usage_filter all = KW_USAGE_FILTER_INIT;
	struct rd_state *st = state;
	struct rd_rows rs;
	int64_t kept = st->host->now() - st->usage_days * 86400;
	kw_status rc;

	if (f == NULL)
		f = &all;
	if (f->since < kept)
		st->host->log(st->inst, KW_LOG_WARNING,
			      "redis %s: the usage log keeps %lld days "
			      "(usage_days): rows older than that are not "
			      "reported",
			      st->address, (long long)st->usage_days);
	memset(&rs, 0, sizeof(rs));
	rc = rd_read_log(st, f, &rs, r);
	if (rc == KW_ERR_NOMEM)
		st->host->reply_detail(r, "out of memory");
	if (rc != KW_OK)
		goto out;
	if (rs.nref > 1)
		qsort(rs.refunded, rs.nref, sizeof(*rs.refunded), rd_cmp_id);
	for (size_t i = 0; i < rs.n && rc == KW_OK; i++) {
		struct rd_row *w = &rs.v[i];
		kw_usage_row row;

		if (w->id != 0 && rs.nref > 0 &&
		    bsearch(&w->id, rs.refunded, rs.nref,
			    sizeof(*rs.refunded), rd_cmp_id) != NULL)
			w->outcome = "refunded";
		row.time = w->time;
		row.chain = w->chain;
		row.backend = w->backend;
		row.provider = w->provider;
		row.user = w->user;
		row.org = w->org;
		row.outcome = w->outcome;
		rc = fn(arg, &row);
	}
out:
	rd_rows_free(&rs);
	return rc;
}

/* ---- the health check ---- */

kw_status rd_check(void *state, kw_reply *r)
{
	struct rd_state *st = state;
	struct rd_conn *cn;
	const char *argv[2];
	size_t argvlen[2];
	char *key;
	redisReply *rep;
	kw_status rc;
	long long rows = -1;

	/* A new connection: AUTH, SELECT and SCRIPT LOAD again. */
	cn = rd_conn_get(st, true, r, &rc);
	if (cn == NULL)
		return rc;
	key = rd_key(st, "usage", "", 0, false);
	if (key == NULL) {
		rd_conn_put(cn);
		st->host->reply_detail(r, "out of memory");
		return KW_ERR_NOMEM;
	}
	argv[0] = "XLEN";
	argv[1] = key;
	argvlen[0] = 4;
	argvlen[1] = strlen(key);
	rep = rd_command(cn, 2, argv, argvlen, r, &rc);
	if (rep == NULL) {
		rd_conn_drop(cn);
		free(key);
		return rc;
	}
	rd_conn_put(cn);
	if (rep->type == REDIS_REPLY_INTEGER) {
		rows = rep->integer;
		rc = KW_OK;
	} else {
		st->host->reply_detail(r, "redis %s: XLEN %s failed: %.200s",
				       st->address, key,
				       rep->type == REDIS_REPLY_ERROR
					       ? rep->str
					       : "unexpected answer");
		rc = KW_ERR_BACKEND;
	}
	freeReplyObject(rep);
	if (rc == KW_OK)
		st->host->reply_detail(r,
				       "redis %s: answers, scripts loaded, "
				       "%lld entr%s in %s (kept %lld days)",
				       st->address, rows,
				       rows == 1 ? "y" : "ies", key,
				       (long long)st->usage_days);
	free(key);
	return rc;
}
