/*
 * chain.c - controls and the chain walk.
 *
 * A control is compiled at load time into one action per answer, so the
 * walk itself is a table lookup per entry.  The keywords are shorthands:
 *
 *               found  notfound  denied    unavail   error
 *   sufficient  done   continue  continue  continue  die
 *   required    done   continue  continue  die       die
 *   requisite   done   die       die       die       die
 *   optional    done   continue  continue  continue  continue
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define D KW_ACTION_DONE
#define C KW_ACTION_CONTINUE
#define X KW_ACTION_DIE

static const struct {
	const char *name;
	uint8_t action[KWI_NANSWERS];
} keywords[] = {
	{ "sufficient", { D, C, C, C, X } },
	{ "required", { D, C, C, X, X } },
	{ "requisite", { D, X, X, X, X } },
	{ "optional", { D, C, C, C, C } },
};

#undef D
#undef C
#undef X

#define MAX_SKIP 255

static int answer_by_name(const char *s, size_t n)
{
	for (int a = 0; a < KWI_NANSWERS; a++) {
		const char *name = kwi_answer_str((enum kwi_answer)a);

		if (strlen(name) == n && memcmp(name, s, n) == 0)
			return a;
	}
	if (n == 7 && memcmp(s, "default", 7) == 0)
		return KWI_NANSWERS;
	return -1;
}

/* Parse one action word; *skip gets N for a number. */
static int action_by_name(const char *s, size_t n, unsigned *skip)
{
	static const char *const names[] = { "done", "continue", "die" };

	for (int k = 0; k < 3; k++)
		if (strlen(names[k]) == n && memcmp(names[k], s, n) == 0)
			return k;
	if (n > 0 && n <= 3 && strspn(s, "0123456789") >= n) {
		unsigned v = 0;

		for (size_t i = 0; i < n; i++)
			v = v * 10 + (unsigned)(s[i] - '0');
		*skip = v;
		return KW_ACTION_SKIP;
	}
	return -1;
}

static kw_status parse_bracket(const char *text, size_t remaining,
			       struct kwi_entry *e, char *why, size_t whylen)
{
	int act[KWI_NANSWERS + 1];
	unsigned skip[KWI_NANSWERS + 1];
	const char *p = text + 1;

	for (int a = 0; a <= KWI_NANSWERS; a++) {
		act[a] = -1;
		skip[a] = 0;
	}

	for (;;) {
		const char *tok, *eq, *end;
		int a, ac;
		unsigned n = 0;

		p += strspn(p, " \t");
		if (*p == ']') {
			p++;
			break;
		}
		if (*p == '\0') {
			snprintf(why, whylen, "control \"%s\": missing ]",
				 text);
			return KW_ERR_CONFIG;
		}
		tok = p;
		end = tok + strcspn(tok, " \t]");
		eq = memchr(tok, '=', (size_t)(end - tok));
		if (eq == NULL) {
			snprintf(why, whylen,
				 "control \"%s\": expected STATUS=ACTION, got "
				 "\"%.*s\"",
				 text, (int)(end - tok), tok);
			return KW_ERR_CONFIG;
		}
		a = answer_by_name(tok, (size_t)(eq - tok));
		if (a < 0) {
			snprintf(why, whylen,
				 "control \"%s\": unknown status \"%.*s\" "
				 "(expected found, notfound, denied, unavail, "
				 "error or default)",
				 text, (int)(eq - tok), tok);
			return KW_ERR_CONFIG;
		}
		ac = action_by_name(eq + 1, (size_t)(end - eq - 1), &n);
		if (ac < 0) {
			snprintf(why, whylen,
				 "control \"%s\": unknown action \"%.*s\" "
				 "(expected done, continue, die or a number)",
				 text, (int)(end - eq - 1), eq + 1);
			return KW_ERR_CONFIG;
		}
		if (act[a] >= 0) {
			snprintf(why, whylen,
				 "control \"%s\": %.*s is given twice", text,
				 (int)(eq - tok), tok);
			return KW_ERR_CONFIG;
		}
		act[a] = ac;
		skip[a] = n;
		p = end;
	}
	if (p[strspn(p, " \t")] != '\0') {
		snprintf(why, whylen, "control \"%s\": text after ]", text);
		return KW_ERR_CONFIG;
	}

