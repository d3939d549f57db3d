/*
 * types.h - the types and constants that applications and modules share.
 *
 * Do not include this header on its own: it comes with <keyway/keyway.h>
 * (applications) and with <keyway/module.h> (modules).  It holds what both
 * readers need, so that module.h need not include keyway.h, whose kw_*
 * functions a module cannot call: a module does not link against
 * libkeyway.
 *
 * Everything here is part of both interfaces: values are never renumbered
 * and structures only grow at the end.
 */
#ifndef KEYWAY_TYPES_H
#define KEYWAY_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KEYWAY_VERSION_MAJOR 0
#define KEYWAY_VERSION_MINOR 1
#define KEYWAY_VERSION_PATCH 0

#if defined(__GNUC__)
#define KW_WARN_UNUSED __attribute__((warn_unused_result))
#define KW_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KW_WARN_UNUSED
#define KW_PRINTF(f, a)
#endif

/*
 * Every function that can fail returns a kw_status.  Values are never
 * renumbered; new codes are added at the end.
 *
 * The first four double as the answers of a backend (keyway.conf(5), "chain
 * semantics"): KW_OK is "found", KW_ERR_NOTFOUND "notfound", KW_ERR_DENIED
 * "denied", KW_ERR_UNAVAIL "unavail"; every other code is "error".
 */
typedef enum kw_status {
	KW_OK = 0,
	KW_ERR_NOTFOUND = 1,     /* no such key (authoritative) */
	KW_ERR_DENIED = 2,       /* key exists but may not be handed out */
	KW_ERR_UNAVAIL = 3,      /* backend could not be asked */
	KW_ERR_BACKEND = 4,      /* backend reported bad data or failed */
	KW_ERR_CRYPTO = 5,       /* decryption or authentication failed */
	KW_ERR_CONFIG = 6,       /* the configuration is wrong */
	KW_ERR_MODULE = 7,       /* a module could not be loaded or opened */
	KW_ERR_NOMEM = 8,        /* out of memory */
	KW_ERR_INVAL = 9,        /* bad argument */
	KW_ERR_IO = 10,          /* file or system error */
	KW_ERR_PERM = 11,        /* unsafe file permissions, or not allowed */
	KW_ERR_EXISTS = 12,      /* already exists */
	KW_ERR_UNSUPPORTED = 13, /* operation not offered by this backend */
	KW_ERR_INTERNAL = 14     /* a bug in keyway */
} kw_status;

/* Whose key: a user's, an organization's, or the system's shared key. */
typedef enum kw_scope {
	KW_SCOPE_NONE = 0,  /* not scoped (list: every scope) */
	KW_SCOPE_USER = 1,  /* the request's user */
	KW_SCOPE_ORG = 2,   /* the request's organization */
	KW_SCOPE_SYSTEM = 3 /* the shared key; no owner */
} kw_scope;

/*
 * The word for scope as keyway.conf(5) spells it: "user", "org", "system",
 * or "none" for KW_SCOPE_NONE and any other value; what kw_scope_str()
 * returns.  Inline so that a module, which cannot call kw_scope_str(),
 * spells scopes as the library does.  Available since 0.1.
 */
static inline const char *kw_scope_name(kw_scope scope)
{
	switch (scope) {
	case KW_SCOPE_USER:
		return "user";
	case KW_SCOPE_ORG:
		return "org";
	case KW_SCOPE_SYSTEM:
		return "system";
	case KW_SCOPE_NONE:
		break;
	}
	return "none";
}

typedef enum kw_put_mode {
	KW_PUT_CREATE = 0, /* KW_ERR_EXISTS if there is one already */
	KW_PUT_ROTATE = 1  /* replace an existing key; KW_ERR_NOTFOUND if none */
} kw_put_mode;

/* ---- usage ---- */

/* A row of the usage log: one per quota charge. */
typedef struct kw_usage_row {
	int64_t time;         /* seconds since the epoch */
	const char *chain;
	const char *backend;
	const char *provider;
	const char *user;     /* NULL if none */
	const char *org;      /* NULL if none */
	const char *outcome;  /* "admitted", "denied", "refunded" */
} kw_usage_row;

/*
 * Which rows to read; NULL and 0 fields match everything.  Always
 * initialise with KW_USAGE_FILTER_INIT so that `size` is set: later
 * versions add conditions at the end, and the library reads only the
 * fields that the caller's size covers.  Unlike a request, a filter from
 * a later keyway.h that sets a condition this library does not know is
 * refused: ignoring it would return rows the caller asked to leave out.
 */
typedef struct kw_usage_filter {
	size_t size;          /* sizeof(kw_usage_filter) as the caller
				 compiled it */
	int64_t since;        /* time >= since */
	int64_t until;        /* time < until; 0: no bound */
	const char *user;
	const char *org;
	const char *backend;
} kw_usage_filter;

#define KW_USAGE_FILTER_INIT \
	{ sizeof(kw_usage_filter), 0, 0, NULL, NULL, NULL }

/* Called once per row, oldest first; a status other than KW_OK stops. */
typedef kw_status kw_usage_fn(void *arg, const kw_usage_row *row);

/* Room kw_mask() needs for its longest output, NUL included. */
#define KW_MASK_SIZE 16

#ifdef __cplusplus
}
#endif

#endif /* KEYWAY_TYPES_H */
