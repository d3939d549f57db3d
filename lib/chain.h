/*
 * chain.h - chains: their entries with compiled controls, the walk that
 * asks each entry's backend in turn, and its trace for kw_explain().
 * Never installed.
 */
#ifndef KEYWAY_CHAIN_H
#define KEYWAY_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include <keyway/keyway.h>

/* enum kwi_answer (error.c) */
#include "error.h"

struct kw_instance;
struct kw_reply;
struct kwi_query_in;

/* A chain entry with its control compiled to one action per answer. */
struct kwi_entry {
	struct kw_instance *backend;
	uint8_t action[KWI_NANSWERS]; /* kw_action */
	uint8_t skip[KWI_NANSWERS];
};

struct kwi_chain {
	char *name;
	struct kwi_entry *entries;
	size_t n;
};

/* ---- controls (control.c) ---- */

/*
 * Compile a control ("sufficient", "[found=done default=die]", ...) for an
 * entry with `remaining` entries after it.  KW_OK, or KW_ERR_CONFIG with
 * the reason in why.
 */
kw_status kwi_control_parse(const char *text, size_t remaining,
			    struct kwi_entry *e, char *why, size_t whylen);

/* ---- traces (trace.c) ---- */

/* An empty trace of chain c (*out, the caller's to kw_trace_free()):
 * KW_OK or KW_ERR_NOMEM. */
kw_status kwi_trace_new(const struct kwi_chain *c, kw_trace **out);
/* An empty trace of the chain named `chain`, with room for n steps, for
 * a trace keywayd tells (remote.c): KW_OK or KW_ERR_NOMEM. */
kw_status kwi_trace_alloc(const char *chain, size_t n, kw_trace **out);
/* Append a copy of step (its strings copied; detail and masked cut to
 * what a step holds); no more than the n steps made room for. */
kw_status kwi_trace_add(kw_trace *t, const kw_trace_step *step);
/* The verdict as keywayd tells it: the result, the backend that answered
 * (or NULL) and the summary. */
kw_status kwi_trace_verdict(kw_trace *t, kw_status result,
			    const char *backend, const char *summary);
/* Record that entry e (index i, from 0) answered st, as r holds it (its
 * key only masked), and that the chain took action act. */
void kwi_trace_step(kw_trace *t, size_t i, const struct kwi_entry *e,
		    kw_status st, kw_action act, const struct kw_reply *r);
/* The verdict: backend answered st (detail: what it said). */
void kwi_trace_say(kw_trace *t, const char *backend, kw_status st,
		   const char *detail);
/* The verdict: backend is the one whose key the chain would hand out. */
void kwi_trace_found(kw_trace *t, const char *backend, kw_status st,
		     const char *detail);
/* The verdict when no backend has a key for provider. */
void kwi_trace_none(kw_trace *t, const char *provider);
/* The result kw_trace_result() gives. */
void kwi_trace_end(kw_trace *t, kw_status result);

/* ---- the walk (chain.c) ---- */

/*
 * Walk chain c for in.  Without a trace: on KW_OK *out is the secret; on
 * failure kw_last_error() says why.  With a trace t: fills it (the secret is
 * never kept) and returns the verdict.
 */
kw_status kwi_walk(const struct kwi_chain *c, const struct kwi_query_in *in,
		   kw_trace *t, kw_secret **out);

#endif /* KEYWAY_CHAIN_H */