	for (int a = 0; a < KWI_NANSWERS; a++) {
		const char *name = kwi_answer_str((enum kwi_answer)a);
		bool dflt = act[a] < 0;
		const char *from = dflt ? "default" : name;

		if (dflt) {
			act[a] = act[KWI_NANSWERS];
			skip[a] = skip[KWI_NANSWERS];
		}
		if (act[a] < 0) {
			snprintf(why, whylen,
				 "control \"%s\": no action for %s (add "
				 "%s=... or default=...)",
				 text, name, name);
			return KW_ERR_CONFIG;
		}
		if (a == KWI_FOUND && act[a] == KW_ACTION_DIE) {
			snprintf(why, whylen,
				 "control \"%s\": %s=die: a found key cannot "
				 "die (use done, continue or a number)",
				 text, from);
			return KW_ERR_CONFIG;
		}
		if (a != KWI_FOUND && act[a] == KW_ACTION_DONE) {
			snprintf(why, whylen,
				 "control \"%s\": %s=done: only a found key "
				 "can be done (use die)",
				 text, from);
			return KW_ERR_CONFIG;
		}
		if (act[a] == KW_ACTION_SKIP && skip[a] == 0) {
			snprintf(why, whylen,
				 "control \"%s\": %s=0: skip at least 1 "
				 "entry (use continue to go on to the next)",
				 text, from);
			return KW_ERR_CONFIG;
		}
		if (act[a] == KW_ACTION_SKIP && skip[a] > remaining) {
			snprintf(why, whylen,
				 "control \"%s\": %s=%u skips past the end of "
				 "the chain (%zu %s this one)",
				 text, from, skip[a], remaining,
				 remaining == 1 ? "entry follows"
						: "entries follow");
			return KW_ERR_CONFIG;
		}
		if (act[a] == KW_ACTION_SKIP && skip[a] > MAX_SKIP) {
			snprintf(why, whylen,
				 "control \"%s\": %s=%u: skip at most %d "
				 "entries",
				 text, from, skip[a], MAX_SKIP);
			return KW_ERR_CONFIG;
		}
		e->action[a] = (uint8_t)act[a];
		e->skip[a] = (uint8_t)skip[a];
	}
	return KW_OK;
}

kw_status kwi_control_parse(const char *text, size_t remaining,
			    struct kwi_entry *e, char *why, size_t whylen)
{
	if (text[0] == '[')
		return parse_bracket(text, remaining, e, why, whylen);

	for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++) {
		if (strcmp(text, keywords[k].name) == 0) {
			memcpy(e->action, keywords[k].action,
			       sizeof(e->action));
			memset(e->skip, 0, sizeof(e->skip));
			return KW_OK;
		}
	}
	snprintf(why, whylen,
		 "unknown control \"%s\" (expected required, requisite, "
		 "sufficient, optional or [status=action ...])",
		 text);
	return KW_ERR_CONFIG;
}

/* ---- the walk ---- */

/*
 * When the chain runs out, the verdict is the most telling answer seen: a
 * denial (there is a key, but not for you now), then an error (something is
 * broken and should be fixed), then unavailability (try again later), then
 * notfound.
 */
static int rank(enum kwi_answer a)
{
	switch (a) {
	case KWI_DENIED:
		return 4;
	case KWI_ERROR:
		return 3;
	case KWI_UNAVAIL:
		return 2;
	case KWI_NOTFOUND:
		return 1;
	default:
		return 0;
	}
}

struct step {
	kw_trace_step pub;
	char detail[256];
	char masked[40];
};

struct kw_trace {
	char *chain;
	kw_status result;
	const char *backend; /* points into a step */
	char summary[512];
	size_t n;
	struct step steps[];
};

const char *kw_trace_chain(const kw_trace *t)
{
	return t != NULL ? t->chain : NULL;
}

size_t kw_trace_len(const kw_trace *t)
{
	return t != NULL ? t->n : 0;
}

const kw_trace_step *kw_trace_get(const kw_trace *t, size_t i)
{
	return t != NULL && i < t->n ? &t->steps[i].pub : NULL;
}

kw_status kw_trace_result(const kw_trace *t)
{
	return t != NULL ? t->result : KW_ERR_INVAL;
}

const char *kw_trace_backend(const kw_trace *t)
{
	return t != NULL ? t->backend : NULL;
}

const char *kw_trace_summary(const kw_trace *t)
{
	return t != NULL ? t->summary : "";
}

void kw_trace_free(kw_trace *t)
{
	if (t == NULL)
		return;
	free(t->chain);
	free(t);
}

kw_status kwi_trace_new(const struct kwi_chain *c, kw_trace **out)
{
	kw_trace *t;

	*out = NULL;
	t = calloc(1, sizeof(*t) + c->n * sizeof(t->steps[0]));
	if (t == NULL)
		return KW_ERR_NOMEM;
	t->chain = strdup(c->name);
	if (t->chain == NULL) {
		free(t);
		return KW_ERR_NOMEM;
	}
	*out = t;
	return KW_OK;
}

