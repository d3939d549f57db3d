/*
 * cmd_usage.c - usage: the usage log of keyway.ledger over a period,
 * summed up per user, organization, backend and provider, written out as
 * JSON, or searched for users whose use today is out of the ordinary.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* usage --alerts: today against the mean of the days before it. */
#define ALERT_PAST_DAYS 7
#define ALERT_DAYS (ALERT_PAST_DAYS + 1)

/* The options of usage, as given. */
struct usage_args {
	const char *since;      /* WHEN */
	const char *until;
	bool json;
	bool alerts;
};

/* The start of the UTC day that holds t. */
static int64_t day_start(int64_t t)
{
	int64_t r = t % SECONDS_PER_DAY;

	return t - (r < 0 ? r + SECONDS_PER_DAY : r);
}

/* Read exactly n digits at *p and move past them. */
static bool take_digits(const char **p, int n, int *value)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*value = v;
	return true;
}

/* "YYYY-MM-DD" (midnight) or "YYYY-MM-DDTHH:MM:SSZ", in UTC. */
static bool parse_utc(const char *s, int64_t *t)
{
	struct tm tm = { 0 }, back;
	int year, mon, day, hour = 0, min = 0, sec = 0;
	time_t tt;

	if (!take_digits(&s, 4, &year) || *s++ != '-' ||
	    !take_digits(&s, 2, &mon) || *s++ != '-' ||
	    !take_digits(&s, 2, &day))
		return false;
	if (*s == 'T') {
		s++;
		if (!take_digits(&s, 2, &hour) || *s++ != ':' ||
		    !take_digits(&s, 2, &min) || *s++ != ':' ||
		    !take_digits(&s, 2, &sec) || *s++ != 'Z')
			return false;
	}
	if (*s != '\0')
		return false;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	tt = timegm(&tm);
	/* timegm() makes 02-30 into 03-02: a time that moved did not exist. */
	if (!gmtime_r(&tt, &back) || back.tm_year != year - 1900 ||
	    back.tm_mon != mon - 1 || back.tm_mday != day ||
	    back.tm_hour != hour || back.tm_min != min || back.tm_sec != sec)
		return false;
	*t = (int64_t)tt;
	return true;
}

/* "30m", "24h", "7d": that long before now, but not before 1970. */
static bool parse_ago(const char *s, int64_t now, int64_t *t)
{
	unsigned long long v;
	int64_t unit;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end[0] == '\0' || end[1] != '\0')
		return false;
	switch (end[0]) {
	case 'm':
		unit = 60;
		break;
	case 'h':
		unit = 3600;
		break;
	case 'd':
		unit = SECONDS_PER_DAY;
		break;
	default:
		return false;
	}
	if (v > (unsigned long long)(now / unit))
		*t = 0;
	else
		*t = now - (int64_t)v * unit;
	return true;
}

static int take_when(const char *cmd, const char *opt, const char *value,
		     int64_t now, int64_t *t)
{
	if (parse_ago(value, now, t))
		return GO_ON;
	if (!parse_utc(value, t))
		return cli_usage_error(cmd, "%s: \"%s\" is not a date "
				       "(YYYY-MM-DD), a UTC time "
				       "(YYYY-MM-DDTHH:MM:SSZ) or a duration "
				       "(30m, 24h, 7d)", opt, value);
	/* The log has nothing older, and 0 means "no bound" to kw_usage. */
	if (*t < 0)
		return cli_usage_error(cmd, "%s: \"%s\" is before 1970", opt,
				       value);
	return GO_ON;
}

/* The period of the filter: --since (default today), --until (none). */
static int usage_period(const char *cmd, const struct usage_args *a,
			int64_t now, kw_usage_filter *f)
{
	int rc;

	f->since = day_start(now);
	f->until = 0;
	if (a->since) {
		rc = take_when(cmd, "--since", a->since, now, &f->since);
		if (rc != GO_ON)
			return rc;
	}
	if (a->until) {
		rc = take_when(cmd, "--until", a->until, now, &f->until);
		if (rc != GO_ON)
			return rc;
	}
	/* Both are ignored there, so their order does not matter. */
	if (a->alerts || !a->until || f->until > f->since)
		return GO_ON;
	if (a->since)
		return cli_usage_error(cmd, "--until \"%s\" is not after "
				       "--since \"%s\"", a->until, a->since);
	return cli_usage_error(cmd, "--until \"%s\" is not after the start "
			       "of today (UTC), the default --since",
			       a->until);
}

