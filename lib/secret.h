/*
 * secret.h - the secrets libkeyway hands out (kw_secret).  Never
 * installed.
 */
#ifndef KEYWAY_SECRET_H
#define KEYWAY_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include <keyway/keyway.h>

struct kw_instance;
struct kwi_charged;
struct kwi_life;
struct kwi_remote;
struct kwi_usecount;

/* The longest lease id of keywayd's kept with a secret it handed out. */
#define KWI_LEASE_MAX 64

/*
 * A resolved secret: one guarded allocation holding this header, the name
 * of the backend that answered and the value.
 */
struct kw_secret {
	size_t size;         /* bytes allocated */
	size_t len;          /* of value */
	char *value;         /* inside data[] */
	bool reported;
	kw_outcome outcome;
	struct kwi_charged *charged; /* quotas to refund on KW_UNUSED */
	struct kwi_usecount *usage;     /* where a use is counted, or NULL */
	struct kw_instance *store;   /* the store backend that answered */
	unsigned forks;              /* kwi_forks() when it was made */
	kw_scope scope;
	const char *owner;   /* inside data[], or NULL */
	const char *provider; /* inside data[] */
	struct kwi_remote *remote;   /* the daemon that handed it out, or
					NULL (remote.c) */
	struct kwi_life *life;       /* of the context that handed it out */
	char lease[KWI_LEASE_MAX + 1]; /* its lease there */
	char data[];         /* backend, value, owner, provider; NUL after each */
};

/* Count a used secret's use, release what it holds and wipe and free it;
 * NULL is a no-op. */
void kwi_secret_destroy(struct kw_secret *s);

#endif /* KEYWAY_SECRET_H */