/* A found key from a backend with quotas costs a charge: if the ledger
 * refuses, the backend's answer is denied. */
static kw_status charge(const struct kw_instance *b,
			const struct kwi_query_in *in, bool dry_run,
			struct kw_reply *r)
{
	char why[sizeof(r->detail)];
	kw_status st;
	size_t n;

	why[0] = '\0';
	st = kwi_quota_charge(b->ctx, b, in, dry_run, &r->charged, why,
			      sizeof(why));
	if (st != KW_OK) {
		kwi_reply_clear(r);
		memcpy(r->detail, why, sizeof(r->detail));
		return st;
	}
	n = strlen(r->detail);
	if (why[0] != '\0' && n + 3 < sizeof(r->detail))
		snprintf(r->detail + n, sizeof(r->detail) - n, "%s%s",
			 n > 0 ? "; " : "", why);
	return KW_OK;
}

/* Ask one backend. */
static kw_status ask(const struct kwi_entry *e, const struct kwi_query_in *in,
		     bool dry_run, struct kw_reply *r)
{
	const struct kw_instance *b = e->backend;
	kw_query q;
	kw_status st;

	q.size = sizeof(q);
	q.scope = b->scope;
	q.provider = in->provider;
	q.user = in->user;
	q.org = in->org;
	q.chain = in->chain;
	q.reply = r;
	q.flags = (b->module->op_walk_end != NULL ? KW_QUERY_WALK : 0) |
		  (dry_run ? KW_QUERY_EXPLAIN : 0);
	r->provider = in->provider;
	switch (b->scope) {
	case KW_SCOPE_USER:
		q.owner = in->user;
		if (q.owner == NULL) {
			snprintf(r->detail, sizeof(r->detail),
				 "the request names no user");
			return KW_ERR_NOTFOUND;
		}
		break;
	case KW_SCOPE_ORG:
		q.owner = in->org;
		if (q.owner == NULL) {
			snprintf(r->detail, sizeof(r->detail),
				 "the request names no org");
			return KW_ERR_NOTFOUND;
		}
		break;
	default:
		q.owner = NULL;
	}
	r->owner = q.owner;

	st = b->module->op_lookup(b->state, &q);
	if (!kwi_status_known(st)) {
		/* A module built against a newer ABI, or a bug: either way
		 * it is not an answer the chain can act on. */
		char said[sizeof(r->detail)];

		memcpy(said, r->detail, sizeof(said));
		snprintf(r->detail, sizeof(r->detail),
			 "module \"%s\" answered unknown status %d%s%s",
			 b->module->name, (int)st, said[0] != '\0' ? ": " : "",
			 said);
		st = KW_ERR_BACKEND;
	} else if (st == KW_OK && r->secret == NULL) {
		snprintf(r->detail, sizeof(r->detail),
			 "module \"%s\" answered found without a key",
			 b->module->name);
		st = KW_ERR_BACKEND;
	} else if (st == KW_OK && r->secret->len == 0) {
		snprintf(r->detail, sizeof(r->detail),
			 "module \"%s\" answered found with an empty key",
			 b->module->name);
		st = KW_ERR_BACKEND;
	} else if (st == KW_OK &&
		   memchr(r->secret->value, '\0', r->secret->len) != NULL) {
		/* Callers take the value as a C string: they would use a
		 * different key than the one counted and charged. */
		snprintf(r->detail, sizeof(r->detail),
			 "module \"%s\" answered found with a key that holds "
			 "a NUL byte",
			 b->module->name);
		st = KW_ERR_BACKEND;
	}
	if (st != KW_OK) {
		kwi_reply_clear(r);
		return st;
	}
	r->secret->value[r->secret->len] = '\0';
	if (b->nquotas > 0)
		st = charge(b, in, dry_run, r);
	return st;
}

/* The secret the chain hands out carries what it takes to refund its
 * charge and to count its use. */
static void keep(struct kw_instance *b, struct kw_reply *r)
{
	struct kw_secret *s = r->secret;

	s->charged = r->charged;
	r->charged = NULL;
	if (b->module->op_used != NULL && b->ctx->usage != NULL) {
		s->usage = kwi_usecount_ref(b->ctx);
		s->store = b;
		s->scope = b->scope;
	}
}

static void say(char *buf, size_t len, const char *backend, kw_status st,
		const char *detail)
{
	snprintf(buf, len, "%s answered %s%s%s", backend, kw_status_str(st),
		 detail[0] != '\0' ? ": " : "", detail);
}