/*
 * What a walk of the log gathers.  The summary and the alerts keep their
 * tallies both in a tree, to find one again for each row, and in a list,
 * to sort them afterwards; the rows themselves are not kept, since a busy
 * host logs millions a day.
 */
struct usage_read {
	int64_t start;   /* --alerts: the first of the ALERT_DAYS days */
	void *tree;
	void **v;
	size_t n;
	size_t cap;
	size_t nrows;    /* --json: rows written */
	enum {
		USAGE_OK,
		USAGE_NOMEM,
		USAGE_JSON,   /* a row jansson would not encode */
		USAGE_WRITE
	} failed;
	int err;         /* errno of a failed write */
};

/* Every tally is in the tree, so tdestroy() frees them all. */
static void usage_read_free(struct usage_read *u)
{
	tdestroy(u->tree, free);
	u->tree = NULL;
	free(u->v);
	u->v = NULL;
	u->n = u->cap = 0;
}

/* Add item to the tree and the list; on failure the caller still owns
 * it. */
static bool tally_add(struct usage_read *u, void *item,
		      int (*cmp)(const void *, const void *))
{
	void **grown;

	grown = cli_grow(u->v, &u->cap, u->n, sizeof(*grown), 64);
	if (!grown)
		return false;
	u->v = grown;
	if (!tsearch(item, &u->tree, cmp))
		return false;
	u->v[u->n++] = item;
	return true;
}

/* strcmp() that puts NULL, "none", after every name. */
static int cmp_name(const char *a, const char *b)
{
	if (!a || !b)
		return (a == NULL) - (b == NULL);
	return strcmp(a, b);
}

/* Copy s to *p and move *p past it; NULL stays NULL. */
static const char *keep_text(char **p, const char *s)
{
	char *copy = *p;
	size_t len;

	if (!s)
		return NULL;
	len = strlen(s) + 1;
	memcpy(copy, s, len);
	*p += len;
	return copy;
}

static size_t text_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

/* One line of the summary. */
struct usage_group {
	const char *user;     /* NULL if none */
	const char *org;      /* NULL if none */
	const char *backend;
	const char *provider;
	uint64_t admitted;
	uint64_t denied;
	uint64_t refunded;
	int64_t last;
	char text[];          /* the names above point here */
};

/* The order of the summary: user, backend, provider, and org to break
 * the tie. */
static int cmp_group(const void *pa, const void *pb)
{
	const struct usage_group *a = pa, *b = pb;
	int c;

	c = cmp_name(a->user, b->user);
	if (c == 0)
		c = cmp_name(a->backend, b->backend);
	if (c == 0)
		c = cmp_name(a->provider, b->provider);
	if (c == 0)
		c = cmp_name(a->org, b->org);
	return c;
}

static int cmp_group_ptr(const void *pa, const void *pb)
{
	return cmp_group(*(void *const *)pa, *(void *const *)pb);
}

static struct usage_group *new_group(const struct usage_group *key)
{
	struct usage_group *g;
	char *p;

	g = calloc(1, sizeof(*g) + text_size(key->user) +
		      text_size(key->org) + text_size(key->backend) +
		      text_size(key->provider));
	if (!g)
		return NULL;
	p = g->text;
	g->user = keep_text(&p, key->user);
	g->org = keep_text(&p, key->org);
	g->backend = keep_text(&p, key->backend);
	g->provider = keep_text(&p, key->provider);
	return g;
}

static kw_status tally_group(void *arg, const kw_usage_row *row)
{
	struct usage_read *u = arg;
	struct usage_group key = {
		.user = row->user,
		.org = row->org,
		.backend = cli_str(row->backend),
		.provider = cli_str(row->provider)
	};
	struct usage_group *g;
	void *found;
	const char *outcome = cli_str(row->outcome);

	found = tfind(&key, &u->tree, cmp_group);
	if (found) {
		g = *(struct usage_group **)found;
	} else {
		g = new_group(&key);
		if (!g || !tally_add(u, g, cmp_group)) {
			free(g);
			u->failed = USAGE_NOMEM;
			return KW_ERR_NOMEM;
		}
		g->last = row->time;
	}
	if (strcmp(outcome, "admitted") == 0)
		g->admitted++;
	else if (strcmp(outcome, "denied") == 0)
		g->denied++;
	else if (strcmp(outcome, "refunded") == 0)
		g->refunded++;
	if (row->time > g->last)
		g->last = row->time;
	return KW_OK;
}

