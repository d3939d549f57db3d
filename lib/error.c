/*
 * error.c - status names, the thread-local last error, and the collection
 * of configuration problems.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

#define KWI_ERRLEN 1024

static __thread char last_error[KWI_ERRLEN];

static const char *const status_names[] = {
	[KW_OK] = "ok",
	[KW_ERR_NOTFOUND] = "notfound",
	[KW_ERR_DENIED] = "denied",
	[KW_ERR_UNAVAIL] = "unavail",
	[KW_ERR_BACKEND] = "backend error",
	[KW_ERR_CRYPTO] = "decryption failed",
	[KW_ERR_CONFIG] = "configuration error",
	[KW_ERR_MODULE] = "module error",
	[KW_ERR_NOMEM] = "out of memory",
	[KW_ERR_INVAL] = "invalid argument",
	[KW_ERR_IO] = "i/o error",
	[KW_ERR_PERM] = "permission denied",
	[KW_ERR_EXISTS] = "already exists",
	[KW_ERR_UNSUPPORTED] = "not supported",
	[KW_ERR_INTERNAL] = "internal error",
};

const char *kw_status_str(kw_status st)
{
	return kwi_status_known(st) ? status_names[st] : "unknown status";
}

bool kwi_status_known(kw_status st)
{
	return (unsigned)st < sizeof(status_names) / sizeof(status_names[0]) &&
	       status_names[st] != NULL;
}

enum kwi_answer kwi_answer_of(kw_status st)
{
	switch (st) {
	case KW_OK:
		return KWI_FOUND;
	case KW_ERR_NOTFOUND:
		return KWI_NOTFOUND;
	case KW_ERR_DENIED:
		return KWI_DENIED;
	case KW_ERR_UNAVAIL:
		return KWI_UNAVAIL;
	default:
		return KWI_ERROR;
	}
}

const char *kwi_answer_str(enum kwi_answer a)
{
	static const char *const names[KWI_NANSWERS] = {
		"found", "notfound", "denied", "unavail", "error"
	};

	return (unsigned)a < KWI_NANSWERS ? names[a] : "?";
}

const char *kw_action_str(kw_action a)
{
	switch (a) {
	case KW_ACTION_DONE:
		return "done";
	case KW_ACTION_CONTINUE:
		return "continue";
	case KW_ACTION_DIE:
		return "die";
	case KW_ACTION_SKIP:
		return "skip";
	}
	return "?";
}

const char *kw_last_error(void)
{
	return last_error;
}

const char *kw_version(void)
{
	return PACKAGE_VERSION;
}

kw_status kwi_verror(kw_status st, const char *fmt, va_list ap)
{
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	return st;
}

/* In parentheses: error.h may define kwi_error() as a macro. */
kw_status (kwi_error)(kw_status st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kwi_verror(st, fmt, ap);
	va_end(ap);
	return st;
}

static void blank_controls(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

void kwi_vdiag(struct kwi_diag *d, kw_status st, const char *file, int line,
	       const char *fmt, va_list ap)
{
	char msg[KWI_ERRLEN];
	char full[KWI_ERRLEN];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (line > 0)
		snprintf(full, sizeof(full), "%s:%d: %s", file, line, msg);
	else
		snprintf(full, sizeof(full), "%s: %s", file, msg);

	/* A message is one line, whatever a module put into it or a file
	 * name held: no control character (a form feed, an escape that
	 * would drive the terminal) is left in it. */
	blank_controls(full);

	if (d->first == KW_OK) {
		d->first = st;
		memcpy(last_error, full, sizeof(last_error));
	}
	d->count++;
	if (d->report != NULL)
		d->report(d->arg, full);
	if (d->problem != NULL) {
		kw_problem p = { file, line > 0 ? line : 0, msg, st };

		blank_controls(msg);
		d->problem(d->arg, &p);
	}
}

void kwi_diag(struct kwi_diag *d, kw_status st, const char *file, int line,
	      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kwi_vdiag(d, st, file, line, fmt, ap);
	va_end(ap);
}
