/*
 * trace.c - what kw_explain() hands out: each step of a walk down a chain,
 * and its verdict.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/keyway.h>

#include "chain.h"
#include "conf.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "secret.h"

struct step {
	kw_trace_step pub;
	char detail[256];
	char masked[40];
	char *names; /* "backend\0module\0" of a step told by keywayd */
};

struct kw_trace {
	char *chain;
	kw_status result;
	const char *backend; /* points into a step, or is `answered` */
	char *answered;      /* keywayd's answering backend, when no step
				names it */
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
	for (size_t i = 0; i < t->n; i++)
		free(t->steps[i].names);
	free(t->answered);
	free(t->chain);
	free(t);
}

kw_status kwi_trace_alloc(const char *chain, size_t n, kw_trace **out)
{
	kw_trace *t;

	*out = NULL;
	t = calloc(1, sizeof(*t) + n * sizeof(t->steps[0]));
	if (t == NULL)
		return KW_ERR_NOMEM;
	t->chain = strdup(chain);
	if (t->chain == NULL) {
		free(t);
		return KW_ERR_NOMEM;
	}
	*out = t;
	return KW_OK;
}

kw_status kwi_trace_new(const struct kwi_chain *c, kw_trace **out)
{
	return kwi_trace_alloc(c->name, c->n, out);
}

kw_status kwi_trace_add(kw_trace *t, const kw_trace_step *from)
{
	struct step *s = &t->steps[t->n];
	size_t blen = strlen(from->backend), mlen = strlen(from->module);

	s->names = malloc(blen + mlen + 2);
	if (s->names == NULL)
		return KW_ERR_NOMEM;
	memcpy(s->names, from->backend, blen + 1);
	memcpy(s->names + blen + 1, from->module, mlen + 1);
	s->pub = *from;
	s->pub.backend = s->names;
	s->pub.module = s->names + blen + 1;
	snprintf(s->detail, sizeof(s->detail), "%s", from->detail);
	snprintf(s->masked, sizeof(s->masked), "%s", from->masked);
	s->pub.detail = s->detail;
	s->pub.masked = s->masked;
	t->n++;
	return KW_OK;
}

kw_status kwi_trace_verdict(kw_trace *t, kw_status result,
			    const char *backend, const char *summary)
{
	t->result = result;
	snprintf(t->summary, sizeof(t->summary), "%s", summary);
	t->backend = NULL;
	if (backend == NULL)
		return KW_OK;
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->steps[i].pub.backend, backend) == 0)
			t->backend = t->steps[i].pub.backend;
	if (t->backend != NULL)
		return KW_OK;
	t->answered = strdup(backend);
	if (t->answered == NULL)
		return KW_ERR_NOMEM;
	t->backend = t->answered;
	return KW_OK;
}

void kwi_trace_step(kw_trace *t, size_t i, const struct kwi_entry *e,
		    kw_status st, kw_action act, const struct kw_reply *r)
{
	struct step *s = &t->steps[t->n++];
	enum kwi_answer a = kwi_answer_of(st);

	s->pub.index = (unsigned)(i + 1);
	s->pub.backend = e->backend->name;
	s->pub.module = e->backend->module->name;
	s->pub.status = st;
	s->pub.action = act;
	s->pub.skip = act == KW_ACTION_SKIP ? e->skip[a] : 0;
	memcpy(s->detail, r->detail, sizeof(s->detail));
	s->pub.detail = s->detail;
	if (r->secret != NULL)
		kw_mask(r->secret->value, r->secret->len, s->masked,
			sizeof(s->masked));
	s->pub.masked = s->masked;
}

void kwi_trace_say(kw_trace *t, const char *backend, kw_status st,
		   const char *detail)
{
	/* The chain's word for a key handed out, as every trace says it. */
	snprintf(t->summary, sizeof(t->summary), "%s answered %s%s%s",
		 backend, st == KW_OK ? "found" : kw_status_str(st),
		 detail[0] != '\0' ? ": " : "", detail);
}

void kwi_trace_found(kw_trace *t, const char *backend, kw_status st,
		     const char *detail)
{
	t->backend = backend;
	kwi_trace_say(t, backend, st, detail);
}

void kwi_trace_none(kw_trace *t, const char *provider)
{
	snprintf(t->summary, sizeof(t->summary),
		 "no backend has a key for provider \"%s\"", provider);
}

void kwi_trace_end(kw_trace *t, kw_status result)
{
	t->result = result;
}
