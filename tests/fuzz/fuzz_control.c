/*
 * fuzz_control.c - a fuzz target for the controls of chain entries
 * (lib/control.c, kwi_control_parse()): "sufficient", "[found=done
 * notfound=2 default=die]".
 *
 * The first input byte is how many entries follow the one whose control
 * the rest is (a skip may not go past them); the rest, up to a NUL, is the
 * control, as libconfig would hand it over.  What must hold, else abort():
 *
 *   - a control compiled gives every answer an action it may take: found
 *     never dies, no other answer is done, a skip is of 1 to 255 entries
 *     and no more than follow, and only a skip has a count;
 *   - the bracket that spells out what was compiled compiles to the same;
 *   - a control compiled with N entries after it compiles with N + 1;
 *   - a refusal is KW_ERR_CONFIG with a reason that is one line when the
 *     control is.
 *
 * A control holds no secret: there is none to plant.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/keyway.h>

#include "chain.h"
#include "error.h"
#include "fuzz.h"

static bool fz_verbose;
static bool fz_ready;

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_control: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

static bool one_line(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static void check_compiled(const struct kwi_entry *e, size_t remaining,
			   const char *text)
{
	for (int a = 0; a < KWI_NANSWERS; a++) {
		unsigned act = e->action[a], skip = e->skip[a];

		if (act > KW_ACTION_SKIP)
			die("an action out of range", text);
		if (a == KWI_FOUND && act == KW_ACTION_DIE)
			die("found compiled to die", text);
		if (a != KWI_FOUND && act == KW_ACTION_DONE)
			die("an answer but found compiled to done", text);
		if (act == KW_ACTION_SKIP &&
		    (skip == 0 || skip > remaining || skip > 255))
			die("a skip out of range", text);
		if (act != KW_ACTION_SKIP && skip != 0)
			die("a count on an action that is no skip", text);
	}
}

/* The bracket that says what e does, answer by answer. */
static void spell(const struct kwi_entry *e, char *buf, size_t size)
{
	static const char *const words[] = { "done", "continue", "die" };
	size_t n = 0;

	n += (size_t)snprintf(buf + n, size - n, "[");
	for (int a = 0; a < KWI_NANSWERS; a++) {
		const char *name = kwi_answer_str((enum kwi_answer)a);

		if (e->action[a] == KW_ACTION_SKIP)
			n += (size_t)snprintf(buf + n, size - n, "%s%s=%u",
					      a ? " " : "", name,
					      (unsigned)e->skip[a]);
		else
			n += (size_t)snprintf(buf + n, size - n, "%s%s=%s",
					      a ? " " : "", name,
					      words[e->action[a]]);
	}
	snprintf(buf + n, size - n, "]");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kwi_entry e, again, more;
	char why[256], spelled[256], *text;
	size_t remaining, len;
	kw_status rc;

	if (!fz_ready) {
		fz_verbose = getenv("KWFUZZ_VERBOSE") != NULL;
		fz_ready = true;
	}
	if (size == 0)
		return 0;
	remaining = data[0];
	len = strnlen((const char *)data + 1, size - 1);
	text = malloc(len + 1);
	if (text == NULL)
		die("out of memory", NULL);
	memcpy(text, data + 1, len);
	text[len] = '\0';

	memset(&e, 0xa5, sizeof(e));
	why[0] = '\0';
	rc = kwi_control_parse(text, remaining, &e, why, sizeof(why));
	if (fz_verbose)
		fprintf(stderr, "# %zu after, \"%s\": %s\n", remaining, text,
			rc == KW_OK ? "compiled" : why);
	if (rc != KW_OK) {
		if (rc != KW_ERR_CONFIG)
			die("a refusal that is not KW_ERR_CONFIG",
			    kw_status_str(rc));
		if (why[0] == '\0' || strnlen(why, sizeof(why)) == sizeof(why))
			die("a refusal without a reason", text);
		if (one_line(text) && !one_line(why))
			die("a reason that is not one line", why);
		goto out;
	}
	check_compiled(&e, remaining, text);

	spell(&e, spelled, sizeof(spelled));
	memset(&again, 0x5a, sizeof(again));
	if (kwi_control_parse(spelled, remaining, &again, why,
			      sizeof(why)) != KW_OK)
		die("the spelled-out control is refused", why);
	if (memcmp(again.action, e.action, sizeof(e.action)) != 0 ||
	    memcmp(again.skip, e.skip, sizeof(e.skip)) != 0)
		die("the spelled-out control compiles to something else",
		    spelled);

	memset(&more, 0x5a, sizeof(more));
	if (kwi_control_parse(text, remaining + 1, &more, why,
			      sizeof(why)) != KW_OK ||
	    memcmp(more.action, e.action, sizeof(e.action)) != 0 ||
	    memcmp(more.skip, e.skip, sizeof(e.skip)) != 0)
		die("a control compiles otherwise with one more entry after it",
		    text);
out:
	free(text);
	return 0;
}