enum {
	UCOL_USER,
	UCOL_ORG,
	UCOL_BACKEND,
	UCOL_PROVIDER,
	UCOL_ADMITTED,
	UCOL_DENIED,
	UCOL_REFUNDED,
	UCOL_LAST,
	NUCOLS
};

static const char *const usage_header[NUCOLS] = {
	"USER", "ORG", "BACKEND", "PROVIDER", "ADMITTED", "DENIED",
	"REFUNDED", "LAST"
};

static void usage_cells(const void *v, size_t i, const char **s,
			char (*buf)[CLI_CELL_SIZE])
{
	const struct usage_group *g = ((void *const *)v)[i];

	snprintf(buf[UCOL_ADMITTED], CLI_CELL_SIZE, "%" PRIu64, g->admitted);
	snprintf(buf[UCOL_DENIED], CLI_CELL_SIZE, "%" PRIu64, g->denied);
	snprintf(buf[UCOL_REFUNDED], CLI_CELL_SIZE, "%" PRIu64, g->refunded);
	cli_format_time(g->last, TIME_TABLE, buf[UCOL_LAST], CLI_CELL_SIZE);
	s[UCOL_USER] = g->user ? g->user : "-";
	s[UCOL_ORG] = g->org ? g->org : "-";
	s[UCOL_BACKEND] = g->backend;
	s[UCOL_PROVIDER] = g->provider;
	s[UCOL_ADMITTED] = buf[UCOL_ADMITTED];
	s[UCOL_DENIED] = buf[UCOL_DENIED];
	s[UCOL_REFUNDED] = buf[UCOL_REFUNDED];
	s[UCOL_LAST] = buf[UCOL_LAST];
}

static void print_usage_table(struct usage_read *u)
{
	if (u->n > 1)
		qsort(u->v, u->n, sizeof(*u->v), cmp_group_ptr);
	cli_print_table(usage_header, NUCOLS, u->v, u->n, usage_cells);
}

