/*
 * control.c - the controls of chain entries, compiled.
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

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <keyway/keyway.h>

#include "chain.h"

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

/* What a bracket says: an action and a skip per answer, and at
 * [KWI_NANSWERS] for default; -1 where it says nothing. */
struct bracket {
	int act[KWI_NANSWERS + 1];
	unsigned skip[KWI_NANSWERS + 1];
};

/* Read the word STATUS=ACTION from tok to end into b. */
static kw_status read_word(const char *text, const char *tok,
			   const char *end, struct bracket *b, char *why,
			   size_t whylen)
{
	const char *eq = memchr(tok, '=', (size_t)(end - tok));
	unsigned n = 0;
	int a, ac;

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
	if (b->act[a] >= 0) {
		snprintf(why, whylen, "control \"%s\": %.*s is given twice",
			 text, (int)(eq - tok), tok);
		return KW_ERR_CONFIG;
	}
	b->act[a] = ac;
	b->skip[a] = n;
	return KW_OK;
}

/* Read the words of text, "[STATUS=ACTION ...]", into b. */
static kw_status read_bracket(const char *text, struct bracket *b, char *why,
			      size_t whylen)
{
	const char *p = text + 1;

	for (int a = 0; a <= KWI_NANSWERS; a++) {
		b->act[a] = -1;
		b->skip[a] = 0;
	}
	for (;;) {
		const char *end;
		kw_status rc;

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
		end = p + strcspn(p, " \t]");
		rc = read_word(text, p, end, b, why, whylen);
		if (rc != KW_OK)
			return rc;
		p = end;
	}
	if (p[strspn(p, " \t")] != '\0') {
		snprintf(why, whylen, "control \"%s\": text after ]", text);
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* Settle the action of answer a (default's when the bracket gives it
 * none), check that the chain can take it, and compile it into e. */
static kw_status settle(const char *text, size_t remaining,
			struct bracket *b, int a, struct kwi_entry *e,
			char *why, size_t whylen)
{
	const char *name = kwi_answer_str((enum kwi_answer)a);
	bool dflt = b->act[a] < 0;
	const char *from = dflt ? "default" : name;
	int act;
	unsigned skip;

	if (dflt) {
		b->act[a] = b->act[KWI_NANSWERS];
		b->skip[a] = b->skip[KWI_NANSWERS];
	}
	act = b->act[a];
	skip = b->skip[a];
	if (act < 0) {
		snprintf(why, whylen,
			 "control \"%s\": no action for %s (add %s=... or "
			 "default=...)",
			 text, name, name);
		return KW_ERR_CONFIG;
	}
	if (a == KWI_FOUND && act == KW_ACTION_DIE) {
		snprintf(why, whylen,
			 "control \"%s\": %s=die: a found key cannot die (use "
			 "done, continue or a number)",
			 text, from);
		return KW_ERR_CONFIG;
	}
	if (a != KWI_FOUND && act == KW_ACTION_DONE) {
		snprintf(why, whylen,
			 "control \"%s\": %s=done: only a found key can be "
			 "done (use die)",
			 text, from);
		return KW_ERR_CONFIG;
	}
	if (act == KW_ACTION_SKIP && skip == 0) {
		snprintf(why, whylen,
			 "control \"%s\": %s=0: skip at least 1 entry (use "
			 "continue to go on to the next)",
			 text, from);
		return KW_ERR_CONFIG;
	}
	if (act == KW_ACTION_SKIP && skip > remaining) {
		snprintf(why, whylen,
			 "control \"%s\": %s=%u skips past the end of the "
			 "chain (%zu %s this one)",
			 text, from, skip, remaining,
			 remaining == 1 ? "entry follows" : "entries follow");
		return KW_ERR_CONFIG;
	}
	if (act == KW_ACTION_SKIP && skip > MAX_SKIP) {
		snprintf(why, whylen,
			 "control \"%s\": %s=%u: skip at most %d entries",
			 text, from, skip, MAX_SKIP);
		return KW_ERR_CONFIG;
	}
	e->action[a] = (uint8_t)act;
	e->skip[a] = (uint8_t)skip;
	return KW_OK;
}

static kw_status parse_bracket(const char *text, size_t remaining,
			       struct kwi_entry *e, char *why, size_t whylen)
{
	struct bracket b;
	kw_status rc = read_bracket(text, &b, why, whylen);

	for (int a = 0; rc == KW_OK && a < KWI_NANSWERS; a++)
		rc = settle(text, remaining, &b, a, e, why, whylen);
	return rc;
}

/* A short run of lower-case letters, '_' and '-': what a misspelt
 * keyword looks like. */
static bool looks_like_word(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz_-");

	return n > 0 && n <= 24 && s[n] == '\0';
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
	/* Repeated only when it looks like a word mistyped: a long string
	 * there may be a key pasted into the wrong setting. */
	if (looks_like_word(text))
		snprintf(why, whylen,
			 "unknown control \"%s\" (expected required, "
			 "requisite, sufficient, optional or [status=action "
			 "...])",
			 text);
	else
		snprintf(why, whylen,
			 "unknown control (a string of %zu characters, not "
			 "shown; expected required, requisite, sufficient, "
			 "optional or [status=action ...])",
			 strlen(text));
	return KW_ERR_CONFIG;
}