static kw_status walk(const struct kwi_chain *c,
		      const struct kwi_query_in *in, kw_trace *t,
		      kw_secret **out)
{
	const struct kwi_entry *worst_e = NULL;
	kw_status worst = KW_ERR_NOTFOUND;
	char worst_detail[256] = "";
	struct kw_reply r;
	size_t i = 0;

	*out = NULL;
	while (i < c->n) {
		const struct kwi_entry *e = &c->entries[i];
		enum kwi_answer a;
		kw_action act;
		kw_status st;

		kwi_reply_init(&r, e->backend->name);
		st = ask(e, in, t != NULL, &r);
		if (r.charged != NULL && e->action[kwi_answer_of(st)] !=
						 KW_ACTION_DONE) {
			/* Charged for a key the chain does not hand out. */
			(void)kwi_quota_refund(r.charged);
			kwi_charged_free(r.charged);
			r.charged = NULL;
		}
		a = kwi_answer_of(st);
		act = (kw_action)e->action[a];

		if (t != NULL) {
			struct step *s = &t->steps[t->n++];

			s->pub.index = (unsigned)(i + 1);
			s->pub.backend = e->backend->name;
			s->pub.module = e->backend->module->name;
			s->pub.status = st;
			s->pub.action = act;
			s->pub.skip = act == KW_ACTION_SKIP ? e->skip[a] : 0;
			memcpy(s->detail, r.detail, sizeof(s->detail));
			s->pub.detail = s->detail;
			if (r.secret != NULL)
				kw_mask(r.secret->value, r.secret->len,
					s->masked, sizeof(s->masked));
			s->pub.masked = s->masked;
		}

		switch (act) {
		case KW_ACTION_DONE:
			if (t != NULL) {
				t->backend = e->backend->name;
				say(t->summary, sizeof(t->summary),
				    e->backend->name, st, r.detail);
				kwi_reply_clear(&r);
			} else {
				keep(e->backend, &r);
				*out = r.secret;
			}
			return KW_OK;
		case KW_ACTION_DIE:
			kwi_reply_clear(&r);
			if (t != NULL)
				say(t->summary, sizeof(t->summary),
				    e->backend->name, st, r.detail);
			else
				kwi_error(st, "chain \"%s\", provider \"%s\": "
					      "%s answered %s%s%s",
					  c->name, in->provider,
					  e->backend->name, kw_status_str(st),
					  r.detail[0] != '\0' ? ": " : "",
					  r.detail);
			return st;
		case KW_ACTION_CONTINUE:
		case KW_ACTION_SKIP:
			kwi_reply_clear(&r);
			if (rank(a) > rank(kwi_answer_of(worst)) ||
			    (worst_e == NULL && a != KWI_FOUND)) {
				worst = a == KWI_FOUND ? KW_ERR_NOTFOUND : st;
				worst_e = e;
				memcpy(worst_detail, r.detail,
				       sizeof(worst_detail));
			}
			i += 1 + (act == KW_ACTION_SKIP ? e->skip[a] : 0);
			break;
		}
	}

	/* The chain ran out. */
	if (worst == KW_ERR_NOTFOUND || worst_e == NULL) {
		worst = KW_ERR_NOTFOUND;
		if (t != NULL)
			snprintf(t->summary, sizeof(t->summary),
				 "no backend has a key for provider \"%s\"",
				 in->provider);
		else
			kwi_error(worst,
				  "chain \"%s\": no backend has a key for "
				  "provider \"%s\"",
				  c->name, in->provider);
	} else if (t != NULL) {
		say(t->summary, sizeof(t->summary), worst_e->backend->name,
		    worst, worst_detail);
	} else {
		kwi_error(worst, "chain \"%s\", provider \"%s\": %s answered "
				 "%s%s%s",
			  c->name, in->provider, worst_e->backend->name,
			  kw_status_str(worst),
			  worst_detail[0] != '\0' ? ": " : "", worst_detail);
	}
	return worst;
}

kw_status kwi_walk(const struct kwi_chain *c, const struct kwi_query_in *in,
		   kw_trace *t, kw_secret **out)
{
	kw_status st = walk(c, in, t, out);

	/* Modules release what they kept for the walk's lookups. */
	for (size_t i = 0; i < c->n; i++) {
		const struct kw_instance *b = c->entries[i].backend;

		if (b->module->op_walk_end != NULL)
			b->module->op_walk_end(b->state);
	}
	if (t != NULL)
		t->result = st;
	return st;
}