/* json_object_set_new() takes value even when it fails, NULL included. */
static json_t *usage_row_json(const kw_usage_row *row)
{
	char when[48];
	json_t *o = json_object();

	if (!o)
		return NULL;
	cli_format_time(row->time, TIME_ISO, when, sizeof(when));
	if (json_object_set_new(o, "time", json_string(when)) ||
	    json_object_set_new(o, "chain", cli_json_str_or_null(row->chain)) ||
	    json_object_set_new(o, "backend",
				cli_json_str_or_null(row->backend)) ||
	    json_object_set_new(o, "provider",
				cli_json_str_or_null(row->provider)) ||
	    json_object_set_new(o, "user", cli_json_str_or_null(row->user)) ||
	    json_object_set_new(o, "org", cli_json_str_or_null(row->org)) ||
	    json_object_set_new(o, "outcome",
				cli_json_str_or_null(row->outcome))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Write text with each line after the first indented by two spaces: an
 * object dumped on its own then reads as an element of its array. */
static int put_indented(const char *text)
{
	for (; *text; text++) {
		if (putchar(*text) == EOF)
			return -1;
		if (*text == '\n' && fputs("  ", stdout) == EOF)
			return -1;
	}
	return 0;
}

/*
 * --json writes each row as it comes, as json_dumps() would lay out the
 * whole array, rather than hold the period's rows in memory; the array is
 * closed by end_json_rows().
 */
static kw_status write_json_row(void *arg, const kw_usage_row *row)
{
	struct usage_read *u = arg;
	char *text = NULL;
	json_t *o;

	o = usage_row_json(row);
	if (o)
		text = json_dumps(o, JSON_FLAGS);
	json_decref(o);
	if (!text) {
		u->failed = USAGE_JSON;
		return KW_ERR_INVAL;
	}
	if (fputs(u->nrows == 0 ? "[\n  " : ",\n  ", stdout) == EOF ||
	    put_indented(text) != 0) {
		u->err = errno;
		u->failed = USAGE_WRITE;
		free(text);
		return KW_ERR_IO;
	}
	u->nrows++;
	free(text);
	return KW_OK;
}

static void end_json_rows(const struct usage_read *u)
{
	fputs(u->nrows == 0 ? "[]\n" : "\n]\n", stdout);
}

/* One user's admitted requests per UTC day; the last day is today. */
struct usage_user {
	const char *user;    /* NULL if none */
	uint64_t day[ALERT_DAYS];
	char text[];
};

static int cmp_user(const void *pa, const void *pb)
{
	const struct usage_user *a = pa, *b = pb;

	return cmp_name(a->user, b->user);
}

static kw_status tally_user(void *arg, const kw_usage_row *row)
{
	struct usage_read *u = arg;
	struct usage_user key = { .user = row->user };
	struct usage_user *uu;
	void *found;
	char *p;
	int64_t day;

	if (strcmp(cli_str(row->outcome), "admitted") != 0 ||
	    row->time < u->start)
		return KW_OK;
	day = (row->time - u->start) / SECONDS_PER_DAY;
	if (day >= ALERT_DAYS)
		return KW_OK;

	found = tfind(&key, &u->tree, cmp_user);
	if (found) {
		uu = *(struct usage_user **)found;
	} else {
		uu = calloc(1, sizeof(*uu) + text_size(row->user));
		if (uu) {
			/* Named before it goes in the tree, which sorts by
			 * name. */
			p = uu->text;
			uu->user = keep_text(&p, row->user);
		}
		if (!uu || !tally_add(u, uu, cmp_user)) {
			free(uu);
			u->failed = USAGE_NOMEM;
			return KW_ERR_NOMEM;
		}
	}
	uu->day[day]++;
	return KW_OK;
}

static uint64_t user_today(const struct usage_user *uu)
{
	return uu->day[ALERT_DAYS - 1];
}

static uint64_t user_past(const struct usage_user *uu)
{
	uint64_t sum = 0;
	int i;

	for (i = 0; i < ALERT_PAST_DAYS; i++)
		sum += uu->day[i];
	return sum;
}

/* More than twice the daily mean of the past days, in integers:
 * today > 2 * past / 7. */
static bool user_alerts(const struct usage_user *uu)
{
	return user_today(uu) * ALERT_PAST_DAYS > 2 * user_past(uu);
}

/* Busiest first; then by name, so that the order never depends on the
 * log's. */
static int cmp_alert_ptr(const void *pa, const void *pb)
{
	const struct usage_user *a = *(void *const *)pa;
	const struct usage_user *b = *(void *const *)pb;
	uint64_t ta = user_today(a), tb = user_today(b);

	if (ta != tb)
		return ta > tb ? -1 : 1;
	return cmp_name(a->user, b->user);
}

/* Keep the users that alert, busiest first. */
static void select_alerts(struct usage_read *u)
{
	size_t i, n = 0;

	for (i = 0; i < u->n; i++) {
		if (user_alerts(u->v[i]))
			u->v[n++] = u->v[i];
	}
	/* The others stay in the tree, which frees them. */
	u->n = n;
	if (u->n > 1)
		qsort(u->v, u->n, sizeof(*u->v), cmp_alert_ptr);
}

enum {
	ACOL_USER,
	ACOL_TODAY,
	ACOL_MEAN,
	ACOL_RATIO,
	NACOLS
};

static const char *const alert_header[NACOLS] = {
	"USER", "TODAY", "MEAN-7D", "RATIO"
};

static void alert_cells(const void *v, size_t i, const char **s,
			char (*buf)[CLI_CELL_SIZE])
{
	const struct usage_user *uu = ((void *const *)v)[i];
	uint64_t today = user_today(uu), past = user_past(uu);

	snprintf(buf[ACOL_TODAY], CLI_CELL_SIZE, "%" PRIu64, today);
	snprintf(buf[ACOL_MEAN], CLI_CELL_SIZE, "%.1f",
		 (double)past / ALERT_PAST_DAYS);
	if (past == 0)
		snprintf(buf[ACOL_RATIO], CLI_CELL_SIZE, "new");
	else
		snprintf(buf[ACOL_RATIO], CLI_CELL_SIZE, "%.1fx",
			 (double)today * ALERT_PAST_DAYS / (double)past);
	s[ACOL_USER] = uu->user ? uu->user : "-";
	s[ACOL_TODAY] = buf[ACOL_TODAY];
	s[ACOL_MEAN] = buf[ACOL_MEAN];
	s[ACOL_RATIO] = buf[ACOL_RATIO];
}

static void print_alert_table(const struct usage_read *u)
{
	cli_print_table(alert_header, NACOLS, u->v, u->n, alert_cells);
}

static json_t *alert_json(const void *v, size_t i)
{
	const struct usage_user *uu = ((void *const *)v)[i];
	uint64_t today = user_today(uu), past = user_past(uu);
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (json_object_set_new(o, "user", cli_json_str_or_null(uu->user)) ||
	    json_object_set_new(o, "today",
				json_integer(today > (uint64_t)INT64_MAX ?
					     (json_int_t)INT64_MAX :
					     (json_int_t)today)) ||
	    json_object_set_new(o, "mean_7d",
				json_real((double)past /
					  ALERT_PAST_DAYS)) ||
	    json_object_set_new(o, "ratio",
				past == 0 ? json_null() :
				json_real((double)today * ALERT_PAST_DAYS /
					  (double)past))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Say why the walk stopped, if it was our doing; GO_ON if it was not. */
static int usage_read_error(const struct usage_read *u)
{
	switch (u->failed) {
	case USAGE_OK:
		return GO_ON;
	case USAGE_NOMEM:
		fprintf(stderr, "keyway: usage: out of memory\n");
		break;
	case USAGE_JSON:
		fprintf(stderr, "keyway: usage: cannot encode a row as JSON "
			"(out of memory, or a field that is not UTF-8)\n");
		break;
	case USAGE_WRITE:
		fprintf(stderr, "keyway: write error: %s\n",
			strerror(u->err));
		/* Reported: main.c's finish() need not say it again. */
		clearerr(stdout);
		break;
	}
	return EXIT_ERR;
}


/* The walk of the log the options ask for, and its period for --alerts. */
static kw_usage_fn *usage_walk(const struct usage_args *a, int64_t now,
			       kw_usage_filter *f, struct usage_read *u)
{
	if (a->alerts) {
		u->start = day_start(now) - ALERT_PAST_DAYS * SECONDS_PER_DAY;
		f->since = u->start;
		f->until = u->start + ALERT_DAYS * SECONDS_PER_DAY;
		return tally_user;
	}
	return a->json ? write_json_row : tally_group;
}

/* A typo would print an empty table, as if nothing had been used. */
static int known_backend(kw_ctx *ctx, const char *backend)
{
	kw_scope scope;
	kw_status st;

	if (backend == NULL)
		return GO_ON;
	st = kw_backend_scope(ctx, backend, &scope);
	if (st != KW_OK)
		return cli_lib_error(st);
	return GO_ON;
}

/* What the walk gathered, as the options ask. */
static int print_result(const struct usage_args *a, struct usage_read *u)
{
	if (a->alerts) {
		select_alerts(u);
		if (a->json)
			return cli_print_json(cli_json_list(u->v, u->n,
							    alert_json),
					      "usage", "the alerts",
					      "a user name");
		print_alert_table(u);
	} else if (a->json) {
		end_json_rows(u);
	} else {
		print_usage_table(u);
	}
	return EXIT_OK;
}

int cmd_usage(const struct command *cmd, int argc, char **argv,
	      const char *config)
{
	struct usage_args ua = { 0 };
	kw_usage_filter filter = KW_USAGE_FILTER_INIT;
	struct cli_option options[] = {
		CLI_OPT_VALUE("since", &ua.since),
		CLI_OPT_VALUE("until", &ua.until),
		CLI_OPT_IDENTITY("user", &filter.user),
		CLI_OPT_IDENTITY("org", &filter.org),
		CLI_OPT_NAME("backend", &filter.backend),
		CLI_OPT_FLAG("json", &ua.json),
		CLI_OPT_FLAG("alerts", &ua.alerts),
		CLI_END
	};
	struct cli_args a = { .config = config };
	kw_actor actor = KW_ACTOR_INIT;
	struct usage_read u = { 0 };
	int64_t now = (int64_t)time(NULL);
	kw_usage_fn *fn;
	char *user = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	rc = cli_parse_operands(cmd, argc, argv, options, &a, 0, NULL);
	if (rc == GO_ON)
		rc = usage_period(cmd->name, &ua, now, &filter);
	if (rc != GO_ON)
		return rc;
	fn = usage_walk(&ua, now, &filter, &u);

	rc = cli_open_as_admin(cmd->name, &a, &ctx, &actor, &user);
	if (rc == GO_ON)
		rc = known_backend(ctx, filter.backend);
	if (rc != GO_ON)
		goto out;
	st = kw_usage(ctx, &actor, &filter, fn, &u);
	rc = usage_read_error(&u);
	if (rc == GO_ON && st != KW_OK)
		rc = cli_lib_error(st);
	if (rc == GO_ON)
		rc = print_result(&ua, &u);
out:
	usage_read_free(&u);
	kw_close(ctx);
	free(user);
	return rc;
}
